"""Progress bars with ETA for long offline work (replay at max speed, dataset generation,
training, sweeps).

A bar is drawn only on an interactive terminal and never with ``quiet``: piped output, CI
logs and ``--quiet`` runs stay clean, and the same code runs everywhere::

    with progress(total=duration_s, description="replay", unit="s", quiet=args.quiet) as bar:
        for chunk in chunks:
            ...
            bar.advance(chunk.samples.shape[0] / rate_hz)

    for epoch in track(range(n_epochs), "training", quiet=args.quiet):
        ...
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class ProgressHandle:
    """What :func:`progress` yields: advance or set the amount of work done."""

    def __init__(self, bar: Any = None, task: Any = None, total: float | None = None) -> None:
        self._bar, self._task = bar, task
        self.total = total
        self.completed = 0.0

    @property
    def shown(self) -> bool:
        """True when a bar is actually drawn."""
        return self._bar is not None

    def advance(self, amount: float = 1.0) -> None:
        """Add ``amount`` units of completed work."""
        self.completed += amount
        if self._bar is not None:
            self._bar.update(self._task, advance=amount)

    def update(self, completed: float | None = None, *, description: str | None = None,
               total: float | None = None) -> None:
        """Set the completed amount, the description or the total."""
        if completed is not None:
            self.completed = float(completed)
        if total is not None:
            self.total = float(total)
        if self._bar is not None:
            kw: dict[str, Any] = {}
            if completed is not None:
                kw["completed"] = completed
            if description is not None:
                kw["description"] = description
            if total is not None:
                kw["total"] = total
            self._bar.update(self._task, **kw)


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
             TimeRemainingColumn()]
    return cols


@contextmanager
def progress(total: float | None, description: str = "", *, unit: str = "",
             quiet: bool = False, console: Any = None) -> Iterator[ProgressHandle]:
    """A progress bar with elapsed time and ETA, silent unless on a terminal.

    Parameters
    ----------
    total : float or None
        Amount of work (items, seconds of recording, ...); ``None`` if unknown (no ETA).
    description : str
        Label on the left of the bar.
    unit : str
        Unit of ``total`` shown after the counts ("s", "files"); empty shows "M/N".
    quiet : bool
        Draw nothing.
    console : rich.console.Console, optional
        Where to draw (default: stderr, so stdout stays clean for results).
    """
    from rich.console import Console

    con = console if console is not None else Console(stderr=True)
    if quiet or not con.is_terminal:
        yield ProgressHandle(total=total)
        return
    from rich.progress import Progress

    with Progress(*_columns(unit, total is not None), console=con, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield ProgressHandle(bar, task, total)


def track(items: Iterable[T], description: str = "", *, total: float | None = None,
          quiet: bool = False, console: Any = None) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (``total`` defaults to ``len(items)``)."""
    if total is None:
        try:
            total = float(len(items))  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress(total, description, quiet=quiet, console=console) as bar:
        for item in items:
            yield item
            bar.advance(1)


__all__ = ["progress", "track", "ProgressHandle"]
