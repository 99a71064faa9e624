"""The allocator's opportunity forecast and budget spending, on TRAINING seeds only.

Reads the cached twin nights of training seeds (``engramloop forecaster make-uplift-dataset
--cache-dir CACHE``; seeds >= 3000 are refused), fits the opportunity model
(:func:`analysis.training.opportunity_train.fit_opportunity`) and the uplift model by the
shipped recipe with K-fold cross-validation by night, and compares allocator variants
(rate extrapolation vs the learned forecast, with and without the end-of-night spending
rule) at 30 and 60 pulses: pulses delivered, gain over the sham twin (exact re-run) and
the paired difference to the spindle rule and to rule-paced (95 % t intervals). Also the
forecast's error: mean |expected - true spaced candidates to come| at eligible candidates.

    PYTHONPATH=src python bench/allocator_opportunity.py --cache-dir CACHE [--seeds 100-119]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from uplift_cv import GAP_S, NIGHT_S, cv_predictions, load  # noqa: E402

from engramloop.analysis.training import counterfactual as cfx  # noqa: E402
from engramloop.analysis.training import experiment as ex  # noqa: E402
from engramloop.analysis.training.opportunity_train import (  # noqa: E402
    fit_opportunity,
    opportunity_rows,
)
from engramloop.controller.allocator import (  # noqa: E402
    AllocatorSettings,
    BudgetAllocator,
    after_spindle,
)


def allocate(gain, r, n, opp=None, endgame=0.0, slack=ex.ALLOCATOR_SLACK, floor=0.5,
             pace="clock"):
    a = BudgetAllocator(AllocatorSettings(
        budget=n, night_s=NIGHT_S, min_gap_s=GAP_S, slack=slack, after_spindle_only=True,
        opportunity="forecast" if opp is not None else "rate", endgame=endgame,
        behind_quantile=floor, pace=pace), opportunity=opp)
    return [i for i in range(len(r["t"]))
            if a.decide(float(gain[i]), float(r["t"][i]), eligible=after_spindle(r["x"][i]),
                        x=r["x"][i])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--seeds", default="100-119", help="training seeds, LO-HI")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-model", action="store_true", help="skip the uplift model arms")
    a = ap.parse_args()
    lo, hi = (int(v) for v in a.seeds.split("-"))
    if hi >= ex.EVAL_SEED_START:
        sys.exit(f"allocator_opportunity: --seeds {a.seeds} reach the evaluation seeds")
    d = load(a.cache_dir, lo, hi)
    if len(d) < a.folds:
        sys.exit(f"allocator_opportunity: {len(d)} cached training nights, need >= "
                 f"{a.folds}")
    seeds = np.array(sorted(d))
    opp, err_rate, err_fc = {}, [], []
    for k in range(a.folds):
        test = seeds[k::a.folds]
        m = fit_opportunity([d[s] for s in seeds if s not in set(test)], NIGHT_S, GAP_S)
        for s in test:
            opp[s] = m
            f, left, truth = opportunity_rows(d[s]["t"], d[s]["x"], NIGHT_S, GAP_S)
            rate_fc = f[:, 3] * left
            err_rate.append(np.abs(rate_fc - truth).mean())
            err_fc.append(np.abs(m.expected_many(d[s]["x"][
                [after_spindle(v) for v in d[s]["x"]]], NIGHT_S - left,
                f[:, 3] * np.maximum(NIGHT_S - left, 60.0), NIGHT_S) - truth).mean())
    print(f"{len(d)} training nights {sorted(d)}, {a.folds}-fold by night")
    print(f"opportunity forecast, mean |error| in candidates to come (eligible candidates): "
          f"rate {np.mean(err_rate):.1f}, learned {np.mean(err_fc):.1f}")
    preds = None
    if not a.no_model:
        preds, fit_all = cv_predictions(d, a.folds)
        print("fold models on held-out nights (R^2 / Spearman): " + ", ".join(
            f"{s}: {m['r2']:.3f} / {m['spearman']:.3f}" for s, m in fit_all))
    # target B idea: a model trained only on the candidates the allocator is offered
    # (ripples after a spindle), so its capacity goes to ranking those
    elig = {s: {**d[s], "x": d[s]["x"][ex._rule(d[s]["x"])],
                "t": d[s]["t"][ex._rule(d[s]["x"])],
                "labels": d[s]["labels"][ex._rule(d[s]["x"])]} for s in seeds}
    pe = {}
    if not a.no_model:
        pe_sub, fit_e = cv_predictions(elig, a.folds)
        for s in seeds:
            full = np.full(len(d[s]["t"]), -1.0)
            full[ex._rule(d[s]["x"])] = pe_sub[s]
            pe[s] = full
        print("eligible-only fold models on held-out nights (R^2 / Spearman): " + ", ".join(
            f"{s}: {m['r2']:.3f} / {m['spearman']:.3f}" for s, m in fit_e))
    zero = lambda r: np.zeros(len(r["t"]))  # noqa: E731
    sel = {"rule": lambda r, n: cfx.spaced_spread(r["t"], ex._rule(r["x"]), n, GAP_S),
           "rule-paced (rate)": lambda r, n: allocate(zero(r), r, n)}
    sel["rule-paced rate endgame 1.5"] = lambda r, n: allocate(zero(r), r, n, endgame=1.5)
    sel["rule-paced forecast, opportunity pace"] = (
        lambda r, n: allocate(zero(r), r, n, opp[r["seed"]], pace="opportunity"))
    sel["rule-paced forecast endgame 1.5"] = (
        lambda r, n: allocate(zero(r), r, n, opp[r["seed"]], endgame=1.5))
    if preds is not None:
        for nm, p in (("model", preds), ("eligible-only model", pe)):
            sel[f"allocator {nm} (rate)"] = lambda r, n, p=p: allocate(p[r["seed"]], r, n)
            sel[f"allocator {nm} rate endgame 1.5"] = (
                lambda r, n, p=p: allocate(p[r["seed"]], r, n, endgame=1.5))
            sel[f"allocator {nm} forecast"] = (
                lambda r, n, p=p: allocate(p[r["seed"]], r, n, opp[r["seed"]]))
            sel[f"allocator {nm} forecast endgame 1.5"] = (
                lambda r, n, p=p: allocate(p[r["seed"]], r, n, opp[r["seed"]], endgame=1.5))
            sel[f"allocator {nm} forecast, opportunity pace"] = (
                lambda r, n, p=p: allocate(p[r["seed"]], r, n, opp[r["seed"]],
                                           pace="opportunity"))
    gain, pulses = {}, {}
    for s in seeds:
        r = d[s]
        for name, f in sel.items():
            for n in (30, 60):
                idx = f(r, n)
                gain.setdefault((name, n), []).append(r["events"].recall(idx) - r["sham"])
                pulses.setdefault((name, n), []).append(len(idx))
    g = {k: np.array(v) for k, v in gain.items()}
    for n in (30, 60):
        print(f"{n} pulses: gain over sham (pulses delivered); minus rule; minus "
              f"rule-paced (rate)")
        for name in sel:
            dm, dlo, dhi = ex.ci(g[(name, n)] - g[("rule", n)])
            pm, plo, phi = ex.ci(g[(name, n)] - g[("rule-paced (rate)", n)])
            print(f"  {name:50s} {g[(name, n)].mean():+.5f} ({np.mean(pulses[(name, n)]):.1f})"
                  f"  {dm:+.5f} [{dlo:+.5f}, {dhi:+.5f}]  {pm:+.5f} [{plo:+.5f}, {phi:+.5f}]")


if __name__ == "__main__":
    main()
