"""A plain-NumPy twin of the C filter bank, used only by the tests.

Same recurrence (transposed direct form II, sample by sample, section by section) and the
same state layout, written independently of the C code so the suite can run every
streaming test against both (MarkupSafe keeps ``_native.py`` beside ``_speedups.c`` for the
same reason). It is slow; tests keep its inputs small.
"""
from __future__ import annotations

import numpy as np


class NumpySosFilter:
    def __init__(self, sos: np.ndarray, n_channels: int) -> None:
        sos = np.asarray(sos, dtype=np.float64)
        self.sos = sos / sos[:, 3:4]
        self.n_sections = sos.shape[0]
        self.n_channels = n_channels
        self.z = np.zeros((self.n_sections, 2, n_channels))

    def process(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        y = np.array(x, dtype=np.float64, copy=True)
        for t in range(y.shape[0]):
            row = y[t]
            for s in range(self.n_sections):
                b0, b1, b2, _, a1, a2 = self.sos[s]
                z0, z1 = self.z[s, 0], self.z[s, 1]
                v = b0 * row + z0
                self.z[s, 0] = b1 * row - a1 * v + z1
                self.z[s, 1] = b2 * row - a2 * v
                row = v
            y[t] = row
        if out is None:
            return y
        out[...] = y
        return out


def moving_rms(x: np.ndarray, window: int) -> np.ndarray:
    """RMS over the last ``window`` samples (fewer at the start), computed directly."""
    x = np.asarray(x, dtype=np.float64)
    sq = x * x
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(sq, axis=0)])
    n = np.arange(1, x.shape[0] + 1)
    lo = np.maximum(n - window, 0)
    counts = (n - lo)[:, None]
    return np.sqrt(np.maximum((csum[n] - csum[lo]) / counts, 0.0))
