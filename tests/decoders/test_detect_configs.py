"""The shipped configs build the detectors they are meant to run.

``make_detectors`` refuses an enabled detector whose channels the source lacks (issue 18),
so a shipped config must disable what its source cannot feed (a ripple detector on a
scalp-EEG board). Here every shipped config is loaded and its detector set checked against
the channels its source delivers (the simulator's channel set for ``kind = "sim"``).
"""
from __future__ import annotations

import pytest

from engramloop.controller.config import SHIPPED_DIR, load_config
from engramloop.decoders.detectors import make_detectors
from engramloop.decoders.ripple import RippleDetector
from engramloop.decoders.slow_osc import SlowOscDetector
from engramloop.decoders.spindle import SpindleDetector

CONFIGS = SHIPPED_DIR

# config -> detectors it must run
EXPECTED = {
    "sim-ripple.toml": {RippleDetector},
    "sim-ripple-laminar.toml": {RippleDetector},
    "sim-so.toml": {RippleDetector, SpindleDetector, SlowOscDetector},
    "cyton-rig.toml": {SpindleDetector, SlowOscDetector},
    "stimbox-rig.toml": {SpindleDetector, SlowOscDetector},
    "pulsepal-rig.toml": {RippleDetector},
}


def _source_channels(cfg) -> tuple[str, ...]:
    if cfg.source.kind == "sim":
        return tuple(cfg.sim.channels)
    return tuple(cfg.source.channels)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_config_runs_its_detectors(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    channels = _source_channels(cfg)
    stages = make_detectors(cfg, channels=channels)
    assert {type(s) for s in stages} == EXPECTED[name]
    for s in stages:     # every configured channel exists (else an error at the first chunk)
        assert set(s.settings.channels) <= set(channels), (name, s.settings.channels)


@pytest.mark.parametrize("name", ["sim-ripple.toml", "sim-so.toml"])
def test_sim_configs_pool_both_ca1_sites(name: str) -> None:
    r = load_config(CONFIGS / name).detectors.ripple
    assert r.channels == ("CA1", "CA1b") and len(r.pool_weights) == 2
