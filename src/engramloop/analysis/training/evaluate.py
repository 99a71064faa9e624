"""Evaluating the forecaster on held-out nights beside persistence, linear and logistic
baselines: AUROC, Brier score, R^2 and calibration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engramloop.analysis.training.dataset import Night, Windows, make_windows

# ====================================================================== metrics

def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); NaN if one class."""
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):   # mid-ranks over runs of equal scores
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of probabilities (Brier 1950)."""
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot."""
    y = np.asarray(y, float)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return float(1 - np.sum((y - np.asarray(pred, float)) ** 2) / ss_tot) if ss_tot else \
        float("nan")


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict:
    """Reliability diagram data and expected calibration error (equal-width bins).

    Returns
    -------
    dict with ``bins`` (list of [p_lo, p_hi, n, mean_p, frac_pos]) and ``ece``.
    """
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    edges = np.linspace(0, 1, bins + 1)
    rows, ece = [], 0.0
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        if n:
            mp_, fy = float(p[sel].mean()), float(y[sel].mean())
            ece += n / len(p) * abs(mp_ - fy)
            rows.append([float(edges[b]), float(edges[b + 1]), n, mp_, fy])
    return {"bins": rows, "ece": float(ece)}


# ====================================================================== baselines

def _design(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Flattened normalised window plus a bias column: (n, K*F + 1)."""
    z = np.nan_to_num((x - mean) / std).reshape(len(x), -1)
    return np.column_stack([z, np.ones(len(z))])


def _ridge(a: np.ndarray, y: np.ndarray, lam: float = 1.0) -> np.ndarray:
    reg = lam * np.eye(a.shape[1])
    reg[-1, -1] = 0.0      # no penalty on the bias
    return np.linalg.solve(a.T @ a + reg, a.T @ y)


def _logistic(a: np.ndarray, y: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """L2-penalised logistic regression by Newton's method (IRLS)."""
    wts = np.zeros(a.shape[1])
    reg = lam * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(a @ wts, -30, 30)))
        g = a.T @ (p - y) + reg @ wts
        h = (a * (p * (1 - p))[:, None]).T @ a + reg + 1e-9 * np.eye(a.shape[1])
        step = np.linalg.solve(h, g)
        wts -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return wts


def _predictions(ck: Any, train_nights: Sequence[Night],
                 test_nights: Sequence[Night]) -> tuple[Windows, dict]:
    """Test windows and each predictor's (p_below_median, delta) on them (see :func:`evaluate`)."""
    from engramloop.decoders.forecaster import Forecaster

    h = int(round(ck.horizon_s / ck.hop_s))
    tr = make_windows(train_nights, ck.window_epochs, h)
    te = make_windows(test_nights, ck.window_epochs, h)
    ytr = tr.decay(ck.decay_threshold)
    p_model, d_model = Forecaster(ck).predict_batch(te.x)
    # persistence: logistic fit on the true past change
    pa = np.column_stack([tr.past_delta / (ck.target_scale or 1), np.ones(len(tr.delta))])
    wp = _logistic(pa, ytr, lam=1e-6)
    pb = np.column_stack([te.past_delta / (ck.target_scale or 1), np.ones(len(te.delta))])
    p_pers = 1 / (1 + np.exp(-(pb @ wp)))
    # linear / logistic on the feature window
    a_tr = _design(tr.x, ck.feature_mean, ck.feature_std)
    a_te = _design(te.x, ck.feature_mean, ck.feature_std)
    d_lin = a_te @ _ridge(a_tr, tr.delta, lam=10.0)
    p_lin = 1 / (1 + np.exp(-np.clip(a_te @ _logistic(a_tr, ytr, lam=10.0), -30, 30)))
    return te, {"model": (p_model, d_model), "persistence": (p_pers, te.past_delta),
                "linear": (p_lin, d_lin)}


def margin_intervals(checkpoint: Any, train_nights: Sequence[Night],
                     test_nights: Sequence[Night], n_boot: int = 1000,
                     seed: int = 0) -> dict:
    """95 % bootstrap intervals of the forecaster's margins over the baselines.

    Whole test nights are resampled with replacement (windows of one night are
    correlated, so resampling windows would understate the uncertainty; Efron & Tibshirani
    1993, percentile intervals). Baselines are fitted once on ``train_nights``.

    Returns
    -------
    dict
        ``{baseline: {"auroc": (lo, hi), "brier": (lo, hi), "r2": (lo, hi)}}`` for
        baseline in ("persistence", "linear"): intervals of model minus baseline.
    """
    te, preds = _predictions(checkpoint, train_nights, test_nights)
    y = te.decay(checkpoint.decay_threshold)
    rows = {k: np.flatnonzero(te.night == k) for k in np.unique(te.night)}
    keys = np.array(sorted(rows))
    rng = np.random.default_rng(seed)
    diffs: dict = {b: [] for b in ("persistence", "linear")}
    pm, dm = preds["model"]
    for _ in range(n_boot):
        sel = np.concatenate([rows[k] for k in rng.choice(keys, len(keys))])
        for b in diffs:
            pb, db = preds[b]
            diffs[b].append([auroc(y[sel], pm[sel]) - auroc(y[sel], pb[sel]),
                             brier(y[sel], pm[sel]) - brier(y[sel], pb[sel]),
                             r2(te.delta[sel], dm[sel]) - r2(te.delta[sel], db[sel])])
    out = {}
    for b, d in diffs.items():
        lo, hi = np.nanpercentile(np.array(d), [2.5, 97.5], axis=0)
        out[b] = {m: (float(lo[i]), float(hi[i])) for i, m in enumerate(("auroc", "brier",
                                                                          "r2"))}
    return out


def evaluate(checkpoint: Any, train_nights: Sequence[Night],
             test_nights: Sequence[Night]) -> dict:
    """Score a checkpoint and the baselines on held-out nights.

    Baselines (fitted on ``train_nights`` with the checkpoint's window, horizon and
    threshold):

    * **persistence**: the change over the next horizon equals the change over the
      previous one; its decay probability is a logistic fit on that past change. It reads
      the true past memory strength, which the forecaster never sees.
    * **linear / logistic**: ridge regression and L2 logistic regression on the same
      flattened, normalised feature window the model sees.

    Returns
    -------
    dict
        ``{"n_windows", "positive_fraction", "model": {...}, "persistence": {...},
        "linear": {...}}`` each with ``auroc``, ``brier``, ``r2``, ``ece`` (+ reliability
        ``calibration`` bins for the model).
    """
    ck = checkpoint
    te, preds = _predictions(ck, train_nights, test_nights)
    thr = ck.decay_threshold
    yte = te.decay(thr)
    (p_model, d_model), (p_pers, _), (p_lin, d_lin) = (
        preds["model"], preds["persistence"], preds["linear"])

    def scores(p: np.ndarray, d: np.ndarray) -> dict:
        return {"auroc": auroc(yte, p), "brier": brier(yte, p), "r2": r2(te.delta, d),
                "ece": calibration_table(yte, p)["ece"]}

    out = {"n_windows": int(len(te.delta)), "n_nights": len(test_nights),
           "positive_fraction": float(yte.mean()), "decay_threshold": thr,
           "horizon_s": ck.horizon_s,
           "model": {**scores(p_model, d_model),
                     "calibration": calibration_table(yte, p_model)["bins"]},
           "persistence": scores(p_pers, te.past_delta),
           "linear": scores(p_lin, d_lin)}
    return out
