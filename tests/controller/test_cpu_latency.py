"""The PM QoS CPU wake-up latency request (scheduler.cpu_wakeup_latency_us) against the
kernel's real /dev/cpu_dma_latency: held for a real-time run, released on every exit, and a
clear warning (run continues) where the device cannot be written."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from engramloop.controller import cpu_latency
from engramloop.controller.build import build_loop
from engramloop.controller.config import SHIPPED_DIR, ConfigError, load_config
from engramloop.controller.cpu_latency import CpuLatencyRequest, current_latency_us

ROOT = Path(__file__).resolve().parents[2]
WRITABLE = os.access(cpu_latency.DEVICE, os.W_OK)


def ripple_cfg(latency_us: int):
    cfg = load_config(SHIPPED_DIR / "sim-ripple.toml")
    return dataclasses.replace(cfg, scheduler=dataclasses.replace(
        cfg.scheduler, cpu_wakeup_latency_us=latency_us))


def test_request_is_what_the_kernel_enforces_until_released():
    """Where the device is writable (root on Linux) the kernel reports our request as the
    limit in force while it is held and its previous limit after release; elsewhere
    holding fails with the device named and what to do."""
    req = CpuLatencyRequest(0)
    if not WRITABLE:
        with pytest.raises(OSError, match="cpu_dma_latency.*root"):
            req.hold()
        assert not req.held
        return
    before = current_latency_us()
    req.hold()
    try:
        assert req.held and current_latency_us() == 0
        req.hold()                       # idempotent: still one request
    finally:
        req.release()
    assert not req.held and current_latency_us() == before
    req.release()                        # idempotent


def test_real_time_run_holds_the_request_and_releases_it():
    msgs: list[str] = []
    seen: list[int] = []
    loop = build_loop(ripple_cfg(0), speed=1, duration_s=0.3, log=msgs.append)
    if WRITABLE:
        before = current_latency_us()
        orig = loop._decode

        def decode(chunk):               # read the limit in force while the loop runs
            if not seen:
                seen.append(current_latency_us())
            return orig(chunk)

        loop._decode = decode
    loop.run(0.3)
    if WRITABLE:
        assert seen == [0]
        assert current_latency_us() == before
        assert any("CPU wake-up latency held at 0 us" in m for m in msgs)
    else:
        assert any("cpu_wakeup_latency_us = 0 refused" in m for m in msgs)
    assert loop._tuning.cpu_request is None and not loop.governor.armed


def test_missing_device_is_a_warning_and_the_run_goes_on(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_latency, "DEVICE", str(tmp_path / "no-such-device"))
    msgs: list[str] = []
    loop = build_loop(ripple_cfg(0), speed=1, duration_s=0.3, log=msgs.append)
    res = loop.run(0.3)
    refused = [m for m in msgs if "refused" in m]
    assert len(refused) == 1 and "no-such-device" in refused[0]
    assert "normal CPU idle states" in refused[0]
    assert res.n_chunks == 60 and res.stop_reason == "end of source"   # 0.3 s at 2 kHz / 10


def test_not_held_by_default_nor_in_unpaced_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_latency, "DEVICE", str(tmp_path / "no-such-device"))
    for cfg, speed in ((ripple_cfg(-1), 1), (ripple_cfg(0), "max")):
        msgs: list[str] = []
        build_loop(cfg, speed=speed, duration_s=0.2, log=msgs.append).run(0.2)
        assert not any("wake-up latency" in m or "cpu_wakeup" in m for m in msgs)


def test_config_range_is_checked(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text((SHIPPED_DIR / "sim-ripple.toml").read_text().replace(
        "[scheduler]\n", "[scheduler]\ncpu_wakeup_latency_us = -2\n"))
    with pytest.raises(ConfigError, match="scheduler.cpu_wakeup_latency_us"):
        load_config(p)
