"""Device faults and dying threads inside the loop (in-process; the same on real processes
is in test_process_end_and_faults.py)."""
from __future__ import annotations

import dataclasses
import json
import os
import threading

import pytest
import pyxdf
from test_loop import ripple_cfg, sim

from engramloop.controller.build import build_loop
from engramloop.controller.loop import ThreadFailure
from engramloop.controller.recorder import RecordingError
from engramloop.controller.status import StatusBoard
from engramloop.core.pulse import Delivery, DeviceFault
from engramloop.drivers.markers import ShamOutput
from engramloop.drivers.stimbox.protocol import DisarmCause, MsgType
from engramloop.sim.loopback import SimStimOutput

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)


class NackingOutput(ShamOutput):
    """The real sham output, except that its 'device' NACKs the k-th pulse (stands in for a
    stimulator refusing; the real drivers' NACKs are tested on real processes)."""

    def __init__(self, nack_at: int) -> None:
        super().__init__(name="nacker")
        self.nack_at, self.k = nack_at, 0

    def send(self, pulse) -> Delivery:
        self.k += 1
        if self.k == self.nack_at:
            return Delivery(pulse.pulse_id, self.name, "nacked", reason="REFRACTORY")
        d = super().send(pulse)
        return Delivery(d.pulse_id, self.name, "sent", sent_s=d.sent_s)


def test_a_nack_faults_the_output_stops_approvals_and_the_simulator_never_gets_it(tmp_path):
    cfg = ripple_cfg()
    src = sim(cfg)
    nacker = NackingOutput(nack_at=3)
    outputs = [nacker, SimStimOutput(src, None)]
    board = StatusBoard()
    path = tmp_path / "run.xdf"
    loop = build_loop(cfg, speed="max", source=src, outputs=outputs, record=str(path),
                      status_board=board)
    outputs[-1]._clock = loop.clock
    with pytest.raises(DeviceFault, match="nacker.*REFRACTORY"):
        loop.run(30.0)
    res = loop.result
    assert len(src.pulses) == 2           # the two delivered; not the refused third
    statuses = [(d.output, d.status) for _, d in res.deliveries]
    assert statuses[-2:] == [("nacker", "nacked"), ("sim", "cancelled")]
    assert not loop.governor.armed and "nacker" in loop.governor.faults
    snap = board.latest()
    assert not snap.armed and "fault: nacker" in snap.lockouts
    streams, _ = pyxdf.load_xdf(str(path))
    by = {s["info"]["name"][0]: s for s in streams}
    log = [json.loads(x[0]) for x in by["engramloop.log"]["time_series"]]
    assert [m["output"] for m in log if m.get("kind") == "fault"] == ["nacker"]


def stimbox_cfg():
    """sim-ripple through the emulated stim box; the ripple detector calibrates for 2 s
    (not the shipped 5 s): these tests need it calibrated, not any particular baseline."""
    cfg = ripple_cfg()
    cfg = dataclasses.replace(cfg, detectors=dataclasses.replace(
        cfg.detectors, ripple=dataclasses.replace(cfg.detectors.ripple, calibration_s=2.0)))
    st = dataclasses.replace(cfg.stimulators, kinds=("stimbox",),
                             stimbox=dataclasses.replace(cfg.stimulators.stimbox,
                                                         port="emulator"))
    pulse = dataclasses.replace(cfg.policy.pulse, modality="ttl", amplitude=5.0,
                                phase_width_s=0.001)
    return dataclasses.replace(cfg, stimulators=st,
                               policy=dataclasses.replace(cfg.policy, pulse=pulse))


def _armed_and_acked(loop, dev) -> bool:
    """The device is armed (the detectors calibrated) and has acknowledged a pulse."""
    return dev.armed and any(d.status == "acked" for _, d in loop.result.deliveries)


