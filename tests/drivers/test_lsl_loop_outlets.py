"""The loop publishes its signal and its decisions on LSL ([lsl_outlets]); read back with
real pylsl inlets on loopback."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pylsl
import pytest

from engramloop.controller.build import build_loop
from engramloop.controller.config import SHIPPED_DIR, load_config, loads_config
from engramloop.core.clock import SimClock
from engramloop.core.schema import ConfigError
from engramloop.drivers.lsl_outlets import LoopOutlets, LslOutletSettings
from engramloop.sim.source import SimSource

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

ROOT = Path(__file__).resolve().parents[2]


def _inlet(name: str) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("name", name, 1, 5.0)
    assert found, f"LSL stream {name} not visible"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60, recover=False)
    inlet.open_stream(timeout=5.0)
    return inlet


def _pull_all(inlet: pylsl.StreamInlet, want: int, tries: int = 50) -> tuple[list, list]:
    samples, stamps = [], []
    for _ in range(tries):
        s, t = inlet.pull_chunk(timeout=0.1)
        samples += s
        stamps += t
        if len(samples) >= want:
            break
    return samples, stamps


def test_signal_outlet_carries_the_chunks_exactly() -> None:
    prefix = f"engramloop-test-{os.getpid()}-sig"
    # LSL reads a timestamp of 0.0 as "now", so start the simulated clock away from zero
    src = SimSource(seed=3, chunk_samples=50, duration_s=1.0, clock=SimClock(1000.0))
    src.start()
    out = LoopOutlets(LslOutletSettings(enabled=True, prefix=prefix, streams=()))
    out.add_signal_stream(src)
    inlet = _inlet(f"{prefix}.signal")
    assert inlet.info().channel_count() == len(src.channels)
    sent, times = [], []
    for _ in range(10):
        c = src.read(0.0)
        out.write_chunk(c)
        sent.append(c.samples)
        times.append(c.timestamps)
    got, stamps = _pull_all(inlet, 500)
    out.close()
    np.testing.assert_array_equal(np.array(got), np.vstack(sent))
    np.testing.assert_allclose(stamps, np.concatenate(times), atol=1e-9)


def test_loop_publishes_events_and_governor_decisions() -> None:
    prefix = f"engramloop-test-{os.getpid()}-loop"
    cfg = load_config(SHIPPED_DIR / "sim-ripple.toml")
    cfg = dataclasses.replace(cfg, lsl_outlets=LslOutletSettings(
        enabled=True, prefix=prefix, streams=("events", "governor")))
    loop = build_loop(cfg, speed="max", duration_s=30.0)
    events_in, gov_in = _inlet(f"{prefix}.events"), _inlet(f"{prefix}.governor")
    # The run closes its outlets at the end; hold the underlying pylsl outlets so what was
    # pushed stays readable after a --speed max run that ends in milliseconds.
    keep = [m._outlet for m in loop.recorder._markers.values()]
    result = loop.run(None)
    assert result.error == ""
    events, _ = _pull_all(events_in, len(result.events))
    decisions, _ = _pull_all(gov_in, len(result.decisions))
    kinds = [json.loads(e[0])["kind"] for e in events]
    assert kinds == [e.kind for e in result.events] and "ripple" in kinds
    rules = [json.loads(d[0])["rule"] for d in decisions]
    assert rules == [d.rule for d in result.decisions] and rules
    del keep


def test_lsl_outlet_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="lsl_outlets.streams: unknown stream 'raw'"):
        loads_config("[lsl_outlets]\nenabled = true\nstreams = ['raw']\n", "rig.toml")
