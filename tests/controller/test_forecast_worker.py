"""Forecast worker thread and gate: same forecasts as offline, errors surfaced, gate rules."""
from __future__ import annotations

import numpy as np
import pytest

from engramloop.analysis import training as ft
from engramloop.controller.forecast_worker import (
    ForecasterError,
    ForecasterSettings,
    ForecastGate,
    ForecastWorker,
)
from engramloop.core.chunk import Chunk
from engramloop.core.events import Event
from engramloop.decoders.features import FEATURE_NAMES as FEAT_NAMES
from engramloop.decoders.features import EpochFeatures, FeatureSettings, Forecast
from engramloop.decoders.forecaster import CheckpointError, Forecaster

FS = 250.0
CHANNELS = ("CA1", "Cz")
FEAT = FeatureSettings(epoch_s=10.0, hop_s=10.0, eeg_channel="Cz", lfp_channel="CA1")


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    nights = [ft.synthetic_night(s, n_epochs=40, epoch_s=10.0) for s in range(4)]
    ck = ft.train(nights, ft.TrainSettings(window_epochs=3, horizon_epochs=3, hidden=8,
                                           epochs=2, seed=1), epoch_s=10.0, hop_s=10.0,
                  model_version="worker-test")
    return ck.save(tmp_path_factory.mktemp("ck") / "f.pt")


def _chunks(duration_s: float = 95.0, size: int = 125):
    rng = np.random.default_rng(5)
    n = int(duration_s * FS)
    t = np.arange(n) / FS
    x = np.ascontiguousarray(20e-6 * rng.standard_normal((n, 2)))
    out = []
    for a in range(0, n, size):
        b = min(n, a + size)
        ev = [Event("ripple", "CA1", t[b - 1] - 0.01, t[b - 1], t[b - 1], 50e-6, 6, 30e-6)] \
            if a % 1000 == 0 else []
        out.append((Chunk(x[a:b].copy(), t[a:b].copy(), FS, CHANNELS, arrival_s=t[b - 1]), ev))
    return out


def _settings(path, **kw) -> ForecasterSettings:
    return ForecasterSettings(enabled=True, checkpoint=str(path), features=FEAT, **kw)


def test_worker_matches_offline_and_publishes_every_epoch(ckpt_path):
    worker = ForecastWorker(_settings(ckpt_path))
    worker.start()
    try:
        for chunk, ev in _chunks():
            worker.feed(chunk, ev, [])
        assert worker.wait_idle()
        worker.check()
        got = worker.drain()
    finally:
        worker.stop()
    # the same stages run synchronously, chunk by chunk
    fc = Forecaster.load(ckpt_path, epoch_s=10.0, hop_s=10.0)
    stage = EpochFeatures(FEAT)
    vecs, want = [], []
    for chunk, ev in _chunks():
        for fv in stage.process(chunk, ev):
            vecs.append(fv)
            want.append(fc.predict(vecs[-fc.window:]))
    assert len(got) == len(want) == 9
    _same_forecasts(got, want)
    assert worker.latest() is got[-1] and worker.latest().time_s == 90.0
    assert worker.drain() == []
    assert all(f.model_version == "worker-test" for f in got)


def _same_forecasts(got, want):
    """Equal up to float rounding: the worker sums band power over bigger blocks."""
    assert [f.time_s for f in got] == [f.time_s for f in want]
    for g, w in zip(got, want, strict=True):
        assert g.p_below_median == pytest.approx(w.p_below_median, rel=1e-5, abs=1e-7)
        assert g.delta_strength == pytest.approx(w.delta_strength, rel=1e-5, abs=1e-7)
        assert g.per_memory == pytest.approx(w.per_memory, rel=1e-5, abs=1e-7)


class _Tape:
    """A forecaster that keeps the feature vectors it is given (window 1)."""

    window = 1

    def __init__(self):
        self.vectors = []

    def predict(self, vectors):
        self.vectors.append(vectors[-1])
        return Forecast(vectors[-1].t_end_s, 0.0, 0.5, 0.0, "tape")


def _awkward_feed():
    """Chunks of irregular size with ripples, spindles and slow oscillations detected at
    their last sample, and pulses reported one to three chunks late -- some after the
    block boundary that their time falls before."""
    rng = np.random.default_rng(11)
    n = int(47.0 * FS)
    t = 1000.0 + np.arange(n) / FS            # blocks do not start at the first sample
    x = np.ascontiguousarray(20e-6 * rng.standard_normal((n, 2)))
    items, late, a = [], [], 0
    while a < n:
        b = min(n, a + int(rng.integers(1, 200)))
        td = t[b - 1]
        ev = []
        if rng.random() < 0.3:
            kind = ("ripple", "spindle", "so")[int(rng.integers(3))]
            ev.append(Event(kind, "CA1", td - 0.05, td, td - 0.01, 40e-6, 5.0, 20e-6,
                            predicted_s=td + 0.4 if kind == "so" else float("nan")))
        if rng.random() < 0.2:
            late.append((int(rng.integers(1, 4)), td))
        due = [p for k, p in late if k == 0]
        late = [(k - 1, p) for k, p in late if k > 0]
        items.append((Chunk(x[a:b].copy(), t[a:b].copy(), FS, CHANNELS, arrival_s=td), ev,
                      due))
        a = b
    return items