@pytest.mark.parametrize("fault", ["thread", "recorder"])
def test_a_dying_thread_or_recorder_disarms_the_stim_box(tmp_path, fault):
    """Real time, the stim-box emulator on a pty: an exception escaping any thread, or the
    recording failing mid-run, ends the run and the device receives DISARM. The fault
    comes once the device is armed and has acknowledged a pulse: a helper thread dies, or
    the recording's FIFO, whose reader took everything until then, is closed, so the
    writes after that fail (EPIPE) while the device is armed. 60 s is only the ceiling."""
    record = str(tmp_path / "run.xdf")
    close_storage = threading.Event()
    if fault == "recorder":
        os.mkfifo(record)

        def storage():
            fd = os.open(record, os.O_RDONLY)
            os.set_blocking(fd, False)
            while not close_storage.is_set():
                try:
                    if not os.read(fd, 1 << 16):
                        break
                except BlockingIOError:
                    close_storage.wait(0.01)
            os.close(fd)

        threading.Thread(target=storage, daemon=True).start()
    loop = build_loop(stimbox_cfg(), speed=1, duration_s=60.0, record=record)
    emu_box: list = []

    class Trouble:
        """Once the device is armed and working, a helper thread dies (or the storage
        goes away)."""

        calibrating = False
        n = 0
        done = False

        def process(self, chunk):
            Trouble.n += 1
            if Trouble.n == 1:
                emu_box.append(loop.outputs[0].emulator)
            if not Trouble.done and _armed_and_acked(loop, emu_box[0].device):
                Trouble.done = True
                if fault == "thread":
                    def boom():
                        raise ValueError("helper thread bug")
                    threading.Thread(target=boom, name="helper").start()
                else:
                    close_storage.set()
            return []

    loop.detectors.append(Trouble())
    exc = ThreadFailure if fault == "thread" else RecordingError
    with pytest.raises(exc):
        loop.run(60.0)
    assert Trouble.done   # the fault came while armed, not at the 60 s ceiling
    dev = emu_box[0].device
    armed_at = max(t for t, cmd, _ in dev.log.acks if cmd == MsgType.ARM)
    assert any(cmd == MsgType.DISARM and t > armed_at for t, cmd, _ in dev.log.acks)
    assert dev.log.disarms[-1][1] == DisarmCause.HOST and not dev.armed
    assert not loop.governor.armed
    if fault == "thread":
        assert "helper thread bug" in loop.result.error


def test_rearm_after_a_healthy_time_only_when_config_allows_it(tmp_path):
    """[stimulators] fault_rearm_after_s = 1: the stim box disarms itself (its watchdog
    tripped, injected) mid-run; the loop disarms, waits 1 s of device health, re-arms
    (ARM reaches the device again), logs both, and pulses are acknowledged again.

    Paced by what happens, not by a fixed length: the trip is injected as soon as the
    device is armed (the detectors calibrated) and has acknowledged a pulse, and the run
    stops at the first pulse acknowledged after the re-arm; 60 s of data is only the
    ceiling of a stuck run."""
    cfg = stimbox_cfg()
    cfg = dataclasses.replace(cfg, stimulators=dataclasses.replace(
        cfg.stimulators, fault_rearm_after_s=1.0, fault_max_rearms=5))
    path = tmp_path / "run.xdf"
    loop = build_loop(cfg, speed=1, duration_s=60.0, record=str(path))
    emu_box: list = []
    seen: dict = {}

    class Trip:
        """Once the device is armed (calibrated) and has acknowledged a pulse, it disarms
        itself; once it is armed again and a pulse after that is acknowledged, the run
        stops."""

        calibrating = False
        n = 0

        def process(self, chunk):
            Trip.n += 1
            if Trip.n == 1:
                emu_box.append(loop.outputs[0].emulator)
            emu = emu_box[0]
            dev = emu.device
            if "trip" not in seen and _armed_and_acked(loop, dev):
                seen["trip"] = Trip.n
                emu.trip_at_us = emu.device_now_us()
            elif "trip" in seen and "stop" not in seen:
                arms = [t for t, cmd, _ in list(dev.log.acks) if cmd == MsgType.ARM]
                if len(arms) >= 2:
                    t = emu.host_time(arms[-1])
                    if any(d.status == "acked" and d.sent_s > t
                           for _, d in loop.result.deliveries):
                        seen["stop"] = Trip.n
                        loop.stop("test: a pulse was acknowledged after the re-arm")
            return []

    loop.detectors.append(Trip())
    res = loop.run(60.0)
    assert "stop" in seen, (seen, res.stop_reason)   # not the 60 s ceiling
    assert res.stop_reason.startswith("test:") and not res.error
    dev = emu_box[0].device
    # (a loaded machine may add a real watchdog trip; each one goes the same way)
    tripped = [t for t, cause, _ in dev.log.disarms if cause == DisarmCause.WATCHDOG]
    arms = [t for t, cmd, _ in dev.log.acks if cmd == MsgType.ARM]
    assert tripped and len(arms) == len(tripped) + 1
    for trip, arm in zip(tripped, arms[1:], strict=True):
        assert arm > trip + 1e6   # re-armed >= 1 s of health after the trip
    streams, _ = pyxdf.load_xdf(str(path))
    by = {s["info"]["name"][0]: s for s in streams}
    kinds = [json.loads(x[0]).get("kind") for x in by["engramloop.log"]["time_series"]]
    assert [k for k in kinds if k in ("fault", "fault_hold", "rearm")] == \
        ["fault", "fault_hold", "rearm"] * len(tripped)
    rearm_t = emu_box[0].host_time(arms[-1])
    assert [d for _, d in res.deliveries if d.status == "acked" and d.sent_s > rearm_t]
