"""The engram model: decay, tag-and-capture consolidation, coupling, saturation, drift."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engramloop.core.chunk import EndOfStream
from engramloop.sim.memory import Memory
from engramloop.sim.settings import HypnogramSettings, MemorySettings, RippleSettings, SimSettings
from engramloop.sim.source import SimSource

HOUR = 3600.0


def _replays(m: Memory, times, duration=0.06, coupling=0, truncated=False) -> None:
    for t in times:
        m.replay(float(t), duration, coupling, truncated)


def test_strength_decays_without_replay():
    m = Memory(MemorySettings(), seed=1)
    s0 = m.strengths()
    got = []
    for h in (1, 2, 4, 8):
        m.advance_to(h * HOUR)
        got.append(np.mean(list(m.strengths().values())))
    assert np.all(np.diff([np.mean(list(s0.values()))] + got) < 0)
    tau = m.s.decay_tau_s
    assert got[-1] == pytest.approx(m.s.initial_strength * np.exp(-8 * HOUR / tau))
    assert m.recall_scores(delay_s=0.0)["m0"] < s0["m0"]


def test_sim_without_ripples_only_decays():
    rip = RippleSettings(rate_n3_hz=0.0, rate_n2_hz=0.0, rate_wake_hz=0.0, spindle_coupling=0.0)
    s = SimSettings(ripple=rip, hypnogram=HypnogramSettings(schedule=("N3:60",)))
    src = SimSource(s, seed=0, chunk_samples=2000, duration_s=30.0)
    src.start()
    while True:
        try:
            src.read(0.0)
        except EndOfStream:
            break
    src.stop()
    assert not src.truth.events("ripple")
    assert np.all(src.memory.stable == 0.0)
    assert np.all(src.memory.labile < src.memory.encoding)


def test_replay_consolidates_and_beats_decay():
    a, b = Memory(MemorySettings(), seed=2), Memory(MemorySettings(), seed=2)
    _replays(a, np.arange(1, 2000) * 0.5, coupling=2)
    a.advance_to(1000.0)
    b.advance_to(1000.0)
    assert a.stable.sum() > 0.1
    ra, rb = a.recall_scores(), b.recall_scores()
    assert min(ra.values()) > max(rb.values())


def test_coupled_and_longer_replays_consolidate_more():
    out = {}
    for name, kw in (("alone", {"coupling": 0}), ("spindle", {"coupling": 1}),
                     ("triple", {"coupling": 2}), ("short", {"coupling": 2, "duration": 0.015}),
                     ("cut", {"coupling": 2, "duration": 0.015, "truncated": True}),
                     ("long", {"coupling": 2, "duration": 0.15})):
        m = Memory(MemorySettings(), seed=3)
        _replays(m, np.arange(1, 301) * 1.0, **kw)
        out[name] = m.stable.sum()
    assert out["alone"] < out["spindle"] < out["triple"] < out["long"]
    assert out["cut"] <= out["short"] < out["triple"]


def test_tag_window_gates_capture():
    """Frey & Morris: capture needs a live tag; the encoding tag is gone after a few hours."""
    early, late = Memory(MemorySettings(), seed=4), Memory(MemorySettings(), seed=4)
    early.replay(60.0, 0.06, 2)
    late.replay(4 * HOUR, 0.06, 2)
    assert late.stable.sum() < 0.05 * early.stable.sum()
    tag = early.s.tag_tau_s
    m = Memory(MemorySettings(), seed=4)
    assert m.tag(tag)[0] == pytest.approx(np.exp(-1.0))


def test_saturation():
    # every memory fully encoded (no spread): replay consolidates it all, never above 1
    m = Memory(dataclasses.replace(MemorySettings(), replay_gain=0.5, initial_strength=1.0,
                                   encoding_spread=0.0), seed=5)
    _replays(m, np.arange(1, 3000) * 0.2, coupling=2, duration=0.2)
    assert np.all(m.stable <= 1.0) and np.all(m.stable + m.labile <= 1.0 + 1e-12)
    assert np.all(m.stable > 0.9)
    assert max(m.recall_scores().values()) <= 1.0


def test_engram_drift_and_consolidation_slows_it():
    plain = Memory(MemorySettings(drift_per_hour=0.2), seed=6)
    plain.advance_to(6 * HOUR)
    ov = plain.overlap()
    assert np.all(ov < 0.6) and np.all(ov > 0.1)         # ~ (1 - 0.2)^6 = 0.26
    cons = Memory(MemorySettings(drift_per_hour=0.2, replay_gain=0.5), seed=6)
    _replays(cons, np.arange(1, 600) * 1.0, coupling=2, duration=0.2)
    cons.advance_to(6 * HOUR)
    assert cons.overlap().mean() > ov.mean()


def test_theta_pulses_act_through_phase():
    up, down = Memory(MemorySettings(), seed=7), Memory(MemorySettings(), seed=7)
    for k in range(20):
        up.theta_pulse(1.0 + k, 0.0, 0.05)
        down.theta_pulse(1.0 + k, 180.0, 0.05)
    base = Memory(MemorySettings(), seed=7)
    base.advance_to(21.0)
    assert up.labile.mean() > base.labile.mean() > down.labile.mean()


def test_deterministic_for_a_seed():
    def run(seed):
        m = Memory(MemorySettings(), seed=seed)
        _replays(m, np.arange(1, 200) * 7.0, coupling=1)
        m.advance_to(3 * HOUR)
        return m.summary()
    assert run(8) == run(8)
    assert run(8) != run(9)


def test_sim_recall_scores_shape():
    src = SimSource(SimSettings(), seed=1, chunk_samples=500, duration_s=5.0)
    src.start()
    for _ in range(10):
        src.read(0.0)
    r = src.recall_scores()
    assert set(r) == {f"m{i}" for i in range(src.settings.memory.n_memories)}
    assert all(0.0 <= v <= 1.0 for v in r.values())


def test_copy_projects_like_a_deep_copy_and_leaves_the_original_alone():
    import copy

    from engramloop.sim.memory import Memory
    from engramloop.sim.settings import MemorySettings

    m = Memory(MemorySettings(drift_per_hour=0.5), seed=3)
    for k in range(20):                       # some history: replays, a theta pulse, drift
        m.replay(30.0 * k + 1.0, 0.05 + 0.01 * (k % 3), k % 3, truncated=(k == 7))
    m.theta_pulse(700.0, 20.0, 0.01)
    before = copy.deepcopy(m)
    fast, deep = m.copy(), copy.deepcopy(m)
    for mm in (fast, deep):                   # the same future on both copies
        for k in range(15):
            mm.replay(800.0 + 45.0 * k, 0.06, 2)
        mm.advance_to(2000.0)
    assert fast.recall_scores() == deep.recall_scores()
    assert fast.summary() == deep.summary()
    for name in ("labile", "stable", "tag_val", "tag_t", "replays"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(deep, name))
    # the original did not move
    assert m.summary() == before.summary() and m.t == before.t
    assert all(np.array_equal(a, b) for a, b in zip(m.engram, before.engram, strict=True))
