"""The fixed experiment of issue 21: which rule spends a pulse budget best, at EQUAL pulses.

For each held-out seed, one night that contains N3 (:func:`counterfactual.experiment_spec`)
is simulated as a sham twin and as an all-candidates-pulsed twin. Every condition then picks
exactly ``N`` of the sham night's ripple candidates (N = 10, 20, 30, 60), all with the same
spacing constraint (``gap_s`` between pulses):

``ungated``         the first N candidates (front-loaded: today's "every ripple until the
                    budget is spent");
``spaced``          N candidates spread evenly over the night (every (M/N)-th of the M
                    spaced candidates);
``rule``            the spindle-conditioned rule: only ripples detected within 1 s after a
                    spindle detection, spread evenly like ``spaced``;
``oracle-coupled``  only ripples that truly fell in a spindle during an SO up-state (the
                    simulator's truth), spread evenly;
``oracle-uplift``   the N candidates with the largest true single-pulse uplift (the
                    counterfactual labels), greedy under the spacing constraint;
``learned``         the N candidates with the largest predicted uplift (the model), greedy
                    under the spacing constraint (knows the whole night: an upper bound for
                    the online allocator);
``allocator``       the online budget allocator (:class:`controller.allocator.BudgetAllocator`)
                    deciding causally, candidate by candidate in detection order, with
                    budget N, among the ripples detected within 1 s after a spindle
                    detection (as the loop's ``uplift_budget`` gate does); it can end with
                    fewer than N pulses, and the table says how many it delivered;
``allocator-all``   the same allocator offered every ripple (the model's gain alone
                    decides; the allocator of the first runs);
``rule-paced``      the control for ``allocator``: the same allocator and eligibility with
                    every predicted gain equal, so the model plays no part (what the
                    allocator's pacing alone does to the spindle rule).

A condition with fewer than N eligible candidates delivers fewer (the table shows the mean
delivered; such a row is not at equal pulses and is marked). Every selection is a
choice among the sham twin's candidates (the decisions a loop would make on that night);
its outcome is the engram model
re-run on the twin nights' memory events (:class:`counterfactual.EventLists`), which each
of the first ``checks`` seeds checks against a real stimulated night with the rule's 30
pulses (``check_diff``). The outcome is end-of-night
recall (mean over memories); differences are paired by seed with 95 % t intervals.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engramloop.analysis.training import counterfactual as cfx
from engramloop.controller.allocator import AllocatorSettings, BudgetAllocator, after_spindle
from engramloop.controller.opportunity import OpportunityModel, default_opportunity_path
from engramloop.decoders.pulse_features import CANDIDATE_NAMES
from engramloop.decoders.uplift import UpliftModel
from engramloop.decoders.uplift import default_uplift_path as shipped_uplift_path

CONDITIONS = ("ungated", "spaced", "rule", "oracle-coupled", "oracle-uplift", "learned",
              "allocator", "allocator-all", "rule-paced")
DOSES = (10, 20, 30, 60)
#: the training seeds of the shipped uplift model start here; evaluation seeds never do
TRAIN_SEED_START = 100
#: the experiment's allocator keeps within this many pulses of an even pace (chosen on
#: training seeds 100-109 with bench/uplift_cv.py: 6 against the controller's default 3)
ALLOCATOR_SLACK = 6.0
#: and takes every candidate once fewer than this many times its pulses left are expected
#: (spends the budget). Both this and the opportunity forecast below were chosen on
#: training seeds 100-119 (5-fold, bench/allocator_opportunity.py; docs/uplift.md): with
#: the rate, endgame 1.5 delivered 55.0 instead of 51.6 of 60 pulses
ALLOCATOR_ENDGAME = 1.5
#: where its opportunity forecast comes from: "forecast" (the shipped opportunity model,
#: decoders/data/opportunity.json; pace still over the clock) or "rate". On training seeds
#: the two tied (sum of mean gains at 30 and 60 pulses +0.03063 vs +0.03059); the forecast
#: spent more of the budget at 60 (55.9 vs 55.0 pulses) and the rule fixed before the
#: comparison (the higher sum) picked it
ALLOCATOR_OPPORTUNITY = "forecast"
EVAL_SEED_START = 3000


@dataclass(frozen=True)
class ExperimentSettings:
    seeds: int = 20
    seed_start: int = EVAL_SEED_START
    duration_s: float = 1200.0
    doses: tuple[int, ...] = DOSES
    gap_s: float = 5.0
    model: str = ""          # uplift checkpoint (JSON); empty: the shipped one; "none"
    workers: int = 2
    allocator: bool = True   # include the online allocator
    checks: int = 5          # seeds whose re-run is checked against a real stimulated night
    cache_dir: str | None = None   # twin nights are cached here (pickles) when set


def _rule(x: np.ndarray) -> np.ndarray:
    return x[:, CANDIDATE_NAMES.index("spindle_recent")] > 0.5


def code_key() -> str:
    """A digest of the code a twin night depends on (simulator, decoders, this package's
    counterfactual runner): a cache made by other code is never re-used silently."""
    import hashlib

    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha1()
    for sub in ("sim", "decoders"):
        for f in sorted((root / sub).rglob("*.py")) + sorted((root / sub).rglob("*.c")):
            h.update(f.read_bytes())
    h.update((Path(__file__).with_name("counterfactual.py")).read_bytes())
    return h.hexdigest()[:12]


def twin_night(seed: int, duration_s: float, cache_dir: str | Path | None = None) -> dict:
    """One seed's twin nights, reduced to plain data: the sham candidates (times, features,
    truth coupling), their exact single-pulse uplift labels and the
    :class:`counterfactual.EventLists` that scores any choice of them. Cached as a pickle
    in ``cache_dir`` (keyed by seed, duration and a digest of the simulator and decoder
    code) when given."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"twin-{seed}-{duration_s:g}s-{code_key()}.pkl"
        if path.is_file():
            with path.open("rb") as f:
                return pickle.load(f)
    spec = cfx.experiment_spec(seed, duration_s)
    sham = cfx.run_night(spec, capture=True)
    allp = cfx.run_night(spec, fire_s=sham.cand_t, capture=True)
    el = cfx.EventLists(sham, allp)
    out = {"seed": seed, "duration_s": duration_s, "t": sham.cand_t, "x": sham.cand_x,
           "coupled": sham.cand_coupled, "labels": el.labels(), "sham": sham.recall,
           "events": el}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(out, f)
        tmp.replace(path)
    return out


