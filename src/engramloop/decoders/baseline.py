"""Robust running baseline and the small plumbing every detector shares.

``RobustBaseline`` tracks the median and a MAD-based standard deviation of a detection
feature (an envelope, a filtered signal) per channel, from a ring of decimated samples
that *excludes* samples above an exclusion level, so events do not inflate their own
threshold (the baseline is frozen while a channel is in an event). Everything is indexed by
sample count since the stage started, never by chunk, so a signal processed in chunks of
1, 7, 64 samples or in one piece gives identical statistics at identical samples.

``ChannelPicker`` finds the configured channels in a chunk by name and copies them into a
preallocated C-contiguous work buffer (the C filter bank needs contiguous input).
"""
from __future__ import annotations

import math

import numpy as np

from engramloop.decoders._filters import (
    baseline_push,
    baseline_runs,
    running_median_mad,
    threshold_runs,
)
from engramloop.decoders._filters import first_at_or_after as _first_at_or_after

__all__ = ["RobustBaseline", "ChannelPicker", "TimeRing", "MAD_TO_SD", "run_lengths",
           "first_at_or_after"]

#: Scale from the median absolute deviation to the standard deviation of a normal
#: distribution (1 / Phi^-1(3/4)); Rousseeuw & Croux 1993.
MAD_TO_SD = 1.482602218505602


