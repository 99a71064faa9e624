"""SampleCounter: missing samples by count against the nominal rate, not timestamp steps.

The bursty stamps below follow pylsl's examples/SendData.py: every 10 ms (plus a random
scheduling delay) it pushes every sample due by then, each stamped at the push."""
from __future__ import annotations

import numpy as np

from engramloop.controller.governor import Governor, SafetySettings
from engramloop.core.sample_clock import SampleCounter


def senddata_stamps(rate: float, seconds: float, *, drop=None, rate_error=0.0, seed=0):
    """(stamps per burst) as SendData produces them; ``drop`` = (at_s, length_s) of samples
    never pushed; ``rate_error``: the sender's clock runs this fraction fast."""
    rng = np.random.default_rng(seed)
    bursts, sent, t = [], 0, 0.0
    dropped = False
    while t < seconds:
        t += 0.01 + rng.exponential(0.002)
        due = int(rate * (1 + rate_error) * t) - sent
        if drop and not dropped and sent >= drop[0] * rate:
            dropped = True
            sent += int(drop[1] * rate)
            continue
        if due > 0:
            bursts.append(np.full(due, 100.0 + t) + rng.uniform(0, 20e-6, due).cumsum())
            sent += due
    return bursts


def count(bursts, rate=100.0):
    c = SampleCounter(rate)
    out = [c.observe(float(b[0]), float(b[-1]), len(b)) for b in bursts]
    return c, out


def test_exact_stamps_count_a_three_sample_loss():
    rate = 2000.0
    t = 5.0 + np.arange(4000) / rate
    keep = np.r_[0:1000, 1003:4000]
    c = SampleCounter(rate)
    found = [c.observe(float(t[keep[i]]), float(t[keep[i + 9]]), 10)
             for i in range(0, len(keep) - 9, 10)]
    assert sum(found) == 3 and found[100] == 3


def test_senddata_jitter_is_not_a_gap_and_a_real_loss_is():
    c, out = count(senddata_stamps(100.0, 60.0))
    assert sum(out) == 0
    c, out = count(senddata_stamps(100.0, 20.0, drop=(5.0, 0.5)))
    assert [m for m in out if m] and abs(sum(out) - 50) <= 1, [m for m in out if m]


def test_a_sender_clock_off_by_half_a_percent_is_followed():
    for err in (-0.005, 0.005):
        c, out = count(senddata_stamps(100.0, 300.0, rate_error=err))
        assert sum(out) == 0, err


def test_irregular_rate_counts_nothing():
    c = SampleCounter(0.0)
    assert c.observe(0.0, 1.0, 3) == 0 and c.observe(5.0, 6.0, 3) == 0


def test_governor_irregular_stream_does_not_divide_by_zero():
    g = Governor(SafetySettings())
    assert not g.observe_chunk(1.0, 1.1, 5, 0.0)
    assert not g.observe_chunk(1.2, 1.3, 5, 0.0)
    assert g.observe_chunk(1.4, 1.5, 5, 0.0, gap_before=True)   # the source still can
    assert np.isclose(g._s.chunk_interval_s, 0.2)


def test_a_late_start_is_suspect_then_confirmed_or_dropped():
    """Before the jitter is known, a late chunk is only suspect (pulses held) until
    samples 0.25 s later confirm the loss; a sender that catches up is no gap."""
    rate = 100.0
    c = SampleCounter(rate)
    t = 0.0
    for _ in range(3):
        assert c.observe(t, t + 0.09, 10) == 0
        t += 0.1
    # 20 samples missing before this chunk, and they stay missing
    t += 0.2
    assert c.observe(t, t + 0.09, 10) == 0 and c.suspect
    found = 0
    for _ in range(4):
        t += 0.1
        found += c.observe(t, t + 0.09, 10)
    assert found == 20 and not c.suspect
    # a sender 80 ms behind that catches up: suspect, then dropped
    c2 = SampleCounter(rate)
    for k in range(3):
        c2.observe(k * 0.1, k * 0.1 + 0.09, 10)
    assert c2.observe(0.38, 0.47, 10) == 0 and c2.suspect      # all 80 ms late
    assert c2.observe(0.48, 0.49, 10) == 0 and not c2.suspect  # caught up in a burst
    assert c2.missing_total == 0


def test_offset_median_is_numpys_median():
    """The counter's short-list median (sample_clock._median) is np.median's value, bit
    for bit, at odd and even counts; NaN when a value is NaN."""
    import math

    from engramloop.core.sample_clock import _median

    rng = np.random.default_rng(3)
    for n in range(1, 260):
        x = list(rng.normal(size=n) * 1e-3 + 1.7e4)
        assert _median(x) == float(np.median(x))
    assert math.isnan(_median([0.5, math.nan, 0.2]))
