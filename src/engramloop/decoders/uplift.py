"""The uplift model at inference: expected end-of-night recall gain of a pulse now.

A small MLP (trained with torch by :mod:`analysis.training.uplift_train`) evaluated here in
NumPy from its saved weights, so a per-candidate decision costs microseconds on the loop
thread and the loop needs no torch. Input: :data:`decoders.pulse_features.CANDIDATE_NAMES`
(only the columns the checkpoint lists); output: the expected change in mean next-day
recall (0-1 scale) if this ripple is stimulated now versus not, as labelled by the
simulator's counterfactual twins.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engramloop.decoders.pulse_features import CANDIDATE_NAMES

__all__ = ["UpliftModel", "UpliftModelError", "default_uplift_path"]


def default_uplift_path() -> Path:
    """The uplift model shipped in the package (``decoders/data/uplift.json``)."""
    return Path(__file__).resolve().parent / "data" / "uplift.json"


class UpliftModelError(ValueError):
    """A checkpoint that cannot be used (missing, another feature set, bad arrays)."""


class UpliftModel:
    """``predict(x) -> expected recall gain``; ``x`` in CANDIDATE_NAMES order.

    Parameters
    ----------
    weights : dict
        ``columns`` (feature names used), ``mean``/``std`` (input scaling), ``layers``
        (list of ``[W, b]``, ReLU between, linear output) and ``scale`` (the output is in
        units of ``1 / scale`` recall).
    """

    def __init__(self, weights: dict) -> None:
        cols = list(weights["columns"])
        bad = [c for c in cols if c not in CANDIDATE_NAMES]
        if bad:
            raise UpliftModelError(f"uplift checkpoint: unknown features {bad}; retrain it")
        self.columns = cols
        self._idx = np.array([CANDIDATE_NAMES.index(c) for c in cols])
        self._mean = np.asarray(weights["mean"], float)
        self._std = np.asarray(weights["std"], float)
        self._layers = [(np.asarray(w, float), np.asarray(b, float))
                        for w, b in weights["layers"]]
        self.scale = float(weights["scale"])
        self.info = dict(weights.get("info", {}))

    @classmethod
    def load(cls, path: str | Path) -> UpliftModel:
        path = Path(path)
        try:
            return cls(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise UpliftModelError(f"uplift checkpoint {path}: file not found (train one "
                                   "with `engramloop forecaster train-uplift`)") from None
        except (KeyError, ValueError, TypeError) as exc:
            raise UpliftModelError(f"uplift checkpoint {path}: unreadable ({exc})") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({
            "columns": self.columns, "mean": self._mean.tolist(), "std": self._std.tolist(),
            "layers": [[w.tolist(), b.tolist()] for w, b in self._layers],
            "scale": self.scale, "info": self.info}), encoding="utf-8")
        return path

    def predict_many(self, x: np.ndarray) -> np.ndarray:
        """Expected recall gain of each row, shape (n,); ``x`` shape (n, n_candidate)."""
        h = (np.asarray(x, float)[:, self._idx] - self._mean) / self._std
        for k, (w, b) in enumerate(self._layers):
            h = h @ w + b
            if k < len(self._layers) - 1:
                np.maximum(h, 0.0, out=h)
        return h[:, 0] / self.scale

    def predict(self, x: np.ndarray) -> float:
        """Expected recall gain of one candidate (``x`` shape (n_candidate,))."""
        if not np.all(np.isfinite(x)):
            raise ValueError("uplift model: a candidate feature is not finite; refusing to "
                             "predict from it")
        return float(self.predict_many(x[None, :])[0])
