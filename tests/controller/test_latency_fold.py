"""Latency histograms fold their values in batches (issue 23: recording one at a time
cost ~15 % of a replay): whatever the interleaving of records and reads, the counts,
extremes and sum are exact and the percentiles are those of numpy on the raw values."""
from __future__ import annotations

import numpy as np
import pytest

from engramloop.controller.latency import Histogram


def test_records_and_reads_interleaved_equal_numpy_on_the_raw_values() -> None:
    rng = np.random.default_rng(11)
    x = rng.lognormal(np.log(50e-6), 0.8, 5000)
    x[[10, 2000]] = [-2e-9, 500.0]            # below the first and above the last bin
    h, seen = Histogram(), []
    for k, v in enumerate(x):
        h.record(float(v))
        seen.append(v)
        if k in (0, 1, 999, 1023, 1024, 3000):   # reads before, at and after a fold
            assert h.count == len(seen)
            assert h.min_s == min(seen) and h.max_s == max(seen)
    assert h.count == x.size and h.total_s == pytest.approx(x.sum(), rel=1e-12)
    assert int(h.counts.sum()) == x.size
    for q in (50, 90, 99):
        ref = np.percentile(x, q, method="inverted_cdf")
        assert h.percentile(q) == pytest.approx(ref, rel=0.005)
    a, b = Histogram(), Histogram()
    for v in x[:2500]:
        a.record(float(v))
    for v in x[2500:]:
        b.record(float(v))
    a.merge(b)
    assert a.count == x.size and np.array_equal(a.counts, h.counts)
    assert a.min_s == h.min_s and a.max_s == h.max_s
