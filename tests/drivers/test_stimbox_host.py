"""The stim-box host driver against the emulator through pyserial on a real pty: open,
arm, pulses acknowledged with the device's edge time, NACKs, faults (absent device,
silent device, emulator killed, garbage on the line, host killed with SIGKILL) and the
device-to-host clock map. Timing figures are printed, never asserted (see
bench/hardware.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import serial

from engramloop.core.pulse import DeviceError, Pulse, PulseSpec
from engramloop.drivers.stimbox import ClockMap, StimBox, spec_to_command
from engramloop.drivers.stimbox.protocol import DisarmCause, MsgType, Shape
from engramloop.sim.emulators.stimbox_emulator import StimBoxEmulator

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

ROOT = Path(__file__).resolve().parents[2]


def pulse(i: int, **spec) -> Pulse:
    t = time.monotonic()
    return Pulse(i, "ripple", PulseSpec(**spec), t, t, t + 1.0)


def wait_for(cond, timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll a condition on a deadline (events happen on other threads/processes)."""
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


@pytest.fixture
def emu():
    e = StimBoxEmulator(device_offset_us=2**32 - 200_000)  # wraps uint32 during the test
    e.start()
    yield e
    e.close()


def test_open_arm_pulse_ack_maps_device_edge_to_host(emu):
    with StimBox(emu.port) as sb:
        assert sb.status.n_ttl == 4 and sb.status.audio_channel == 5
        assert not emu.device.armed  # open() leaves it disarmed
        sb.arm()
        assert emu.device.armed
        d = sb.send(pulse(1, channel=3, phase_width_s=0.0005))
        assert d.status == "acked" and d.output == "stimbox" and d.reason == ""
        assert d.sent_s < d.ack_s
        wait_for(lambda: len(emu.edges) == 1, what="edge")
        t_true, edge = emu.edges[0]
        assert edge.channel == 3 and edge.params["width_us"] == 500
        # The mapped edge time is the device's own timestamp mapped through the heartbeat
        # exchanges; its error is bounded by half the worst round trip used by the map.
        err = d.device_edge_s - t_true
        print(f"device_edge_s - emulator truth = {err * 1e6:.1f} us, "
              f"rtt {(d.ack_s - d.sent_s) * 1e6:.0f} us")
        assert d.sent_s <= t_true <= d.ack_s
    assert not emu.device.armed and emu.device.disarm_cause == DisarmCause.HOST


def test_nack_is_reported_with_reason(emu):
    with StimBox(emu.port) as sb:
        sb.arm()
        assert sb.send(pulse(1)).status == "acked"
        d = sb.send(pulse(2, channel=2))  # within the device's 40 ms refractory period
        assert d.status == "nacked" and "REFRACTORY" in d.reason
        assert emu.device.log.nacks[-1][2].name == "REFRACTORY"


def test_send_refuses_when_not_armed_or_impossible(emu):
    with StimBox(emu.port) as sb:
        d = sb.send(pulse(1))
        assert d.status == "failed" and "not armed" in d.reason
        sb.arm()
        d = sb.send(pulse(2, shape="biphasic", modality="electrical"))
        assert d.status == "failed" and "biphasic" in d.reason
        assert emu.device.edges_fired == 0


def test_spec_mapping():
    c = spec_to_command(PulseSpec(modality="auditory", amplitude=70.0, phase_width_s=0.01),
                        click_full_scale_db_spl=90.0)
    assert (c.channel, c.shape, c.width_us) == (5, Shape.CLICK, 10_000)
    assert c.amplitude == round(65535 * 10 ** (-20 / 20))
    t = spec_to_command(PulseSpec(train_count=5, train_interval_s=0.01, channel=2))
    assert t.msg_type == MsgType.TRAIN and (t.count, t.interval_us) == (5, 10_000)
    with pytest.raises(ValueError, match="amplitude"):
        spec_to_command(PulseSpec(amplitude=12.0))
    with pytest.raises(ValueError, match="phase_width_s"):
        spec_to_command(PulseSpec(phase_width_s=1.0))


def test_clock_map_unwraps_and_fits_drift():
    cm = ClockMap()
    # device runs 50 ppm fast, starts 1 s before wrap, host = 100 s + device time
    for k in range(300):
        host = 100.0 + k * 0.02
        dev = int((2**32 - 1_000_000) + k * 20_000 * (1 + 50e-6)) & 0xFFFFFFFF
        cm.add(host - 1e-4, host + 1e-4, dev)
    dev_later = int((2**32 - 1_000_000) + 299 * 20_000 * (1 + 50e-6)) & 0xFFFFFFFF
    assert abs(cm.to_host(dev_later) - (100.0 + 299 * 0.02)) < 1e-6