def label_night(seed: int, duration_s: float, cache_dir: str | Path | None = None) -> dict:
    """Candidates of one night with their counterfactual single-pulse uplift labels."""
    r = twin_night(seed, duration_s, cache_dir)
    return {k: r[k] for k in ("seed", "t", "x", "coupled", "labels")}


def _twin_job(job: tuple) -> dict:
    """One seed, in a worker: its twin nights (cached), the re-run check, every condition
    scored (the scoring runs in the workers too: it re-runs the engram model hundreds of
    times per seed)."""
    seed, st = job
    r = twin_night(seed, st.duration_s, st.cache_dir)
    check = math.nan
    if seed - st.seed_start < st.checks:
        # a real stimulated twin checks the re-run engram model (the rule's 30 pulses)
        idx = cfx.spaced_spread(r["t"], _rule(r["x"]), 30, st.gap_s)
        real = cfx.run_night(cfx.experiment_spec(seed, st.duration_s), fire_s=r["t"][idx])
        check = real.recall - r["events"].recall(idx)
    model = None
    if st.model != "none":
        model = UpliftModel.load(st.model or default_uplift_path())
    row = score_seed(r, st, model)
    row["check_diff"] = check
    return row


def score_seed(r: dict, st: ExperimentSettings, model) -> dict:
    """Every condition's recall and pulses for one seed's twin nights."""
    el = r["events"]
    t, x, labels = r["t"], r["x"], r["labels"]
    every = np.ones(len(t), bool)
    pred = model.predict_many(x) if model is not None else None
    out: dict = {"seed": r["seed"], "sham": r["sham"], "n_candidates": len(t),
                 "n_rule": int(_rule(x).sum()), "n_coupled": int(r["coupled"].sum()),
                 "shared_ripples": el.shared_ripples, "rows": {}, "inexact": {}}
    for n in st.doses:
        sel = {"ungated": cfx.spaced_first(t, every, n, st.gap_s),
               "spaced": cfx.spaced_spread(t, every, n, st.gap_s),
               "rule": cfx.spaced_spread(t, _rule(x), n, st.gap_s),
               "oracle-coupled": cfx.spaced_spread(t, r["coupled"], n, st.gap_s),
               "oracle-uplift": cfx.spaced_best(t, labels, n, st.gap_s)}
        if pred is not None:
            sel["learned"] = cfx.spaced_best(t, pred, n, st.gap_s)
            if st.allocator:
                # causal: candidates in detection order, each decided on its own
                # prediction and what came before (the model does not read pulses_so_far)
                sel["allocator"] = _allocate(pred, t, x, n, st, gated=True)
                sel["allocator-all"] = _allocate(pred, t, x, n, st, gated=False)
                sel["rule-paced"] = _allocate(np.zeros(len(t)), t, x, n, st, gated=True)
        for c, idx in sel.items():
            out["rows"][(c, n)] = (el.recall(idx), len(idx))
            out["inexact"][(c, n)] = el.inexact(idx)
    return out


