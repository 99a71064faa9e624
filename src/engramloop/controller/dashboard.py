"""The live terminal dashboard of ``engramloop run``.

It draws the newest :class:`~controller.status.LoopStatus` the loop published (source and
rate, per-channel signal quality, detections per minute, pulses sent and refused by rule,
governor state and lockouts, loop latency and scheduler lateness p99, the latest forecast,
recording size) and turns key presses into calls on the loop's
:class:`~controller.status.LoopControls`:

- ``a`` then ``y``: arm (two keys, so a stray key press never arms a stimulator);
- ``d``: disarm (at once);
- ``q``: stop the run (at once; the loop disarms on the way out).

It only reads snapshots, on its own thread, so a slow terminal (SSH over a bad link) can
never delay the loop. On an interactive terminal it redraws in place with ``rich.live``
(plain ANSI, fine over ``ssh -t``); when output is not a terminal (a pipe, a log file, CI)
it prints a plain-text snapshot every ``plain_interval_s`` seconds and once at the end, and
reads no keys. ``engramloop run --quiet`` makes no dashboard at all (:func:`make_dashboard`
returns ``None``).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from engramloop.controller.status import LoopControls, LoopStatus, StatusBoard

#: Keys and what they do; shown in the footer.
KEYS_HELP = "[a] arm (then [y] to confirm)   [d] disarm   [q] stop"


def _ms(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v * 1e3:.2f} ms"


def _volts(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    return f"{v * 1e6:.1f} uV" if abs(v) < 1e-3 else f"{v * 1e3:.1f} mV"


def _hms(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"  # pragma: no cover - loop always returns


def render_status(status: LoopStatus | None, *, note: str = "") -> Any:
    """Build the rich renderable for one snapshot (pure: no I/O, no state).

    Parameters
    ----------
    status : LoopStatus or None
        The snapshot; ``None`` before the loop published its first one.
    note : str
        A one-line message shown above the key help (e.g. "press y to arm").
    """
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    if status is None:
        return Panel(Text("waiting for the loop's first status...", style="dim"),
                     title="engramloop", subtitle=Text(KEYS_HELP))
    head = Text()
    head.append(f"{status.source or 'source ?'}", style="bold")
    if math.isfinite(status.rate_hz):
        head.append(f" @ {status.rate_hz:g} Hz")
    head.append(f"   {status.state}   elapsed {_hms(status.elapsed_s)}   ")
    head.append(" ARMED " if status.armed else " disarmed ",
                style="bold white on red" if status.armed else "bold black on green")
    if status.recording_path:
        head.append(f"   recording {status.recording_path} ({_size(status.recording_bytes)})")
    else:
        head.append("   not recording", style="yellow")

    def table(title: str, *cols: str) -> Table:
        tb = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                   show_edge=False, pad_edge=False, show_header=any(cols))
        for i, c in enumerate(cols):
            tb.add_column(c, no_wrap=True, justify="left" if i == 0 else "right")
        return tb

    sig = table("signal", "channel", "RMS", "state")
    for ch in status.channels:
        clip = "CLIPPING" + (f" {100 * ch.clipped_fraction:.0f}%"
                             if ch.clipped_fraction >= 0.005 else "")
        flags = [w for w, on in (("FLAT", ch.flat), (clip, ch.clipping)) if on]
        sig.add_row(ch.name, _volts(ch.rms_v), Text(" ".join(flags) or "ok",
                                                   style="bold red" if flags else "green"))
    if not status.channels:
        sig.add_row("-", "-", "no data yet")

    det = table("detections / min", "kind", "per min")
    for kind, rate in sorted(status.detections_per_min.items()):
        det.add_row(kind, f"{rate:.1f}")
    if not status.detections_per_min:
        det.add_row("-", "-")
    for line in status.detector_states:   # a gate passing over detections: not quiet
        det.add_row(Text(line, style="bold yellow"), "")

    stim = table("stimulation", "", "")
    stim.add_row("pulses sent", str(status.pulses_sent))
    stim.add_row("refused", str(status.pulses_refused_total))
    for rule, n in sorted(status.pulses_refused.items(), key=lambda kv: (-kv[1], kv[0])):
        if n:
            stim.add_row(f"  {rule}", str(n))
    stim.add_row("lockouts", ", ".join(status.lockouts) or "none")
    stim.add_row("loop latency p99", _ms(status.loop_latency_p99_s))
    stim.add_row("sched. lateness p99", _ms(status.scheduler_lateness_p99_s))

    fc = table("forecast", "", "")
    for name, value in sorted(status.forecast.items()):
        fc.add_row(name, f"{value:.3g}")
    if status.forecast:
        fc.add_row("age", "-" if not math.isfinite(status.forecast_age_s)
                   else f"{status.forecast_age_s:.0f} s")
    else:
        fc.add_row("none yet", "")
    if status.forecast_gate:
        fc.add_row("gate", Text(status.forecast_gate, style="green" if
                                status.forecast_gate == "open" else "yellow"))

    grid = Table.grid(padding=(0, 4))
    grid.add_column(vertical="top")
    grid.add_column(vertical="top")
    grid.add_row(sig, stim)
    grid.add_row(det, fc)
    parts: list[Any] = [head, grid]
    if status.messages:
        parts.append(Text("\n".join(status.messages[-5:]), style="yellow"))
    if note:
        parts.append(Text(note, style="bold"))
    return Panel(Group(*parts), title="engramloop", subtitle=Text(KEYS_HELP), expand=True)


class Dashboard:
    """Live view of a running loop, with keys to arm/disarm/stop.

    Parameters
    ----------
    status : StatusBoard or callable
        Where to get the newest snapshot (a board, or a function returning a
        ``LoopStatus`` or ``None``).
    controls : LoopControls, optional
        What the keys call. Without it the dashboard is view-only.
    console : rich.console.Console, optional
        Where to draw (default: a console on stdout).
    refresh_hz : float
        Redraws per second on a terminal.
    plain_interval_s : float
        Seconds between plain-text snapshots when the console is not a terminal.
    keys : bool, optional
        Read keys from stdin; default: when both stdin and the console are terminals.
    key_input : file, optional
        Where keys come from (default ``sys.stdin``).
    """

    def __init__(self, status: StatusBoard | Callable[[], LoopStatus | None],
                 controls: LoopControls | None = None, *, console: Any = None,
                 refresh_hz: float = 4.0, plain_interval_s: float = 10.0,
                 keys: bool | None = None, key_input: IO[str] | None = None) -> None:
        from rich.console import Console

        self._get = status.latest if isinstance(status, StatusBoard) else status
        self.controls = controls
        self.console = console if console is not None else Console()
        if not refresh_hz > 0 or not plain_interval_s > 0:
            raise ValueError("Dashboard: refresh_hz and plain_interval_s must be > 0")
        self.refresh_hz = float(refresh_hz)
        self.plain_interval_s = float(plain_interval_s)
        self._key_input = key_input if key_input is not None else sys.stdin
        if keys is None:
            keys = bool(self.console.is_terminal and _isatty(self._key_input))
        self.keys = keys and controls is not None
        self.note = ""
        self._arm_pending = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._live: Any = None
        self._lock = threading.Lock()
        #: set once the key thread has the terminal in cbreak mode (keys typed before that
        #: sit in the terminal's line buffer until Enter)
        self.keys_ready = threading.Event()

    # -- drawing --------------------------------------------------------------------------
    @property
    def interactive(self) -> bool:
        """Redrawing in place (a terminal) rather than printing snapshots."""
        return bool(self.console.is_terminal)

    def renderable(self) -> Any:
        """The view of the newest snapshot.

        When the snapshot names a recording but not its size, the size is read from the
        file system here (a ``stat`` on the dashboard's thread, never the loop's).
        """
        status = self._get()
        if status is not None and status.recording_path and not status.recording_bytes:
            try:
                size = os.stat(status.recording_path).st_size
            except OSError:
                size = 0
            if size:
                status = dataclasses.replace(status, recording_bytes=size)
        return render_status(status, note=self.note)

    def print_once(self) -> None:
        """Print one snapshot (the non-interactive mode's periodic output)."""
        with self._lock:
            self.console.print(self.renderable())

    # -- keys -----------------------------------------------------------------------------
    def handle_key(self, key: str) -> str:
        """Act on one key press; returns (and shows) what happened.

        ``a`` asks for confirmation, ``y`` right after ``a`` arms, ``d`` disarms, ``q``
        stops. Any other key cancels a pending arm.
        """
        if self.controls is None:
            return ""
        k = key.lower()
        pending, self._arm_pending = self._arm_pending, False
        try:
            if k == "a":
                self._arm_pending = True
                msg = "press y to ARM the stimulators, any other key to cancel"
            elif k == "y" and pending:
                self.controls.arm()
                msg = "armed"
            elif k == "d":
                self.controls.disarm()
                msg = "disarmed"
            elif k == "q":
                self.controls.disarm()
                self.controls.stop()
                msg = "stopping..."
            else:
                msg = "arming cancelled" if pending else ""
        except Exception as exc:  # shown, never swallowed silently; the loop keeps its state
            msg = f"{type(exc).__name__}: {exc}"
        self.note = msg
        return msg

    def _read_keys(self) -> None:
        import select
        import termios
        import tty

        fd = self._key_input.fileno()
        try:
            old = termios.tcgetattr(fd)
        except termios.error:
            return
        try:
            tty.setcbreak(fd)
            self.keys_ready.set()
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    ch = os.read(fd, 1).decode(errors="ignore")
                    if ch:
                        self.handle_key(ch)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
            self.keys_ready.clear()

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start drawing (and reading keys); returns at once."""
        if self._threads or self._live is not None:
            return
        self._stop.clear()
        if self.interactive:
            from rich.live import Live

            # log lines printed while live appear above the dashboard, not through it
            self._live = Live(get_renderable=self.renderable, console=self.console,
                              refresh_per_second=self.refresh_hz, transient=False,
                              redirect_stdout=True, redirect_stderr=True)
            self._live.start()
        else:
            t = threading.Thread(target=self._plain_loop, name="engramloop-dashboard",
                                 daemon=True)
            self._threads.append(t)
            t.start()
        if self.keys:
            t = threading.Thread(target=self._read_keys, name="engramloop-keys", daemon=True)
            self._threads.append(t)
            t.start()

    def _plain_loop(self) -> None:
        while not self._stop.wait(self.plain_interval_s):
            self.print_once()

    def stop(self) -> None:
        """Stop drawing, restore the terminal, and leave the last snapshot on screen."""
        self._stop.set()
        for t in self._threads:
            t.join()
        self._threads = []
        if self._live is not None:
            self._live.update(self.renderable(), refresh=True)
            self._live.stop()
            self._live = None
        else:
            self.print_once()

    def __enter__(self) -> Dashboard:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _isatty(f: Any) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError):
        return False


def make_dashboard(status: StatusBoard | Callable[[], LoopStatus | None],
                   controls: LoopControls | None = None, *, quiet: bool = False,
                   **kwargs: Any) -> Dashboard | None:
    """The dashboard for ``engramloop run``, or ``None`` with ``--quiet``."""
    if quiet:
        return None
    return Dashboard(status, controls, **kwargs)


@contextmanager
def live_dashboard(status: StatusBoard | Callable[[], LoopStatus | None],
                   controls: LoopControls | None = None, *, quiet: bool = False,
                   **kwargs: Any) -> Iterator[Dashboard | None]:
    """Show the dashboard for the duration of a ``with`` block (nothing with ``quiet``).

    The dashboard is stopped and the terminal restored however the block ends::

        board = StatusBoard()
        loop = build_loop(cfg, ..., status_board=board)
        with live_dashboard(board, loop, quiet=args.quiet):
            result = loop.run(args.duration)
    """
    dash = make_dashboard(status, controls, quiet=quiet, **kwargs)
    if dash is not None:
        dash.start()
    try:
        yield dash
    finally:
        if dash is not None:
            dash.stop()


__all__ = ["Dashboard", "render_status", "make_dashboard", "live_dashboard", "KEYS_HELP"]