def test_absent_device_names_the_port():
    with pytest.raises(DeviceError, match="/dev/does-not-exist"):
        StimBox("/dev/does-not-exist").open()


def test_silent_device_times_out_naming_port():
    master, slave = os.openpty()  # a tty nobody answers on
    try:
        port = os.ttyname(slave)
        with pytest.raises(DeviceError, match=f"no response from stim box on {port}.*0.5 s"):
            StimBox(port).open()
    finally:
        os.close(master)
        os.close(slave)


def test_garbage_and_truncated_frames_on_the_line_cause_no_pulse(emu):
    with StimBox(emu.port) as sb:
        sb.arm()
        with serial.Serial(emu.port) as raw:  # a second writer on the same tty
            raw.write(bytes(range(256)) + b"\xa5\x5a\x0a\x01\x03\x01\x00" + b"\xa5\x5a\x30")
            raw.flush()
        p = emu.device.parser
        # the dangling frame is thrown away by the 100 ms gap rule, or by a CRC error
        # if heartbeat bytes complete it first
        wait_for(lambda: p.garbage_bytes >= 256 and p.gap_discards + p.crc_errors >= 1,
                 what="garbage and truncated frames counted")
        st = sb.read_status()
        assert st.edges == 0 and emu.device.edges_fired == 0
        assert st.garbage_bytes >= 256 and st.gap_discards + st.crc_errors >= 1
        print(f"garbage_bytes={st.garbage_bytes} gap_discards={st.gap_discards} "
              f"length_errors={st.length_errors} crc_errors={st.crc_errors}")


def test_emulator_killed_mid_run_raises_device_error_naming_port():
    proc = subprocess.Popen([sys.executable, "-m", "engramloop.sim.emulators.stimbox_emulator"],
                            cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        sb = StimBox(port)
        sb.open()
        sb.arm()
        assert sb.send(pulse(1)).status == "acked"
        proc.kill()
        proc.wait(5)
        with pytest.raises(DeviceError, match=port):
            for i in range(200):  # the reader notices the dead port; send then raises
                sb.send(pulse(2 + i))
                time.sleep(0.01)
        sb.close()  # closing after the device vanished must not raise
    finally:
        proc.kill()
        proc.wait(5)
        proc.stdout.close()


HOST_CHILD = textwrap.dedent("""
    import sys, time
    from engramloop.drivers.stimbox import StimBox
    sb = StimBox(sys.argv[1]); sb.open(); sb.arm()
    print("armed", flush=True)
    time.sleep(60)
""")


def test_sigkilled_host_lets_device_disarm_by_watchdog(emu):
    proc = subprocess.Popen([sys.executable, "-c", HOST_CHILD, emu.port], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "armed"
        time.sleep(0.2)  # heartbeats keep it armed well past one watchdog period
        assert emu.device.armed
        t_kill = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        wait_for(lambda: not emu.device.armed, 5.0, "watchdog disarm")
        dis_us, cause, last_hb_us = emu.device.log.disarms[-1]
        assert cause == DisarmCause.WATCHDOG and emu.device.all_outputs_low()
        print(f"SIGKILL -> device disarmed after {(emu.host_time(dis_us) - t_kill) * 1e3:.1f} "
              f"ms (host clock); last heartbeat -> disarm {(dis_us - last_hb_us) / 1e3:.1f} "
              "ms (device clock)")
    finally:
        proc.kill()
        proc.wait(5)
        proc.stdout.close()


def test_close_stops_heartbeat_so_device_disarms_even_without_disarm(emu):
    sb = StimBox(emu.port)
    sb.open()
    sb.arm()
    # Simulate a DISARM that never arrives: close() with the writer unable to reach the
    # device still stops the heartbeat thread, and the watchdog does the rest.
    sb._ser.write = lambda data: len(data)  # noqa: SLF001 - the test cuts the TX line
    sb.close()
    wait_for(lambda: not emu.device.armed, 5.0, "watchdog disarm")
    assert emu.device.disarm_cause == DisarmCause.WATCHDOG
    assert not any(t.is_alive() for t in sb._threads)  # noqa: SLF001


def test_process_exit_without_close_disarms_at_once(emu):
    code = ("import sys; from engramloop.drivers.stimbox import StimBox\n"
            "sb = StimBox(sys.argv[1]); sb.open(); sb.arm(); sys.exit(0)\n")
    subprocess.run([sys.executable, "-c", code, emu.port], cwd=ROOT, check=True, timeout=30)
    wait_for(lambda: emu.device.log.disarms, what="disarm")
    assert emu.device.log.disarms[-1][1] == DisarmCause.HOST  # DISARM sent, not the watchdog
