"""Every way a process is told to end becomes an orderly stop.

``SIGTERM`` (``systemctl stop``, ``kill``), ``SIGHUP`` (the terminal closed) and ``SIGINT``
(Ctrl-C) would otherwise end the Python process without disarming anything (SIGTERM and
SIGHUP) or raise ``KeyboardInterrupt`` wherever the main thread happens to be -- possibly
half-way through disarming (a second Ctrl-C). :class:`StopSignals` replaces their handlers
for the life of a command with one that only *asks*:

- the first signal disarms the governor at once (a flag: the scheduler cancels anything
  still pending from that instant) and asks the loop to stop; the loop then disarms every
  output (stop op to the Pulse Pal, DISARM to the stim box), closes the recording with its
  footers and returns;
- any further signal is noted and otherwise ignored: nothing interrupts the disarm.

The command then exits with :func:`exit_code` = 128 + the signal number (the shell's
convention: SIGHUP 129, SIGINT 130, SIGTERM 143), distinct from an error (1 or 2) and from
a clean end (0). A process that must die at once still can: SIGKILL, after which the stim
box disarms itself within 100 ms (watchdog) and the Pulse Pal keeps playing at most the
train it was given (it has no watchdog).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

#: the signals turned into a stop (SIGHUP does not exist on Windows)
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGINT")
                     if hasattr(signal, n))


def exit_code(signum: int) -> int:
    """The exit status of a command stopped by ``signum``: 128 + its number."""
    return 128 + int(signum)


def _install(signums: Any, handler: Any) -> dict[int, Any]:
    """Install ``handler`` for ``signums``; the handlers replaced, to restore. Handlers
    can only be installed from the main thread (tests may call commands from another
    thread: they keep the default behaviour)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in signums}


def _restore(saved: dict[int, Any]) -> None:
    for s, old in saved.items():
        signal.signal(s, old)
    saved.clear()


