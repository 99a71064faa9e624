"""SimSource as a Source: API contract, timestamps, determinism across chunk sizes."""
from __future__ import annotations

import numpy as np
import pytest

from engramloop.core.chunk import Chunk, EndOfStream, Source, SourceError
from engramloop.core.clock import SimClock
from engramloop.core.pulse import PulseSpec
from engramloop.sim.generate import simulate
from engramloop.sim.settings import ArtefactSettings, HypnogramSettings, SimSettings
from engramloop.sim.source import SimSource


def _read_all(src: SimSource) -> tuple[np.ndarray, np.ndarray]:
    xs, ts = [], []
    while True:
        try:
            c = src.read(0.0)
        except EndOfStream:
            break
        xs.append(c.samples)
        ts.append(c.timestamps)
    return np.concatenate(xs), np.concatenate(ts)


def test_is_a_source_and_chunks_are_well_formed():
    src = SimSource(seed=3, chunk_samples=10, duration_s=1.0)
    assert isinstance(src, Source)
    with pytest.raises(SourceError):
        src.read(0.0)
    src.start()
    c = src.read(0.0)
    assert isinstance(c, Chunk)
    assert c.samples.shape == (10, len(src.channels))
    assert c.samples.flags.c_contiguous and c.samples.dtype == np.float64
    np.testing.assert_allclose(c.timestamps, np.arange(10) / 2000.0)
    assert c.channels == src.channels and c.rate_hz == 2000.0
    # the SimClock jumped to the chunk's last sample
    assert c.arrival_s == pytest.approx(c.timestamps[-1])


def test_end_of_stream_after_duration_and_short_last_chunk():
    src = SimSource(seed=0, chunk_samples=300, duration_s=0.5)
    src.start()
    x, t = _read_all(src)
    assert x.shape[0] == 1000
    with pytest.raises(EndOfStream):
        src.read(0.0)


def test_clock_offset_timestamps():
    clock = SimClock(100.0)
    src = SimSource(seed=0, clock=clock, chunk_samples=50, duration_s=0.1)
    src.start()
    x, t = _read_all(src)
    assert t[0] == 100.0
    assert clock.now() == pytest.approx(t[-1])
    ev = src.truth.events()
    assert all(e.onset_s >= 100.0 - 1.0 for e in ev)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_bit_identical_for_any_chunk_size(chunk):
    # every generator and artefact kind, so every code path is covered
    art = ArtefactSettings(movement_rate_hz=0.2, pop_rate_hz=0.2, dropout_rate_hz=0.2,
                           saturation_rate_hz=0.2, clip_v=1e-3)
    s = SimSettings(hypnogram=HypnogramSettings(schedule=("N3:12", "REM:8", "wake:10")),
                    artefacts=art)
    whole, t_whole, truth_w = simulate(s, seed=5, duration_s=30.0, chunk_samples=60000)
    part, t_part, truth_p = simulate(s, seed=5, duration_s=30.0, chunk_samples=chunk)
    assert np.array_equal(whole, part)
    assert np.array_equal(t_whole, t_part)
    assert truth_w.to_json() == truth_p.to_json()


def test_different_seed_differs():
    a, _, _ = simulate(seed=1, duration_s=2.0)
    b, _, _ = simulate(seed=2, duration_s=2.0)
    assert not np.array_equal(a, b)


def test_stimulate_validates_target_and_time():
    src = SimSource(seed=0, duration_s=1.0)
    src.start()
    src.read(0.0)
    with pytest.raises(ValueError, match="unknown target"):
        src.stimulate(0.001, PulseSpec(modality="auditory"), "nonsense")


