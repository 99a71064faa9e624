"""Missing samples, counted: a gap is samples that never arrived, not a late timestamp.

Many sources stamp a sample when it is *pushed*, not when it was *measured*: pylsl's own
``examples/SendData.py`` pushes every sample due in the last 10 ms in one burst, each
stamped at the push, so consecutive stamps step by 0, 0, 10 ms, ... A rule on raw stamp
steps ("more than 1.5 sample periods apart") calls that a gap thousands of times a minute.

:class:`SampleCounter` instead counts samples against the nominal rate over a dejittered
clock. Sample ``k`` is due at ``a + k / rate``; its *lateness* is ``t_k - (a + k / rate)``.
The offset ``a`` is the median of ``t_k - k / rate`` over the last ``window_s`` seconds
(a sliding window, so a device clock that runs slightly fast or slow against the nominal
rate is followed; a median, because stamps scatter both ways: pushed late, or back-dated
early by liblsl when an outlet catches up with several chunks at once).

Samples that were lost shift every later sample by the time they would have taken, for
good; jitter does not last. So samples are missing when even a chunk's least-late sample
(of its first and newest) is later than the tolerance *and* samples stamped ``confirm_s``
(0.25 s) later still are -- until then the counter is *suspect* and the governor holds
pulses; an outlet that stalled and catches up is late for a moment only. The count is
``round(lateness * rate)``, added to the sample index so the clock stays anchored. A
source seen jitter-free (files, the simulator) or one that just came back from silence
needs no confirmation.

The tolerance is ``tolerance_samples / rate`` plus ``jitter_factor`` times the largest
absolute lateness of timely chunks in the last ``jitter_window_s`` seconds: 1.5 samples
on a source with exact stamps, a few tens of milliseconds on a bursty LSL outlet. A loss
shorter than the source's own jitter cannot be told from jitter by timestamps; a source
with a sample counter (BrainFlow's package number) reports those itself
(``Chunk.gap_before``). By timestamps alone, an outlet whose latency steps up for good
(it falls behind and stays behind) looks exactly like a loss of that many samples, and
is reported as one: pulses are blocked for one refractory period, the safe side.

Pure bookkeeping on the timestamps it is given; no clock of its own.
"""
from __future__ import annotations

import math
from collections import deque

__all__ = ["SampleCounter"]


