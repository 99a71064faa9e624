"""Does the sham twin stay paired? Spontaneous events shared by a stim run and its sham twin.

Runs a shipped closed-loop config on the simulator (``--speed max``) as configured (stim)
and as its sham twin (same seed), and matches every event of the sham run's truth to the
stim run's truth: same kind and onset within one sample. Prints, per kind, how many sham
events the stim run also has, how many the stim run lists as suppressed by a pulse, how
many are missing without a record, and the first unmatched time.

    .venv/bin/python bench/sham_pairing.py [--config sim-so.toml] [--seconds 300] [--seed 1]
"""
from __future__ import annotations

import argparse
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import dataclasses  # noqa: E402

from engramloop.analysis.trial import run_sim  # noqa: E402
from engramloop.controller.config import load_config  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "engramloop" / "configs"
KINDS = ("so", "spindle", "ripple", "artefact", "theta_burst")


def truth_of(cfg, seconds: float, condition: str):
    held = []
    result, _ = run_sim(cfg, seconds, condition=condition, on_built=held.append)
    return held[0].sim_source.truth, result


def pairing(stim_truth, sham_truth) -> dict[str, dict]:
    """Per kind: n (sham events), matched, suppressed (listed in stim truth), missing,
    first unmatched onset (s from the start)."""
    tol = 1.0 / sham_truth.rate_hz
    supp = [e for e in stim_truth.events("suppressed")]
    out = {}
    for kind in KINDS:
        stim = [e for e in stim_truth.events(kind) if e.meta.get("type") != "stim"]
        ons = sorted(e.onset_s - stim_truth.t0_s for e in stim)
        sup = sorted(e.onset_s - stim_truth.t0_s for e in supp if e.meta.get("kind") == kind)
        import bisect

        def near(xs: list[float], x: float) -> bool:
            i = bisect.bisect_left(xs, x - tol)
            return i < len(xs) and xs[i] <= x + tol

        n = matched = suppressed = 0
        first = None
        for e in sham_truth.events(kind):
            x = e.onset_s - sham_truth.t0_s
            n += 1
            if near(ons, x):
                matched += 1
            else:
                if near(sup, x):
                    suppressed += 1
                if first is None:
                    first = x
        out[kind] = {"n": n, "matched": matched, "suppressed": suppressed,
                     "missing": n - matched - suppressed, "first_unmatched_s": first}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="sim-so.toml")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    cfg = load_config(CONFIGS / a.config if not Path(a.config).is_file() else a.config)
    if a.seed is not None:
        cfg = dataclasses.replace(cfg, seed=a.seed)
    stim, res = truth_of(cfg, a.seconds, "stim")
    sham, _ = truth_of(cfg, a.seconds, "sham")
    n_stim = len(stim.events("stim"))
    print(f"{a.config}, seed {cfg.seed}, {a.seconds:g} s: {n_stim} pulses applied in the stim "
          f"run; sham events found in the stim run (same kind, onset within 1 sample)")
    tot = {"n": 0, "matched": 0, "suppressed": 0, "missing": 0}
    for kind, r in pairing(stim, sham).items():
        for k in tot:
            tot[k] += r[k]
        first = "-" if r["first_unmatched_s"] is None else f"{r['first_unmatched_s']:.1f} s"
        print(f"  {kind:12s} {r['matched']:5d}/{r['n']:<5d} matched, {r['suppressed']:3d} "
              f"listed suppressed, {r['missing']:4d} missing; first unmatched at {first}")
    print(f"  {'all':12s} {tot['matched']:5d}/{tot['n']:<5d} matched, "
          f"{tot['suppressed']:3d} listed suppressed, {tot['missing']:4d} missing")


if __name__ == "__main__":
    main()
