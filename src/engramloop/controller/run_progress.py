"""Progress with ETA for loops that run on a simulated clock (``--speed max``: a replayed
file, a simulated trial and its sham twin, each value of a sweep).

Such a run has a known length (the file, or ``--duration``), and the loop already
publishes a :class:`~controller.status.LoopStatus` every 0.25 s of signal time. A
:class:`ProgressBoard` is a status board that also moves a progress handle to the
snapshot's elapsed signal time, so the loop itself needs no progress code and pays
nothing extra: the bar follows the snapshots the loop makes anyway.

Several runs can share one bar (a trial and its sham twin, the values of a sweep): each
run gets its own board with the bar's position at its start as ``base_s``.
"""
from __future__ import annotations

import math
from typing import Any

from engramloop.controller.progress import ProgressHandle
from engramloop.controller.status import LoopStatus, StatusBoard


class ProgressBoard(StatusBoard):
    """A status board that also advances a progress bar.

    Parameters
    ----------
    handle : ProgressHandle or None
        The bar (from :func:`controller.progress.progress`), in seconds of signal; may be
        set once the run is built and its length known.
    base_s : float
        Bar position when this run starts, seconds (earlier runs sharing the bar).
    length_s : float
        Length of this run, seconds of signal; the bar never moves past ``base_s +
        length_s`` for it.
    """

    def __init__(self, handle: ProgressHandle | None, base_s: float = 0.0,
                 length_s: float = math.inf) -> None:
        super().__init__()
        self.handle = handle
        self.base_s = float(base_s)
        self.length_s = float(length_s)

    @property
    def watched(self) -> bool:
        """Only while the bar shows: with ``--quiet`` nothing reads the snapshots, and
        the loop skips the periodic ones (the channel-quality pass over every chunk was
        ~4 % of a whole-night ``--speed max --quiet`` replay's CPU); the bar's last
        position is set by :meth:`finish`."""
        return self.handle is not None and self.handle.visible

    def publish(self, status: LoopStatus) -> None:
        super().publish(status)
        done = min(max(status.elapsed_s, 0.0), self.length_s)
        if self.handle is not None and math.isfinite(done):
            self.handle.update(self.base_s + done)

    def finish(self) -> None:
        """The run ended normally: its whole length is done (the last snapshot comes one
        sample before the end)."""
        if self.handle is not None and math.isfinite(self.length_s):
            self.handle.update(self.base_s + self.length_s)


def run_length_s(source: Any, duration_s: float | None) -> float:
    """Seconds of signal a ``--speed max`` run will cover: the source's length
    (``duration_s`` attribute of a file or a finite simulation), capped by ``duration_s``;
    ``inf`` when neither is known."""
    length = getattr(source, "duration_s", None)
    length = math.inf if length is None else float(length)
    if duration_s is not None:
        length = min(length, float(duration_s))
    return length


__all__ = ["ProgressBoard", "run_length_s"]
