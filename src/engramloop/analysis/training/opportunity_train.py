"""Fitting the opportunity forecast (:class:`controller.opportunity.OpportunityModel`).

Labels come from training nights' sham candidates (the twin nights of
:func:`experiment.twin_night`): at each eligible candidate (a ripple within 1 s after a
spindle detection), the number of spaced eligible candidates the rest of the night brought
-- "spaced" as the allocator counts them (at least ``gap_s`` after the previous one it
counted). The model is linear in :data:`controller.opportunity.INPUT_NAMES` for the rate
over the rest of the night; the fit minimises the squared error of the *count* (rate times
seconds left), with a small ridge penalty, by ordinary least squares (NumPy).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engramloop.analysis.training.experiment import EVAL_SEED_START
from engramloop.controller.allocator import after_spindle
from engramloop.controller.opportunity import INPUT_NAMES, OpportunityModel, opportunity_inputs


def opportunity_rows(t: np.ndarray, x: np.ndarray, night_s: float,
                     gap_s: float = 5.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One night's eligible candidates: ``(inputs, seconds left, spaced still to come)``,
    shapes (m, len(INPUT_NAMES)), (m,), (m,)."""
    elig = np.array([after_spindle(v) for v in x], bool)
    te, xe = np.asarray(t, float)[elig], np.asarray(x, float)[elig]
    seen = np.zeros(len(te), int)
    n, last = 0, -np.inf
    for i, ti in enumerate(te):
        if ti - last >= gap_s:
            n += 1
            last = ti
        seen[i] = n
    return (opportunity_inputs(xe, te, seen, night_s), np.maximum(night_s - te, 0.0),
            (n - seen).astype(float))


def fit_opportunity(nights: Sequence[dict], night_s: float, gap_s: float = 5.0,
                    ridge: float = 1e-3) -> OpportunityModel:
    """Fit on training nights (dicts with ``t``, ``x``, ``seed``; seeds >= 3000 refused)."""
    bad = [int(r["seed"]) for r in nights if int(r["seed"]) >= EVAL_SEED_START]
    if bad:
        raise ValueError(f"opportunity fit: seeds {bad} are evaluation seeds "
                         f"({EVAL_SEED_START} on); fit on training seeds")
    parts = [opportunity_rows(r["t"], r["x"], night_s, gap_s) for r in nights]
    a = np.concatenate([f * left[:, None] for f, left, _ in parts])
    y = np.concatenate([c for _, _, c in parts])
    if len(y) < len(INPUT_NAMES):
        raise ValueError(f"opportunity fit: {len(y)} eligible candidates, too few")
    scale = np.maximum(np.abs(a).max(0), 1e-12)
    an = a / scale
    coef = np.linalg.solve(an.T @ an + ridge * len(y) * np.eye(an.shape[1]), an.T @ y)
    return OpportunityModel({"inputs": list(INPUT_NAMES), "coef": (coef / scale).tolist(),
                             "info": {"train_nights": sorted(int(r["seed"]) for r in nights),
                                      "night_s": float(night_s), "gap_s": float(gap_s),
                                      "candidates": int(len(y))}})
