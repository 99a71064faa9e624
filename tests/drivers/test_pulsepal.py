"""Pulse Pal driver: the parameter mapping checked against the numbers in Sanworks'
Firmware/PROTOCOL.md, and the driver against the emulator through pyserial on a real pty
(firmware v21 and v22), including faults."""
from __future__ import annotations

import dataclasses
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engramloop.core.pulse import DeviceError, Pulse, PulseSpec
from engramloop.drivers.pulsepal import (
    CODE,
    PulsePal,
    dac_to_volts,
    safe_channel_params,
    spec_to_params,
    volts_to_dac,
)
from engramloop.sim.emulators.pulsepal_emulator import (
    PulsePalDevice,
    PulsePalEmulator,
    default_params,
)

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

ROOT = Path(__file__).resolve().parents[2]


def pulse(i: int, **spec) -> Pulse:
    t = time.monotonic()
    return Pulse(i, "ripple", PulseSpec(**spec), t, t, t + 1.0)


def stop_confirmed(ops: list[int]) -> bool:
    """The last stop-all (op 80) was followed by a handshake (op 72) the driver read."""
    if 80 not in ops:
        return False
    i = len(ops) - 1 - ops[::-1].index(80)
    return ops[i + 1:i + 2] == [72]


def wait_for(cond, timeout_s: float = 5.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def test_dac_coding_matches_protocol_md():
    # PROTOCOL.md: "0 is -10 V, 32768 is 0 V and 65535 is +10 V"
    assert (volts_to_dac(-10), volts_to_dac(0), volts_to_dac(10)) == (0, 32768, 65535)
    assert volts_to_dac(5) == 49151 and abs(dac_to_volts(volts_to_dac(2.5)) - 2.5) < 20 / 65535
    assert volts_to_dac(-20) == 0 and volts_to_dac(20) == 65535


def test_spec_mapping_monophasic_biphasic_and_trains():
    # 50 us cycles: 100 us = 2 cycles (PROTOCOL.md "20000 cycles per second")
    p = spec_to_params(PulseSpec(modality="electrical", amplitude=5.0, phase_width_s=100e-6))
    assert p[CODE["is_biphasic"]] == 0 and p[CODE["phase1_voltage"]] == 49151
    assert p[CODE["phase1_duration"]] == 2 and p[CODE["pulse_train_duration"]] == 2
    assert p[CODE["link_trigger_channel1"]] == 0 and p[CODE["link_trigger_channel2"]] == 0
    b = spec_to_params(PulseSpec(modality="electrical", shape="biphasic", amplitude=3.0,
                                 phase_width_s=200e-6, interphase_s=50e-6, train_count=4,
                                 train_interval_s=0.01, channel=3))
    assert b[CODE["is_biphasic"]] == 1
    assert b[CODE["phase2_voltage"]] == volts_to_dac(-3.0)
    assert (b[4], b[5], b[6]) == (4, 1, 4)
    pulse_cycles = 4 + 1 + 4
    assert b[CODE["inter_pulse_interval"]] == 200 - pulse_cycles   # onset-to-onset 10 ms
    assert b[CODE["pulse_train_duration"]] == 3 * 200 + pulse_cycles


@pytest.mark.parametrize("spec,match", [
    (dict(modality="auditory"), "auditory"),
    (dict(channel=5), "channel"),
    (dict(amplitude=12.0), "amplitude"),
    (dict(amplitude=0.0), "amplitude"),
    (dict(phase_width_s=120e-6), "timer cycles"),
    (dict(phase_width_s=20e-6), "timer cycles"),
    (dict(train_count=3, train_interval_s=100e-6), "train_interval_s"),
    (dict(amplitude=5.5), r"amplitude.*\(0, 5\] V"),         # above the declared logic level
    (dict(shape="biphasic"), "monophasic"),                 # a logic pulse has one phase
])
def test_spec_refusals(spec, match):
    with pytest.raises(ValueError, match=match):
        spec_to_params(PulseSpec(**spec), ttl_max_v=5.0)


def test_ttl_and_light_need_a_declared_mapping():
    """Issue 19 points 2 and 3: Pulse Pal makes +-10 V analog output, so a ttl spec needs a
    declared logic level and an optogenetic spec in mW a mW-per-volt calibration; without
    them the spec is refused (the message names the key), with them it is converted and
    bounded (the old code played ttl as +-10 V biphasic and 10 mW as +10 V)."""
    ttl = PulseSpec(modality="ttl", shape="biphasic", amplitude=10.0)
    with pytest.raises(ValueError, match=r"stimulators\.pulsepal\.ttl_max_v"):
        spec_to_params(ttl)
    with pytest.raises(ValueError, match="monophasic"):
        spec_to_params(ttl, ttl_max_v=5.0)
    light = PulseSpec(modality="optogenetic", amplitude=10.0, phase_width_s=0.01)
    with pytest.raises(ValueError, match=r"stimulators\.pulsepal\.opto_mw_per_v"):
        spec_to_params(light)
    p = spec_to_params(light, opto_mw_per_v=4.0)          # 10 mW at 4 mW/V -> 2.5 V
    assert dac_to_volts(p[CODE["phase1_voltage"]]) == pytest.approx(2.5, abs=20 / 65535)
    with pytest.raises(ValueError, match="up to 10 V"):    # 10 mW at 0.5 mW/V -> 20 V
        spec_to_params(light, opto_mw_per_v=0.5)
    with pytest.raises(ValueError, match="monophasic"):
        spec_to_params(dataclasses.replace(light, shape="biphasic"), opto_mw_per_v=4.0)


@pytest.mark.parametrize("fw", [21, 22])
def test_driver_programs_and_triggers_through_pty(fw):
    with PulsePalEmulator(firmware_version=fw, hardware_version=3 if fw == 22 else 2) as emu:
        with PulsePal(emu.port) as pp:
            dev = emu.device
            assert pp.info.firmware_version == fw and pp.info.cycle_us == 50
            assert pp.info.hardware_version == (3 if fw == 22 else 2)
            assert dev.client_name == "ENGRAM"
            # open() replaced the factory defaults (linked to trigger 1!) by the safe program
            for ch in range(1, 5):
                assert dev.params[ch] == safe_channel_params() != default_params()
            assert (92 if fw == 22 else 73) in dev.ops
            assert pp.send(pulse(1)).status == "failed"  # not armed
            pp.arm()
            spec = dict(modality="electrical", shape="biphasic", amplitude=2.0,
                        phase_width_s=200e-6, interphase_s=100e-6, train_count=3,
                        train_interval_s=0.01, channel=2)
            d = pp.send(pulse(2, **spec))
            assert d.status == "acked" and d.sent_s < d.ack_s
            assert dev.params[2] == spec_to_params(PulseSpec(**spec))
            wait_for(lambda: len(emu.edges) == 3, what="3 edges")
            us = [e.device_us for _, e in emu.edges]
            assert [b - a for a, b in zip(us, us[1:], strict=False)] == [10_000, 10_000]
            first = emu.edges[0][1].params
            assert first["biphasic"] and first["phase1_v"] == pytest.approx(2.0, abs=1e-3)
            assert first["phase2_v"] == pytest.approx(-2.0, abs=1e-3)
            n_ops = len(dev.ops)
            pp.send(pulse(3, **spec))  # same spec: no reprogramming, only trigger+handshake
            assert dev.ops[n_ops:] == [77, 72]
        assert stop_confirmed(dev.ops)  # close(): stop all, confirmed by a handshake


def test_rejected_parameter_is_named():
    with PulsePalEmulator(reject_codes=(CODE["phase1_duration"],)) as emu:
        with PulsePal(emu.port) as pp:
            pp.arm()
            d = pp.send(pulse(1, modality="electrical", phase_width_s=300e-6))
            assert d.status == "nacked"
            assert "phase1_duration=6 on channel 1 (op 74, parameter code 4)" in d.reason
            with pytest.raises(DeviceError, match="rejected phase1_duration"):
                pp.program(PulseSpec(modality="electrical", phase_width_s=300e-6))


def test_absent_device_names_the_port():
    with pytest.raises(DeviceError, match="/dev/no-pulsepal-here"):
        PulsePal("/dev/no-pulsepal-here").open()


def test_silent_device_handshake_timeout():
    with PulsePalEmulator(silent=True) as emu:
        with pytest.raises(DeviceError, match=f"no response from Pulse Pal on {emu.port} "
                                              r"\(handshake op 72\) after 0.5 s"):
            PulsePal(emu.port).open()


def test_unsupported_firmware_is_refused():
    with PulsePalEmulator(firmware_version=20) as emu:
        with pytest.raises(DeviceError, match="firmware v20"):
            PulsePal(emu.port).open()


def test_emulator_killed_mid_run_raises_device_error():
    code = textwrap.dedent("""
        import time
        from engramloop.sim.emulators.pulsepal_emulator import PulsePalEmulator
        e = PulsePalEmulator().start(); print(e.port, flush=True); time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        port = proc.stdout.readline().strip()
        pp = PulsePal(port, ttl_max_v=5.0)  # the test's pulses are 5 V logic pulses
        pp.open()
        pp.arm()
        assert pp.send(pulse(1)).status == "acked"
        proc.kill()
        proc.wait(5)
        with pytest.raises(DeviceError, match=port):
            pp.send(pulse(2))
        pp.close()
    finally:
        proc.kill()
        proc.wait(5)


def test_device_comm_failure_after_100ms_gap_loads_defaults():
    # PROTOCOL.md "Timeouts": a read gives up after 100 ms without a byte.
    dev = PulsePalDevice()
    msg = struct.pack("<BBBBI", 213, 74, 4, 1, 6)
    dev.step(msg, 0)
    assert dev.params[1][4] == 6
    dev.step(msg[:5], 1_000)  # truncated: 3 value bytes never arrive
    dev.tick(1_000 + 100_001)
    assert dev.comm_failures == 1 and dev.params[1] == default_params()
    reply, _ = dev.step(bytes((213, 72)), 200_000)
    assert reply == b"K" + struct.pack("<I", 22)


def test_garbage_before_op_menu_byte_is_ignored():
    dev = PulsePalDevice()
    reply, edges = dev.step(bytes((0, 77, 1, 42, 7)) + bytes((213, 72)), 0)
    assert reply[:1] == b"K" and dev.ignored_bytes == 5 and edges == [] and dev.ops == [72]


def test_os_level_pty_is_a_tty():
    with PulsePalEmulator() as emu:
        fd = os.open(emu.port, os.O_RDWR | os.O_NOCTTY)
        try:
            assert os.isatty(fd)
        finally:
            os.close(fd)


def test_process_exit_without_close_stops_the_pulse_pal():
    """Pulse Pal has no watchdog: a program that exits mid-train without close() must
    still stop it (atexit)."""
    code = textwrap.dedent("""
        import sys, time
        from engramloop.core.pulse import Pulse, PulseSpec
        from engramloop.drivers.pulsepal import PulsePal
        pp = PulsePal(sys.argv[1]); pp.open(); pp.arm()
        t = time.monotonic()
        pp.send(Pulse(1, "ripple", PulseSpec(modality="electrical", train_count=100,
                                             train_interval_s=0.01), t, t, t + 1))
        sys.exit(0)
    """)
    with PulsePalEmulator() as emu:
        subprocess.run([sys.executable, "-c", code, emu.port], cwd=ROOT, check=True,
                       timeout=30)
        wait_for(lambda: stop_confirmed(emu.device.ops), what="stop at exit")
        n = len(emu.edges)
        assert not emu.device.playing(1, emu.device_now_us()) and n < 100
