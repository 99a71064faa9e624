"""Training the forecaster: a seed ensemble of :class:`~engramloop.decoders.forecaster.
ForecastNet` fitted with Adam, reproducibly for a seed, with whole held-out nights for
early stopping and Platt calibration."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engramloop.analysis.training.dataset import (
    Night,
    Progress,
    ProgressCallback,
    Windows,
    make_windows,
    subset_windows,
)
from engramloop.core.extras import require
from engramloop.decoders.features import (
    FEATURE_NAMES,
)

# ====================================================================== training

@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of :func:`train` (all recorded in the checkpoint metadata)."""

    window_epochs: int = 10
    horizon_epochs: int = 10
    decay_threshold: float | None = None   # None: median of -delta in training data
    hidden: int = 16
    per_memory: bool = False
    members: int = 1               # seed ensemble size (outputs averaged)
    epochs: int = 40
    batch: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-3
    #: std of Gaussian noise added to the normalised inputs during training (a ridge-like
    #: regulariser, Bishop 1995 "Training with noise is equivalent to Tikhonov
    #: regularization"); 0 = none
    input_noise: float = 0.0
    patience: int = 8
    val_fraction: float = 0.2
    seed: int = 0
    threads: int = 1
    max_seconds: float = math.inf


def _seed_all(seed: int, threads: int) -> None:
    import random

    torch = require("torch", "forecaster", "forecaster training")

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
    torch.use_deterministic_algorithms(True)


