"""Progress with ETA for long offline work (replay at max speed, dataset generation,
training, sweeps).

The same code runs everywhere and shows what the place can show:

- on an interactive terminal: a rich progress bar (elapsed time, ETA, counts);
- when the console is not a terminal (a pipe, a log file, CI): plain lines, one at the
  start, one at each further 10 % of the work (at most one a second) or every
  ``plain_every_s`` seconds if that comes first, and one at the end -- a log shows that the
  job is alive and when it will finish, without a line per item;
- with ``quiet``: nothing.

Everything goes to stderr, so stdout stays clean for results::

    with progress(total=duration_s, description="replay", unit="s", quiet=args.quiet) as bar:
        for chunk in chunks:
            ...
            bar.advance(chunk.samples.shape[0] / rate_hz)

    for epoch in track(range(n_epochs), "training", quiet=args.quiet):
        ...

Library code (``decoders/``) never draws: it takes a callback and the command line turns
the callback's calls into :meth:`ProgressHandle.update`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

#: plain (non-terminal) mode: a line at each further this fraction of the work...
PLAIN_STEP = 0.10
#: ... but not more often than this, seconds (a 2-second job writes two lines, not ten)
PLAIN_MIN_S = 1.0
#: plain mode: a line at least this often while work goes on, seconds
PLAIN_EVERY_S = 30.0


def hms(seconds: float) -> str:
    """``3725.0`` -> ``"1:02:05"``; ``"-:--:--"`` for NaN or infinity."""
    if not math.isfinite(seconds):
        return "-:--:--"
    s = max(0, int(round(seconds)))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _amount(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 or abs(x) >= 10 else f"{x:.1f}"


class ProgressHandle:
    """What :func:`progress` yields: advance or set the amount of work done.

    Attributes
    ----------
    total : float or None
        Amount of work; None if unknown.
    completed : float
        Amount done so far.
    info : str
        A short status shown after the counts (e.g. the last training loss).
    """

    def __init__(self, bar: Any = None, task: Any = None, total: float | None = None, *,
                 description: str = "", unit: str = "", console: Any = None,
                 plain: bool = False, plain_every_s: float = PLAIN_EVERY_S,
                 plain_min_s: float = PLAIN_MIN_S, clock: Any = time.monotonic) -> None:
        self._bar, self._task = bar, task
        self.total = None if total is None else float(total)
        self.completed = 0.0
        self.info = ""
        self.description = description
        self.unit = unit
        self._console = console
        self._plain = plain and console is not None
        self._every_s = float(plain_every_s)
        self._min_s = float(plain_min_s)
        self._clock = clock
        self._t0 = clock()
        self._last_line = -math.inf
        self._last_step = 0
        #: plain lines written so far (tests; logs)
        self.lines: list[str] = []

    @property
    def shown(self) -> bool:
        """True when a bar is actually drawn (an interactive terminal)."""
        return self._bar is not None

    @property
    def visible(self) -> bool:
        """True when updates show at all: a bar, or plain lines (not ``quiet``)."""
        return self._bar is not None or self._plain

    @property
    def elapsed_s(self) -> float:
        """Seconds since the work started."""
        return self._clock() - self._t0

    def eta_s(self) -> float:
        """Seconds still needed at the average rate so far; NaN if unknown."""
        if not self.total or self.completed <= 0:
            return math.nan
        left = max(self.total - self.completed, 0.0)
        return self.elapsed_s * left / self.completed

    def advance(self, amount: float = 1.0) -> None:
        """Add ``amount`` units of completed work."""
        self.completed += amount
        if self._bar is not None:
            self._bar.update(self._task, advance=amount)
        elif self._plain:
            self._maybe_line()

    def update(self, completed: float | None = None, *, description: str | None = None,
               total: float | None = None, info: str | None = None) -> None:
        """Set the completed amount, the description, the total or the status text."""
        if completed is not None:
            self.completed = float(completed)
        if total is not None:
            self.total = float(total)
        if description is not None:
            self.description = description
        if info is not None:
            self.info = info
        if self._bar is not None:
            kw: dict[str, Any] = {}
            if completed is not None:
                kw["completed"] = completed
            if description is not None:
                kw["description"] = description
            if total is not None:
                kw["total"] = total
            if info is not None:
                kw["info"] = info
            self._bar.update(self._task, **kw)
        elif self._plain:
            self._maybe_line()

    def note(self, text: str) -> None:
        """A one-off message (an early stop, a skipped file): printed above the bar on a
        terminal, as its own line otherwise, not at all when quiet."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        elif self._plain:
            self._write(text)

    # -- plain mode ---------------------------------------------------------------------
    def line(self, final: bool = False) -> str:
        """The plain-text status: ``replay: 40% (1440/3600 s), elapsed 0:00:12, ETA
        0:00:18 -- info`` (without the ETA when ``final``)."""
        head = f"{self.description}: " if self.description else ""
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            pct = 100.0 * min(max(self.completed / self.total, 0.0), 1.0)
            body = (f"{pct:.0f}% ({_amount(self.completed)}/{_amount(self.total)}{unit}), "
                    f"elapsed {hms(self.elapsed_s)}"
                    + ("" if final else f", ETA {hms(self.eta_s())}"))
        else:
            body = f"{_amount(self.completed)}{unit or ' done'}, elapsed {hms(self.elapsed_s)}"
        return head + body + (f" -- {self.info}" if self.info else "")

    def _maybe_line(self) -> None:
        now = self._clock()
        since = now - self._last_line
        step = (int(self.completed / self.total / PLAIN_STEP + 1e-9)
                if self.total else self._last_step)
        if since >= self._every_s or (step > self._last_step and since >= self._min_s):
            self._last_step = max(step, self._last_step)
            self._last_line = now
            self._write(self.line())

    def _write(self, text: str) -> None:
        self.lines.append(text)
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _open(self) -> None:
        if self._plain:
            self._last_line = self._clock()
            self._write(self.line())

    def _close(self) -> None:
        if self._plain:
            self._write(self.line(final=True))


