"""The stim-box state machine (what the firmware does), driven with injected device time:
boot state, heartbeat watchdog, limits, NACK reasons, trains, STOP/DISARM, counters.
No sleeping: every time below is a device microsecond handed in."""
from __future__ import annotations

import pytest

from engramloop.drivers.stimbox.protocol import (
    Ack,
    DisarmCause,
    FrameParser,
    MsgType,
    Nack,
    NackReason,
    PulseCmd,
    Shape,
    Status,
    encode_frame,
)
from engramloop.sim.emulators.stimbox_emulator import (
    MAX_RATE_PER_S,
    REFRACTORY_US,
    WATCHDOG_US,
    StimBoxDevice,
)


class Host:
    """Frames in, decoded replies out."""

    def __init__(self, dev: StimBoxDevice) -> None:
        self.dev = dev
        self.seq = 0
        self.edges = []

    def cmd(self, t_us: int, msg: int, payload: bytes = b""):
        self.seq = (self.seq + 1) & 0xFF
        reply, edges = self.dev.step(encode_frame(self.seq, msg, payload), t_us)
        self.edges += edges
        frames = FrameParser().feed(reply, 0)
        assert len(frames) == 1 and frames[0].seq == self.seq
        f = frames[0]
        if f.type == MsgType.ACK:
            return Ack.unpack(f.payload)
        if f.type == MsgType.NACK:
            return Nack.unpack(f.payload)
        return Status.unpack(f.payload)

    def pulse(self, t_us: int, **kw):
        c = PulseCmd(**{"channel": 1, "shape": Shape.MONOPHASIC, "width_us": 100,
                        "amplitude": 5000, **kw})
        return self.cmd(t_us, c.msg_type, c.pack())


def test_boot_is_disarmed_with_outputs_low_and_refuses_pulses():
    dev = StimBoxDevice()
    h = Host(dev)
    assert not dev.armed and dev.all_outputs_low(0)
    st = h.cmd(5, MsgType.STATUS)
    assert st.armed == 0 and st.disarm_cause == DisarmCause.BOOT
    assert (st.refractory_us, st.max_rate_per_s) == (REFRACTORY_US, MAX_RATE_PER_S)
    r = h.pulse(10)
    assert isinstance(r, Nack) and r.reason == NackReason.NOT_ARMED
    assert dev.tick(10_000_000) == [] and dev.edges_fired == 0


def test_ack_carries_device_edge_time_and_output_goes_high_for_width():
    dev = StimBoxDevice()
    h = Host(dev)
    h.cmd(0, MsgType.ARM)
    r = h.pulse(1000, width_us=200, delay_us=500)
    assert isinstance(r, Ack) and r.cmd == MsgType.PULSE
    assert (r.rx_us, r.edge_us) == (1000, 1500)
    assert dev.tick(1499) == [] and dev.all_outputs_low(1499)
    (e,) = dev.tick(1500)
    assert (e.device_us, e.channel, e.params["width_us"]) == (1500, 1, 200)
    assert dev.output_high(1, 1600) and not dev.output_high(1, 1700)


def test_watchdog_disarms_after_100ms_without_heartbeat():
    dev = StimBoxDevice()
    h = Host(dev)
    h.cmd(0, MsgType.ARM)
    for t in range(50_000, 1_000_001, 50_000):  # heartbeats every 50 ms keep it armed
        h.cmd(t, MsgType.HEARTBEAT)
        dev.tick(t + 49_999)
        assert dev.armed
    last = 1_000_000
    h.pulse(last, delay_us=150_000)  # pending when the watchdog fires: must be cancelled
    dev.tick(last + WATCHDOG_US)
    assert dev.armed  # exactly 100 ms: still fine
    dev.tick(last + WATCHDOG_US + 1)
    assert not dev.armed and dev.disarm_cause == DisarmCause.WATCHDOG
    assert dev.log.disarms[-1][1] == DisarmCause.WATCHDOG
    assert dev.tick(last + 10_000_000) == [] and dev.edges_fired == 0
    r = h.pulse(last + 200_000)
    assert isinstance(r, Nack) and r.reason == NackReason.NOT_ARMED
    # a late heartbeat does not re-arm
    h.cmd(last + 300_000, MsgType.HEARTBEAT)
    assert not dev.armed


def test_watchdog_applies_even_if_the_next_byte_is_a_pulse():
    dev = StimBoxDevice()
    h = Host(dev)
    h.cmd(0, MsgType.ARM)
    r = h.pulse(WATCHDOG_US + 1)  # no tick in between: step() checks the watchdog first
    assert isinstance(r, Nack) and r.reason == NackReason.NOT_ARMED


