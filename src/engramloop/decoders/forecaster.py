"""The memory-decay forecaster: a small GRU over the last K epoch feature vectors.

Given the features of the last ``window_epochs`` epochs (:mod:`decoders.features`), the
model forecasts, over ``horizon_s``:

* ``delta_strength``: the change of pooled memory strength (regression head), and
* ``p_below_median``: the probability that it falls by more than ``decay_threshold``
  (set in training so that this is below-median consolidation: P(below-median
  consolidation over ``horizon_s`` without stimulation); called ``p_decay`` before issue
  21, a name that read like a risk a pulse would fix). Classification head, calibrated
  afterwards by Platt scaling on held-out nights (Platt 1999, "Probabilistic outputs for
  support vector machines"),
* optionally the change of each memory (per-memory regression heads).

A checkpoint is ONE file (``torch.save`` of plain tensors, numbers, strings and lists,
loaded with ``weights_only=True`` so a checkpoint cannot run code): the weights, the
feature names and their normalisation, the epoch geometry, horizon, threshold,
calibration, a free-form metadata dict (data, seeds, metrics) and two versions -- the
checkpoint *format* version this code reads and the *model* version string recorded in
every :class:`~decoders.features.Forecast`. Loading a checkpoint whose format, feature
set or epoch geometry does not match raises :class:`CheckpointError` naming the file and
the mismatch.

This module imports torch; the loop imports it only when ``[forecaster] enabled = true``.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engramloop.core.extras import require
from engramloop.decoders.features import FEATURE_NAMES, FeatureVector, Forecast

torch = require("torch", "forecaster", "the forecaster")
nn = torch.nn

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "ForecastNet", "ForecastEnsemble",
           "FusedEnsemble",
           "Checkpoint",
           "Forecaster", "default_checkpoint_path"]

FORMAT = "engramloop.forecaster"
FORMAT_VERSION = 1
#: The network this code builds (stored in checkpoints; another kind is refused).
ARCH = "gru+skip"


class CheckpointError(ValueError):
    """A forecaster checkpoint is missing, corrupt or does not match this code/config."""


def default_checkpoint_path() -> Path:
    """The checkpoint shipped in the package (``decoders/data/forecaster.pt``)."""
    return Path(__file__).resolve().parent / "data" / "forecaster.pt"


class ForecastNet(nn.Module):
    """GRU encoder plus a linear skip path, with regression, decay-logit and optional
    per-memory outputs.

    The skip path is a linear map of the whole flattened window straight to the outputs
    (a "wide and deep" model, Cheng et al. 2016): the network is never worse than the
    linear baseline it is compared with, and the GRU learns what the linear part misses.

    Parameters
    ----------
    n_features : int
        Features per epoch.
    hidden : int
        GRU hidden size.
    n_memories : int
        Per-memory regression outputs (0 for pooled only).
    window : int
        Epochs per input window (the skip path's input is window * n_features).
    """

    def __init__(self, n_features: int, hidden: int = 32, n_memories: int = 0,
                 window: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(n_features, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(),
                                  nn.Linear(hidden, 2 + n_memories))
        self.skip = nn.Linear(window * n_features, 2 + n_memories)
        self.n_memories = n_memories

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, window, n_features) normalised -> (batch, 2 + n_memories).

        Column 0: normalised pooled change; column 1: decay logit; then per memory.
        """
        _, h = self.gru(x)
        return self.head(h[-1]) + self.skip(x.flatten(1))


class ForecastEnsemble(nn.Module):
    """Members trained from different seeds; the output is their mean (Lakshminarayanan
    et al. 2017: deep ensembles reduce variance and improve calibration)."""

    def __init__(self, members: Sequence[ForecastNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members[0](x)
        for m in self.members[1:]:
            out = out + m(x)
        return out / len(self.members)


class FusedEnsemble(nn.Module):
    """An ensemble rewritten as ONE wider network with the same outputs (inference only).

    The members' GRUs become one GRU with ``members * hidden`` units whose recurrent
    weights are block-diagonal (a GRU's gates act per unit, so the blocks never mix); the
    heads become block-diagonal / concatenated linear layers and the final average is
    folded into the last layer's weights. One call then costs about one member's
    Python/dispatch overhead instead of ``members`` of them.
    """

    def __init__(self, ens: ForecastEnsemble) -> None:
        super().__init__()
        ms = list(ens.members)
        k, h = len(ms), ms[0].gru.hidden_size
        f, o = ms[0].gru.input_size, ms[0].skip.out_features
        kh = k * h
        self.gru = nn.GRU(f, kh, batch_first=True)
        self.l1 = nn.Linear(kh, kh)
        self.l2 = nn.Linear(kh, o)
        self.skip = nn.Linear(ms[0].skip.in_features, o)
        with torch.no_grad():
            for p in self.parameters():
                p.zero_()
            g = self.gru
            for i, m in enumerate(ms):
                blk = slice(i * h, (i + 1) * h)
                for gate in range(3):      # PyTorch row order: reset, update, new
                    rc = slice(gate * kh + i * h, gate * kh + (i + 1) * h)
                    rm = slice(gate * h, (gate + 1) * h)
                    g.weight_ih_l0[rc] = m.gru.weight_ih_l0[rm]
                    g.weight_hh_l0[rc, blk] = m.gru.weight_hh_l0[rm]
                    g.bias_ih_l0[rc] = m.gru.bias_ih_l0[rm]
                    g.bias_hh_l0[rc] = m.gru.bias_hh_l0[rm]
                self.l1.weight[blk, blk] = m.head[0].weight
                self.l1.bias[blk] = m.head[0].bias
                self.l2.weight[:, blk] = m.head[2].weight / k
                self.l2.bias += m.head[2].bias / k
                self.skip.weight += m.skip.weight / k
                self.skip.bias += m.skip.bias / k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, hn = self.gru(x)
        return self.l2(torch.tanh(self.l1(hn[-1]))) + self.skip(x.flatten(1))


@dataclass
class Checkpoint:
    """Everything needed to run a trained forecaster (one file on disk)."""

    state_dict: dict[str, torch.Tensor]
    hidden: int
    n_memories: int
    feature_names: tuple[str, ...]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    window_epochs: int
    epoch_s: float
    hop_s: float
    horizon_s: float
    decay_threshold: float
    target_scale: float
    members: int = 1
    calib_a: float = 1.0
    calib_b: float = 0.0
    model_version: str = "0"
    metadata: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "model_version": self.model_version,
            "arch": {"kind": ARCH, "n_features": len(self.feature_names),
                     "hidden": self.hidden, "n_memories": self.n_memories,
                     "members": self.members},
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict.items()},
            "feature_names": list(self.feature_names),
            "feature_mean": torch.as_tensor(self.feature_mean, dtype=torch.float64),
            "feature_std": torch.as_tensor(self.feature_std, dtype=torch.float64),
            "window_epochs": self.window_epochs, "epoch_s": self.epoch_s,
            "hop_s": self.hop_s, "horizon_s": self.horizon_s,
            "decay_threshold": self.decay_threshold, "target_scale": self.target_scale,
            "calibration": {"a": self.calib_a, "b": self.calib_b},
            "metadata": self.metadata,
        }

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.to_dict(), tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        """Read and check a checkpoint file.

        Raises
        ------
        CheckpointError
            If the file is missing, not a forecaster checkpoint, of another format
            version, or internally inconsistent.
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"forecaster checkpoint {path}: file not found (train one "
                                  "with `engramloop forecaster train` or leave "
                                  "[forecaster] checkpoint empty for the shipped one)")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a corrupt file
            raise CheckpointError(f"forecaster checkpoint {path}: cannot be read as a torch "
                                  f"checkpoint ({type(exc).__name__}: {exc})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            what = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise CheckpointError(f"forecaster checkpoint {path}: not an engramloop forecaster "
                                  f"checkpoint (format {what!r})")
        if d.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"forecaster checkpoint {path}: format version {d.get('format_version')} but "
                f"this engramloop reads version {FORMAT_VERSION}; retrain it with "
                "`engramloop forecaster train`")
        arch = d.get("arch") if isinstance(d.get("arch"), dict) else {}
        if arch.get("kind") != ARCH:
            raise CheckpointError(f"forecaster checkpoint {path}: architecture "
                                  f"{arch.get('kind')!r}, but this engramloop builds {ARCH!r}; "
                                  "retrain it with `engramloop forecaster train`")
        try:
            names = tuple(d["feature_names"])
            ck = cls(state_dict=d["state_dict"], hidden=int(arch["hidden"]),
                     n_memories=int(arch["n_memories"]), members=int(arch["members"]),
                     feature_names=names,
                     feature_mean=d["feature_mean"].numpy(), feature_std=d["feature_std"].numpy(),
                     window_epochs=int(d["window_epochs"]), epoch_s=float(d["epoch_s"]),
                     hop_s=float(d["hop_s"]), horizon_s=float(d["horizon_s"]),
                     decay_threshold=float(d["decay_threshold"]),
                     target_scale=float(d["target_scale"]),
                     calib_a=float(d["calibration"]["a"]), calib_b=float(d["calibration"]["b"]),
                     model_version=str(d["model_version"]), metadata=dict(d["metadata"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"forecaster checkpoint {path}: missing or malformed entry "
                                  f"{exc}") from None
        if int(arch["n_features"]) != len(names) or ck.feature_mean.shape != (len(names),):
            raise CheckpointError(f"forecaster checkpoint {path}: feature count mismatch "
                                  "inside the file")
        return ck

    def check_compatible(self, *, feature_names: Sequence[str] = FEATURE_NAMES,
                         epoch_s: float | None = None, hop_s: float | None = None,
                         where: str = "checkpoint") -> None:
        """Raise :class:`CheckpointError` if this checkpoint cannot read these features."""
        if tuple(feature_names) != self.feature_names:
            missing = sorted(set(self.feature_names) - set(feature_names))
            extra = sorted(set(feature_names) - set(self.feature_names))
            raise CheckpointError(
                f"forecaster {where}: trained on a different feature set (missing here: "
                f"{missing or 'none'}, new here: {extra or 'none'}, or a different order); "
                "retrain with `engramloop forecaster train`")
        for name, mine, theirs in (("epoch_s", self.epoch_s, epoch_s),
                                   ("hop_s", self.hop_s, hop_s)):
            if theirs is not None and not math.isclose(mine, theirs, rel_tol=1e-9):
                raise CheckpointError(
                    f"forecaster {where}: trained with {name} = {mine} s but "
                    f"[forecaster.features] {name} = {theirs} s; set it to {mine} or retrain")

    def build(self) -> ForecastEnsemble:
        """The network (ensemble) with the checkpoint's weights, in eval mode."""
        net = ForecastEnsemble([ForecastNet(len(self.feature_names), self.hidden,
                                            self.n_memories, self.window_epochs)
                                for _ in range(self.members)])
        try:
            net.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise CheckpointError(f"forecaster checkpoint: weights do not fit the architecture "
                                  f"({str(exc).splitlines()[0]})") from None
        net.eval()
        return net


def _sigmoid(z: float) -> float:
    """1 / (1 + exp(-z)) for any finite z: the exponent is never positive, so a logit far
    out of range (an input far from the training data) gives 0 or 1, not OverflowError."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class Forecaster:
    """Inference: the last ``window_epochs`` feature vectors -> :class:`Forecast`.

    Parameters
    ----------
    checkpoint : Checkpoint

    Notes
    -----
    With fewer vectors than the window, the earliest one is repeated (the model was
    trained with the same padding at the start of a night). Non-finite feature values are
    replaced by the training mean. Input buffers are preallocated; ``predict`` allocates
    only the small output tensors torch makes.
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.ensemble = checkpoint.build()
        self.net = FusedEnsemble(self.ensemble).eval() if checkpoint.members > 1 \
            else self.ensemble
        self.window = checkpoint.window_epochs
        self._mean = checkpoint.feature_mean.astype(np.float32)
        self._inv_std = (1.0 / np.maximum(checkpoint.feature_std, 1e-12)).astype(np.float32)
        self._x = np.zeros((1, self.window, len(checkpoint.feature_names)), dtype=np.float32)
        self._xt = torch.from_numpy(self._x)

    @classmethod
    def load(cls, path: str | Path | None = None, *,
             feature_names: Sequence[str] = FEATURE_NAMES, epoch_s: float | None = None,
             hop_s: float | None = None) -> Forecaster:
        """Load a checkpoint (the shipped one when ``path`` is None or empty) and check it."""
        path = Path(path) if path else default_checkpoint_path()
        ck = Checkpoint.load(path)
        ck.check_compatible(feature_names=feature_names, epoch_s=epoch_s, hop_s=hop_s,
                            where=f"checkpoint {path}")
        return cls(ck)

    @property
    def version(self) -> str:
        return self.checkpoint.model_version

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Raw features (..., n_features) -> float32 normalised, NaN -> 0 (the mean)."""
        z = (np.asarray(raw, dtype=np.float32) - self._mean) * self._inv_std
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)

    def predict(self, features: Sequence[FeatureVector] | np.ndarray,
                time_s: float | None = None) -> Forecast:
        """Forecast from the most recent epochs.

        Parameters
        ----------
        features : sequence of FeatureVector, or ndarray shape (n_epochs, n_features)
            Oldest first; only the last ``window_epochs`` are used (at least one).
        time_s : float, optional
            Time the forecast refers to; defaults to the last vector's ``t_end_s``
            (NaN for a bare array).
        """
        nf = self._x.shape[2]
        if isinstance(features, np.ndarray):
            if features.ndim != 2 or features.shape[0] < 1 or features.shape[1] != nf:
                raise ValueError(f"features must have shape (n_epochs >= 1, {nf}), got "
                                 f"{features.shape}")
            rows = features[-self.window:]
            t = float("nan") if time_s is None else time_s
        else:
            if not features:
                raise ValueError("predict needs at least one feature vector")
            rows = [fv.values for fv in features[-self.window:]]
            if any(r.shape != (nf,) for r in rows):
                raise ValueError(f"feature vectors must have {nf} values")
            t = features[-1].t_end_s if time_s is None else time_s
        k = len(rows)
        for r in rows:   # normalising below turns NaN into the training mean: refuse it
            if not np.isfinite(r).all():
                names = self.checkpoint.feature_names
                bad = [names[j] for j in np.flatnonzero(~np.isfinite(r))]
                raise ValueError(f"non-finite feature(s) {', '.join(bad)}: the forecast "
                                 "would be made from invented values")
        dst = self._x[0, self.window - k:]
        for i in range(k):                 # normalise in place into the input buffer
            dst[i] = rows[i]
        dst -= self._mean
        dst *= self._inv_std
        np.nan_to_num(dst, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        if k < self.window:
            self._x[0, :self.window - k] = self._x[0, self.window - k]
        with torch.inference_mode():
            out = self.net(self._xt)[0].numpy()
        ck = self.checkpoint
        p = _sigmoid(ck.calib_a * float(out[1]) + ck.calib_b)
        per = tuple(float(v) * ck.target_scale for v in out[2:])
        return Forecast(time_s=t, horizon_s=ck.horizon_s, p_below_median=p,
                        delta_strength=float(out[0]) * ck.target_scale,
                        model_version=ck.model_version, per_memory=per)

    def predict_batch(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised forecast for evaluation.

        Parameters
        ----------
        windows : ndarray, shape (batch, window_epochs, n_features), raw features

        Returns
        -------
        (p_below_median, delta_strength) : ndarrays, shape (batch,)
        """
        ck = self.checkpoint
        with torch.inference_mode():
            out = self.net(torch.from_numpy(self.normalise(windows))).numpy().astype(np.float64)
        # 1 / (1 + exp(-z)) without overflow for large |z|
        p = np.exp(-np.logaddexp(0.0, -(ck.calib_a * out[:, 1] + ck.calib_b)))
        return p, out[:, 0] * ck.target_scale

    def export_torchscript(self, path: str | Path) -> Path:
        """Save the network as TorchScript (inputs already normalised, see ``normalise``)."""
        path = Path(path)
        example = torch.zeros((1, self.window, self._x.shape[2]))
        with warnings.catch_warnings():
            # torch 2.x marks torch.jit as deprecated and warns that the GRU's shape
            # checks are traced as constants; the window size is fixed, so that is fine.
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(self.net, example)
            traced.save(str(path))
        return path
