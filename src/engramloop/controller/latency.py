"""Fixed-size latency histograms (no allocation per sample, bounded memory for any run).

Bins are log-spaced with a constant relative width of 1 % from 100 ns to 100 s (~2100
bins), the layout HdrHistogram popularised: a percentile read back from the histogram is
within 0.5 % of the true value, whatever the run length. Values below the first bin go
to bin 0 (and negative values, e.g. a pulse sent a hair early on a simulated clock, are
clamped to 0 there); values above the last bin go to the last bin. Exact minimum, maximum,
count and sum are kept alongside.
"""
from __future__ import annotations

import math

import numpy as np

_LO_S = 1e-7
_HI_S = 100.0
_GROWTH = 1.01
_LOG_G = math.log(_GROWTH)
_NBINS = int(math.ceil(math.log(_HI_S / _LO_S) / _LOG_G)) + 1


class Histogram:
    """Counts of durations (seconds) in log-spaced bins.

    :meth:`record` only appends to a short list; every ``FOLD`` values (and before any
    read) the list is folded into the bins at once (``np.bincount``), so a record costs
    a list append on the loop's hot path. Reads from another thread fold too; a value
    recorded in the instant of a fold by the recording thread can be counted in the
    next fold instead.

    Attributes
    ----------
    count : int
    total_s : float
    min_s, max_s : float
        Exact extremes (seconds); ``nan`` before the first sample.
    """

    __slots__ = ("_counts", "_count", "_total_s", "_min_s", "_max_s", "_buf")

    #: values appended before they are folded into the bins
    FOLD = 1024

    def __init__(self) -> None:
        self._counts = np.zeros(_NBINS, dtype=np.int64)
        self._count = 0
        self._total_s = 0.0
        self._min_s = math.nan
        self._max_s = math.nan
        self._buf: list[float] = []

    def record(self, value_s: float) -> None:
        """Add one duration in seconds."""
        buf = self._buf
        buf.append(value_s)
        if len(buf) >= self.FOLD:
            self._fold()

    def _fold(self) -> None:
        buf, self._buf = self._buf, []
        if not buf:
            return
        v = np.asarray(buf, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            i = np.floor(np.log(np.maximum(v, _LO_S) / _LO_S) / _LOG_G).astype(np.int64) + 1
        i[~(v > _LO_S)] = 0          # below the first bin, negative or NaN: bin 0
        np.minimum(i, _NBINS - 1, out=i)
        self._counts += np.bincount(i, minlength=_NBINS)
        lo, hi = float(v.min()), float(v.max())
        if self._count == 0:
            self._min_s, self._max_s = lo, hi
        else:
            self._min_s, self._max_s = min(self._min_s, lo), max(self._max_s, hi)
        self._count += v.size
        self._total_s += float(v.sum())

    @property
    def counts(self) -> np.ndarray:
        self._fold()
        return self._counts

    @property
    def count(self) -> int:
        self._fold()
        return self._count

    @property
    def total_s(self) -> float:
        self._fold()
        return self._total_s

    @property
    def min_s(self) -> float:
        self._fold()
        return self._min_s

    @property
    def max_s(self) -> float:
        self._fold()
        return self._max_s

    def merge(self, other: Histogram) -> None:
        """Add another histogram's counts into this one."""
        self._fold()
        if other.count == 0:
            return
        self._counts += other.counts
        if self._count == 0:
            self._min_s, self._max_s = other.min_s, other.max_s
        else:
            self._min_s = min(self._min_s, other.min_s)
            self._max_s = max(self._max_s, other.max_s)
        self._count += other.count
        self._total_s += other.total_s

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) in seconds, to within 0.5 %; ``nan`` when empty.

        Returns the geometric centre of the bin holding the q-th value, clamped to the
        exact [min, max].
        """
        if self.count == 0:
            return math.nan
        if q >= 100:
            return self.max_s
        rank = max(1, int(math.ceil(q / 100.0 * self.count)))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        if i == 0:
            v = self.min_s
        else:
            v = _LO_S * _GROWTH ** (i - 0.5)
        return float(min(max(v, self.min_s), self.max_s))

    def summary(self) -> dict[str, float]:
        """count, mean, median, p99, p99.9 and max, in seconds."""
        return {"count": self.count,
                "mean_s": self.total_s / self.count if self.count else math.nan,
                "median_s": self.percentile(50), "p99_s": self.percentile(99),
                "p999_s": self.percentile(99.9), "max_s": self.max_s}


class StageTimes:
    """One histogram per named stage of the loop, allocated once.

    Parameters
    ----------
    stages : sequence of str
        Stage names, e.g. ``("read", "decode", "policy", "governor", "schedule",
        "record", "chunk_total", "pulse_total")``.
    """

    def __init__(self, stages) -> None:
        self.stages = tuple(stages)
        self.hist = {s: Histogram() for s in self.stages}

    def __getitem__(self, stage: str) -> Histogram:
        return self.hist[stage]

    def table(self) -> str:
        """A fixed-width text table in microseconds (median / p99 / p99.9 / max)."""
        rows = [f"{'stage':<14}{'n':>9}{'median_us':>11}{'p99_us':>10}{'p99.9_us':>10}"
                f"{'max_us':>10}"]
        for s in self.stages:
            h = self.hist[s]
            if h.count == 0:
                rows.append(f"{s:<14}{0:>9}{'-':>11}{'-':>10}{'-':>10}{'-':>10}")
                continue
            rows.append(f"{s:<14}{h.count:>9}{h.percentile(50) * 1e6:>11.1f}"
                        f"{h.percentile(99) * 1e6:>10.1f}{h.percentile(99.9) * 1e6:>10.1f}"
                        f"{h.max_s * 1e6:>10.1f}")
        return "\n".join(rows)

    def summary(self) -> dict[str, dict[str, float]]:
        return {s: self.hist[s].summary() for s in self.stages}


__all__ = ["Histogram", "StageTimes"]