def _allocate(gain: np.ndarray, t: np.ndarray, x: np.ndarray, n: int,
              st: ExperimentSettings, gated: bool) -> list[int]:
    """The online allocator's picks, candidate by candidate in detection order."""
    # the opportunity model counts ripples after a spindle: allocator-all keeps the rate
    kind = ALLOCATOR_OPPORTUNITY if gated else "rate"
    opp = OpportunityModel.load(default_opportunity_path()) if kind == "forecast" else None
    alloc = BudgetAllocator(AllocatorSettings(budget=n, night_s=st.duration_s,
                                              min_gap_s=st.gap_s, slack=ALLOCATOR_SLACK,
                                              after_spindle_only=gated,
                                              endgame=ALLOCATOR_ENDGAME,
                                              opportunity=kind), opp)
    return [i for i in range(len(t))
            if alloc.decide(float(gain[i]), float(t[i]),
                            eligible=after_spindle(x[i]) if gated else True, x=x[i])]


#: the demo's equal-pulses comparison: one held-out seed, a 300 s night with N3, 10 pulses
DEMO_SEED, DEMO_NIGHT_S, DEMO_PULSES = 3000, 300.0, 10


def demo_comparison(seed: int = DEMO_SEED, duration_s: float = DEMO_NIGHT_S,
                    n: int = DEMO_PULSES) -> list[str]:
    """``engramloop demo``'s closing lines: one night's sham, ungated, spindle-rule and
    allocator recall at equal pulses (exact twin re-run), and what the fixed experiment
    found over 20 seeds (docs/uplift.md) -- one night proves nothing either way."""
    spec = cfx.experiment_spec(seed, duration_s)
    sham = cfx.run_night(spec, capture=True)
    allp = cfx.run_night(spec, fire_s=sham.cand_t, capture=True)
    el = cfx.EventLists(sham, allp)
    t, x = sham.cand_t, sham.cand_x
    pred = UpliftModel.load(default_uplift_path()).predict_many(x)
    st = ExperimentSettings(duration_s=duration_s)
    sel = {"ungated (first N)": cfx.spaced_first(t, np.ones(len(t), bool), n, 5.0),
           "spindle rule": cfx.spaced_spread(t, _rule(x), n, 5.0),
           "allocator (uplift model)": _allocate(pred, t, x, n, st, gated=True)}
    lines = [f"at equal pulses ({n} pulses, >= 5 s apart) on one {duration_s:g} s night "
             f"with N3 (seed {seed}; twin nights, exact re-run of the engram model):",
             f"  sham                      recall {sham.recall:.4f}"]
    for name, idx in sel.items():
        r = el.recall(idx)
        lines.append(f"  {name:<25} recall {r:.4f} ({r - sham.recall:+.4f} over sham, "
                     f"{len(idx)} pulses)")
    lines.append("  over 20 held-out seeds the allocator did not beat the one-line spindle "
                 "rule at 30 pulses and the same allocator without the model did better "
                 "(docs/uplift.md): in this simulator the uplift model adds nothing over "
                 "that rule paced over the night")
    return lines


