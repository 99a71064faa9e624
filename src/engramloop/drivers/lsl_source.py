"""An LSL stream as a Source.

Resolves a stream by name, type and/or source_id (with a timeout, and an error that lists
the streams that *were* visible), pulls chunks into a preallocated buffer, maps the
outlet's timestamps onto our host clock with LSL's time correction (re-measured
periodically), flags gaps and clock resets, and survives an outlet that dies and comes
back: liblsl reconnects by itself to a stream with a source_id (``recover=True``); for one
without, we re-resolve with the same query.

Values are converted to volts using the channel units in the stream description
(``desc/channels/channel/unit``, the LSL metadata convention, usually "microvolts"),
or ``source.lsl.units``; a stream that declares no unit is refused unless
``source.lsl.units`` says what its values are (never guessed).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from engramloop.core import sample_format as _fmt
from engramloop.core.chunk import Chunk, SourceError
from engramloop.core.sample_clock import SampleCounter
from engramloop.drivers.sources import unit_scale

log = logging.getLogger(__name__)

#: Seconds of timestamps (without a silence, gap or clock jump) over which the samples
#: that came, plus those counted lost, are compared with the declared rate. An outlet
#: that stalls for less than ``stale_after_s`` (0.5 s) and catches up shifts the count by
#: at most 0.5 s / 20 s = 2.5 % -- below the tolerance.
RATE_CHECK_S = 20.0
#: The relative difference between the declared and the measured rate that stops the
#: run: 5 % (a misdeclared 250 vs 200 Hz or 100 vs 80 Hz; a 256 vs 250 Hz mix-up,
#: 2.4 %, is below it). Device clocks differ from the host's by parts per million.
RATE_TOLERANCE = 0.05

# pylsl channel format codes (lsl_c.h: cft_float32 = 1 ... cft_int64 = 7) to dtypes
_DTYPES = {1: np.float32, 2: np.float64, 4: np.int32, 5: np.int16, 6: np.int8, 7: np.int64}


def _quote(v: str) -> str:
    return "'" + v.replace("'", "") + "'"


def describe_stream(info: Any) -> str:
    """``name (type, N ch @ R Hz, source_id S, host H)`` for error messages and listings."""
    rate = info.nominal_srate()
    rate_s = f"{rate:g} Hz" if rate > 0 else "irregular"
    sid = info.source_id()
    return (f"{info.name()} ({info.type() or 'no type'}, {info.channel_count()} ch @ {rate_s}"
            + (f", source_id {sid}" if sid else "") + f", host {info.hostname()})")


def visible_streams(wait_s: float = 1.0) -> list[Any]:
    """Every LSL stream visible on the network within ``wait_s`` seconds."""
    import pylsl

    return list(pylsl.resolve_streams(wait_time=wait_s))


def channel_labels_units(info: Any) -> tuple[list[str], list[str]]:
    """Channel labels and units from a full StreamInfo's description (empty strings when
    the outlet gave none)."""
    labels, units = [], []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label"))
        units.append(ch.child_value("unit"))
        ch = ch.next_sibling("channel")
    n = info.channel_count()
    if len(labels) != n:
        labels, units = [""] * n, [""] * n
    labels = [lab or f"ch{i + 1}" for i, lab in enumerate(labels)]
    return labels, units


class LslSource:
    """Read a numeric LSL stream.

    Parameters
    ----------
    settings : drivers.sources.LslSettings
        What to resolve and how to read it.
    name : str, optional
        Stream name (overrides ``settings.name``; the ``--stream`` option).
    channels : sequence of str
        Channel labels to keep, in order (default all).
    chunk_samples : int
        Unused for pacing (LSL delivers what arrived); kept for a uniform factory.

    Attributes
    ----------
    stream_name : str
        The LSL name resolved (deliberately not ``name``: the recorder names its raw
        stream from a source's ``name`` attribute, and ours is ``engramloop.raw``).
    stale : bool
        True while no data arrived for ``settings.stale_after_s``.
    link_state : str
        ``"ok"``, ``"stale"`` (no data for ``stale_after_s``) or ``"lost"`` (no data for
        ``lost_after_s``, or liblsl reported the stream lost); the loop records each
        change and the governor inhibits while it is not ``"ok"``.
    silent_s : float
        Seconds without data when last read (0 while data flows).
    clock_offset_s : float
        Last LSL time correction (add to outlet timestamps to get host time).
    reconnects : int
        How many times the stream came back after being lost.
    sample_format : str
        How the recorder may store the values: ``"float32"`` for an outlet sending
        float32 or int8/int16, ``"float64"`` for double, int32 and int64 (known once the
        stream is resolved; :mod:`engramloop.core.sample_format`).
    """

    def __init__(self, settings: Any, *, name: str | None = None,
                 channels: Sequence[str] = (), chunk_samples: int = 10) -> None:
        self.settings = settings
        self.stream_name = name or settings.name
        self.type = settings.type
        self.source_id = settings.source_id
        if not (self.stream_name or self.type or self.source_id):
            raise SourceError("LSL source: set source.lsl.name, type or source_id (or give "
                              "--stream NAME)")
        self._want_channels = tuple(channels)
        self._labels_units: tuple[list, list] = ([], [])
        self.channels: tuple[str, ...] = tuple(channels)
        self.rate_hz = float("nan")
        self.sample_format = _fmt.FLOAT64
        self._inlet: Any = None
        self._info: Any = None
        self.stale = False
        self.lost = False
        self.silent_s = 0.0
        self.clock_offset_s = 0.0
        self.reconnects = 0
        self._index = 0
        self._last_t = float("nan")
        self._last_data_host = float("nan")
        self._next_correction = 0.0
        self._lost_since = float("nan")
        self._pending_gap = False
        self._offsets: list[float] = []
        self._carry: tuple[np.ndarray, np.ndarray, float] | None = None
        self._counter = SampleCounter(0.0)
        self._after_silence = False
        #: samples counted missing so far (against the nominal rate)
        self.samples_lost = 0
        #: (first timestamp, samples since, samples_lost then) for :meth:`_check_rate`
        self._rate_window: tuple[float, int, int] | None = None
        self._rate_last_t = float("nan")

    @property
    def link_state(self) -> str:
        """``"ok"``, ``"stale"`` or ``"lost"`` (see the class docstring)."""
        return "lost" if self.lost else "stale" if self.stale else "ok"

    # -- resolving ------------------------------------------------------------------------
    def predicate(self) -> str:
        """The XPath predicate liblsl resolves with (e.g. ``name='EEG' and type='EEG'``)."""
        parts = []
        for key, val in (("name", self.stream_name), ("type", self.type),
                         ("source_id", self.source_id)):
            if val:
                parts.append(f"{key}={_quote(val)}")
        return " and ".join(parts)

    def _what(self) -> str:
        return f"LSL stream [{self.predicate()}]"

    def _resolve(self, timeout_s: float) -> Any | None:
        import pylsl

        found = pylsl.resolve_bypred(self.predicate(), 1, timeout_s)
        return found[0] if found else None

    def start(self) -> None:
        """Resolve the stream and open an inlet; SourceError lists visible streams."""
        s = self.settings
        info = self._resolve(s.resolve_timeout_s)
        if info is None:
            seen = [describe_stream(i) for i in visible_streams(1.0)]
            listing = "; ".join(seen) if seen else "none"
            raise SourceError(f"no {self._what()} found within {s.resolve_timeout_s:g} s; "
                              f"visible streams: {listing}")
        self._open(info)
        self._last_data_host = time.monotonic()

    def _open(self, info: Any) -> None:
        import pylsl

        fmt = info.channel_format()
        if fmt not in _DTYPES:
            raise SourceError(f"{self._what()}: {describe_stream(info)} carries strings, not "
                              "signal samples")
        inlet = pylsl.StreamInlet(info, max_buflen=self.settings.max_buffer_s,
                                  max_chunklen=0, recover=True)
        try:
            full = inlet.info(timeout=max(self.settings.resolve_timeout_s, 1.0))
            # connect now, so samples are buffered from start() on, not from the first read
            inlet.open_stream(timeout=max(self.settings.resolve_timeout_s, 1.0))
        except Exception as exc:
            inlet.close_stream()
            raise SourceError(f"{self._what()}: could not connect to "
                              f"{describe_stream(info)}: {exc}") from None
        labels, units = channel_labels_units(full)
        self._labels_units = (labels, units)
        if self._want_channels:
            missing = [c for c in self._want_channels if c not in labels]
            if missing:
                inlet.close_stream()
                raise SourceError(f"{self._what()}: no channel(s) {', '.join(missing)}; it "
                                  f"has {', '.join(labels)}")
            idx = [labels.index(c) for c in self._want_channels]
        else:
            idx = list(range(len(labels)))
        scales = []
        for i in idx:
            if self.settings.units != "auto":
                sc = unit_scale(self.settings.units)
            elif not units[i].strip():
                # a stream without units could be volts, microvolts or ADC counts: a
                # factor-of-a-million guess would silently skew every threshold
                inlet.close_stream()
                raise SourceError(f"{self._what()}: channel {labels[i] or i + 1} declares no "
                                  "unit; set [source.lsl] units = \"uV\" (or \"V\", \"mV\", "
                                  "\"nV\") to say what its values are")
            else:
                sc = unit_scale(units[i])
            if sc is None:
                inlet.close_stream()
                raise SourceError(f"{self._what()}: channel {labels[i]} has unit "
                                  f"{units[i]!r}, not a voltage; set source.lsl.units")
            scales.append(sc)
        self._idx = np.array(idx, dtype=np.intp)
        self._scales = np.array(scales, dtype=np.float64)
        self._all_same = idx == list(range(len(labels)))
        self.channels = tuple(labels[i] for i in idx)
        rate = info.nominal_srate()
        self.rate_hz = float(rate) if rate > 0 else 0.0
        if self._counter.rate_hz != self.rate_hz:
            self._counter = SampleCounter(self.rate_hz)
        n_max = self.settings.max_chunk_samples
        self._buf = np.empty((n_max, info.channel_count()), dtype=_DTYPES[fmt])
        self.sample_format = _fmt.for_dtype(_DTYPES[fmt])
        self._inlet = inlet
        self._info = info
        self._next_correction = 0.0

    def stop(self) -> None:
        """Close the inlet (safe to call more than once)."""
        self._carry = None
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            try:
                inlet.close_stream()
            except Exception as exc:  # already gone
                log.debug("%s: close_stream: %s", self._what(), exc)

    def __enter__(self) -> LslSource:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- reading --------------------------------------------------------------------------
    def _correct_clock(self, now: float) -> bool:
        """Refresh the time correction when due; True if it jumped (clock reset)."""
        if now < self._next_correction:
            return False
        self._next_correction = now + self.settings.time_correction_every_s
        try:
            off = float(self._inlet.time_correction(timeout=0.5))
        except Exception as exc:  # timeout while the outlet is away: keep the old value
            log.debug("%s: time_correction: %s", self._what(), exc)
            self._next_correction = now + 0.5
            return False
        jumped = abs(off - self.clock_offset_s) > self.settings.clock_jump_s and \
            not np.isnan(self._last_t)
        if jumped:
            self._offsets.clear()
        # the median of the last few measurements: single estimates scatter by tens of
        # microseconds, which would otherwise show up as timestamp jitter
        self._offsets.append(off)
        del self._offsets[:-5]
        self.clock_offset_s = float(np.median(self._offsets))
        return jumped

    def _shape(self) -> tuple:
        """What the samples handed out mean: channel labels, rate, units (all channels)."""
        labels, units = self._labels_units
        return (tuple(labels), self.rate_hz, tuple(units))

    def _changed(self, before: tuple, after: tuple, info: Any) -> None:
        """SourceError when the stream came back as something else than it was."""
        if after == before:
            return
        self.stop()
        what = []
        if after[0] != before[0]:
            what.append(f"channels {', '.join(after[0]) or '-'} (were "
                        f"{', '.join(before[0])})")
        if after[1] != before[1]:
            what.append(f"{after[1]:g} Hz (was {before[1]:g} Hz)")
        if after[2] != before[2] and after[0] == before[0]:
            what.append(f"units {', '.join(after[2])} (were {', '.join(before[2])})")
        raise SourceError(f"{self._what()}: the outlet came back as {describe_stream(info)}: "
                          f"{'; '.join(what)}; its samples would be taken for the old "
                          "stream's, so the run stops: start engramloop again to use it")

    def _same_outlet(self) -> None:
        """After a silence liblsl may have reconnected by itself (a stream with a
        source_id) -- to an outlet started again with another rate or other channels, and
        ``inlet.info()`` still describes the old one: resolve the source_id and compare."""
        import pylsl

        old = self._info
        sid = old.source_id() if old is not None else ""
        if not sid:
            return
        found = pylsl.resolve_byprop("source_id", sid, 1, 1.0)
        if not found or found[0].uid() == old.uid():
            return
        info = found[0]
        # labels and units live in the full description: ask the new outlet for it
        inlet = pylsl.StreamInlet(info, max_buflen=1, recover=False)
        try:
            labels, units = channel_labels_units(inlet.info(timeout=1.0))
        except Exception as exc:   # it went away again: the next silence checks again
            log.debug("%s: info: %s", self._what(), exc)
            return
        finally:
            inlet.close_stream()
        rate = float(info.nominal_srate())
        self._changed(self._shape(), (tuple(labels), rate if rate > 0 else 0.0, tuple(units)),
                      info)
        self._info = info

    def _recover(self, deadline_host: float) -> bool:
        """Re-resolve a lost stream (no source_id, so liblsl cannot); True when back."""
        before = self._shape()
        self.stop()
        info = self._resolve(min(1.0, max(deadline_host - time.monotonic(), 0.01)))
        if info is None:
            return False
        try:
            self._open(info)
        except SourceError as exc:
            raise SourceError(f"{exc} (after the outlet came back)") from None
        self._changed(before, self._shape(), info)
        self.reconnects += 1
        self._pending_gap = True
        return True

    def read(self, timeout_s: float) -> Chunk | None:
        """Samples that arrived, waiting up to ``timeout_s`` for the first; None on
        timeout; SourceError when nothing came for ``settings.error_after_s``."""
        from pylsl.util import LostError

        if self._inlet is None and np.isnan(self._lost_since):
            raise SourceError(f"{self._what()}: read() before start() or after stop()")
        if self._carry is not None:  # the part after a gap found in the last pull
            samples, t, arrival = self._carry
            self._carry = None
            return self._emit(samples, t, arrival, False, False)
        now = time.monotonic()
        if self._inlet is None:  # lost and not yet back
            if not self._recover(now + timeout_s):
                return self._silent(time.monotonic())
            self._lost_since = float("nan")
        jumped = self._correct_clock(now)
        try:
            _, ts = self._inlet.pull_chunk(timeout=timeout_s, max_samples=len(self._buf),
                                           dest_obj=self._buf, min_samples=1)
        except LostError:
            log.warning("%s: stream lost; trying to find it again", self._what())
            self._lost_since = time.monotonic()
            self.lost = self.stale = True
            self.stop()
            return self._silent(time.monotonic())
        n = len(ts)
        arrival = time.monotonic()
        if n == 0:
            return self._silent(arrival)
        self._last_data_host = arrival
        # after a silence, samples that are late were lost (not a stall catching up)
        self._after_silence = self.stale or self._pending_gap
        if self.stale and not self._pending_gap:
            self._same_outlet()
        self.stale = self.lost = False
        self.silent_s = 0.0
        raw = self._buf[:n]
        x = raw if self._all_same else raw[:, self._idx]
        samples = np.empty((n, len(self._scales)), dtype=np.float64)  # handed out, never reused
        np.multiply(x, self._scales, out=samples)
        t = np.asarray(ts, dtype=np.float64) + self.clock_offset_s
        self._check_rate(t, self._after_silence or jumped)
        return self._emit(samples, t, arrival, self._pending_gap or jumped, jumped)

    def _check_rate(self, t: np.ndarray, restart: bool) -> None:
        """SourceError when the samples do not come at the declared rate (see
        :data:`RATE_CHECK_S`): filters designed for it would be off in frequency."""
        rate = self.rate_hz
        if not rate > 0:
            return
        w = self._rate_window
        # a step in the stamps of more than a second forward (a clock jump or an outage)
        # or back by more than clock_jump_s starts the window again after it
        prev = np.concatenate(([self._rate_last_t if w is not None else t[0]], t))
        d = np.diff(prev)
        steps = np.flatnonzero((d > 1.0) | (d < -self.settings.clock_jump_s))
        self._rate_last_t = float(t[-1])
        if restart or w is None or steps.size:
            # samples counted lost after this chunk count (those before the window's
            # first sample are counted while this chunk is emitted: -1, set next call)
            first = int(steps[-1]) if steps.size else 0
            self._rate_window = w = (float(t[first]), 0, -1)
            t = t[first:]
        t0, n, lost0 = w
        if lost0 < 0 and n:
            lost0 = self.samples_lost
        n += len(t)
        self._rate_window = (t0, n, lost0)
        span = float(t[-1]) - t0
        if span < RATE_CHECK_S:
            return
        got = (n - 1 + self.samples_lost - max(lost0, 0)) / span
        self._rate_window = None
        if abs(got / rate - 1.0) > RATE_TOLERANCE:
            self.stop()
            raise SourceError(f"{self._what()}: declares {rate:g} Hz but its samples come "
                              f"at {got:.1f} Hz ({span:.0f} s of timestamps); the detectors "
                              "would be off in frequency: fix the outlet's nominal rate")

    def _emit(self, samples: np.ndarray, t: np.ndarray, arrival: float, gap: bool,
              jumped: bool) -> Chunk:
        """Chunk up to the first discontinuity inside ``t``; the rest waits for the next
        read, so ``gap_before`` always marks the exact sample after a gap.

        A discontinuity is a step back in time by more than ``clock_jump_s`` (a clock
        reset) or *missing samples*,
        counted against the nominal rate over a dejittered clock
        (:class:`core.sample_clock.SampleCounter`): samples that outlets stamp when they
        push them (pylsl's SendData, bursts every 10 ms) jitter without being lost."""
        n = len(t)
        counter = self._counter
        lost = 0
        if self.rate_hz > 0:
            # stamps stepping back by more than clock_jump_s: a clock reset (a gap); less
            # is how liblsl back-dates chunks an outlet pushes in one go to catch up
            reset = -self.settings.clock_jump_s
            back = (not np.isnan(self._last_t) and t[0] - self._last_t < reset) or jumped
            if n > 1:
                d = np.diff(t)
                stepped = np.flatnonzero(d < reset)
                if stepped.size:  # the stamps step back inside the pull: split there
                    j = int(stepped[0]) + 1
                    self._carry = (samples[j:], t[j:], arrival)
                    samples, t, n = samples[:j], t[:j], j
            if back:
                gap = True
                counter.reset()
            elif n > 1 and counter.index > 0 and not counter.suspect:
                # first sample from which every later one stays late: samples are missing
                # before it (a burst of late-stamped samples catches up within the pull)
                k = counter.index + np.arange(n)
                late = t - (counter.offset_s + k / self.rate_hz)
                tail = np.minimum.accumulate(late[::-1])[::-1]
                over = np.flatnonzero(tail > counter.tolerance_s)
                if over.size and over[0] > 0:
                    j = int(over[0])
                    self._carry = (samples[j:], t[j:], arrival)
                    samples, t, n = samples[:j], t[:j], j
            lost = counter.observe(float(t[0]), float(t[-1]), n, self._after_silence)
            self._after_silence = False
            if lost:
                gap = True
                self.samples_lost += lost
        self._pending_gap = False
        self._last_t = float(t[-1])
        first = self._index + lost
        self._index = first + n
        return Chunk(samples, t, self.rate_hz, self.channels, arrival_s=arrival,
                     first_index=first, gap_before=gap,
                     meta={"source": self._what(), "clock_reset": jumped,
                           "clock_offset_s": self.clock_offset_s})

    def _silent(self, now: float) -> None:
        silent = now - self._last_data_host
        if silent >= self.settings.error_after_s:
            self.stop()
            self._lost_since = float("nan")
            raise SourceError(f"{self._what()}: no data for {silent:.1f} s; is the outlet "
                              "still running?")
        self.silent_s = silent
        if silent >= self.settings.stale_after_s:
            self.stale = True
        if silent >= self.settings.lost_after_s:
            self.lost = True
        return None


__all__ = ["LslSource", "describe_stream", "visible_streams", "channel_labels_units"]
