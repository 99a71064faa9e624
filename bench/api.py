"""The Python API's detectors on a simulated night: accuracy against the simulator's truth
and the time a whole array takes (median of repeats), per detector.

A detection is true when it is decided inside a true event (widened by 50 ms); a true
event is found when a detection is decided inside it. The simulator's events during the
detectors' calibration count as missed, so recall is a little low for short nights.

    .venv/bin/python bench/api.py [--seeds 1 2 3] [--duration 300] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import engramloop
from engramloop.sim.generate import simulate
from engramloop.sim.settings import SimSettings

TOL_S = 0.05
RUNS = (("ripples", engramloop.detect_ripples, "ripple", "CA1"),
        ("spindles", engramloop.detect_spindles, "spindle", "Cz"),
        ("slow oscillations", engramloop.detect_slow_oscillations, "so", "Cz"))


def score(table, truth_events) -> tuple[float, float]:
    iv = np.array([(e.onset_s, e.offset_s) for e in truth_events]).reshape(-1, 2)
    d = np.asarray(table["detect_s"], dtype=float)
    hit = [((iv[:, 0] - TOL_S <= s) & (s <= iv[:, 1] + TOL_S)).any() for s in d]
    found = [((d >= a - TOL_S) & (d <= b + TOL_S)).any() for a, b in iv]
    return (float(np.mean(hit)) if hit else float("nan"),
            float(np.mean(found)) if found else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--duration", type=float, default=300.0, help="simulated seconds")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    channels = SimSettings().channels
    rows = {name: {"p": [], "r": [], "n": 0, "t": []} for name, *_ in RUNS}
    for seed in args.seeds:
        x, _, truth = simulate(seed=seed, duration_s=args.duration)
        fs = float(round((x.shape[0]) / args.duration))
        for name, func, kind, ch in RUNS:
            col = x[:, [channels.index(ch)]]
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                table = func(col, fs, [ch])
                times.append(time.perf_counter() - t0)
            p, r = score(table, truth.events(kind))
            rows[name]["p"].append(p)
            rows[name]["r"].append(r)
            rows[name]["n"] += len(table)
            rows[name]["t"].append(statistics.median(times))
    print(f"seeds {args.seeds}, {args.duration:g} s each at {fs:g} Hz, one channel")
    print(f"{'detector':<18} {'events':>6} {'precision':>9} {'recall':>6} "
          f"{'s per array (median)':>21} {'x real time':>11}")
    for name, r in rows.items():
        t = statistics.median(r["t"])
        print(f"{name:<18} {r['n']:>6} {np.mean(r['p']):>9.3f} {np.mean(r['r']):>6.3f} "
              f"{t:>21.3f} {args.duration / t:>11.0f}")


if __name__ == "__main__":
    main()