def test_recall_scores_is_a_projection_that_never_changes_the_run():
    def run(peek: bool):
        src = SimSource(seed=2, chunk_samples=500, duration_s=20.0)
        src.start()
        peeks = []
        while True:
            try:
                src.read(0.0)
            except EndOfStream:
                break
            if peek:
                peeks.append(src.recall_scores())
        src.stop()
        return src.memory.summary(), src.truth.to_json(), peeks
    a, ta, peeks = run(True)
    b, tb, _ = run(False)
    assert a == b and ta == tb
    assert peeks[-1] == pytest.approx(a["recall"])


def test_stimulate_from_another_thread_while_reading():
    import threading

    src = SimSource(SimSettings(), seed=1, chunk_samples=10, duration_s=5.0)
    src.start()
    errors = []

    def zap():
        try:
            for k in range(200):
                src.stimulate(0.01 * (k + 1), PulseSpec(modality="electrical"), "ripple")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    th = threading.Thread(target=zap)
    th.start()
    x, _ = _read_all(src)
    th.join()
    assert not errors and x.shape == (10000, 8) and np.all(np.isfinite(x))
    assert len(src.truth.events("stim")) == 200


def test_paced_zero_timeout_poll_returns_each_chunk_exactly_when_due():
    """The loop's backlog poll (read(0.0)) takes a fast path while the next chunk is not
    due: None before its newest sample's time, the chunk from then on -- including the
    short last chunk -- then EndOfStream, and SourceError once stopped."""
    clock = SimClock(0.0)
    src = SimSource(seed=4, clock=clock, paced=True, chunk_samples=10, duration_s=0.0125)
    ref = SimSource(seed=4, chunk_samples=10, duration_s=0.0125)
    src.start()
    ref.start()
    for newest in (9, 19, 24):            # 25 samples: chunks of 10, 10 and 5
        due = newest / 2000.0
        clock.sleep_until(due - 1e-6)
        assert src.read(0.0) is None
        clock.sleep_until(due)
        c, r = src.read(0.0), ref.read(0.0)
        assert c is not None and c.timestamps[-1] == due
        assert np.array_equal(c.samples, r.samples) and np.array_equal(c.timestamps,
                                                                        r.timestamps)
    with pytest.raises(EndOfStream):
        src.read(0.0)
    src.stop()
    with pytest.raises(SourceError):
        src.read(0.0)


def test_unchecked_chunk_equals_the_checked_constructor():
    import dataclasses

    s, t = np.zeros((10, 2)), np.arange(10) / 2000.0
    kw = dict(arrival_s=1.5, first_index=30, gap_before=True, meta={"source": "x"})
    a = Chunk(s, t, 2000.0, ("a", "b"), **kw)
    b = Chunk.unchecked(s, t, 2000.0, ("a", "b"), **kw)
    for f in dataclasses.fields(Chunk):
        assert getattr(a, f.name) is getattr(b, f.name) or \
            getattr(a, f.name) == getattr(b, f.name), f.name
    assert Chunk.unchecked(s, t, 2000.0, ("a", "b"), 0.0).meta == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.rate_hz = 1.0


def test_a_pulse_that_fails_to_apply_stays_queued(monkeypatch):
    """stimulate() queues; the next read applies. If applying fails, the error surfaces
    there and the pulse is not lost: once the fault is gone the same pulse is applied."""
    import engramloop.sim.source as source_mod

    src = SimSource(seed=1, chunk_samples=20, duration_s=2.0)
    src.start()
    src.read(0.0)
    spec = PulseSpec(modality="optogenetic", shape="monophasic", amplitude=5.0,
                     phase_width_s=0.01)
    real = source_mod.apply_pulse

    def broken(*a, **k):
        raise RuntimeError("injected")

    monkeypatch.setattr(source_mod, "apply_pulse", broken)
    src.stimulate(src.t0_s + 0.005, spec, "ripple")
    with pytest.raises(RuntimeError, match="injected"):
        src.read(0.0)
    monkeypatch.setattr(source_mod, "apply_pulse", real)
    assert src.read(0.0) is not None
    assert len(src.pulses) == 1 and src.pulses[0].onset == pytest.approx(0.005, abs=1e-9)
