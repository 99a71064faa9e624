"""The closed loop on the real simulator: outputs off on every exit path, gap inhibition,
sham sends nothing, the recording holds every decision, backlog handling."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from engramloop.controller.build import build_loop
from engramloop.controller.config import SHIPPED_DIR, load_config
from engramloop.controller.recorder import RecordingError
from engramloop.core.chunk import SourceError
from engramloop.core.clock import HostClock
from engramloop.core.pulse import Delivery, DeviceError
from engramloop.drivers.markers import ShamOutput
from engramloop.sim.loopback import SimStimOutput
from engramloop.sim.source import SimSource

ROOT = Path(__file__).resolve().parents[2]
RIPPLE = SHIPPED_DIR / "sim-ripple.toml"


def ripple_cfg(**policy):
    cfg = load_config(RIPPLE)
    if policy:
        cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, **policy))
    return cfg


class FaultySource:
    """The real SimSource with a fault injected: raises ``exc`` on read number ``at``, or
    drops chunks number ``drop`` (lost samples). Everything else is forwarded."""

    def __init__(self, inner, at: int = -1, exc: BaseException | None = None,
                 drop: tuple[int, ...] = ()) -> None:
        self.inner, self.at, self.exc, self.drop = inner, at, exc, set(drop)
        self.n = 0
        self.rate_hz, self.channels = inner.rate_hz, inner.channels

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def start(self):
        self.inner.start()

    def stop(self):
        self.inner.stop()

    def read(self, timeout_s):
        self.n += 1
        if self.n == self.at:
            raise self.exc
        c = self.inner.read(timeout_s)
        if self.n in self.drop:
            self.n += 1
            c = self.inner.read(timeout_s)
        return c


class FailingOutput(ShamOutput):
    """The real sham output, except that its device 'vanishes' at the k-th pulse (stands in
    for a serial stimulator unplugged mid-run; the drivers' own tests cover real ports)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(name="failing")
        self.fail_at, self.k = fail_at, 0

    def send(self, pulse) -> Delivery:
        self.k += 1
        if self.k == self.fail_at:
            raise DeviceError("failing: no answer on /dev/ttyFAKE0 (unplugged?)")
        return super().send(pulse)


def sim(cfg, duration_s: float = 30.0) -> SimSource:
    return SimSource(cfg.sim, seed=cfg.seed, chunk_samples=cfg.source.chunk_samples,
                     duration_s=duration_s)


def assert_all_off(loop, outputs) -> None:
    assert not loop.governor.armed
    assert loop.scheduler.pending == 0
    for o in outputs:
        assert not o._armed
        if isinstance(o, ShamOutput):
            assert not o._open


@pytest.mark.parametrize("fault", ["source", "device", "keyboard", "recorder"])
def test_outputs_off_on_every_exit_path(tmp_path, fault):
    cfg = ripple_cfg()
    src = sim(cfg)
    record = str(tmp_path / "run.xdf")
    sham = ShamOutput()
    outputs = [sham]
    if fault == "source":
        src = FaultySource(src, at=3000, exc=SourceError("sim: injected failure at read 3000"))
    elif fault == "keyboard":
        src = FaultySource(src, at=3000, exc=KeyboardInterrupt())
    elif fault == "device":
        outputs = [FailingOutput(fail_at=3)]
    elif fault == "recorder":
        record = "/dev/full"  # every write fails with ENOSPC
    outputs.append(SimStimOutput(src, None))
    loop = build_loop(cfg, speed="max", source=src, outputs=outputs, record=record)
    outputs[-1]._clock = loop.clock
    if fault == "keyboard":
        res = loop.run(30.0)  # Ctrl-C is a stop: outputs off, summary returned
        assert res.stop_reason.startswith("interrupted") and res.n_chunks == 2999
    else:
        exc = {"source": SourceError, "device": DeviceError, "recorder": RecordingError}[fault]
        with pytest.raises(exc):
            loop.run(30.0)
        assert loop.result.error
    assert_all_off(loop, outputs)
    if fault in ("source", "keyboard", "device"):
        streams, _ = pyxdf.load_xdf(record)  # the recording was closed properly
        names = {s["info"]["name"][0]: s for s in streams}
        assert len(names["engramloop.governor"]["time_series"]) == len(loop.result.decisions)
    if fault == "device":
        assert loop.result.n_chunks < 30 * 2000 / 10  # stopped early


def test_gap_blocks_pulses_for_one_refractory_period():
    cfg = ripple_cfg()
    ref = build_loop(cfg, speed="max", duration_s=30.0).run(30.0)
    pulses = [p for p, _ in ref.pulses_sent]
    assert len(pulses) > 5
    target = pulses[3]
    # drop the chunk 20 ms before the detection that produced the 4th pulse
    k = int(round((target.detect_s - 0.020) * 2000 / 10))
    loop = build_loop(cfg, speed="max", source=FaultySource(sim(cfg), drop=(k,)))
    res = loop.run(30.0)
    assert res.n_gaps == 1 and res.refusals["gap"] >= 1
    gap_t = (k - 1) * 10 / 2000
    for d in res.decisions:
        if d.approved:
            assert not (gap_t <= d.pulse.intended_s < gap_t + cfg.safety.refractory_s)
    assert any(not d.approved and d.rule == "gap" for d in res.decisions)


def test_sham_decides_and_records_everything_but_sends_nothing(tmp_path):
    cfg = ripple_cfg(condition="sham")
    spy = ShamOutput(name="spy")
    src = sim(cfg, 20.0)
    path = tmp_path / "sham.xdf"
    loop = build_loop(cfg, speed="max", source=src, outputs=[spy], record=str(path),
                      config_text="# sham run\n")
    res = loop.run(20.0)
    assert sum(d.approved for d in res.decisions) > 3
    assert not spy.pulses and not src.pulses  # nothing reached an output or the brain
    assert {d.status for _, d in res.deliveries} == {"sham"}
    assert not loop.governor.armed and not spy._armed
    streams, header = pyxdf.load_xdf(str(path))
    by = {s["info"]["name"][0]: s for s in streams}
    gov = [json.loads(x[0]) for x in by["engramloop.governor"]["time_series"]]
    assert len(gov) == len(res.decisions)
    assert [g["rule"] for g in gov] == [d.rule for d in res.decisions]
    pul = [json.loads(x[0]) for x in by["engramloop.pulses"]["time_series"]]
    assert len(pul) == len(res.deliveries)
    assert all(p["delivery"]["status"] == "sham" for p in pul)
    truth = [json.loads(x[0]) for x in by["engramloop.truth"]["time_series"]]
    assert len([t for t in truth if t["kind"] not in ("recall", "truth_document")]) \
        == len(src.truth.events())
    assert [t["kind"] for t in truth].count("truth_document") == 1  # for re-scoring
    assert truth[-1]["kind"] == "recall" and len(truth[-1]["recall_scores"]) >= 1
    assert by["engramloop.raw"]["time_series"].shape == (res.n_samples, len(src.channels))


@pytest.mark.realtime
def test_backlog_is_detected_and_newest_data_acted_on():
    cfg = ripple_cfg()
    src = SimSource(cfg.sim, seed=cfg.seed, clock=HostClock(), paced=True,
                    chunk_samples=10, duration_s=1.5)
    loop = build_loop(cfg, speed=1, source=src, outputs=[ShamOutput()])

    class Stall:
        """A detector stage that stalls once for 40 ms (8 chunks at 2 kHz / 10 samples),
        as a slow disk or a GC pause would."""

        calibrating = False
        n = 0

        def process(self, chunk):
            Stall.n += 1
            if Stall.n == 100:
                time.sleep(0.04)
            return []

    loop.detectors.append(Stall())
    res = loop.run(5.0)
    assert res.stop_reason == "end of source"
    assert res.n_backlog >= 1 and res.n_backlog_chunks >= 2
    # every sample was still decoded (filter continuity) and counted
    assert res.n_samples == 3000
    assert not loop.governor.armed


def test_loop_refuses_a_policy_safety_would_always_refuse():
    from engramloop.core.schema import ConfigError

    cfg = ripple_cfg()
    cfg = dataclasses.replace(cfg, safety=dataclasses.replace(cfg.safety,
                                                              modalities=("ttl",)))
    with pytest.raises(ConfigError, match="policy.pulse.modality"):
        build_loop(cfg, speed="max", duration_s=1.0)


def test_pulse_timing_uses_the_simulated_clock_exactly():
    cfg = ripple_cfg()
    res = build_loop(cfg, speed="max", duration_s=20.0).run(20.0)
    sent = res.pulses_sent
    assert sent and all(d.sent_s == p.intended_s for p, d in sent)
    assert res.lateness.count == len(sent) and res.lateness.max_s == 0.0
    assert np.all(np.diff([p.intended_s for p, _ in sent]) >= cfg.safety.refractory_s)


def test_disarmed_by_default_and_dashboard_controls():
    from engramloop.controller.status import StatusBoard

    cfg = ripple_cfg()
    cfg = dataclasses.replace(cfg, safety=dataclasses.replace(cfg.safety, arm_on_start=False))
    spy = ShamOutput(name="spy")
    res = build_loop(cfg, speed="max", duration_s=20.0, outputs=[spy]).run(20.0)
    approved = [d for d in res.decisions if d.approved]
    assert res.decisions and not approved and res.refusals["disarmed"] == len(res.decisions)
    assert not spy.pulses

    # the dashboard's keys: arm (through the governor), disarm, stop
    board = StatusBoard()
    loop = build_loop(cfg, speed="max", duration_s=60.0, status_board=board)

    class Keys:
        """Presses keys at fixed chunk counts, as the dashboard's key thread would."""

        calibrating = False
        n = 0

        def process(self, chunk):
            Keys.n += 1
            if Keys.n == 1000:
                loop.arm()
            elif Keys.n == 3000:
                loop.disarm()
            elif Keys.n == 4000:
                loop.stop("q pressed")
            return []

    loop.detectors.append(Keys())
    res = loop.run(60.0)
    assert res.stop_reason == "q pressed" and res.n_chunks == 4000
    ok = [d.pulse.intended_s for d in res.decisions if d.approved]
    assert ok and all(5.0 <= t <= 15.0 for t in ok)  # armed from 5 s to 15 s only
    assert all(d.rule == "disarmed" for d in res.decisions
               if not d.approved and d.t_s > 15.0)
    snap = board.latest()
    assert snap is not None and snap.state == "stopped" and not snap.armed
    assert snap.pulses_sent == len(res.pulses_sent)


@pytest.mark.realtime
def test_real_time_through_the_emulated_stim_box():
    """Paced run: pulses go over a real pseudo-terminal to the stim-box emulator, which
    acknowledges them and hands each output edge back to the simulator."""
    cfg = ripple_cfg()
    st = dataclasses.replace(cfg.stimulators, kinds=("stimbox",),
                             stimbox=dataclasses.replace(cfg.stimulators.stimbox,
                                                         port="emulator"))
    pulse = dataclasses.replace(cfg.policy.pulse, modality="ttl", amplitude=5.0,
                                phase_width_s=0.001)
    cfg = dataclasses.replace(cfg, stimulators=st,
                              policy=dataclasses.replace(cfg.policy, pulse=pulse))
    loop = build_loop(cfg, speed=1, duration_s=10.0)
    res = loop.run(10.0)
    delivered = [d for _, d in res.deliveries if d.status == "acked"]
    assert res.n_failed == 0 and len(delivered) >= 1
    assert all(d.output == "stimbox" and d.ack_s >= d.sent_s for d in delivered)
    # the emulator's output edges reached the simulated brain
    assert len(loop.sim_source.pulses) == len(delivered)
    assert not loop.governor.armed
