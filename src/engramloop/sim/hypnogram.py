"""The sleep-stage schedule: a fixed repeating list of segments, or a generated night.

A generated night follows the textbook architecture (Carskadon & Dement 2011, "Normal human
sleep: an overview", in Principles and Practice of Sleep Medicine): ~90-min NREM-REM
cycles, N3 concentrated in the first cycles, REM episodes lengthening towards morning, a
few brief awakenings. Segments are produced lazily, so an unbounded run never runs out.
"""
from __future__ import annotations

import numpy as np

from engramloop.sim.settings import HypnogramSettings, parse_schedule


class Hypnogram:
    """Produces consecutive (stage, start_s, end_s) segments in sim seconds.

    Parameters
    ----------
    settings : HypnogramSettings
    rng : numpy.random.Generator
        Used only in "night" mode.
    """

    CYCLE_S = 90 * 60.0

    def __init__(self, settings: HypnogramSettings, rng: np.random.Generator) -> None:
        self.settings = settings
        self._rng = rng
        self._fixed = parse_schedule(settings.schedule)
        self._i = 0
        self._cycle = 0
        self._queue: list[tuple[str, float]] = []
        self.end_s = 0.0

    def next_segment(self) -> tuple[str, float, float]:
        """The next segment: (stage, start_s, end_s)."""
        if self.settings.mode == "fixed":
            stage, dur = self._fixed[self._i % len(self._fixed)]
            self._i += 1
        else:
            if not self._queue:
                self._queue = self._night_cycle(self._cycle)
                self._cycle += 1
            stage, dur = self._queue.pop(0)
        start = self.end_s
        self.end_s = start + dur
        return stage, start, self.end_s

    def _night_cycle(self, k: int) -> list[tuple[str, float]]:
        """One NREM-REM cycle; the proportions shift from N3 to REM across the night."""
        rng = self._rng
        c = self.CYCLE_S * rng.uniform(0.85, 1.15)
        # fraction of the cycle in N3 falls and REM rises with cycle index (Carskadon &
        # Dement 2011: N3 mostly in the first third of the night; REM episodes 10 -> 30 min)
        n3 = max(0.0, 0.40 - 0.12 * k) * rng.uniform(0.8, 1.2)
        rem = min(0.35, 0.10 + 0.07 * k) * rng.uniform(0.8, 1.2)
        n1 = 0.05
        wake = 0.02 if k else 0.0
        n2 = max(0.1, 1.0 - n3 - rem - n1 - wake)
        segs = [("N1", n1 * c), ("N2", 0.6 * n2 * c)]
        if n3 > 0.01:
            segs += [("N3", n3 * c), ("N2", 0.4 * n2 * c)]
        else:
            segs += [("N2", 0.4 * n2 * c)]
        segs.append(("REM", rem * c))
        if wake:
            segs.append(("wake", wake * c))
        if k == 0:
            segs.insert(0, ("wake", 5 * 60.0))
        return [(s, float(d)) for s, d in segs if d > 1.0]