class RobustBaseline:
    """Per-channel running median and robust SD of a feature, excluding events.

    Parameters
    ----------
    n_channels : int
        Number of feature columns.
    fs_hz : float
        Sampling rate of the feature (Hz).
    history_s : float
        Length of the history the statistics are taken over (seconds of *kept* samples).
    step_s : float
        One feature sample is kept every ``step_s`` seconds (decimation of the history).
    update_s : float
        Statistics are recomputed every ``update_s`` seconds; between updates they are
        constant, which keeps the per-chunk cost to a few array operations.
    exclude_sd : float
        A sample is not added to the history when it is above
        ``median + exclude_sd * sd`` of the statistics in force (the event exclusion).
    min_fill : float
        Fraction of the history that must be filled before statistics exist (0-1].
    absolute : bool
        Track the absolute value of the feature (signed signals).
    update_phase : float
        Offset of the update points within the update interval, as a fraction (0-1).
    hold_s : float
        When > 0, the statistics in force are, per channel, the largest median and the
        largest SD computed over the last ``hold_s`` seconds of update points, so a stretch
        where the feature falls (wake or REM after NREM, for a sleep-spindle envelope) does
        not lower the thresholds until it has lasted ``hold_s``; the exclusion level still
        follows the current statistics. 0 (default): the current statistics.

    Notes
    -----
    ``process`` returns the statistics *in force at each sample*: the ones computed at the
    last update point strictly before it. Update points are sample indices that are
    multiples of the update interval, so the result does not depend on chunking.
    """

    def __init__(self, n_channels: int, fs_hz: float, *, history_s: float = 30.0,
                 step_s: float = 0.01, update_s: float = 0.5, exclude_sd: float = 2.0,
                 min_fill: float = 0.1, absolute: bool = False,
                 update_phase: float = 0.0, hold_s: float = 0.0) -> None:
        self.n_channels = int(n_channels)
        self.step = max(1, int(round(step_s * fs_hz)))
        self.update_every = max(1, int(round(update_s * fs_hz / self.step))) * self.step
        # where in the update interval the recomputation falls (0-1): stages running side
        # by side use different phases so their recomputations land on different chunks
        self._offset = int(update_phase * self.update_every) % self.update_every
        self.length = max(8, int(round(history_s * fs_hz / self.step)))
        self.min_count = max(4, int(math.ceil(min_fill * self.length)))
        self.exclude_sd = float(exclude_sd)
        self.absolute = bool(absolute)
        self._ring = np.zeros((self.n_channels, self.length))
        # running_median_mad's state: a sorted copy of each ring, the ring and its count as
        # of the last update point (zeros: nothing kept yet), and its work space
        self._sorted = np.zeros((self.n_channels, self.length))
        self._prev = np.zeros((self.n_channels, self.length))
        self._synced = np.zeros(self.n_channels, dtype=np.int64)
        self._scratch = np.empty(2 * self.length)
        self._index = np.empty(2 * self.length, dtype=np.int64)
        self._pos = np.zeros(self.n_channels, dtype=np.intp)
        self._count = np.zeros(self.n_channels, dtype=np.int64)
        self.median = np.full(self.n_channels, np.nan)
        self.sd = np.full(self.n_channels, np.nan)
        self._excl = np.full(self.n_channels, np.inf)
        # ring of the last hold_n update points' statistics (rows: median, sd; NaN: none)
        self.hold_n = (int(math.ceil(hold_s * fs_hz / self.update_every)) + 1
                       if hold_s > 0 else 0)
        self._held = np.full((2, self.hold_n, self.n_channels), np.nan)
        self._held_pos = 0
        self.index = 0          # samples seen so far
        self._next_upd = -1     # next update point (absolute index); -1: not known yet
        self.n_updates = 0      # recomputations done so far
        self.ready = False      # statistics exist for every channel
        self.ready_index = -1   # sample index from which ``ready`` statistics apply

    def reset(self) -> None:
        """Forget the history and the statistics."""
        self._ring.fill(0.0)
        self._pos.fill(0)
        self._count.fill(0)
        self._synced.fill(0)
        self.median.fill(np.nan)
        self.sd.fill(np.nan)
        self._excl.fill(np.inf)
        self._held.fill(np.nan)
        self._held_pos = 0
        self.index = 0
        self._next_upd = -1
        self.n_updates = 0
        self.ready = False
        self.ready_index = -1

    def process(self, feature: np.ndarray, median_out: np.ndarray,
                sd_out: np.ndarray) -> None:
        """Add one block of the feature and write the statistics in force per sample.

        Parameters
        ----------
        feature : ndarray, shape (n_samples, n_channels)
            The feature (e.g. envelope, volts). With ``absolute=True`` its absolute value
            is tracked (for signed signals such as a filtered slow oscillation).
        median_out, sd_out : ndarray, shape (>= n_samples, n_channels)
            Receive the median and robust SD in force at each sample (NaN before the
            statistics exist).
        """
        n = feature.shape[0]
        first = self.index
        if first + n <= self._next_upd:
            # the common case: no update point inside this block, one copy of the stats
            median_out[:n] = self.median
            sd_out[:n] = self.sd
            self._push(feature, 0, n, first)
            self.index = first + n
            return
        start = 0
        while start < n:
            # next update point: the first absolute sample index u >= first+start with
            # (u + 1 - offset) a multiple of update_every; stats change *after* it.
            abs_here = first + start
            u, o = self.update_every, self._offset
            next_upd = ((abs_here - o) // u + 1) * u - 1 + o
            end = min(n, next_upd - first + 1)
            median_out[start:end] = self.median
            sd_out[start:end] = self.sd
            self._push(feature, start, end, first)
            if end - 1 + first == next_upd:
                self._recompute(first + end)
            start = end
        self.index = first + n
        u, o = self.update_every, self._offset
        self._next_upd = ((self.index - o) // u + 1) * u - 1 + o

    def process_runs(self, feature: np.ndarray, median_out: np.ndarray, sd_out: np.ndarray,
                     k_sd: float, carry: np.ndarray, runs: np.ndarray,
                     thr: np.ndarray) -> int:
        """:meth:`process`, then the threshold rule on the same block: ``thr = median +
        k_sd * sd`` and per channel the length of the run of ``feature > thr`` ending at
        each sample, continuing ``carry`` (updated); returns the largest run. All arrays
        (n, c) for the block's n samples, ``runs`` and ``carry`` int64. A block without an
        update point (nearly every chunk) is one C call."""
        n = feature.shape[0]
        first = self.index
        if first + n <= self._next_upd and not self.absolute:
            longest = baseline_runs(feature, first, self.step, self._ring, self._pos,
                                    self._count, self._excl, self.median, self.sd, k_sd,
                                    carry, median_out, sd_out, thr, runs)
            self.index = first + n
            return longest
        self.process(feature, median_out, sd_out)
        return threshold_runs(feature, median_out, sd_out, k_sd, carry, runs, thr)

    def claim_block(self, n: int) -> bool:
        """For a detector whose own C kernel does :meth:`process` on a block without an
        update point (as ``baseline_runs`` does, on the arrays of :meth:`kernel_state`):
        when the next ``n`` samples hold no update point and the feature is tracked as is
        (not ``absolute``), count them as processed and return True -- the caller's kernel
        must then copy the statistics and push the block's decimated samples; else change
        nothing and return False (the caller uses :meth:`process`)."""
        if self.index + n <= self._next_upd and not self.absolute:
            self.index += n
            return True
        return False

    def no_update_in(self, n: int) -> bool:
        """True when the next ``n`` samples hold no update point (a C kernel may then do
        :meth:`process`'s work on the arrays of :meth:`kernel_state`; with ``absolute``, on
        the feature's absolute value). Changes nothing."""
        return self.index + n <= self._next_upd

    def kernel_state(self) -> tuple:
        """``(step, ring, pos, count, excl, median, sd)``: what a C kernel doing
        :meth:`process` on a block without an update point reads and updates in place (the
        arguments of ``baseline_runs``). The arrays stay the same objects for the life of
        the baseline (``reset`` and the recomputation write into them), so a caller may
        keep the tuple."""
        return (self.step, self._ring, self._pos, self._count, self._excl, self.median,
                self.sd)

    def _push(self, feature: np.ndarray, start: int, end: int, first: int) -> None:
        # the decimation points (absolute indices that are multiples of step) of rows
        # start..end-1, each kept unless above the exclusion level: one C call
        block = feature[start:end]
        if not block.flags.c_contiguous or block.dtype != np.float64:
            block = np.ascontiguousarray(block, dtype=np.float64)
        baseline_push(block, first + start, self.step, self.absolute, self._ring, self._pos,
                      self._count, self._excl)

    def _recompute(self, next_index: int) -> None:
        self.n_updates += 1
        med, sd = self.median, self.sd
        # one C call: this runs on the loop thread every update_s, so it must not show in
        # the per-chunk tail. It keeps a sorted copy of each ring, merging in the points
        # pushed since the last update and taking out the ones they replaced, and gives
        # what median_mad's quickselect over the whole ring gives, bit for bit (the median
        # of an even count the same mean of the two middle values).
        running_median_mad(self._ring, self._pos, self._count, self.min_count, self._prev,
                           self._sorted, self._synced, self._scratch, self._index, med, sd)
        sd *= MAD_TO_SD
        for ch in range(self.n_channels):
            m, d = float(med[ch]), float(sd[ch])
            if m != m:                       # NaN: not enough history yet
                self._excl[ch] = math.inf
                continue
            # a constant feature (digital zero, flat line) has MAD 0: keep a tiny positive
            # SD so thresholds stay above the median instead of firing on any change.
            floor = 1e-12 * max(abs(m), 1e-30)
            if d < floor:
                d = sd[ch] = floor
            self._excl[ch] = m + self.exclude_sd * d
        if self.hold_n:
            self._hold()
        if not self.ready and not np.isnan(med).any():
            self.ready = True
            self.ready_index = next_index

    def _hold(self) -> None:
        """Replace the statistics in force by the largest of the last hold_n update points'
        (the exclusion level keeps the current ones)."""
        held = self._held
        held[0, self._held_pos] = self.median
        held[1, self._held_pos] = self.sd
        self._held_pos = (self._held_pos + 1) % self.hold_n
        for row, out in ((0, self.median), (1, self.sd)):
            col = held[row]
            ok = ~np.isnan(col)
            np.max(np.where(ok, col, -np.inf), axis=0, out=out)
            out[~ok.any(axis=0)] = np.nan


class ChannelPicker:
    """Find channels by name and copy them into a reusable contiguous buffer.

    Parameters
    ----------
    names : tuple of str
        Channel names to pick, in order.
    owner : str
        Name used in error messages (e.g. ``"detectors.ripple"``).
    """

    def __init__(self, names: tuple[str, ...], owner: str) -> None:
        self.names = tuple(names)
        self.owner = owner
        self._channels: tuple[str, ...] | None = None
        self._idx = np.zeros(0, dtype=np.intp)
        self._buf = np.zeros((0, len(self.names)))
        self._contig: slice | None = None
        self._range: slice | None = None

    def bind(self, channels: tuple[str, ...]) -> np.ndarray:
        """Resolve names against a chunk's channel list; return the column indices.

        Raises
        ------
        ValueError
            If a configured channel is not in the chunk.
        """
        missing = [n for n in self.names if n not in channels]
        if missing:
            raise ValueError(f"{self.owner}.channels: {missing} not in the source's channels "
                             f"{list(channels)}; set {self.owner}.channels to names it has")
        self._channels = tuple(channels)
        self._idx = np.array([channels.index(n) for n in self.names], dtype=np.intp)
        k = len(self._idx)
        a = int(self._idx[0]) if k else 0
        if k == len(channels) and np.array_equal(self._idx, np.arange(k)):
            self._contig = slice(None)
            self._range = None
        else:
            self._contig = None
            # adjacent columns in order: a slice copy (~4x cheaper than np.take per chunk)
            self._range = (slice(a, a + k) if np.array_equal(self._idx, np.arange(a, a + k))
                           else None)
        return self._idx

    def pick(self, samples: np.ndarray, channels: tuple[str, ...]) -> np.ndarray:
        """The configured columns of ``samples`` as a C-contiguous (n, k) array.

        Returns a view of ``samples`` when the channels are all of them in order, else a
        view of an internal buffer (valid until the next call).
        """
        if channels is not self._channels and channels != self._channels:
            self.bind(channels)
        if self._contig is not None:
            return samples
        n = samples.shape[0]
        if self._buf.shape[0] < n:
            self._buf = np.empty((max(n, 2 * self._buf.shape[0], 16), len(self._idx)))
        out = self._buf[:n]
        if self._range is not None:
            out[...] = samples[:, self._range]
        else:
            np.take(samples, self._idx, axis=1, out=out)
        return out


def first_at_or_after(t: np.ndarray, time_s: float, start: int) -> int:
    """The first index ``i >= start`` with ``t[i] >= time_s`` (seconds; NaN compares
    False), or -1: one C call for float64 timestamps (a detector asks every chunk until
    its calibration ends), NumPy's comparison for others (a hand-built float32 block
    compares in float32, as before)."""
    if t.dtype == np.float64 and t.flags.c_contiguous:
        return _first_at_or_after(t, time_s, start)
    ok = np.flatnonzero(t[start:] >= time_s)
    return start + int(ok[0]) if ok.size else -1


def run_lengths(above: np.ndarray, carry: np.ndarray, out: np.ndarray,
                pos: np.ndarray) -> None:
    """Length of the current run of True ending at each sample, per column.

    Parameters
    ----------
    above : ndarray of bool, shape (n, c)
    carry : ndarray of int, shape (c,)
        Run length at the sample before this block; updated in place to the last row.
    out : ndarray of int, shape (>= n, c)
        Receives the run lengths (samples).
    pos : ndarray of int, shape (>= n, 1)
        ``arange(1, n + 1)[:, None]`` (preallocated by the caller).
    """
    n = above.shape[0]
    o = out[:n]
    p = pos[:n]
    # index (1-based) of the last False at or before each sample; 0 if none in the block
    np.multiply(~above, p, out=o)
    np.maximum.accumulate(o, axis=0, out=o)
    none_false = o == 0
    np.subtract(p, o, out=o)
    o += none_false * carry
    carry[:] = o[-1]


class TimeRing:
    """The timestamps of the last ``capacity`` samples, addressed by absolute index.

    Lets a detector report the onset time of a run that began in an earlier chunk from the
    real sample timestamps (time is never rebuilt from sample counts).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        #: sample ``i``'s timestamp (seconds) at ``values[i % capacity]``; a C kernel may
        #: write a block there itself and advance ``index``
        self.values = np.full(self.capacity, np.nan)
        self.index = 0  # absolute index of the next sample

    def reset(self) -> None:
        self.values.fill(np.nan)
        self.index = 0

    def grow(self, capacity: int) -> None:
        """Hold at least ``capacity`` timestamps, keeping those held (a new ``values``
        array: a plan bound to the old one must be rebuilt). A detector whose onset may lie
        ``h`` samples before a chunk needs ``h`` + the chunk's length: a chunk as long as
        the ring would overwrite all of its history."""
        capacity = int(capacity)
        if capacity <= self.capacity:
            return
        idx = np.arange(max(0, self.index - self.capacity), self.index)
        values = np.full(capacity, np.nan)
        values[idx % capacity] = self.values[idx % self.capacity]
        self.values, self.capacity = values, capacity

    def write(self, t: np.ndarray) -> None:
        """Append the timestamps of one block, shape (n,), seconds."""
        n = t.shape[0]
        if n >= self.capacity:
            tail = t[n - self.capacity:]
            k = (self.index + n - self.capacity) % self.capacity
            self.values[k:] = tail[:self.capacity - k]
            self.values[:k] = tail[self.capacity - k:]
        else:
            k = self.index % self.capacity
            if k + n <= self.capacity:           # the common case: no wrap
                self.values[k:k + n] = t
            else:
                m = self.capacity - k
                self.values[k:] = t[:m]
                self.values[:n - m] = t[m:]
        self.index += n

    def at(self, abs_index: int) -> float:
        """Timestamp of sample ``abs_index``; the oldest kept one if it is older."""
        oldest = max(0, self.index - self.capacity)
        i = min(max(abs_index, oldest), self.index - 1)
        return float(self.values[i % self.capacity])
