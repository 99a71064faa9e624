"""Stim-box framing, CRC and the byte-wise parser, checked against independent references
(binascii.crc_hqx, a brute-force frame scanner written from PROTOCOL.md) and fuzzed with
hypothesis: random and mutated byte streams never crash the parser and never cause a
pulse."""
from __future__ import annotations

import binascii
import random
import struct

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from engramloop.drivers.stimbox.protocol import (
    MAX_PAYLOAD,
    Ack,
    FrameParser,
    MsgType,
    Nack,
    PulseCmd,
    Shape,
    Status,
    crc16,
    encode_frame,
)
from engramloop.sim.emulators.stimbox_emulator import StimBoxDevice


def scan_valid_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Independent reference: every (offset, seq, type, payload) where a frame with a
    correct CRC starts, per PROTOCOL.md, found by brute force at every offset."""
    out = []
    for i in range(len(data) - 6):
        if data[i] != 0xA5 or data[i + 1] != 0x5A:
            continue
        n = data[i + 2]
        if n > MAX_PAYLOAD or i + 7 + n > len(data):
            continue
        body = data[i + 2:i + 5 + n]
        crc = struct.unpack("<H", data[i + 5 + n:i + 7 + n])[0]
        if crc == binascii.crc_hqx(body, 0xFFFF):
            out.append((i, data[i + 3], data[i + 4], bytes(data[i + 5:i + 5 + n])))
    return out


def test_crc_matches_crc_hqx_and_check_value():
    assert crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value (reveng catalogue)
    rng = random.Random(0)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
        assert crc16(data) == binascii.crc_hqx(data, 0xFFFF)


def test_frame_layout_follows_protocol_md():
    fr = encode_frame(7, MsgType.PULSE, PulseCmd(2, Shape.MONOPHASIC, 100, 5000, 250).pack())
    assert fr[:2] == b"\xa5\x5a" and fr[2] == 10 and fr[3] == 7 and fr[4] == 0x03
    assert struct.unpack("<BBHHI", fr[5:15]) == (2, 0, 100, 5000, 250)
    assert struct.unpack("<H", fr[15:17])[0] == binascii.crc_hqx(fr[2:15], 0xFFFF)
    assert len(encode_frame(0, MsgType.HEARTBEAT)) == 7
    with pytest.raises(ValueError, match="payload"):
        encode_frame(0, 1, bytes(MAX_PAYLOAD + 1))


def test_payload_round_trips():
    t = PulseCmd(5, Shape.CLICK, 10000, 4000, 0, 3, 100000)
    assert t.msg_type == MsgType.TRAIN and PulseCmd.unpack(MsgType.TRAIN, t.pack()) == t
    p = PulseCmd(1, 0, 50, 1, 7)
    assert p.msg_type == MsgType.PULSE and PulseCmd.unpack(MsgType.PULSE, p.pack()) == p
    assert Ack.unpack(Ack(3, 2**32 + 5, 9).pack()) == Ack(3, 5, 9)  # uint32 on the wire
    assert Nack.unpack(Nack(3, 2, 11).pack()).reason_name.startswith("REFRACTORY")
    s = Status(1, 255, 1, 5, 6, 7, 8, 9, 10, 11, 12, 40000, 20, 4, 5)
    assert len(s.pack()) == 36 and Status.unpack(s.pack()) == s


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_parser_is_chunking_independent_and_resyncs(chunk):
    rng = random.Random(1)
    frames = [encode_frame(i, MsgType.HEARTBEAT if i % 2 else MsgType.PULSE,
                           b"" if i % 2 else PulseCmd(1, 0, 100, 1, 0).pack())
              for i in range(20)]
    stream = b""
    for f in frames:
        stream += bytes(rng.randrange(256) for _ in range(rng.randrange(0, 9))) + f
    p = FrameParser()
    got = []
    step = chunk or len(stream)
    for i in range(0, len(stream), step):
        got += p.feed(stream[i:i + step], 0)
    ref = scan_valid_frames(stream)
    assert [(f.seq, f.type, f.payload) for f in got] == [r[1:] for r in ref]
    assert len(got) == 20


def test_parser_counts_bad_crc_bad_length_and_gaps():
    p = FrameParser(gap_us=100_000)
    good = encode_frame(1, MsgType.STATUS)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    assert p.feed(bytes(bad), 0) == [] and p.crc_errors == 1
    assert p.feed(b"\xa5\x5a\xff", 10) == [] and p.length_errors == 1
    # A frame interrupted for more than 100 ms is discarded, the next one parses.
    assert p.feed(good[:4], 1000) == []
    assert p.feed(good[4:], 1000 + 100_001) == [] and p.gap_discards == 1
    assert len(p.feed(good, 200_000)) == 1
    # A 99 ms gap inside a frame is fine.
    assert p.feed(good[:3], 300_000) == []
    assert len(p.feed(good[3:], 399_000)) == 1


_ARM = encode_frame(0, MsgType.ARM)
_HEARTBEAT = encode_frame(1, MsgType.HEARTBEAT)


def _armed_device() -> tuple[StimBoxDevice, int]:
    dev = StimBoxDevice(refractory_us=0, max_rate_per_s=1000)
    dev.step(_ARM, 0)
    assert dev.armed
    return dev, 0


def _pulse_acks(reply: bytes) -> int:
    if not reply:
        return 0
    n = 0
    for f in FrameParser().feed(reply, 0):
        if f.type == MsgType.ACK and Ack.unpack(f.payload).cmd in (MsgType.PULSE,
                                                                      MsgType.TRAIN):
            n += 1
    return n


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.binary(max_size=256), cut_seed=st.integers(0, 2**32 - 1))
def test_fuzz_random_bytes_never_crash_never_pulse(stream, cut_seed):
    """10^4 random byte streams, cut into pieces fed with random gaps (0-150 ms, so the
    100 ms intra-frame rule triggers too) to an ARMED device: the parser never raises, and
    the device never fires unless the stream really contains a valid PULSE/TRAIN frame
    (independent brute-force scan)."""
    dev, t = _armed_device()
    rng = random.Random(cut_seed)
    acks = 0
    i = 0
    while i < len(stream):
        n = rng.randrange(1, 49)
        t += rng.choice((0, 10, 1_000, 99_000, 150_000))
        # keep it armed so "no pulse" is the parser's doing, not the watchdog's
        dev.step(_HEARTBEAT, t)
        reply, _ = dev.step(stream[i:i + n], t)
        acks += _pulse_acks(reply)
        i += n
    edges = dev.tick(t + 2_000_000)
    valid = [r for r in scan_valid_frames(stream) if r[2] in (MsgType.PULSE, MsgType.TRAIN)]
    if not valid:
        assert dev.edges_fired == 0 and acks == 0 and not edges


@settings(max_examples=1_000, deadline=None, derandomize=True)
@given(data=st.data())
def test_fuzz_mutated_pulse_frames_never_pulse(data):
    """Valid PULSE frames with a flipped bit, a truncation or inserted garbage: no pulse."""
    frame = bytearray(encode_frame(9, MsgType.PULSE, PulseCmd(1, 0, 100, 1, 0).pack()))
    how = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "truncate":
        frame = frame[:data.draw(st.integers(0, len(frame) - 1))]
    else:
        i = data.draw(st.integers(3, len(frame) - 1))
        frame[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    dev, t = _armed_device()
    reply, _ = dev.step(bytes(frame), 10)
    edges = dev.tick(200_000)
    if not any(r[2] == MsgType.PULSE for r in scan_valid_frames(bytes(frame))):
        assert dev.edges_fired == 0 and _pulse_acks(reply) == 0 and not edges