def default_uplift_path():
    return shipped_uplift_path()


def run_experiment(st: ExperimentSettings,
                   progress: Callable[[str], None] | None = None) -> list[dict]:
    """Every seed's results (in seed order): twin nights (cached) and every condition's
    score, on ``st.workers`` processes."""
    jobs = [(s, st) for s in range(st.seed_start, st.seed_start + st.seeds)]
    t0 = time.monotonic()
    if st.model != "none":
        UpliftModel.load(st.model or default_uplift_path())    # a bad file fails first
    rows = {}
    with mp.get_context("spawn").Pool(max(1, st.workers)) as pool:
        for i, r in enumerate(pool.imap_unordered(_twin_job, jobs), start=1):
            rows[r["seed"]] = r
            if progress:
                progress(f"[{i}/{len(jobs)}] seed {r['seed']}: {r['n_candidates']} "
                         f"candidates, {r['n_rule']} after a spindle "
                         f"({time.monotonic() - t0:.0f} s)")
    return [rows[s] for s, _ in jobs]


def ci(x: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % t interval."""
    from scipy import stats

    x = np.asarray(x, float)
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - h, m + h


def _inexact_line(rows: list[dict]) -> str:
    """How many scored pulses the twin re-run cannot reproduce exactly
    (:meth:`counterfactual.EventLists.inexact`), over every condition, dose and seed."""
    bad = [(k, v) for r in rows for k, v in r.get("inexact", {}).items() if v]
    total = int(sum(r["rows"][k][1] for r in rows for k in r.get("inexact", {})))
    worst = ", ".join(f"{c}@{n}: {v}" for (c, n), v in sorted(bad, key=lambda b: -b[1])[:3])
    return (f"pulses the re-run cannot reproduce exactly (a pulse on a ripple an unchosen "
            f"earlier candidate's pulse also hit): "
            f"{sum(v for _, v in bad)} of {total} scored" + (f" (most: {worst})" if bad
                                                            else ""))


def report(rows: list[dict], st: ExperimentSettings) -> list[str]:
    """The printed table, the paired comparisons and targets A and B."""
    seeds = [r["seed"] for r in rows]
    sham = np.array([r["sham"] for r in rows])
    conds = [c for c in CONDITIONS if (c, st.doses[0]) in rows[0]["rows"]]
    rec = {(c, n): np.array([r["rows"][(c, n)][0] for r in rows])
           for c in conds for n in st.doses}
    npl = {(c, n): np.array([r["rows"][(c, n)][1] for r in rows])
           for c in conds for n in st.doses}
    L = [f"Pulse-budget experiment: {len(seeds)} held-out seeds ({seeds[0]}-{seeds[-1]}), "
         f"{st.duration_s:g} s nights with N3, optogenetic ripple pulses, >= {st.gap_s:g} s "
         "apart; gain = end-of-night recall minus the sham twin's, paired 95 % t intervals",
         f"sham recall {ci(sham)[0]:.4f}; candidates per night "
         f"{np.mean([r['n_candidates'] for r in rows]):.0f}, "
         f"after a spindle {np.mean([r['n_rule'] for r in rows]):.0f}, truly coupled "
         f"{np.mean([r['n_coupled'] for r in rows]):.0f}; re-run vs real stimulated twin "
         f"({sum(r['check_diff'] == r['check_diff'] for r in rows)} seeds): max |diff| "
         f"{np.nanmax([abs(r['check_diff']) for r in rows] + [0.0]):.1e}",
         _inexact_line(rows),
         f"{'N':>3} {'condition':<15} {'gain over sham (95% CI)':<30} {'pulses':>7} "
         f"{'gain/pulse':>11}"]
    for n in st.doses:
        for c in conds:
            m, lo, hi = ci(rec[(c, n)] - sham)
            p = npl[(c, n)].mean()
            short = "  (fewer than N: not at equal pulses)" if p < n - 1e-9 else ""
            L.append(f"{n:>3} {c:<15} {m:+.4f} [{lo:+.4f}, {hi:+.4f}]      {p:7.1f} "
                     f"{m / max(p, 1e-9):11.6f}{short}")
    L.append("paired differences at equal N:")
    for n in st.doses:
        for a, b in (("rule", "spaced"), ("learned", "rule"), ("allocator", "rule"),
                     ("allocator", "rule-paced"), ("rule-paced", "rule"),
                     ("allocator-all", "rule"), ("oracle-uplift", "rule"),
                     ("spaced", "ungated")):
            if a in conds and b in conds:
                m, lo, hi = ci(rec[(a, n)] - rec[(b, n)])
                w = int(np.sum(rec[(a, n)] > rec[(b, n)]))
                L.append(f"  N={n:<3} {a} - {b}: {m:+.5f} [{lo:+.5f}, {hi:+.5f}]  "
                         f"{a} higher in {w}/{len(seeds)}")
    if 30 in st.doses and 60 in st.doses:
        g60 = ci(rec[("ungated", 60)] - sham)[0]
        for who in ("allocator", "learned", "rule", "rule-paced"):
            if who not in conds:
                continue
            m, lo, hi = ci(rec[(who, 30)] - rec[("ungated", 60)])
            ok = lo >= -0.10 * g60
            eq = npl[(who, 30)].mean() >= 30 - 1e-9
            L.append(f"target A ({who}@30 vs ungated@60): {m:+.5f} [{lo:+.5f}, {hi:+.5f}], "
                     f"margin -10 % of ungated@60's gain = {-0.1 * g60:+.5f}: "
                     f"{'MET' if ok else 'MISSED'}{'' if eq else ' (fewer than 30 pulses)'}")
        for who in ("allocator", "learned", "rule-paced"):
            if who not in conds:
                continue
            m, lo, hi = ci(rec[(who, 30)] - rec[("rule", 30)])
            L.append(f"target B ({who}@30 vs rule@30): {m:+.5f} [{lo:+.5f}, {hi:+.5f}]: "
                     f"{'MET' if lo > 0 else 'MISSED'}")
        # the B is against the *best* model-free rule: the best of the conditions
        # that use no model at 30 pulses (rule-paced is the allocator's own pacing and
        # eligibility with every predicted gain equal)
        free = [c for c in ("ungated", "spaced", "rule", "rule-paced") if c in conds]
        if "allocator" in conds and free:
            best = max(free, key=lambda c: float(np.mean(rec[(c, 30)])))
            m, lo, hi = ci(rec[("allocator", 30)] - rec[(best, 30)])
            verdict = ("MET" if lo > 0 else "MISSED: the uplift model adds nothing measurable "
                       "over a model-free rule in this simulator")
            L.append(f"target B, against the best model-free rule at 30 ({best}): "
                     f"{m:+.5f} [{lo:+.5f}, {hi:+.5f}]: {verdict}")
    return L
