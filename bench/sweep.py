"""Parallel sweeps: a 4-setting x 4-recording sweep run serially and on a local Dask pool
of 1..N workers, side by side in one run; identical scores asserted, wall times printed,
with the projected time of a 20-setting x 50-night sweep on this machine.

    python bench/sweep.py [--duration 300] [--workers 2] [--repeat 1] [--breakdown]
                          [--dask-defaults] [--nights DIR]

Recordings are simulated nights (``engramloop sim``, 2 kHz, 8 channels) with their truth;
the swept key is the ripple threshold. Wall times depend on the machine and on what else
it runs: the ratio to the serial run, measured in the same run, is the figure (the load
average is printed before and after). Every run of an arm is a new process, as each
`engramloop sweep` is: the pool's start (importing Dask, starting its processes) is
paid every time, as a user pays it.

``--breakdown`` then runs the sweep once more each way with every replay timed where it
runs, and prints where the pool's time beyond half the serial time goes: starting the pool,
the imports on each worker's first replay, replays running slower in a worker than in a
plain process (CPU time and page faults side by side), the wait for a worker's first
replay and between replays (scheduling, results coming back), the tail (a worker idle
while the other finishes) and closing the pool.
``--nights DIR`` keeps the simulated nights there and reuses them on the next run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(job: dict) -> dict:
    """One replay, timed where it runs (a worker, or this process for the serial arm);
    the job comes as a dict so that importing engramloop is timed here too (unpickling a
    Job would import it before this runs)."""
    import resource
    import sys
    import time

    t_in = time.time()
    first = "engramloop.analysis.fanout" not in sys.modules
    a = time.perf_counter()
    from engramloop.analysis.fanout import Job, run_job
    import_s = time.perf_counter() - a
    ru, cpu, t_job = resource.getrusage(resource.RUSAGE_SELF), time.thread_time(), time.time()
    out = run_job(Job(**job))
    ru2 = resource.getrusage(resource.RUSAGE_SELF)
    return {"out": out, "pid": os.getpid(), "first": first, "import_s": import_s,
            "t_in": t_in, "t_job": t_job, "t_end": time.time(),
            "cpu_s": time.thread_time() - cpu,
            "proc_cpu_s": (ru2.ru_utime + ru2.ru_stime) - (ru.ru_utime + ru.ru_stime),
            "minflt": ru2.ru_minflt - ru.ru_minflt}


def fresh_import_s(module: str) -> float:
    """Seconds a new interpreter takes to import ``module`` (median of 3)."""
    code = f"import time; t = time.perf_counter(); import {module}; " \
           "print(time.perf_counter() - t)"
    return statistics.median(float(subprocess.run([sys.executable, "-c", code],
                                                  capture_output=True, text=True,
                                                  check=True).stdout) for _ in range(3))


def breakdown(jobs: list, workers: int) -> None:
    import dataclasses

    from engramloop.analysis import fanout

    items = [dataclasses.asdict(j) for j in jobs]
    serial = [timed(it) for it in items]
    s_total = sum(r["t_end"] - r["t_in"] for r in serial)

    arrived: dict[int, float] = {}
    t0 = time.time()
    import distributed  # noqa: F401  (what a new `engramloop sweep` process pays first)
    t_imported = time.time()
    with fanout.dask_client(workers=workers, preload=["engramloop.analysis.fanout"]) as client:
        t_ready = time.time()
        pool = fanout.run_on(client, timed, items,
                             on_done=lambda r: arrived.__setitem__(id(r), time.time()),
                             cost=lambda d: fanout.job_cost(fanout.Job(**d)))
        t_done = time.time()
    t_closed = time.time()
    if [r["out"] for r in pool] != [r["out"] for r in serial]:
        raise SystemExit("breakdown: the pool's rows differ from the serial rows")

    wall = t_closed - t0
    by: dict[int, list] = {}
    for r in pool:
        by.setdefault(r["pid"], []).append(r)
    for rs in by.values():
        rs.sort(key=lambda r: r["t_in"])
    w = len(by)
    lead = [rs[0]["t_in"] - t_ready for rs in by.values()]
    gaps = [b["t_in"] - a["t_end"] for rs in by.values()
            for a, b in zip(rs, rs[1:], strict=False)]
    tail = [t_done - rs[-1]["t_end"] for rs in by.values()]
    imports = [r["import_s"] for r in pool if r["first"]]
    p_total = sum(r["t_end"] - r["t_in"] for r in pool)
    slower = p_total - sum(imports) - s_total
    transfer = [arrived[id(r)] - r["t_end"] for r in pool if id(r) in arrived]

    def med(rows: list, key: str) -> float:
        return statistics.median(r[key] for r in rows)

    def each(xs: list) -> str:
        return ", ".join(f"{x:.2f}" for x in xs)

    print(f"\n# breakdown: one more run each way in a new process, every replay timed where "
          f"it ran; load average {os.getloadavg()[0]:.2f}")
    print(f"# fresh interpreter imports: distributed {fresh_import_s('distributed'):.2f} s, "
          f"engramloop.analysis.fanout {fresh_import_s('engramloop.analysis.fanout'):.2f} s")
    print(f"serial: {len(serial)} replays in {s_total:.1f} s; per replay (median) "
          f"{statistics.median(r['t_end'] - r['t_in'] for r in serial):.2f} s wall, "
          f"{med(serial, 'cpu_s'):.2f} s CPU, {med(serial, 'minflt') / 1e3:.0f}k page faults")
    print(f"pool of {w}: {wall:.1f} s = serial/{w} {s_total / w:.1f} s "
          f"+ {wall - s_total / w:.1f} s, which is (s of wall time):")
    rows = [
        ("import distributed (this process)", t_imported - t0, ""),
        ("start the pool (LocalCluster + Client)", t_ready - t_imported,
         f"scheduler, {w} worker processes"),
        ("wait for each worker's first replay", sum(lead) / w, f"each {each(lead)} s"),
        ("imports on each worker's first replay", sum(imports) / w,
         f"each {each(imports)} s" if imports else "none (started with them)"),
        ("replays slower in a worker", slower / w,
         f"per replay {statistics.median(r['t_end'] - r['t_job'] for r in pool):.2f} s "
         f"wall, {med(pool, 'cpu_s'):.2f} s CPU "
         f"(+{med(pool, 'proc_cpu_s') - med(pool, 'cpu_s'):.2f} s in the worker's other "
         f"threads), {med(pool, 'minflt') / 1e3:.0f}k page faults"),
        ("between replays (scheduling, results)", sum(gaps) / w,
         f"{len(gaps)} gaps, median {statistics.median(gaps) * 1e3:.0f} ms; "
         f"a result reaches the parent in {statistics.median(transfer) * 1e3:.0f} ms"
         if gaps and transfer else ""),
        ("tail: a worker idle while the other ends", sum(tail) / w, f"each {each(tail)} s"),
        ("close the pool", t_closed - t_done, ""),
    ]
    for name, s, note in rows:
        print(f"  {name:<42}{s:>6.2f}  {note}")
    print(f"  {'(sum)':<42}{sum(s for _, s, _ in rows):>6.2f}")
    print(f"# replays per worker: {', '.join(str(len(rs)) for rs in by.values())}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300.0, help="seconds per recording")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each arm (median)")
    ap.add_argument("--breakdown", action="store_true",
                    help="then time each replay where it runs and print where the pool's "
                         "extra time goes")
    ap.add_argument("--nights", metavar="DIR",
                    help="keep the simulated nights here and reuse them")
    # the breakdown runs in a new interpreter, so that its pool starts as a new
    # `engramloop sweep` process's does (nothing of Dask imported or started yet)
    ap.add_argument("--breakdown-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--arm", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--dask-defaults", action="store_true",
                    help="also run 2 workers with Dask's own worker settings (a new "
                         "interpreter per worker, MALLOC_TRIM_THRESHOLD_=65536)")
    args = ap.parse_args()

    from engramloop.analysis import fanout
    from engramloop.analysis.fanout import Job, run_jobs
    from engramloop.analysis.sweep import parse_sweep
    from engramloop.cli import main as cli

    cfg = ROOT / "src" / "engramloop" / "configs" / "sim-ripple.toml"
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(args.nights or tmp)
        d.mkdir(parents=True, exist_ok=True)
        recs = []
        for seed in range(4):
            path = d / f"night{seed}-{args.duration:g}s.npz"
            if not path.exists():
                assert cli(["sim", "--quiet", "--duration", str(args.duration), "--out",
                            str(path), "--seed", str(seed + 10), "--config", str(cfg)]) == 0
            recs.append(str(path))
        (key, values), = parse_sweep(["detectors.ripple.threshold_sd=3,3.5,4,4.5"])
        jobs = [Job(index=i, config=str(cfg), recording=r, setting=((key, t),),
                    values=((key, v),))
                for i, ((t, v), r) in enumerate((tv, r) for tv in values for r in recs)]

        if args.dask_defaults and (args.arm or args.breakdown_only):
            # what Dask's own worker settings cost
            fanout.LOCAL_POOL_CONFIG.clear()
            fanout._forkserver = lambda preload: {}
        if args.breakdown_only:
            breakdown(jobs, max(2, args.workers))
            return 0

        if args.arm:
            t0 = time.perf_counter()
            out = run_jobs(jobs, workers=args.arm)
            wall = time.perf_counter() - t0
            print(json.dumps({"wall": wall, "rows": json.dumps(out, sort_keys=True)}))
            return 0

        def arm(workers: int, *extra: str) -> tuple[float, str]:
            """``workers`` on a new process each run, as a new `engramloop sweep`
            process starts (engramloop imported, nothing of Dask); median wall time."""
            times, rows = [], ""
            for _ in range(args.repeat):
                res = subprocess.run([sys.executable, __file__, "--duration",
                                      str(args.duration), "--nights", str(d), "--arm",
                                      str(workers), *extra],
                                     check=True, capture_output=True, text=True)
                got = json.loads(res.stdout.strip().splitlines()[-1])
                times.append(got["wall"])
                rows = got["rows"]
            return statistics.median(times), rows

        load0 = os.getloadavg()
        serial_s, serial = arm(1)
        print(f"# {len(values)} settings x {len(recs)} recordings of {args.duration:g} s, "
              f"{os.cpu_count()} cores; each arm in a new process, median of {args.repeat}; "
              f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} at the start")
        print(f"{'arm':<24}{'wall s':>8}{'x serial':>10}{'identical':>11}")
        print(f"{'serial':<24}{serial_s:>8.1f}{1.0:>10.2f}{'-':>11}")
        walls = {1: serial_s}
        arms = [(f"dask x{w}", w, ()) for w in range(2, args.workers + 1)]
        if args.dask_defaults:
            arms.insert(0, ("dask x2, Dask's defaults", 2, ("--dask-defaults",)))
        for name, w, extra in arms:
            wall, rows = arm(w, *extra)
            if not extra:
                walls[w] = wall
            same = "yes" if rows == serial else "NO"
            print(f"{name:<24}{wall:>8.1f}{wall / serial_s:>10.2f}{same:>11}")
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
        load1 = os.getloadavg()
        print(f"# load average {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} at the end")
        if args.breakdown:
            for extra in ([["--dask-defaults"]] if args.dask_defaults else []) + [[]]:
                sys.stdout.flush()
                print("\n# with Dask's default worker settings" if extra else "")
                sys.stdout.flush()
                subprocess.run([sys.executable, __file__, "--duration", str(args.duration),
                                "--workers", str(args.workers), "--nights", str(d),
                                "--breakdown-only", *extra], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