@contextlib.contextmanager
def sigint_ignored_for_children() -> Iterator[None]:
    """SIGINT ignored inside, so that processes started here inherit SIG_IGN (a terminal's
    Ctrl-C reaches its whole foreground group; they leave the stop to this process), and
    blocked meanwhile, so a Ctrl-C that comes inside is delivered once the handler is
    back. The handler changes only on the main thread, as :func:`_install`."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    saved = _install((signal.SIGINT,), signal.SIG_IGN)
    try:
        yield
    finally:
        _restore(saved)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


class StopSignals:
    """Context manager: SIGTERM, SIGHUP and SIGINT ask the attached loop to stop.

    Parameters
    ----------
    log : callable(str), optional
        Gets one line per signal received.

    Attributes
    ----------
    signum : int or None
        The first signal received.
    """

    def __init__(self, log: Any = None) -> None:
        self._log = log or (lambda msg: None)
        self.signum: int | None = None
        self.count = 0
        self._loop: Any = None
        self._saved: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def reason(self) -> str:
        """The stop reason a loop records: ``"stopped by signal SIGTERM"``."""
        return f"stopped by signal {self.name}" if self.signum is not None else ""

    def attach(self, loop: Any) -> None:
        """Send the stop to ``loop`` (anything with ``halt(reason)``), at once if a signal
        already arrived while it was being built."""
        self._loop = loop
        if self.signum is not None:
            loop.halt(self.reason)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
            loop = self._loop
            if loop is not None:
                loop.halt(self.reason)
            self._log(f"{self.name}: stopping (disarming outputs, closing the recording)")
        else:
            self._log(f"{signal.Signals(signum).name}: already stopping; outputs are being "
                      "disarmed (SIGKILL abandons that)")

    def __enter__(self) -> StopSignals:
        self._saved = _install(STOP_SIGNALS, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        _restore(self._saved)


class SignalInterrupt(KeyboardInterrupt):
    """SIGTERM or SIGHUP raised as Ctrl-C is, for a command with no loop to ask (``sim``
    writing a file): its ``except KeyboardInterrupt`` cleanup runs for them too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class SignalsInterrupt:
    """Context manager: SIGTERM and SIGHUP raise :class:`SignalInterrupt` in the main
    thread (the default ends the process at once, leaving a half-written output behind);
    a further signal while the first is handled is ignored, so the cleanup finishes."""

    def __init__(self, sigint: bool = False) -> None:
        #: also take Ctrl-C (SIGINT): asks an attached loop to stop as the others do
        #: (the default KeyboardInterrupt raised inside its guarded shutdown was lost and
        #: a sweep went on); with no loop attached it raises KeyboardInterrupt as usual --
        #: also when the process started with SIGINT ignored (a background job of a
        #: script: Python then installs no handler, and `kill -INT` did nothing)
        self.sigint = bool(sigint)
        self._saved: dict[int, Any] = {}
        self._got = False
        #: the signal that arrived (None: none, or Ctrl-C, which this does not handle)
        self.signum: int | None = None
        self._loop: Any = None
        self._held: int | None = None

    def attach(self, loop: Any) -> None:
        """While ``loop`` (anything with ``halt(reason)``) runs, a signal asks it to stop
        (``"interrupted (SIGTERM)"``, as a caught interrupt reads) instead of raising
        wherever its thread is: raised inside its shutdown, whose every step is guarded,
        it was swallowed and the signal lost -- or, before the first guard, it skipped
        disarming the outputs. :meth:`detach` once the loop returned."""
        self._loop = loop

    def detach(self) -> None:
        """The attached loop returned: raise :class:`SignalInterrupt` for a signal that
        came while it ran (it came too late to stop the loop, or the caller stops too)."""
        self._loop = None
        held, self._held = self._held, None
        if held is not None:
            raise _interrupt(held)

    def check(self) -> None:
        """Raise :class:`SignalInterrupt` again for a signal that came but did not end the
        work (raised inside a replay's shutdown, whose every step is guarded, it was
        swallowed there): between two pieces of work, so the next does not start."""
        if self.signum is not None:
            raise _interrupt(self.signum)

    def _handle(self, signum: int, frame: Any) -> None:
        if not self._got:
            self._got = True
            self.signum = int(signum)
            loop = self._loop
            if loop is not None:
                self._held = int(signum)
                loop.halt("interrupted (Ctrl-C)" if signum == signal.SIGINT else
                          f"interrupted ({signal.Signals(signum).name})")
                return
            raise _interrupt(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt      # a second Ctrl-C: the user insists

    def __enter__(self) -> SignalsInterrupt:
        self._saved = _install([s for s in STOP_SIGNALS if s != signal.SIGINT or self.sigint],
                               self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        _restore(self._saved)


class DeferredSignals:
    """Context manager: SIGTERM, SIGHUP and SIGINT arriving inside are held and delivered
    (to the handlers in place before) when it ends -- for a step that an exception
    would leave half-made and unreachable, such as starting a Dask local cluster (an
    interrupt there left a cluster that its atexit hook could not close: a traceback)."""

    def __init__(self) -> None:
        self._saved: dict[int, Any] = {}
        self.pending: int | None = None

    def _hold(self, signum: int, frame: Any) -> None:
        if self.pending is None:
            self.pending = int(signum)

    def __enter__(self) -> DeferredSignals:
        self._saved = _install(STOP_SIGNALS, self._hold)
        return self

    def __exit__(self, *exc: Any) -> None:
        _restore(self._saved)
        if self.pending is not None:
            signal.raise_signal(self.pending)     # to the handler in place again


def interrupt_name(exc: BaseException) -> str:
    """How an interrupt reached a command: "stopped by SIGTERM" or "interrupted"."""
    return (f"stopped by {signal.Signals(exc.signum).name}"
            if isinstance(exc, SignalInterrupt) else "interrupted")


def interrupt_label(exc: BaseException) -> str:
    """The name a stop reason gives an interrupt: "SIGTERM", "SIGHUP" or "Ctrl-C"."""
    return (signal.Signals(exc.signum).name if isinstance(exc, SignalInterrupt)
            else "Ctrl-C")


def _interrupt(signum: int) -> KeyboardInterrupt:
    """The exception a caught stop signal is raised as: Ctrl-C's own for SIGINT."""
    return KeyboardInterrupt() if signum == signal.SIGINT else SignalInterrupt(signum)


def raise_interrupt(stop_reason: str) -> None:
    """Raise again the interrupt a loop turned into its ``stop_reason`` ("interrupted
    (SIGTERM)"), for a caller that must stop too (a sweep's next replay); nothing for
    any other reason."""
    if not stop_reason.startswith("interrupted"):
        return
    for s in STOP_SIGNALS:
        if s != signal.SIGINT and f"({signal.Signals(s).name})" in stop_reason:
            raise SignalInterrupt(s)
    raise KeyboardInterrupt


def interrupt_code(exc: BaseException) -> int:
    """The exit status for an interrupt: 128 + the signal number (130 for Ctrl-C)."""
    return exit_code(exc.signum if isinstance(exc, SignalInterrupt) else signal.SIGINT)


__all__ = ["StopSignals", "STOP_SIGNALS", "exit_code", "SignalInterrupt", "SignalsInterrupt",
           "interrupt_name", "interrupt_code", "interrupt_label", "raise_interrupt",
           "DeferredSignals"]