class SampleCounter:
    """Counts samples against a nominal rate to tell missing samples from jitter.

    Parameters
    ----------
    rate_hz : float
        Nominal sampling rate, Hz. 0 or NaN (an irregular stream) disables counting:
        :meth:`observe` then never reports missing samples.
    tolerance_samples : float
        Missing samples below this many sample periods (on top of the jitter allowance)
        are not a gap.
    window_s : float
        Seconds of history the offset is the median over.
    jitter_window_s : float
        Seconds of history the jitter allowance is the maximum over.
    jitter_factor : float
        The allowance is this many times the largest recent lateness.
    confirm_s : float
        A suspected loss is confirmed when samples stamped this long (or the tolerance,
        if longer) after the first late chunk are still late; an outlet that fell
        behind and catches up over a few pushes is not a loss. Sources with exact stamps
        (no jitter in the last 20 or more timely chunks) are confirmed at once.
    """

    def __init__(self, rate_hz: float, tolerance_samples: float = 1.5, *,
                 window_s: float = 2.0, jitter_window_s: float = 10.0,
                 jitter_factor: float = 2.0, confirm_s: float = 0.25) -> None:
        self.rate_hz = float(rate_hz) if rate_hz == rate_hz and rate_hz > 0 else 0.0
        self.tolerance_samples = float(tolerance_samples)
        self.window_s = float(window_s)
        self.jitter_window_s = float(jitter_window_s)
        self.jitter_factor = float(jitter_factor)
        self.confirm_s = float(confirm_s)
        self.reset()

    def reset(self) -> None:
        """Forget the history (after a clock reset): the next chunk anchors again."""
        #: index of the next sample expected
        self.index = 0
        #: (time, t - k/rate) of each timely chunk's newest sample, for the offset
        self._vals: deque = deque()
        self._offset = math.nan
        self._next_offset_s = -math.inf
        #: (time, |lateness|) candidates for the sliding maximum, decreasing values
        self._highs: deque = deque()
        #: missing samples counted so far
        self.missing_total = 0
        #: newest stamp of the first chunk later than the tolerance (NaN: none)
        self._suspect_since = math.nan
        #: chunks seen on time (the jitter allowance is known from them)
        self._n_timely = 0

    @property
    def tolerance_s(self) -> float:
        """Lateness beyond which samples count as missing now, seconds."""
        if not self.rate_hz:
            return math.inf
        jitter = self._highs[0][1] if self._highs else 0.0
        return self.tolerance_samples / self.rate_hz + self.jitter_factor * jitter

    @property
    def offset_s(self) -> float:
        """The clock's offset ``a`` (sample ``k`` is due at ``a + k / rate``), seconds;
        NaN before the first chunk."""
        return self._offset

    def lateness(self, t_s: float, k: int) -> float:
        """How late sample ``k`` stamped ``t_s`` is against the clock, seconds."""
        if not self.rate_hz or self._offset != self._offset:
            return 0.0
        return t_s - (self._offset + k / self.rate_hz)

    def observe(self, first_s: float, last_s: float, n_samples: int,
                after_silence: bool = False) -> int:
        """Account for the next ``n_samples`` samples stamped ``first_s`` .. ``last_s``
        (seconds); returns how many samples are missing before them (0: none).

        Samples later than the tolerance make the counter *suspect* a loss; it is
        confirmed (and returned) once samples stamped ``confirm_s`` later are still that
        late, and dropped when they are not: a stalled outlet that catches up is late
        for a moment, a loss is late for good. While suspect, :attr:`suspect` is True
        (the governor holds pulses: the data is late either way).

        ``after_silence``: the source went quiet before these samples (stale, lost,
        reconnected); late samples then mean a loss at once."""
        if not self.rate_hz or n_samples <= 0:
            return 0
        rate = self.rate_hz
        k0, k1 = self.index, self.index + n_samples - 1
        missing = 0
        if self._offset == self._offset:
            late = min(self.lateness(first_s, k0), self.lateness(last_s, k1))
            tol = self.tolerance_s
            if late > tol:
                # a source with exact stamps (no jitter seen) does not stall and catch up:
                # its loss is known at once
                exact = after_silence or (
                    self._n_timely >= 20 and self._highs[0][1] < 0.1 / rate)
                if self._suspect_since != self._suspect_since and not exact:
                    self._suspect_since = last_s      # a new suspicion
                elif exact or last_s >= self._suspect_since + max(tol, self.confirm_s):
                    missing = int(round(late * rate))
                    self.missing_total += missing
                    k0 += missing
                    k1 += missing
                    self._suspect_since = math.nan
            else:
                self._suspect_since = math.nan
                self._n_timely += 1
                self._push_high(last_s, abs(late))
        self.index = k1 + 1
        if self._suspect_since != self._suspect_since:   # not suspect: part of the clock
            self._push_value(last_s, last_s - k1 / rate)
        return missing

    @property
    def suspect(self) -> bool:
        """Samples arrived later than the tolerance and it is not yet known whether
        samples were lost or the source stalled and is catching up."""
        return self._suspect_since == self._suspect_since

    def _push_value(self, now: float, value: float) -> None:
        """Keep ``t - k/rate`` of a timely chunk; the offset is their median over the last
        ``window_s`` (robust to stamps early or late by jitter; recomputed every 0.1 s of
        stamps, so a chunk costs an append)."""
        q = self._vals
        q.append((now, value))
        while q[0][0] < now - self.window_s:
            q.popleft()
        if now >= self._next_offset_s or self._offset != self._offset:
            self._next_offset_s = now + 0.1
            self._offset = _median([v for _, v in q])

    def _push_high(self, now: float, value: float) -> None:
        q = self._highs
        while q and q[-1][1] <= value:
            q.pop()
        q.append((now, value))
        while q[0][0] < now - self.jitter_window_s:
            q.popleft()


def _median(values: list[float]) -> float:
    """The median of a short list, NaN if it holds one: the value ``np.median`` gives
    (the mean of the middle two, (a + b) / 2, for an even count), without its ~30 us of
    array set-up -- this runs for every chunk a replay acts on."""
    if any(v != v for v in values):
        return math.nan
    v = sorted(values)
    h = len(v) // 2
    return v[h] if len(v) % 2 else (v[h - 1] + v[h]) / 2
