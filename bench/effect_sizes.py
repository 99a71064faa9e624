"""Effect per pulse of each closed-loop effect of the simulator, in one unit.

For each effect, a stim run and its sham twin (same seed, so the same spontaneous events)
of 180 s in the stage where the effect applies; pulses are placed from the sham run's
truth (every other SO cycle at the up-state peak / down-state trough, every ripple peak,
every other theta peak / trough). Prints the paired difference in mean next-day recall
(``SimSource.recall_scores``), stim - sham, per pulse delivered: mean over 3 seeds and
each seed. These are the figures of docs/simulator-effects.md.

    .venv/bin/python bench/effect_sizes.py [--seconds 180] [--seeds 1 2 3]
"""
from __future__ import annotations

import argparse
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "sim"))

import numpy as np  # noqa: E402
from sham_twins import run, settings  # noqa: E402
from test_sim_effect_sizes import SCENARIOS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    a = ap.parse_args()
    print(f"recall per pulse (stim - sham mean next-day recall / pulses), {a.seconds:g} s, "
          f"seeds {a.seeds}")
    for name, (stage, pick) in SCENARIOS.items():
        s = settings(f"{stage}:{a.seconds:g}")
        per, n = [], []
        for seed in a.seeds:
            sham = run(s, seed, a.seconds)
            pulses = pick(sham.truth, a.seconds)
            stim = run(s, seed, a.seconds, pulses)
            d = (np.mean(list(stim.recall_scores().values()))
                 - np.mean(list(sham.recall_scores().values())))
            per.append(d / len(pulses))
            n.append(len(pulses))
        print(f"  {name:20s} {np.mean(per):+.2e} per pulse  ({np.mean(n):.0f} pulses/run; "
              f"seeds {', '.join(f'{x:+.2e}' for x in per)})")


if __name__ == "__main__":
    main()
