"""Cross-validation of the uplift model and the allocator on TRAINING seeds only.

Reads the cached twin nights of training seeds (``engramloop forecaster make-uplift-dataset
--cache-dir CACHE``; seeds >= 3000 are refused), trains the shipped recipe
(:func:`analysis.training.uplift_train.fit_uplift`) on all nights but one fold, predicts the
fold, and scores each condition at 30 and 60 pulses with the exact counterfactual re-run.
Prints each condition's gain over the sham twin at 30 pulses and its paired difference to
the spindle rule (95 % t interval), plus the fold models' held-out R^2 / Spearman.

    PYTHONPATH=src python bench/uplift_cv.py --cache-dir CACHE [--seeds 100-109] [--folds 5]

The figures in docs/uplift.md ("What limits the allocator") came from the same functions.
"""
from __future__ import annotations

import argparse
import glob
import pickle
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engramloop.analysis.training import counterfactual as cfx  # noqa: E402
from engramloop.analysis.training import experiment as ex  # noqa: E402
from engramloop.analysis.training.uplift_train import fit_uplift, score_uplift  # noqa: E402
from engramloop.controller.allocator import (  # noqa: E402
    AllocatorSettings,
    BudgetAllocator,
    after_spindle,
)

GAP_S, NIGHT_S = 5.0, 1200.0


def load(cache: str, lo: int, hi: int) -> dict:
    out = {}
    for f in sorted(glob.glob(f"{cache}/twin-*-{NIGHT_S:g}s-{ex.code_key()}.pkl")):
        s = int(re.search(r"twin-(\d+)-", f).group(1))
        if s >= ex.EVAL_SEED_START:
            continue                      # evaluation seeds are never looked at here
        if lo <= s <= hi:
            with open(f, "rb") as fh:
                out[s] = pickle.load(fh)
    return out


def cv_predictions(d: dict, folds: int) -> tuple[dict, list]:
    seeds = np.array(sorted(d))
    preds, fit = {}, []
    for k in range(folds):
        test = set(seeds[k::folds].tolist())
        train = [s for s in seeds if s not in test]
        x = np.concatenate([d[s]["x"] for s in train])
        y = np.concatenate([d[s]["labels"] for s in train])
        nights = np.concatenate([np.full(len(d[s]["t"]), s) for s in train])
        m = fit_uplift(x, y, nights, np.unique(nights)[::5], seed=0)
        for s in sorted(test):
            preds[s] = m.predict_many(d[s]["x"])
            fit.append((s, score_uplift(m, d[s]["x"], d[s]["labels"])))
    return preds, fit


def allocate(gain, r, n, gated, slack):
    a = BudgetAllocator(AllocatorSettings(budget=n, night_s=NIGHT_S, min_gap_s=GAP_S,
                                          slack=slack))
    return [i for i in range(len(r["t"]))
            if a.decide(float(gain[i]), float(r["t"][i]),
                        eligible=after_spindle(r["x"][i]) if gated else True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--seeds", default="100-109", help="training seeds, LO-HI")
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    lo, hi = (int(v) for v in a.seeds.split("-"))
    if hi >= ex.EVAL_SEED_START:
        sys.exit(f"uplift_cv: --seeds {a.seeds} reach the evaluation seeds "
                 f"({ex.EVAL_SEED_START} on); use training seeds")
    d = load(a.cache_dir, lo, hi)
    if len(d) < a.folds:
        sys.exit(f"uplift_cv: {len(d)} cached training nights in {a.cache_dir}, need >= "
                 f"{a.folds}; make them with make-uplift-dataset --cache-dir")
    preds, fit = cv_predictions(d, a.folds)
    every = lambda r: np.ones(len(r["t"]), bool)  # noqa: E731
    zero = lambda r: np.zeros(len(r["t"]))  # noqa: E731
    rand = lambda r: np.random.default_rng(r["seed"]).random(len(r["t"]))  # noqa: E731
    model = lambda r: preds[r["seed"]]  # noqa: E731
    sel = {
        "ungated": lambda r, n: cfx.spaced_first(r["t"], every(r), n, GAP_S),
        "spaced": lambda r, n: cfx.spaced_spread(r["t"], every(r), n, GAP_S),
        "rule": lambda r, n: cfx.spaced_spread(r["t"], ex._rule(r["x"]), n, GAP_S),
        "oracle-uplift": lambda r, n: cfx.spaced_best(r["t"], r["labels"], n, GAP_S),
        "learned top-N": lambda r, n: cfx.spaced_best(r["t"], model(r), n, GAP_S),
        "learned top-N after spindle": lambda r, n: cfx.spaced_best(
            r["t"], np.where(ex._rule(r["x"]), model(r), model(r) - 1.0), n, GAP_S),
        "allocator-all slack 3": lambda r, n: allocate(model(r), r, n, False, 3.0),
    }
    for slack in (3.0, 6.0, 10.0):
        sel[f"allocator slack {slack:g}"] = (
            lambda r, n, s=slack: allocate(model(r), r, n, True, s))
    sel["equal gains slack 6"] = lambda r, n: allocate(zero(r), r, n, True, 6.0)
    sel["random gains slack 6"] = lambda r, n: allocate(rand(r), r, n, True, 6.0)
    gain, pulses = {}, {}
    for s in sorted(d):
        r = d[s]
        for name, f in sel.items():
            for n in (30, 60):
                idx = f(r, n)
                gain.setdefault((name, n), []).append(r["events"].recall(idx) - r["sham"])
                pulses.setdefault((name, n), []).append(len(idx))
    g = {k: np.array(v) for k, v in gain.items()}
    print(f"{len(d)} training nights {sorted(d)}, {a.folds}-fold by night; 30 pulses:")
    for name in sel:
        m = g[(name, 30)].mean()
        dm, dlo, dhi = ex.ci(g[(name, 30)] - g[("rule", 30)])
        w = int(np.sum(g[(name, 30)] > g[("rule", 30)]))
        print(f"  {name:30s} {m:+.5f} ({np.mean(pulses[(name, 30)]):.1f} pulses)  minus "
              f"rule {dm:+.5f} [{dlo:+.5f}, {dhi:+.5f}] higher in {w}/{len(d)}")
    dm, dlo, dhi = ex.ci(g[("allocator slack 6", 30)] - g[("random gains slack 6", 30)])
    print(f"  model minus random gains (slack 6): {dm:+.5f} [{dlo:+.5f}, {dhi:+.5f}]")
    g60 = g[("ungated", 60)].mean()
    print(f"  ungated@60 {g60:+.5f}; target A margin {-0.1 * g60:+.5f}")
    print("fold models on their held-out nights (R^2, Spearman): " + ", ".join(
        f"{s}: {m['r2']:.3f} / {m['spearman']:.3f}" for s, m in fit))


if __name__ == "__main__":
    main()
