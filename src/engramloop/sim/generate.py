"""Offline helper: a whole simulated recording in memory."""
from __future__ import annotations

import numpy as np

from engramloop.core.chunk import EndOfStream
from engramloop.sim.settings import SimSettings
from engramloop.sim.source import SimSource
from engramloop.sim.truth import Truth


def simulate(settings: SimSettings | None = None, seed: int = 0, duration_s: float = 60.0,
             chunk_samples: int = 2000) -> tuple[np.ndarray, np.ndarray, Truth]:
    """Generate ``duration_s`` of signal without pulses.

    Parameters
    ----------
    settings : SimSettings, optional
    seed : int
    duration_s : float
        Seconds of signal.
    chunk_samples : int
        Internal read size; the output does not depend on it.

    Returns
    -------
    samples : ndarray, shape (n_samples, n_channels), float64, volts
    timestamps : ndarray, shape (n_samples,), seconds from 0.0
    truth : Truth
        With the memory summary filled in.
    """
    src = SimSource(settings, seed=seed, chunk_samples=chunk_samples, duration_s=duration_s)
    src.start()
    n = int(round(duration_s * src.rate_hz))
    samples = np.empty((n, len(src.channels)))
    timestamps = np.empty(n)
    i = 0
    while True:
        try:
            c = src.read(0.0)
        except EndOfStream:
            break
        samples[i:i + c.n_samples] = c.samples
        timestamps[i:i + c.n_samples] = c.timestamps
        i += c.n_samples
    src.stop()
    return samples, timestamps, src.truth
