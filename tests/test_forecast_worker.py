"""Forecast worker thread and gate: same forecasts as offline, errors surfaced, gate rules."""
from __future__ import annotations

import numpy as np
import pytest

from controller.forecast_worker import (
    ForecasterError,
    ForecasterSettings,
    ForecastGate,
    ForecastWorker,
)
from decoders import forecast_train as ft
from decoders.events import Event
from decoders.features import EpochFeatures, FeatureSettings, Forecast
from decoders.forecaster import CheckpointError, Forecaster
from drivers.chunk import Chunk

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
    # the same stages run synchronously
    fc = Forecaster.load(ckpt_path, epoch_s=10.0, hop_s=10.0)
    stage = EpochFeatures(FEAT)
    vecs, want = [], []
    for chunk, ev in _chunks():
        for fv in stage.process(chunk, ev):
            vecs.append(fv)
            want.append(fc.predict(vecs[-fc.window:]))
    assert len(got) == len(want) == 9
    assert got == want
    assert worker.latest() == want[-1] and worker.latest().time_s == 90.0
    assert worker.drain() == []
    assert all(f.model_version == "worker-test" for f in got)


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
    s = ForecasterSettings(gate_threshold=0.6, max_age_s=30.0)
    high = Forecast(100.0, 300.0, 0.7, -0.01, "v")
    low = Forecast(100.0, 300.0, 0.5, 0.0, "v")
    g = ForecastGate(_Latest(high), s)
    assert g.allows(110.0) and g.last_reason == ""
    assert not g.allows(131.0) and g.last_reason == "stale_forecast"
    g = ForecastGate(_Latest(low), s)
    assert not g.allows(110.0) and g.last_reason == "low_decay_risk"
    g = ForecastGate(_Latest(Forecast(100.0, 300.0, 0.6, 0.0, "v")), s)
    assert g.allows(100.0)                     # at the threshold counts as high risk
    g = ForecastGate(_Latest(None), s)
    assert not g.allows(0.0) and g.last_reason == "no_forecast"
    g = ForecastGate(_Latest(None), ForecasterSettings(before_first="allow"))
    assert g.allows(0.0)
    inv = ForecasterSettings(gate_threshold=0.6, gate_when="risk_low")
    assert ForecastGate(_Latest(low), inv).allows(110.0)
    g = ForecastGate(_Latest(high), inv)
    assert not g.allows(110.0) and g.last_reason == "high_decay_risk"