def _columns(unit: str, known_total: bool) -> list:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cols = [TextColumn("[progress.description]{task.description}"), BarColumn(),
            TaskProgressColumn()]
    if not known_total:
        cols.append(TextColumn("{task.completed:.0f} " + (unit or "done")))
    elif unit:
        cols.append(TextColumn("{task.completed:.0f}/{task.total:.0f} " + unit))
    else:
        cols.append(MofNCompleteColumn())
    cols += [TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"),
             TimeRemainingColumn(), TextColumn("{task.fields[info]}", markup=False)]
    return cols


@contextmanager
def progress(total: float | None, description: str = "", *, unit: str = "",
             quiet: bool = False, console: Any = None, plain_every_s: float = PLAIN_EVERY_S,
             plain_min_s: float = PLAIN_MIN_S) -> Iterator[ProgressHandle]:
    """Progress with elapsed time and ETA: a bar on a terminal, occasional plain lines
    elsewhere, nothing when ``quiet``.

    Parameters
    ----------
    total : float or None
        Amount of work (items, seconds of recording, ...); ``None`` if unknown (no ETA).
    description : str
        Label on the left of the bar / at the start of each plain line.
    unit : str
        Unit of ``total`` shown after the counts ("s", "files"); empty shows "M/N".
    quiet : bool
        Show nothing.
    console : rich.console.Console, optional
        Where to draw (default: stderr, so stdout stays clean for results).
    plain_every_s, plain_min_s : float
        Plain mode: a line at least every ``plain_every_s`` seconds, and at each further
        10 % of the work but at most one per ``plain_min_s`` seconds.
    """
    from rich.console import Console

    if quiet:
        yield ProgressHandle(total=total, description=description, unit=unit)
        return
    con = console if console is not None else Console(stderr=True)
    if not con.is_terminal:
        handle = ProgressHandle(total=total, description=description, unit=unit,
                                console=con, plain=True, plain_every_s=plain_every_s,
                                plain_min_s=plain_min_s)
        handle._open()
        try:
            yield handle
        finally:
            handle._close()
        return
    from rich.progress import Progress

    with Progress(*_columns(unit, total is not None), console=con, transient=False) as bar:
        task = bar.add_task(description, total=total, info="")
        yield ProgressHandle(bar, task, total, description=description, unit=unit,
                             console=con)


def track(items: Iterable[T], description: str = "", *, total: float | None = None,
          quiet: bool = False, console: Any = None) -> Iterator[T]:
    """Iterate ``items`` with progress (``total`` defaults to ``len(items)``)."""
    if total is None:
        try:
            total = float(len(items))  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress(total, description, quiet=quiet, console=console) as bar:
        for item in items:
            yield item
            bar.advance(1)


__all__ = ["progress", "track", "ProgressHandle", "hms"]
