"""The baseline recomputation of issue 23, kernel against kernel: ``median_mad``
(quickselect over each channel's whole ring, what RobustBaseline did before) and
``running_median_mad`` (a sorted copy kept up to date with the points pushed since the
last update), on the rings the default detectors keep: spindle (120 s of history kept
every 0.02 s: L = 6000, 100 new points per 2-s update) and slow oscillation (60 s,
L = 3000, 50 per 1-s update), 8 channels, amplitude-like (|normal|) values. The two are
timed alternately, update after update, so machine load hits both alike; medians in
microseconds per update of all channels, and the ratio. ``--cold``: 32 MB are written
before each call, as a replay's other work does between two update points, so the rings
come from memory rather than the cache.

    /work/venv-deps/bin/python bench/running_median.py [--updates 400] [--channels 8] [--cold]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from engramloop.decoders._filters import median_mad, running_median_mad

RINGS = {"spindle": (6000, 100), "slow oscillation": (3000, 50)}   # (L, points per update)


def bench(length: int, per_update: int, c: int, updates: int,
          cold: bool) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    ring, pos, count = np.zeros((c, length)), np.zeros(c, np.int64), np.zeros(c, np.int64)
    prev, srt, synced = np.zeros((c, length)), np.zeros((c, length)), np.zeros(c, np.int64)
    scratch, work = np.empty(2 * length), np.empty(length)
    index = np.empty(2 * length, dtype=np.int64)
    m0, d0, m1, d1 = (np.empty(c) for _ in range(4))
    old, new = [], []
    flush = np.zeros(4 << 20) if cold else None          # 32 MB
    for u in range(updates + length // per_update):         # fill the ring first
        vals = np.abs(rng.standard_normal((per_update, c)))
        for v in vals:
            ring[np.arange(c), pos] = v
            pos[:] = (pos + 1) % length
            count += 1
        if flush is not None:
            flush += 1.0
        t0 = time.perf_counter()
        median_mad(ring, count, 1, work, m0, d0)
        t1 = time.perf_counter()
        if flush is not None:
            flush += 1.0
        t1b = time.perf_counter()
        running_median_mad(ring, pos, count, 1, prev, srt, synced, scratch, index, m1, d1)
        t2 = time.perf_counter()
        if not (np.array_equal(m0, m1) and np.array_equal(d0, d1)):
            raise SystemExit("running_median_mad differs from median_mad")
        if u >= length // per_update:
            old.append(t1 - t0)
            new.append(t2 - t1b)
    return statistics.median(old) * 1e6, statistics.median(new) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=400)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--cold", action="store_true", help="evict the caches before each call")
    a = ap.parse_args()
    print(f"{'ring':<18}{'L':>6}{'new/upd':>9}{'median_mad us':>15}"
          f"{'running us':>12}{'ratio':>8}")
    for name, (length, per) in RINGS.items():
        old, new = bench(length, per, a.channels, a.updates, a.cold)
        print(f"{name:<18}{length:>6}{per:>9}{old:>15.1f}{new:>12.1f}{old / new:>7.1f}x")


if __name__ == "__main__":
    main()
