"""Angle helpers shared by the simulator's truth, the phase estimators and the analysis."""
from __future__ import annotations

import numpy as np


def wrap_deg(x: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles in degrees to (-180, 180].

    Parameters
    ----------
    x : float or ndarray, degrees

    Returns
    -------
    float for a scalar ``x``, else an ndarray of the same shape (degrees). -180 maps to
    180, as ``numpy.angle`` puts the branch cut (its range is (-pi, pi]).
    """
    y = np.mod(np.asarray(x, dtype=float) + 180.0, 360.0) - 180.0
    y = np.where(y == -180.0, 180.0, y)
    return float(y) if np.ndim(y) == 0 else y


__all__ = ["wrap_deg"]