def test_refractory_and_rate_limits():
    dev = StimBoxDevice(refractory_us=40_000, max_rate_per_s=3)
    h = Host(dev)
    h.cmd(0, MsgType.ARM)
    assert isinstance(h.pulse(1_000), Ack)
    r = h.pulse(20_000, channel=2)
    assert isinstance(r, Nack) and r.reason == NackReason.REFRACTORY
    h.cmd(30_000, MsgType.HEARTBEAT)
    assert isinstance(h.pulse(41_000, channel=2), Ack)
    h.cmd(80_000, MsgType.HEARTBEAT)
    assert isinstance(h.pulse(90_000, channel=3), Ack)
    h.cmd(130_000, MsgType.HEARTBEAT)
    r = h.pulse(140_000, channel=4)  # 4th onset inside 1 s
    assert isinstance(r, Nack) and r.reason == NackReason.RATE_LIMIT
    t = 140_000
    while t < 1_010_000:
        t += 50_000
        h.cmd(t, MsgType.HEARTBEAT)
    assert isinstance(h.pulse(t, channel=4), Ack)  # the first onset left the window


@pytest.mark.parametrize("kw,reason", [
    ({"channel": 0}, NackReason.BAD_CHANNEL),
    ({"channel": 6}, NackReason.BAD_CHANNEL),
    ({"shape": Shape.BIPHASIC}, NackReason.BAD_SHAPE),
    ({"shape": Shape.CLICK}, NackReason.BAD_SHAPE),           # click on a TTL line
    ({"channel": 5, "shape": Shape.MONOPHASIC}, NackReason.BAD_SHAPE),
    ({"width_us": 5}, NackReason.BAD_WIDTH),
    ({"width_us": 60_000}, NackReason.BAD_WIDTH),
    ({"amplitude": 0}, NackReason.BAD_AMPLITUDE),
    ({"delay_us": 1_000_001}, NackReason.BAD_DELAY),
    ({"count": 101, "interval_us": 2_000}, NackReason.BAD_TRAIN),
    ({"count": 3, "interval_us": 50}, NackReason.BAD_TRAIN),
    ({"count": 100, "interval_us": 30_000}, NackReason.BAD_TRAIN),  # > 2 s span
])
def test_nack_reasons(kw, reason):
    dev = StimBoxDevice()
    h = Host(dev)
    h.cmd(0, MsgType.ARM)
    r = h.pulse(10, **kw)
    assert isinstance(r, Nack) and r.reason == reason and r.cmd in (MsgType.PULSE,
                                                                   MsgType.TRAIN)
    assert dev.tick(3_000_000) == []


def test_bad_length_unknown_command_and_busy():
    dev = StimBoxDevice(refractory_us=0)
    h = Host(dev)
    h.cmd(0, MsgType.ARM)
    assert h.cmd(1, MsgType.PULSE, b"\x01\x00").reason == NackReason.BAD_LENGTH
    assert h.cmd(2, MsgType.HEARTBEAT, b"\x00").reason == NackReason.BAD_LENGTH
    assert h.cmd(3, 0x42).reason == NackReason.UNKNOWN_COMMAND
    assert isinstance(h.pulse(10, delay_us=5_000), Ack)
    assert h.pulse(20).reason == NackReason.BUSY
    assert isinstance(h.pulse(30, channel=2), Ack)


def test_click_train_edges_follow_the_interval():
    dev = StimBoxDevice()
    h = Host(dev)
    h.cmd(0, MsgType.ARM)
    r = h.pulse(100, channel=5, shape=Shape.CLICK, width_us=10_000, amplitude=20000,
                count=3, interval_us=50_000)
    assert isinstance(r, Ack) and r.cmd == MsgType.TRAIN
    edges = []
    for t in range(100, 100_101, 10_000):
        h.cmd(t, MsgType.HEARTBEAT)
        edges += dev.tick(t)
    edges += h.edges
    assert [e.device_us for e in edges] == [100, 50_100, 100_100]
    assert [e.params["index"] for e in edges] == [0, 1, 2]
    assert all(e.params["shape"] == "click" and e.channel == 5 for e in edges)


def test_stop_and_disarm_drive_outputs_low_and_cancel_pending():
    dev = StimBoxDevice(refractory_us=0)
    h = Host(dev)
    h.cmd(0, MsgType.ARM)
    h.pulse(10, width_us=50_000)
    h.pulse(20, channel=2, delay_us=30_000)
    assert dev.output_high(1, 100)
    h.cmd(100, MsgType.STOP)
    assert dev.armed and dev.all_outputs_low(100) and dev.tick(100_000) == []
    h.pulse(200_000 - 50_000, width_us=50_000)
    h.cmd(150_100, MsgType.DISARM)
    assert not dev.armed and dev.disarm_cause == DisarmCause.HOST
    assert dev.all_outputs_low(150_100)


def test_status_counts_garbage_crc_and_gap_discards():
    dev = StimBoxDevice()
    h = Host(dev)
    dev.step(b"\x00\x01garbage", 0)
    bad = bytearray(encode_frame(3, MsgType.ARM))
    bad[-2] ^= 0x10
    dev.step(bytes(bad), 10)
    dev.step(encode_frame(4, MsgType.ARM)[:5], 20)
    dev.tick(20 + 100_001)  # truncated frame: discarded after the 100 ms gap
    st = h.cmd(200_000, MsgType.STATUS)
    assert st.garbage_bytes == 9 and st.crc_errors == 1 and st.gap_discards == 1
    assert st.armed == 0 and dev.edges_fired == 0
