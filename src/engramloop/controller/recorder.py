"""The session recorder: everything a run sees and does, in one XDF file.

The loop hands chunks and markers to :class:`Recorder` without blocking; a background
writer thread turns them into XDF chunks (see :mod:`engramloop.recording.xdf`) and writes
them every ``flush_interval_s``. Each flush is one ``os.write`` of complete XDF chunks on an
unbuffered descriptor, so a process killed with SIGKILL leaves a file that pyxdf loads with
everything up to the last flush. A write error (full disk, removed drive) is kept and
raised as :class:`RecordingError` by :meth:`Recorder.check` and by the next write, so the
loop stops stimulating and says why.

Streams in the file
-------------------
- one numeric stream (volts) per signal source, added with
  :meth:`Recorder.add_signal_stream` (or automatically from the first chunk): float32
  when the source declares that its resolution allows it (``sample_format``, see
  :mod:`engramloop.core.sample_format`: a 24-bit ADC, EDF/BDF, a float32 LSL stream, the
  simulator), float64 otherwise. A regular stream stores a sample's timestamp only where
  an XDF reader's deduction (previous stamp + 1 / nominal rate) would be more than
  ``timestamp_tolerance`` sample periods off, at the first sample of each Samples chunk,
  and at least every ``stamp_every_s`` (see :func:`engramloop.recording.xdf.stamp_mask`):
  gaps, jitter and clock drift stay in the file, and regular samples cost no 8-byte stamp
  each;
- marker streams ``engramloop.events``, ``engramloop.pulses``, ``engramloop.forecasts``,
  ``engramloop.governor``, ``engramloop.truth``, ``engramloop.memory`` (the simulator's
  engram model over time) and ``engramloop.log``: one channel of strings, each sample one
  JSON object, stamped with its host-clock time;
- the effective config (TOML text) in the file header, under ``<engramloop><config>``.

All timestamps are already on the host clock, so every stream's clock offset is 0; the
offsets are still written (every 5 s and in the footers) so XDF readers that synchronise
clocks find what they expect.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engramloop.core import sample_format as _fmt
from engramloop.core.jsonable import to_jsonable
from engramloop.recording import xdf
from engramloop.recording.schema import ANNOTATIONS, MARKER_STREAMS, RAW, SCHEMA_VERSION

_CLOCK_OFFSET_EVERY_S = 5.0
_BOUNDARY_EVERY_S = 10.0  # LabRecorder also writes a boundary chunk every 10 s
_MAX_PENDING_BYTES = 8 << 20  # flush early rather than hold more than 8 MiB in memory
#: back-pressure: storage may complete no write for flush_interval_s + this long while data
#: waits (the issue's bound, ~2 s of data) before the run stops stimulating
DEFAULT_MAX_LAG_S = 2.0
#: high-water mark of queued, unwritten bytes (about 2 min of 64 channels at 1 kHz: well
#: above anything 2 s of a real source produces, so it bounds memory, not normal runs)
DEFAULT_MAX_QUEUED_BYTES = 128 << 20
#: a deduced timestamp may be this far from the source's, in sample periods (1 %: 40 us
#: at 250 Hz, 5 us at 2 kHz) -- far below the sample grid every analysis works on and
#: the jitter of any host-stamped device, yet a device clock 50 ppm off the nominal rate
#: still gets a stored stamp about once a second at 250 Hz (and a jittered one on most
#: samples: those keep their own stamps)
DEFAULT_TIMESTAMP_TOLERANCE = 0.01
#: a regular stream stores at least one real timestamp per this many seconds of samples
DEFAULT_STAMP_EVERY_S = 1.0
#: XDF channel_format and numpy dtype per declared sample format
_XDF_FORMAT = {_fmt.FLOAT32: ("float32", "<f4"), _fmt.FLOAT64: ("double64", "<f8")}


class RecordingError(RuntimeError):
    """Writing the recording failed (disk full, I/O error...): stop stimulating."""


@dataclasses.dataclass
class _Stream:
    sid: int
    name: str
    channels: tuple[str, ...]
    rate_hz: float
    units: str
    is_marker: bool
    header: bytes
    dtype: str = "<f8"
    header_written: bool = False
    count: int = 0
    flushed: int = 0
    first_t: float = math.nan
    last_t: float = math.nan
    offsets: list = dataclasses.field(default_factory=list)


class Recorder:
    """Write one session to an XDF file from a background thread.

    Parameters
    ----------
    path : str or Path
        Output ``.xdf`` file (created or overwritten).
    config_text : str
        The effective config as TOML text, stored in the file header.
    flush_interval_s : float
        Longest time (seconds) data may wait in memory before it is written.
    fsync : bool
        Also ``fsync`` after each flush (survives power loss, not only process death).
    max_lag_s : float
        Back-pressure bound: when storage has completed no write for ``flush_interval_s +
        max_lag_s`` seconds while data waits (a full network share, a FIFO nobody reads, a
        disk slower than the data), :meth:`check` raises :class:`RecordingError` and the
        loop stops stimulating: nothing is stimulated that cannot be recorded.
    max_queued_bytes : int
        High-water mark of data queued but not yet written; past it, :meth:`check` raises
        the same way (bounds memory whatever the cause).
    timestamp_tolerance : float
        A regular stream's sample is written without its timestamp only when a reader's
        deduction (previous timestamp + 1 / nominal rate) is within this many sample
        periods of it; 0 keeps every timestamp that is not reproduced exactly.
    stamp_every_s : float
        At least one stored timestamp per this many seconds of samples (> 0).
    """

    def __init__(self, path: str | Path, config_text: str, *, flush_interval_s: float = 1.0,
                 fsync: bool = False, max_lag_s: float = DEFAULT_MAX_LAG_S,
                 max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
                 timestamp_tolerance: float = DEFAULT_TIMESTAMP_TOLERANCE,
                 stamp_every_s: float = DEFAULT_STAMP_EVERY_S) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"Recorder: flush_interval_s must be > 0, got {flush_interval_s}")
        if not 0 <= timestamp_tolerance < 0.5 or not stamp_every_s > 0:
            raise ValueError("Recorder: timestamp_tolerance must be in [0, 0.5) sample "
                             f"periods and stamp_every_s > 0, got {timestamp_tolerance} "
                             f"and {stamp_every_s}")
        self.timestamp_tolerance = float(timestamp_tolerance)
        self.stamp_every_s = float(stamp_every_s)
        self.path = Path(path)
        self.config_text = config_text
        self.flush_interval_s = float(flush_interval_s)
        self.fsync = fsync
        self._streams: dict[str, _Stream] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._discard = False    # discard(): the writer stops and writes nothing more
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._good_size = 0
        if not max_lag_s > 0 or not max_queued_bytes > 0:
            raise ValueError("Recorder: max_lag_s and max_queued_bytes must be > 0")
        self.max_lag_s = float(max_lag_s)
        self.max_queued_bytes = int(max_queued_bytes)
        # back-pressure accounting without a shared lock: bytes queued (only the caller's
        # thread adds), bytes written to the file (only the writer adds), and when the
        # writer last completed a write (or started, before the first)
        self._bytes_in = 0
        self._bytes_out = 0
        self._last_write_done = math.nan
        self._blocked: str = ""
        for kind in MARKER_STREAMS:
            self._add(f"engramloop.{kind}", ("value",), 0.0, "", marker=True)

    # -- set-up -------------------------------------------------------------------------
    def _add(self, name: str, channels: Sequence[str], rate_hz: float, units: str, *,
             marker: bool, stream_type: str = "Markers",
             sample_format: str = _fmt.FLOAT64) -> _Stream:
        if name in self._streams:
            raise ValueError(f"Recorder: stream {name!r} already added")
        sid = len(self._streams) + 1
        channel_format, dtype = _XDF_FORMAT[sample_format]
        header = xdf.stream_header(
            sid, name=name, stream_type=stream_type, channels=list(channels), rate_hz=rate_hz,
            channel_format="string" if marker else channel_format, units=units,
            source_id=f"engramloop:{name}", created_at=time.monotonic())
        st = _Stream(sid, name, tuple(channels), float(rate_hz), units, marker, header,
                     dtype=dtype)
        with self._lock:
            self._streams[name] = st
        if self._thread is not None:
            self._queue.put(("header", st))
        return st

    def add_signal_stream(self, info: Any = None, *, name: str | None = None,
                          channels: Sequence[str] | None = None, rate_hz: float | None = None,
                          units: str | None = None, stream_type: str = "EEG",
                          sample_format: str | None = None) -> str:
        """Declare a numeric signal stream; returns its name.

        ``info`` may be anything with ``channels``, ``rate_hz`` and optionally ``name``,
        ``units`` and ``sample_format`` attributes (a Chunk, a Source); keywords override
        it. The default name is ``"engramloop.raw"``; the default format float64 (only a
        source that declares ``sample_format = "float32"`` is stored in float32). May be
        called before or after :meth:`start`.
        """
        def pick(key: str, given: Any, default: Any) -> Any:
            if given is not None:
                return given
            return getattr(info, key, default) if info is not None else default

        name = pick("name", name, RAW)
        channels = pick("channels", channels, None)
        rate_hz = pick("rate_hz", rate_hz, None)
        units = pick("units", units, "V")
        fmt = _fmt.check(str(pick("sample_format", sample_format, _fmt.FLOAT64)),
                         "Recorder.add_signal_stream: sample_format")
        if not channels or rate_hz is None:
            raise ValueError("Recorder.add_signal_stream: channels and rate_hz are required")
        self._add(str(name), tuple(channels), float(rate_hz), str(units), marker=False,
                  stream_type=stream_type, sample_format=fmt)
        return str(name)

    def start(self) -> None:
        """Open the file, write its header and start the writer thread."""
        if self._thread is not None:
            return
        try:
            # O_NONBLOCK for the open only: a FIFO nobody reads fails at once (ENXIO)
            # instead of hanging the loop here; writes then block as on any file
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                               | getattr(os, "O_NONBLOCK", 0), 0o644)
            os.set_blocking(self._fd, True)
        except OSError as exc:
            import errno

            if exc.errno == errno.ENXIO:
                raise RecordingError(f"cannot open recording {self.path}: it is a FIFO nobody "
                                     "reads; start its reader first") from None
            raise RecordingError(f"cannot open recording {self.path}: {exc.strerror}; "
                                 "check the folder exists and is writable") from None
        self._last_write_done = time.monotonic()
        extra = (f"<engramloop><schema_version>{SCHEMA_VERSION}</schema_version>"
                 f"<timestamp_tolerance_samples>{self.timestamp_tolerance!r}"
                 "</timestamp_tolerance_samples>"
                 f"<stamp_every_s>{self.stamp_every_s!r}</stamp_every_s>"
                 "<config>" + xdf.escape(self.config_text) + "</config>"
                 + "<clock>host monotonic (pylsl.local_clock)</clock></engramloop>")
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._head = xdf.file_header(extra, datetime_iso=now)
        self._thread = threading.Thread(target=self._run, name="engramloop-recorder",
                                        daemon=True)
        self._thread.start()

    # -- the loop's side: never blocks ---------------------------------------------------
    def write_chunk(self, chunk: Any, stream: str | None = None) -> None:
        """Queue a Chunk for writing (returns at once).

        The chunk goes to ``stream`` if given, else to ``chunk.meta["stream"]``, else to the
        only signal stream (declared from this chunk if none exists yet).
        """
        self.check()
        if self._thread is None or self._closed:
            raise RecordingError(f"Recorder.write_chunk: {self.path} is not open (call start() "
                                 "first; nothing can be written after close())")
        name = stream or (chunk.meta.get("stream") if getattr(chunk, "meta", None) else None)
        if name is None:
            signals = [s for s in self._streams.values() if not s.is_marker]
            if not signals:
                self.add_signal_stream(chunk, name=RAW)
                signals = [self._streams[RAW]]
            elif len(signals) > 1:
                matches = [s for s in signals if s.channels == tuple(chunk.channels)]
                if len(matches) != 1:
                    raise ValueError("Recorder.write_chunk: several signal streams; pass "
                                     "stream=NAME")
                signals = matches
            st = signals[0]
        else:
            st = self._streams.get(name)
            if st is None:
                self.add_signal_stream(chunk, name=name)
                st = self._streams[name]
        if chunk.samples.shape[1] != len(st.channels):
            raise ValueError(f"Recorder.write_chunk: chunk has {chunk.samples.shape[1]} "
                             f"channels, stream {st.name} has {len(st.channels)}")
        if chunk.samples.shape[0]:
            self._bytes_in += chunk.samples.nbytes + chunk.timestamps.nbytes
            self._queue.put(("signal", st, chunk.samples, chunk.timestamps))
        notes = chunk.meta.get("annotations") if getattr(chunk, "meta", None) else None
        if notes:
            # annotations the source carries (EDF+ scoring, ...): marker stream
            # engramloop.annotations, declared when the first one arrives
            ann = self._streams.get(ANNOTATIONS) or self._add(
                ANNOTATIONS, ("value",), 0.0, "", marker=True)
            for t_s, obj in notes:
                text = json.dumps(to_jsonable(obj), separators=(",", ":"), allow_nan=False)
                self._queue.put(("marker", ann, text, float(t_s)))

    def write_marker(self, stream: str, t_s: float, obj: Any) -> None:
        """Queue one JSON object for marker stream ``engramloop.<stream>`` at host time
        ``t_s`` seconds. ``obj`` is a dict, a dataclass or anything with ``to_dict()``."""
        self.check()
        if self._thread is None or self._closed:
            raise RecordingError(f"Recorder.write_marker: {self.path} is not open (call start() "
                                 "first; nothing can be written after close())")
        st = self._streams.get(f"engramloop.{stream}")
        if st is None or not st.is_marker:
            raise ValueError(f"Recorder.write_marker: unknown stream {stream!r}; use one of "
                             + ", ".join(MARKER_STREAMS))
        text = json.dumps(to_jsonable(obj), separators=(",", ":"), allow_nan=False)
        self._bytes_in += len(text) + 16
        self._queue.put(("marker", st, text, float(t_s)))

    def check(self) -> None:
        """Raise :class:`RecordingError` if the writer thread failed, or if storage stopped
        keeping up (back-pressure: see ``max_lag_s`` and ``max_queued_bytes``). Cheap
        enough for every chunk."""
        if self._error is not None:
            raise RecordingError(f"recording to {self.path} failed: {self._error}; "
                                 "stimulation must stop") from self._error
        if self._blocked:
            raise RecordingError(self._blocked)
        queued = self._bytes_in - self._bytes_out
        if not queued or self._thread is None:
            return
        lag = time.monotonic() - self._last_write_done - self.flush_interval_s
        if lag > self.max_lag_s or queued > self.max_queued_bytes:
            self._blocked = (
                f"recording to {self.path} is blocked: storage completed no write for "
                f"{lag + self.flush_interval_s:.1f} s and {queued / 1e6:.1f} MB wait unwritten"
                f" (limits {self.flush_interval_s + self.max_lag_s:g} s, "
                f"{self.max_queued_bytes / 1e6:g} MB); a full disk or network share, or a "
                "FIFO nobody reads? Stimulation stopped")
            raise RecordingError(self._blocked)

    @property
    def queued_bytes(self) -> int:
        """Bytes handed to the recorder and not yet written to the file."""
        return self._bytes_in - self._bytes_out

    def flushed_samples(self, stream: str) -> int:
        """Samples of ``stream`` (full name) already written to the file."""
        return self._streams[stream].flushed

    @property
    def failed(self) -> bool:
        return self._error is not None

    def close(self) -> None:
        """Write everything still queued plus the stream footers, close the file, and raise
        :class:`RecordingError` if any write failed."""
        if self._closed:
            self.check()
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(("close",))
            # wait for the last write, but never forever: storage that completes no write
            # for the back-pressure bound will not finish this one either (the writer is a
            # daemon thread stuck in write(); the process can still exit)
            while self._thread.is_alive():
                self._thread.join(0.05)
                stuck = time.monotonic() - self._last_write_done
                if self._thread.is_alive() and (
                        self._blocked or stuck > self.flush_interval_s + self.max_lag_s):
                    why = self._blocked or (f"recording to {self.path} is blocked: storage "
                                            f"completed no write for {stuck:.1f} s")
                    raise RecordingError(
                        f"{why}; the recording could not be finished: "
                        f"{self.queued_bytes / 1e6:.1f} MB were never written")
        self.check()

    def discard(self, timeout_s: float = 10.0) -> None:
        """Stop at once, dropping what is still queued, for a caller that removes the file
        next (an interrupted ``sim``): :meth:`close` would first write up to
        ``max_queued_bytes`` that nobody will read -- on a loaded machine for longer than
        a user waits after Ctrl-C. The file is left incomplete; never call this for a
        recording that is kept."""
        self._discard = True
        if self._thread is not None and not self._closed:
            self._closed = True
            self._queue.put(("close",))
            self._thread.join(timeout_s)    # a daemon thread: a stuck write cannot hold us

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the writer thread ---------------------------------------------------------------
    def _snapshot(self) -> list[_Stream]:
        with self._lock:
            return list(self._streams.values())

    def _run(self) -> None:
        sig: dict[int, list] = {}
        mk: dict[int, list] = {}
        out = bytearray(self._head)
        pending = len(out)
        pending_head = pending   # header bytes count in `pending`, not in _bytes_in
        next_flush = time.monotonic() + self.flush_interval_s
        next_offset = 0.0
        next_boundary = time.monotonic() + _BOUNDARY_EVERY_S
        closing = False
        try:
            with self._lock:
                known = list(self._streams.values())
            for st in known:
                if not st.header_written:
                    out += st.header
                    st.header_written = True
            while not closing:
                if self._discard:
                    return
                timeout = max(0.0, next_flush - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if item is not None:
                    kind = item[0]
                    if kind == "signal":
                        _, st, samples, stamps = item
                        sig.setdefault(st.sid, [st, [], []])
                        sig[st.sid][1].append(samples)
                        sig[st.sid][2].append(stamps)
                        pending += samples.nbytes + stamps.nbytes
                    elif kind == "marker":
                        _, st, text, t = item
                        mk.setdefault(st.sid, [st, [], []])
                        mk[st.sid][1].append(text)
                        mk[st.sid][2].append(t)
                        pending += len(text) + 16
                    elif kind == "header":
                        st = item[1]
                        if not st.header_written:
                            out += st.header
                            st.header_written = True
                    elif kind == "close":
                        closing = True
                now = time.monotonic()
                if not (closing or now >= next_flush or pending >= _MAX_PENDING_BYTES):
                    continue
                # build one contiguous block of complete chunks
                pending_counts = []
                taken = pending
                for st in [e[0] for e in (*sig.values(), *mk.values())]:
                    if not st.header_written:
                        out += st.header
                        st.header_written = True
                for st, vals, stamps in sig.values():
                    v = np.concatenate(vals) if len(vals) > 1 else vals[0]
                    t = np.concatenate(stamps) if len(stamps) > 1 else stamps[0]
                    keep = xdf.stamp_mask(
                        t, st.rate_hz, tolerance_s=(self.timestamp_tolerance / st.rate_hz
                                                    if st.rate_hz > 0 else 0.0),
                        max_run=max(1, int(self.stamp_every_s * st.rate_hz)))
                    out += xdf.numeric_samples(st.sid, v, t, dtype=st.dtype, keep=keep)
                    pending_counts.append((st, len(t), float(t[0]), float(t[-1])))
                for st, texts, stamps in mk.values():
                    out += xdf.string_samples(st.sid, texts, stamps)
                    pending_counts.append((st, len(texts), stamps[0], stamps[-1]))
                sig.clear()
                mk.clear()
                if now >= next_offset or closing:
                    for st in self._snapshot():
                        if st.header_written:
                            out += xdf.clock_offset(st.sid, now, 0.0)
                            st.offsets.append((now, 0.0))
                    next_offset = now + _CLOCK_OFFSET_EVERY_S
                if now >= next_boundary:
                    out += xdf.boundary()
                    next_boundary = now + _BOUNDARY_EVERY_S
                if closing:
                    for st, n, t0, t1 in pending_counts:
                        self._account(st, n, t0, t1)
                    pending_counts = []
                    out += xdf.boundary()
                    for st in self._snapshot():
                        if st.header_written:
                            out += xdf.stream_footer(
                                st.sid, first_timestamp=0.0 if math.isnan(st.first_t)
                                else st.first_t, last_timestamp=0.0 if math.isnan(st.last_t)
                                else st.last_t, sample_count=st.count, offsets=st.offsets)
                if self._discard:
                    return
                self._write(out)
                for st, n, t0, t1 in pending_counts:
                    self._account(st, n, t0, t1)
                for st in self._snapshot():
                    st.flushed = st.count
                self._bytes_out += taken - pending_head
                pending_head = 0
                self._last_write_done = time.monotonic()
                out = bytearray()
                pending = 0
                next_flush = time.monotonic() + self.flush_interval_s
        except BaseException as exc:  # surfaced through check(); never swallowed
            self._error = exc
        finally:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError as exc:
                    if self._error is None:
                        self._error = exc
                self._fd = None

    @staticmethod
    def _account(st: _Stream, n: int, t0: float, t1: float) -> None:
        if st.count == 0:
            st.first_t = t0
        st.count += n
        st.last_t = t1

    def _write(self, data: bytes | bytearray) -> None:
        if not data:
            return
        view = memoryview(data)
        try:
            while view:
                # one write per flush; loop only for the rare short write
                n = os.write(self._fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            # cut a half-written tail so the file stays loadable up to the last flush
            try:
                os.ftruncate(self._fd, self._good_size)
            except OSError:
                pass
            raise OSError(exc.errno, f"{exc.strerror} (errno {exc.errno})") from None
        self._good_size += len(data)


__all__ = ["Recorder", "RecordingError", "MARKER_STREAMS"]