def _split_nights(n_nights: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over nights: True = validation (at least one of each when possible)."""
    rng = np.random.default_rng(seed + 1)
    perm = rng.permutation(n_nights)
    n_val = int(round(n_nights * val_fraction))
    n_val = min(max(n_val, 1), n_nights - 1) if n_nights > 1 else 0
    val = np.zeros(n_nights, dtype=bool)
    val[perm[:n_val]] = True
    return val


def train(nights: Sequence[Night], settings: TrainSettings = TrainSettings(), *,
          epoch_s: float, hop_s: float, model_version: str = "dev",
          metadata: dict | None = None,
          progress: ProgressCallback | None = None) -> Any:
    """Fit the forecaster on nights; returns a :class:`~decoders.forecaster.Checkpoint`.

    Whole nights are held out for validation (early stopping on the validation loss and
    Platt calibration of the decay head), so no epoch of a validation night is seen in
    training. The result is identical for the same nights, settings and seed.

    Parameters
    ----------
    nights : sequence of Night
    settings : TrainSettings
    epoch_s, hop_s : float
        The feature geometry the nights were made with, seconds (stored in the
        checkpoint; the loop refuses a different one).
    model_version : str
    metadata : dict, optional
        Extra provenance stored in the checkpoint.
    progress : callable(Progress), optional
        Called after each training epoch (unit ``"epochs"``, out of ``members * epochs``;
        an early stop skips the member's remaining epochs and is sent as a note).
    """
    torch = require("torch", "forecaster", "forecaster training")
    nn = torch.nn

    from engramloop.decoders.forecaster import Checkpoint, ForecastEnsemble, ForecastNet

    s = settings
    _seed_all(s.seed, s.threads)
    w = make_windows(nights, s.window_epochs, s.horizon_epochs)
    val_n = _split_nights(len(nights), s.val_fraction, s.seed)
    val_mask = val_n[w.night]
    tr, va = subset_windows(w, ~val_mask), subset_windows(w, val_mask)
    if len(tr.delta) == 0 or len(va.delta) == 0:
        raise ValueError("need at least two nights longer than the horizon to train")
    thr = s.decay_threshold if s.decay_threshold is not None else \
        float(np.median(-tr.delta))
    flat = tr.x.reshape(-1, tr.x.shape[-1])
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    scale = float(tr.delta.std()) or 1.0
    n_mem = tr.per_memory.shape[1] if s.per_memory else 0

    def tensors(part: Windows) -> tuple:
        x = np.nan_to_num(((part.x - mean) / std).astype(np.float32))
        y = np.column_stack([part.delta / scale, part.decay(thr)]
                            + ([part.per_memory / scale] if n_mem else [])).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y)

    xtr, ytr = tensors(tr)
    xva, yva = tensors(va)
    bce = nn.BCEWithLogitsLoss()

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = torch.mean((out[:, 0] - y[:, 0]) ** 2) + bce(out[:, 1], y[:, 1])
        if n_mem:
            loss = loss + torch.mean((out[:, 2:] - y[:, 2:]) ** 2)
        return loss

    t0 = time.monotonic()
    total_epochs = s.members * s.epochs
    members, history, best_epochs = [], [], []
    for k in range(s.members):
        # member k: its own initialisation and batch order (seed + k), same data split
        torch.manual_seed(s.seed + 1000 * k)
        net = ForecastNet(len(FEATURE_NAMES), s.hidden, n_mem, s.window_epochs)
        opt = torch.optim.Adam(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        gen = torch.Generator().manual_seed(s.seed + 1000 * k)
        best: tuple = (math.inf, None, -1)
        tag = f"member {k + 1}/{s.members} " if s.members > 1 else ""
        for ep in range(s.epochs):
            net.train()
            perm = torch.randperm(len(xtr), generator=gen)
            tot = 0.0
            for i in range(0, len(perm), s.batch):
                bi = perm[i:i + s.batch]
                opt.zero_grad()
                xb = xtr[bi]
                if s.input_noise > 0:
                    xb = xb + s.input_noise * torch.randn(xb.shape, generator=gen)
                loss = loss_fn(net(xb), ytr[bi])
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                opt.step()
                tot += float(loss.detach()) * len(bi)
            net.eval()
            with torch.no_grad():
                vl = float(loss_fn(net(xva), yva))
            history.append([k + 1, ep + 1, tot / len(xtr), vl])
            if progress:
                progress(Progress(k * s.epochs + ep + 1, total_epochs, "epochs",
                                  f"{tag}epoch {ep + 1}/{s.epochs}  train loss "
                                  f"{tot / len(xtr):.4f}  val loss {vl:.4f}"))
            if vl < best[0] - 1e-5:
                best = (vl, {n: v.clone() for n, v in net.state_dict().items()}, ep)
            elif ep - best[2] >= s.patience:
                if progress:
                    progress(Progress((k + 1) * s.epochs, total_epochs, "epochs",
                                      f"{tag}early stop after epoch {ep + 1}: no validation "
                                      f"improvement for {s.patience} epochs", note=True))
                break
            if time.monotonic() - t0 > s.max_seconds:
                if progress:
                    progress(Progress(total_epochs, total_epochs, "epochs",
                                      f"stopping at the time limit ({s.max_seconds:.0f} s)",
                                      note=True))
                break
        net.load_state_dict(best[1])
        members.append(net)
        best_epochs.append(best[2] + 1)
        if time.monotonic() - t0 > s.max_seconds:
            break
    ens = ForecastEnsemble(members)
    ens.eval()
    with torch.no_grad():
        logits = ens(xva)[:, 1].double()
    a, b = _platt(logits, yva[:, 1].double())
    meta = dict(metadata or {})
    meta.update({"train": {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                           for k, v in s.__dict__.items()},
                 "n_train_windows": int(len(tr.delta)), "n_val_windows": int(len(va.delta)),
                 "n_nights": len(nights), "val_nights": [int(i) for i in np.flatnonzero(val_n)],
                 "best_epochs": best_epochs, "history": history,
                 "decay_positive_fraction_train": float(tr.decay(thr).mean())})
    return Checkpoint(state_dict=ens.state_dict(), hidden=s.hidden, n_memories=n_mem,
                      members=len(members),
                      feature_names=FEATURE_NAMES, feature_mean=mean, feature_std=std,
                      window_epochs=s.window_epochs, epoch_s=epoch_s, hop_s=hop_s,
                      horizon_s=s.horizon_epochs * hop_s, decay_threshold=thr,
                      target_scale=scale, calib_a=a, calib_b=b, model_version=model_version,
                      metadata=meta)


def _platt(logits: Any, y: Any) -> tuple[float, float]:
    """Fit p = sigmoid(a * logit + b) by maximum likelihood (LBFGS, float64)."""
    torch = require("torch", "forecaster", "forecaster training")

    ab = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ab], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ab[0] * logits + ab[1], y)
        loss.backward()
        return loss

    opt.step(closure)
    a, b = (float(v) for v in ab.detach())
    if not (math.isfinite(a) and math.isfinite(b)):
        return 1.0, 0.0
    return a, b
