"""A device emulator on a pseudo-terminal: the shared plumbing of the Cyton, Pulse Pal and
stim-box emulators.

The emulator holds the master side of ``os.openpty()`` and serves it from a daemon thread;
``port`` is the slave's path, which pyserial (or BrainFlow's C++ driver) opens like a real
USB serial device. The slave is put in raw mode so bytes pass through unchanged (no echo,
no line discipline).
"""
from __future__ import annotations

import fcntl
import os
import threading
import tty
from typing import Any

from engramloop.drivers.thread_priority import raise_thread_priority


class PtyDevice:
    """Base class: subclasses implement ``_run()`` (loop until ``self._stop`` is set).

    Parameters
    ----------
    name : str
        Thread name.
    nonblocking : bool
        Make reads on the master non-blocking (for emulators that poll).
    """

    def __init__(self, name: str, *, nonblocking: bool = False) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        if nonblocking:
            fl = fcntl.fcntl(self._master, fcntl.F_GETFL)
            fcntl.fcntl(self._master, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self.port = os.ttyname(self._slave)
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:  # pragma: no cover - every subclass defines it
        raise TypeError(f"{type(self).__name__} must define _run()")

    def _serve(self) -> None:
        # the device stands in for hardware with its own processor: a loaded host must
        # not make it late (SCHED_FIFO where allowed, as the host driver's heartbeat)
        raise_thread_priority()
        self._run()

    def start(self) -> Any:
        """Start serving the port; returns self."""
        self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and close the pty (a host still attached then sees EIO)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class StimulatorDevice(PtyDevice):
    """A pty device whose state machine answers bytes with a reply and output edges.

    Subclasses set ``on_edge`` (``callable(host_time_s, channel, params)`` or None) and
    define ``host_time(device_us) -> float``; :meth:`_emit` writes the reply and reports
    each edge. Edges are kept in ``edges`` as ``(host_time_s, edge)``.
    """

    def __init__(self, name: str, *, nonblocking: bool = False) -> None:
        super().__init__(name, nonblocking=nonblocking)
        self.edges: list[tuple[float, Any]] = []
        self.callback_errors: list[BaseException] = []

    def host_time(self, device_us: int) -> float:  # pragma: no cover - subclasses define it
        raise TypeError(f"{type(self).__name__} must define host_time()")

    def _emit(self, reply: bytes, edges: Any) -> None:
        if reply:
            try:
                os.write(self._master, reply)
            except OSError:
                pass  # host not reading: a real USB device drops its TX too
        for e in edges:
            t = self.host_time(e.device_us)
            self.edges.append((t, e))
            if self.on_edge is not None:
                try:
                    self.on_edge(t, e.channel, dict(e.params, device_us=e.device_us))
                except Exception as exc:  # noqa: BLE001 - kept and re-raised by check()
                    self.callback_errors.append(exc)

    def check(self) -> None:
        """Re-raise the first exception an ``on_edge`` callback raised, if any."""
        if self.callback_errors:
            raise self.callback_errors[0]


def serve(emu, stop, log_file=None) -> int:
    """An emulator's command-line main loop: start it, print its port (the parent reads it
    from stdout), run until ``stop`` is set (SIGTERM) or Ctrl-C, then close the emulator
    and its log file. Returns the exit status."""
    emu.start()
    print(emu.port, flush=True)
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emu.close()
        if log_file is not None:
            log_file.close()
    return 0
