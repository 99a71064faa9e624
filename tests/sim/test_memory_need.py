"""Need matters: memories differ in encoding strength, weaker ones are replayed more and
gain more per replay (Schapiro et al. 2018; Creery et al. 2015), and the simulator tells a
forecaster which memories are at risk."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engramloop.core.chunk import EndOfStream
from engramloop.sim.memory import Memory
from engramloop.sim.settings import HypnogramSettings, MemorySettings, SimSettings
from engramloop.sim.source import SimSource


def test_encoding_strengths_differ_around_the_mean():
    s = MemorySettings(n_memories=8)
    m = Memory(s, seed=3)
    assert np.ptp(m.encoding) > 0.5 * s.initial_strength          # +-50 % spread
    assert m.encoding.mean() == pytest.approx(s.initial_strength)
    assert not np.array_equal(m.encoding, Memory(s, seed=4).encoding)  # order per seed
    flat = Memory(dataclasses.replace(s, encoding_spread=0.0), seed=3)
    assert np.all(flat.encoding == s.initial_strength)


def test_weaker_memories_are_replayed_more():
    m = Memory(MemorySettings(n_memories=6), seed=1)
    for k in range(3000):
        m.replay(1.0 + 0.3 * k, 0.05, 1, key=(6, k))
    order = np.argsort(m.encoding)
    counts = m.replays[order]
    assert counts[0] > 2 * counts[-1]                   # weakest vs strongest
    assert np.corrcoef(m.encoding, m.replays)[0, 1] < -0.8
    uniform = Memory(MemorySettings(n_memories=6, need_exponent=0.0), seed=1)
    for k in range(3000):
        uniform.replay(1.0 + 0.3 * k, 0.05, 1, key=(6, k))
    assert np.ptp(uniform.replays) < 0.5 * np.ptp(m.replays)


def test_a_replay_helps_a_weak_memory_more():
    s = MemorySettings(n_memories=2, encoding_spread=0.6)
    gains = []
    for i in (0, 1):
        m = Memory(s, seed=0)
        # force the replay onto memory i: need only that one
        m.labile[1 - i] = 1.0
        m.stable[1 - i] = 0.0
        before = m.recall_scores(100.0)
        m.replay(100.0, 0.06, 2, key=(1,))
        after = m.recall_scores(100.0)
        assert m.replays[i] == 1
        gains.append((m.encoding[i], after[f"m{i}"] - before[f"m{i}"]))
    (e_weak, g_weak), (e_strong, g_strong) = sorted(gains)
    assert e_weak < e_strong and g_weak > 1.5 * g_strong > 0


def test_source_exposes_encoding_and_need():
    s = dataclasses.replace(SimSettings(), hypnogram=HypnogramSettings(schedule=("N3:60",)))
    src = SimSource(s, seed=2, chunk_samples=2000, duration_s=20.0)
    src.start()
    while True:
        try:
            src.read(0.0)
        except EndOfStream:
            break
    st = src.memory_state()
    assert set(st["encoding"]) == set(st["need"]) == set(st["recall"])
    assert sum(st["need"].values()) == pytest.approx(1.0)
    weakest = min(st["encoding"], key=st["encoding"].get)
    assert max(st["need"], key=st["need"].get) == weakest
    src.stop()