def test_batched_feed_equals_chunk_by_chunk():
    items = _awkward_feed()
    ref = EpochFeatures(FEAT)
    want = [fv for chunk, ev, pu in items for fv in ref.process(chunk, ev, pu)]
    tape = _Tape()
    worker = ForecastWorker(ForecasterSettings(enabled=True, features=FEAT), forecaster=tape)
    due = [worker.feed(chunk, ev, pu) for chunk, ev, pu in items]   # all queued first
    worker.start()
    try:
        assert worker.wait_idle()
        worker.check()
    finally:
        worker.stop()
    got = tape.vectors
    assert len(got) == len(want) == 4
    # one feature-stage call per block boundary (plus the remainder), not one per chunk
    assert sum(due) == 5 and worker.n_batches == 5 < len(items) / 20
    counts = [i for i, name in enumerate(FEAT_NAMES) if not name.startswith(("logp_", "sws_",
                                                                              "rem_"))]
    for g, w in zip(got, want, strict=True):
        assert (g.t_start_s, g.t_end_s) == (w.t_start_s, w.t_end_s)
        assert np.array_equal(g.values[counts], w.values[counts])    # events, pulses
        np.testing.assert_allclose(g.values, w.values, rtol=1e-12, atol=1e-12)
    assert sum(w["pulses"] for w in want) > 0 and sum(w["ripple_rate_hz"] for w in want) > 0


def test_feed_reports_block_boundaries():
    worker = ForecastWorker(ForecasterSettings(enabled=True, features=FEAT),
                            forecaster=_Tape())
    chunks = _chunks(25.0, size=500)       # 2 s chunks; blocks of 10 s
    due = [worker.feed(c, ev) for c, ev in chunks]
    assert [i for i, d in enumerate(due) if d] == [0, 5, 10]


def test_kicked_worker_forecasts_every_epoch(ckpt_path):
    """In the loop the worker runs when kicked after a chunk (so its GIL share falls in the
    loop's wait): kicking after every chunk yields the same forecasts as waking on its own,
    without any wait_idle (a liveness check with a generous bound, not a timing claim)."""
    import time

    worker = ForecastWorker(_settings(ckpt_path))
    worker.start()
    try:
        for chunk, ev in _chunks():
            worker.feed(chunk, ev, [])
            worker.kick()
        deadline = time.monotonic() + 30.0
        while worker.n_forecasts < 9 and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.check()
        got = worker.drain()
    finally:
        worker.stop()
    assert [f.time_s for f in got] == [10.0 * k for k in range(1, 10)]


class _Broken:
    """A forecaster that fails on purpose (the real one cannot be made to fail on demand)."""

    window = 2

    def predict(self, vectors):
        raise RuntimeError("inference exploded")


def test_worker_errors_reach_the_loop_and_close_the_gate():
    s = ForecasterSettings(enabled=True, features=FEAT, before_first="allow")
    worker = ForecastWorker(s, forecaster=_Broken())
    gate = ForecastGate(worker, s)
    assert gate.allows(0.0)               # before_first = allow, nothing failed yet
    worker.start()
    try:
        for chunk, ev in _chunks(25.0):
            worker.feed(chunk, ev)
        assert worker.wait_idle()
        with pytest.raises(ForecasterError, match="inference exploded"):
            worker.check()
        assert not gate.allows(20.0) and gate.last_reason == "forecaster_failed"
    finally:
        worker.stop()


def test_feed_never_blocks_and_overflow_is_an_error():
    s = ForecasterSettings(enabled=True, features=FEAT, queue_chunks=10)
    worker = ForecastWorker(s, forecaster=_Broken())   # not started: nothing drains
    for chunk, ev in _chunks(5.0, size=10)[:25]:
        worker.feed(chunk, ev)                         # returns at once even when full
    with pytest.raises(ForecasterError, match="fell 10 chunks behind"):
        worker.check()


def test_checkpoint_mismatch_fails_at_start(ckpt_path):
    s = ForecasterSettings(enabled=True, checkpoint=str(ckpt_path),
                           features=FeatureSettings(epoch_s=30.0, hop_s=30.0))
    with pytest.raises(CheckpointError, match="epoch_s"):
        ForecastWorker(s).start()


class _Latest:
    """Holds a fixed forecast: the gate's rules tested in isolation."""

    failed = False

    def __init__(self, fc):
        self.fc = fc

    def latest(self):
        return self.fc


def test_gate_rules():
    s = ForecasterSettings(p_below_median_threshold=0.6, max_age_s=30.0)
    high = Forecast(100.0, 300.0, 0.7, -0.01, "v")
    low = Forecast(100.0, 300.0, 0.5, 0.0, "v")
    g = ForecastGate(_Latest(high), s)
    assert g.allows(110.0) and g.last_reason == ""
    assert not g.allows(131.0) and g.last_reason == "stale_forecast"
    g = ForecastGate(_Latest(low), s)
    assert not g.allows(110.0) and g.last_reason == "p_below_median_low"
    g = ForecastGate(_Latest(Forecast(100.0, 300.0, 0.6, 0.0, "v")), s)
    assert g.allows(100.0)                     # at the threshold counts as high risk
    g = ForecastGate(_Latest(None), s)
    assert not g.allows(0.0) and g.last_reason == "no_forecast"
    g = ForecastGate(_Latest(None), ForecasterSettings(before_first="allow"))
    assert g.allows(0.0)
    inv = ForecasterSettings(p_below_median_threshold=0.6, gate="p_below_median_low")
    assert ForecastGate(_Latest(low), inv).allows(110.0)
    g = ForecastGate(_Latest(high), inv)
    assert not g.allows(110.0) and g.last_reason == "p_below_median_high"
