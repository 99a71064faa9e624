"""Parallel sweeps: a 4-setting x 4-recording sweep run serially and on a local Dask pool
of 1..N workers, side by side in one run; identical scores asserted, wall times printed,
with the projected time of a 20-setting x 50-night sweep on this machine.

    python bench/sweep.py [--duration 300] [--workers 2]

Recordings are simulated nights (``engramloop sim``, 2 kHz, 8 channels) with their truth;
the swept key is the ripple threshold. Wall times depend on the machine and on what else
it runs: the ratio to the serial run, measured in the same run, is the figure.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300.0, help="seconds per recording")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each arm (median)")
    args = ap.parse_args()

    from engramloop.analysis.fanout import Job, run_jobs
    from engramloop.analysis.sweep import parse_sweep
    from engramloop.cli import main as cli

    cfg = ROOT / "src" / "engramloop" / "configs" / "sim-ripple.toml"
    with tempfile.TemporaryDirectory() as d:
        recs = []
        for seed in range(4):
            path = Path(d) / f"night{seed}.npz"
            assert cli(["sim", "--quiet", "--duration", str(args.duration), "--out", str(path),
                        "--seed", str(seed + 10), "--config", str(cfg)]) == 0
            recs.append(str(path))
        (key, values), = parse_sweep(["detectors.ripple.threshold_sd=3,3.5,4,4.5"])
        jobs = [Job(index=i, config=str(cfg), recording=r, setting=((key, t),),
                    values=((key, v),))
                for i, ((t, v), r) in enumerate((tv, r) for tv in values for r in recs)]

        def arm(workers: int) -> tuple[float, list]:
            times, out = [], None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                out = run_jobs(jobs, workers=workers)
                times.append(time.perf_counter() - t0)
            return statistics.median(times), out

        serial_s, serial = arm(1)
        print(f"# {len(values)} settings x {len(recs)} recordings of {args.duration:g} s, "
              f"{os.cpu_count()} cores; median of {args.repeat}")
        print(f"{'arm':<12}{'wall s':>10}{'x serial':>10}{'identical':>11}")
        print(f"{'serial':<12}{serial_s:>10.1f}{1.0:>10.2f}{'-':>11}")
        walls = {1: serial_s}
        for w in range(2, args.workers + 1):
            wall, rows = arm(w)
            walls[w] = wall
            same = "yes" if rows == serial else "NO"
            print(f"{f'dask x{w}':<12}{wall:>10.1f}{wall / serial_s:>10.2f}{same:>11}")
            if rows != serial:
                print("scores differ from the serial run", file=sys.stderr)
                return 1
        per_job = serial_s / len(jobs)
        best = min(walls.values())
        print(f"# per replay (serial): {per_job:.2f} s; "
              f"{args.duration / per_job:.0f}x real time")
        print(f"# projected 20 settings x 50 nights of {args.duration:g} s on this machine: "
              f"serial {20 * 50 * per_job / 60:.1f} min, best pool "
              f"{20 * 50 * per_job * best / serial_s / 60:.1f} min")
        for w in sorted(walls)[1:]:
            print(f"# speed-up with {w} workers: {serial_s / walls[w]:.2f}x "
                  f"({serial_s / walls[w] / w:.0%} per worker)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
