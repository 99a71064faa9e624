"""Recovery from non-finite samples: per detector, how long after clean data returns the
first *correct* detection comes, and how many events are lost.

The simulator (default hypnogram: N2, N3, N2, REM, wake; default SNR) is replayed in
10-sample chunks at 2 kHz through :class:`controller.nonfinite.NonFiniteGuard` and the
three detectors with default ``[detectors]`` settings -- the loop's own code path for
chunks entering the decoders. NaN is written over the signal at an injection every
``--every`` seconds, lasting 1 sample, 10 ms or 1 s, on one channel -- the detector's own
(CA1, Cz, Fz), or one no detector reads (Oz: nothing may change) -- or on all channels.
Reference: the simulator's ground truth; a detection is correct when
:func:`analysis.scoring.match_events` pairs it with a truth event (50 ms tolerance; 300 ms
before onset for slow oscillations, as bench/detectors.py scores them).

Columns, per detector and condition (over the injections where the clean run detects a
true event within ``--window`` s after the clean data returns):

- ``back_s``: median time from the first clean sample to the first correct detection;
- ``clean_s``: the same in the run without NaN (the wait for the next true event);
- ``delay_s``: median of (back - clean) per injection: what the artefact costs;
- ``lost``: correct detections of the clean run from the first NaN to ``--window`` s
  after clean data returns that the artefact run does not make (those inside the NaN
  itself cannot be made), and ``lost_after``: of those, the ones after clean data returned;
- ``last_lost_s``: the latest such lost detection, seconds after clean data returned
  (how long the detector stays impaired; 0 when none was lost);
- ``false``: detections matching no true event in the window after clean data returns,
  artefact run minus clean run (what restarting from clean data costs in false alarms).

Last line: the guard's per-chunk cost on clean data (median).

Run: ``PYTHONPATH=src python bench/nan_recovery.py [--duration 600] [--every 20]``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engramloop.analysis.scoring import intervals, match_events  # noqa: E402
from engramloop.controller.nonfinite import NonFiniteGuard  # noqa: E402
from engramloop.core.chunk import Chunk  # noqa: E402
from engramloop.decoders.detectors import DetectorsSettings, make_detectors  # noqa: E402

KINDS = ("ripple", "spindle", "so")
LENGTHS = (("1 sample", None), ("10 ms", 0.010), ("1 s", 1.0))


def run(x: np.ndarray, t: np.ndarray, rate: float, names: tuple[str, ...],
        chunk: int = 10) -> list:
    """Every event of the three detectors over ``x``, through the guard."""
    stages = make_detectors(DetectorsSettings(), channels=names)
    guard = NonFiniteGuard(stages)
    events: list = []
    for i in range(0, x.shape[0], chunk):
        c = Chunk(x[i:i + chunk], t[i:i + chunk], rate, names, float(t[i]), first_index=i)
        feed = guard.screen(c)
        for j, st in enumerate(stages):
            if feed is None:
                events.extend(st.process(c))
            elif feed[j]:
                events.extend(guard.keep(j, st.process(c)))
    return events


def correct(events: list, truth, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted times of the ``kind`` detections that match a truth event, and of those
    that match none."""
    det = [e.detect_s for e in events if e.kind == kind]
    tr = intervals(truth.events(kind))
    before = 0.3 if kind == "so" else 0.05
    hit = {d for d, _ in match_events(det, tr, tol_before_s=before)}
    return (np.sort(np.array([det[d] for d in hit])),
            np.sort(np.array([v for d, v in enumerate(det) if d not in hit])))


def med(v: list) -> float:
    return float(np.median(v)) if v else math.nan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--every", type=float, default=20.0)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from engramloop.sim.generate import simulate

    x, t, truth = simulate(seed=a.seed, duration_s=a.duration)
    x = np.ascontiguousarray(x, dtype=np.float64)
    names = tuple(truth.channels)
    rate = float(truth.rate_hz)
    own = {k: getattr(DetectorsSettings(), k).channels[0] for k in KINDS}
    ev = run(x, t, rate, names)
    clean, clean_false = {}, {}
    for k in KINDS:
        clean[k], clean_false[k] = correct(ev, truth, k)
    starts = np.arange(30.0, t[-1] - a.window - 2.0, a.every)
    print(f"simulator seed {a.seed}, {a.duration:g} s, {len(starts)} injections every "
          f"{a.every:g} s; window {a.window:g} s after clean data returns")
    print(f"{'detector':8} {'NaN on':10} {'length':9} {'n':>3} {'back_s':>7} {'clean_s':>7} "
          f"{'delay_s':>7} {'max_delay_s':>11} {'lost':>5} {'lost_after':>10} {'last_lost_s':>11} "
          f"{'false':>5}")
    for where in ("own", "other", "all"):
        for label, length in LENGTHS:
            xb = x.copy()
            ends = []
            for s in starts:
                i0 = int(np.searchsorted(t, t[0] + s))
                n = 1 if length is None else int(round(length * rate))
                for k in KINDS:
                    cols = ([names.index(own[k])] if where == "own" else
                            [names.index("Oz")] if where == "other" else slice(None))
                    xb[i0:i0 + n, cols] = np.nan
                ends.append((float(t[i0]), float(t[i0 + n])))
            ev = run(xb, t, rate, names)
            for k in KINDS:
                got, got_false = correct(ev, truth, k)
                back, ref, delay, lost, lost_after, false = [], [], [], 0, 0, 0
                last_lost = 0.0
                for t_bad, t_clean in ends:
                    lo, hi = t_bad, t_clean + a.window
                    def within(v, a, b):
                        return v[(v >= a) & (v < b)]
                    false += len(within(got_false, t_clean, hi)) - len(
                        within(clean_false[k], t_clean, hi))
                    c_ref = within(clean[k], t_clean, hi)
                    if not c_ref.size:
                        continue
                    g = within(got, t_clean, hi)
                    ref.append(c_ref[0] - t_clean)
                    back.append((g[0] if g.size else hi) - t_clean)
                    delay.append(back[-1] - ref[-1])
                    in_ref = within(clean[k], lo, hi)
                    in_got = within(got, lo, hi)
                    lost += max(len(in_ref) - len(in_got), 0)
                    lost_after += max(len(c_ref) - len(g), 0)
                    # a clean-run detection with no artefact-run detection within 50 ms
                    for d in c_ref:
                        if not g.size or np.min(np.abs(g - d)) > 0.05:
                            last_lost = max(last_lost, d - t_clean)
                on = {"own": own[k], "other": "Oz"}.get(where, "all")
                print(f"{k:8} {on:10} {label:9} "
                      f"{len(back):3d} {med(back):7.3f} {med(ref):7.3f} {med(delay):7.3f} "
                      f"{(max(delay) if delay else math.nan):11.3f} {lost:5d} "
                      f"{lost_after:10d} {last_lost:11.2f} {false:5d}")


def screen_cost(n: int = 20000) -> float:
    """Median time of NonFiniteGuard.screen on a clean 10-sample, 8-channel chunk (the
    loop's per-chunk cost of the check), microseconds."""
    import time

    guard = NonFiniteGuard([])
    c = Chunk(np.random.default_rng(0).normal(size=(10, 8)), np.arange(10) / 2000.0,
              2000.0, tuple("abcdefgh"), 0.0)
    times = np.empty(n)
    for i in range(n):
        p = time.perf_counter()
        guard.screen(c)
        times[i] = time.perf_counter() - p
    return float(np.median(times)) * 1e6


if __name__ == "__main__":
    main()
    print(f"NonFiniteGuard.screen, clean 10 x 8 chunk: median {screen_cost():.2f} us")
