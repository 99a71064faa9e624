"""Clock synchronisation of another writer's stream from its ClockOffset chunks, with
clock resets.

An XDF ClockOffset chunk says that at ``collection time`` (on the sending computer's
clock) the local clock minus the remote one was ``offset`` seconds (XDF 1.0
specification, github.com/sccn/xdf, wiki "Specifications"). A stamp ``t`` on the remote
clock is moved to the local clock by ``t + offset(t)``, ``offset`` a straight line fitted
to the measurements.

When the sending computer restarts (or its clock is reset) during a recording, its clock
starts again and the measurements before and after belong to two different lines: one
line through all of them moves every stamp by tens of seconds. As pyxdf does
(``_detect_clock_resets`` and ``_clock_sync`` in ``pyxdf.py``, defaults of ``load_xdf``),
the measurements are split where the collection time goes backwards, or where both the
collection time and the offset jump: a jump of more than ``RESET_TIME_S`` seconds and
``RESET_TIME_STDS`` median absolute deviations of the collection-time steps, together
with one of more than ``RESET_OFFSET_S`` seconds and ``RESET_OFFSET_STDS`` MADs of the
offset steps. Each range gets its own least-squares line (pyxdf fits it with a
Huber-robust solver; without outliers the two agree), and the stamps, taken in file order,
move from one range to the next at the first stamp closer to the next range's first
collection time than to this range's last.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: clock-reset thresholds (pyxdf ``load_xdf`` defaults ``clock_reset_threshold_seconds``,
#: ``..._stds``, ``..._offset_seconds``, ``..._offset_stds``)
RESET_TIME_S = 5.0
RESET_TIME_STDS = 5.0
RESET_OFFSET_S = 1.0
RESET_OFFSET_STDS = 10.0


def _glitches(steps: np.ndarray, stds: float, secs: float) -> np.ndarray:
    """Steps far from the median step both in MADs and in seconds."""
    dev = steps - np.median(steps)
    mad = np.median(np.abs(dev)) + np.finfo(float).eps
    return (np.abs(dev / mad) > stds) & (np.abs(dev) > secs)


def _line(t: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Least-squares ``v = c0 + c1 * t`` (a constant for one point or one time)."""
    if t.size < 2 or np.ptp(t) == 0:
        return float(np.mean(v)), 0.0
    tm, vm = t.mean(), v.mean()
    c1 = float(np.sum((t - tm) * (v - vm)) / np.sum((t - tm) ** 2))
    return float(vm - c1 * tm), c1


@dataclass(frozen=True)
class ClockMap:
    """The offset lines of one stream, one per range between clock resets.

    Attributes
    ----------
    lines : tuple of (float, float)
        ``(c0, c1)`` per range: ``offset = c0 + c1 * t``, seconds.
    ends, next_starts : tuple of float
        Per range but the last: its last collection time and the next range's first.
    """

    lines: tuple[tuple[float, float], ...] = ((0.0, 0.0),)
    ends: tuple[float, ...] = ()
    next_starts: tuple[float, ...] = ()

    @property
    def single(self) -> bool:
        """One line for the whole stream (no clock reset)."""
        return len(self.lines) == 1

    def mapper(self) -> Callable[[np.ndarray], np.ndarray]:
        """A function that moves stamps to the local clock; call it on a stream's stamps
        in file order, block after block (it remembers which range it is in)."""
        state = {"r": 0}

        def apply(t: np.ndarray) -> np.ndarray:
            t = np.asarray(t, dtype=np.float64)
            out = np.empty_like(t)
            i = 0
            r = state["r"]
            while i < t.size:
                if r < len(self.ends):
                    rest = t[i:]
                    stay = np.abs(rest - self.ends[r]) < np.abs(rest - self.next_starts[r])
                    j = rest.size if bool(np.all(stay)) else int(np.argmin(stay))
                else:
                    j = t.size - i
                c0, c1 = self.lines[r]
                out[i:i + j] = t[i:i + j] + (c0 + c1 * t[i:i + j])
                i += j
                if i < t.size:
                    r += 1
            state["r"] = r
            return out

        return apply


def clock_map(offsets: Sequence[tuple[float, float]]) -> ClockMap:
    """The :class:`ClockMap` of a stream's ``(collection time s, offset s)`` measurements
    in file order (no measurement: offset 0)."""
    if not offsets:
        return ClockMap()
    t = np.array([o[0] for o in offsets], dtype=np.float64)
    v = np.array([o[1] for o in offsets], dtype=np.float64)
    if t.size < 2:
        return ClockMap(((float(v[0]), 0.0),))
    dt, dv = np.diff(t), np.diff(v)
    resets = (dt < 0) | (_glitches(dt, RESET_TIME_STDS, RESET_TIME_S)
                         & _glitches(dv, RESET_OFFSET_STDS, RESET_OFFSET_S))
    cut = np.flatnonzero(resets) + 1
    starts = [0, *cut.tolist()]
    stops = [*cut.tolist(), t.size]
    lines = tuple(_line(t[a:b], v[a:b]) for a, b in zip(starts, stops, strict=True))
    ends = tuple(float(t[b - 1]) for b in stops[:-1])
    nexts = tuple(float(t[b]) for b in stops[:-1])
    return ClockMap(lines, ends, nexts)


__all__ = ["ClockMap", "clock_map", "RESET_TIME_S", "RESET_TIME_STDS", "RESET_OFFSET_S",
           "RESET_OFFSET_STDS"]
