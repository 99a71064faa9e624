"""The engramloop stim-box wire protocol: framing, CRC, the byte-wise frame parser and the
message payloads. Shared by the host driver (``drivers.stimbox.host``), the emulator
(``sim.stimbox_emulator``) and mirrored line by line by the reference firmware
(``drivers/stimbox/firmware/stimbox/stimbox.ino``). ``PROTOCOL.md`` next to this file is
the normative description; every constant here is defined there.

Frame layout (all multi-byte fields little-endian)::

    offset  size  field
    0       1     SYNC0 = 0xA5
    1       1     SYNC1 = 0x5A
    2       1     LEN   payload length, 0..MAX_PAYLOAD
    3       1     SEQ   sequence number (a reply echoes the command's SEQ)
    4       1     TYPE  message type
    5       LEN   PAYLOAD
    5+LEN   2     CRC   CRC-16/CCITT-FALSE over LEN, SEQ, TYPE, PAYLOAD

The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection,
no final XOR; check value 0x29B1 for ASCII "123456789"), as catalogued in Greg Cook's
"Catalogue of parametrised CRC algorithms" (reveng). Python's ``binascii.crc_hqx(data,
0xFFFF)`` computes the same function and is used by the tests as the independent
reference.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

SYNC0 = 0xA5
SYNC1 = 0x5A
HEADER_LEN = 5  # SYNC0 SYNC1 LEN SEQ TYPE
CRC_LEN = 2
MAX_PAYLOAD = 48
MAX_FRAME = HEADER_LEN + MAX_PAYLOAD + CRC_LEN

#: A partial frame older than this (microseconds since its last byte) is discarded.
INTRA_FRAME_GAP_US = 100_000
#: Without a valid HEARTBEAT (or ARM) for this long an armed device disarms itself.
WATCHDOG_US = 100_000
#: Firmware version reported in STATUS replies by the reference firmware and emulator.
FIRMWARE_VERSION = 1


class MsgType(IntEnum):
    """Message types. Host-to-device commands are < 0x80, device replies >= 0x80."""

    ARM = 0x01
    DISARM = 0x02
    PULSE = 0x03
    TRAIN = 0x04
    STOP = 0x05
    STATUS = 0x06
    HEARTBEAT = 0x07
    ACK = 0x81
    NACK = 0x82
    STATUS_REPLY = 0x83


class Shape(IntEnum):
    """Waveform codes in PULSE/TRAIN. The reference firmware drives TTL lines (monophasic
    only) and one audio line (click only); BIPHASIC is reserved for analog boards and
    NACKed with BAD_SHAPE by the reference firmware."""

    MONOPHASIC = 0
    BIPHASIC = 1
    CLICK = 2


class NackReason(IntEnum):
    """Why the device refused a command (payload byte 1 of a NACK)."""

    NOT_ARMED = 1
    REFRACTORY = 2
    RATE_LIMIT = 3
    BAD_CHANNEL = 4
    BAD_SHAPE = 5
    BAD_WIDTH = 6
    BAD_AMPLITUDE = 7
    BAD_DELAY = 8
    BAD_TRAIN = 9
    BAD_LENGTH = 10
    UNKNOWN_COMMAND = 11
    BUSY = 12


NACK_TEXT = {
    NackReason.NOT_ARMED: "device is disarmed (never armed, DISARM, or heartbeat watchdog)",
    NackReason.REFRACTORY: "inside the device's refractory period",
    NackReason.RATE_LIMIT: "device's maximum trigger rate reached",
    NackReason.BAD_CHANNEL: "no such output channel",
    NackReason.BAD_SHAPE: "shape not supported on this channel",
    NackReason.BAD_WIDTH: "width_us out of range",
    NackReason.BAD_AMPLITUDE: "amplitude out of range",
    NackReason.BAD_DELAY: "delay_us out of range",
    NackReason.BAD_TRAIN: "train count/interval out of range",
    NackReason.BAD_LENGTH: "payload length wrong for this command",
    NackReason.UNKNOWN_COMMAND: "unknown command type",
    NackReason.BUSY: "channel already has a pulse pending or playing",
}


class DisarmCause(IntEnum):
    """Why the device is disarmed (STATUS_REPLY field)."""

    BOOT = 0
    HOST = 1
    WATCHDOG = 2
    ARMED = 255  # not disarmed


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (poly 0x1021, init 0xFFFF), continuing from ``crc``."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


@dataclass(frozen=True)
class Frame:
    """One decoded frame: sequence number, message type code and raw payload bytes."""

    seq: int
    type: int
    payload: bytes


def encode_frame(seq: int, msg_type: int, payload: bytes = b"") -> bytes:
    """Bytes of one frame.

    Raises
    ------
    ValueError
        If the payload is longer than ``MAX_PAYLOAD`` or seq/type do not fit a byte.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"stim-box frame payload is {len(payload)} bytes, max {MAX_PAYLOAD}")
    if not (0 <= seq <= 255 and 0 <= msg_type <= 255):
        raise ValueError(f"stim-box frame seq/type must be bytes, got {seq}/{msg_type}")
    body = bytes((len(payload), seq, msg_type)) + bytes(payload)
    return bytes((SYNC0, SYNC1)) + body + struct.pack("<H", crc16(body))


class FrameParser:
    """Byte-wise frame parser with resynchronisation, as run by the firmware.

    States: hunt SYNC0 -> expect SYNC1 -> LEN -> SEQ -> TYPE -> payload -> CRC lo -> CRC hi.
    A byte that breaks the expected pattern drops back to hunting (counted in
    ``garbage_bytes``); a LEN above ``MAX_PAYLOAD`` is a ``length_errors``; a CRC mismatch
    is a ``crc_errors``; a partial frame whose last byte is older than ``gap_us`` is
    discarded (``gap_discards``) at the next ``feed``/``poll``. Only frames with a good CRC
    are returned, so no garbage can ever become a command.

    Parameters
    ----------
    gap_us : int
        Intra-frame gap, microseconds, after which a partial frame is thrown away.
    """

    _HUNT, _SYNC1, _LEN, _SEQ, _TYPE, _PAYLOAD, _CRC0, _CRC1 = range(8)

    def __init__(self, gap_us: int = INTRA_FRAME_GAP_US) -> None:
        self.gap_us = int(gap_us)
        self.frames_ok = 0
        self.crc_errors = 0
        self.gap_discards = 0
        self.length_errors = 0
        self.garbage_bytes = 0
        self._reset()
        self._last_byte_us = 0

    def _reset(self) -> None:
        self._state = self._HUNT
        self._len = 0
        self._seq = 0
        self._type = 0
        self._payload = bytearray()
        self._crc_lo = 0

    @property
    def in_frame(self) -> bool:
        """True while a partial frame is being assembled."""
        return self._state != self._HUNT

    def poll(self, now_us: int) -> None:
        """Discard a partial frame whose last byte arrived more than ``gap_us`` ago."""
        if self._state != self._HUNT and now_us - self._last_byte_us > self.gap_us:
            self.gap_discards += 1
            self._reset()

    def feed(self, data: bytes | bytearray, now_us: int) -> list[Frame]:
        """Consume bytes received at device/host time ``now_us`` (microseconds, monotonic).

        Returns
        -------
        list of Frame
            Every complete frame with a valid CRC, in arrival order (possibly empty).
        """
        self.poll(now_us)
        out: list[Frame] = []
        for b in data:
            self._last_byte_us = now_us
            st = self._state
            if st == self._HUNT:
                if b == SYNC0:
                    self._state = self._SYNC1
                else:
                    self.garbage_bytes += 1
            elif st == self._SYNC1:
                if b == SYNC1:
                    self._state = self._LEN
                elif b == SYNC0:
                    self.garbage_bytes += 1  # the previous A5 was noise; this one may start
                else:
                    self.garbage_bytes += 2
                    self._state = self._HUNT
            elif st == self._LEN:
                if b > MAX_PAYLOAD:
                    self.length_errors += 1
                    self._reset()
                else:
                    self._len = b
                    self._state = self._SEQ
            elif st == self._SEQ:
                self._seq = b
                self._state = self._TYPE
            elif st == self._TYPE:
                self._type = b
                self._payload = bytearray()
                self._state = self._PAYLOAD if self._len else self._CRC0
            elif st == self._PAYLOAD:
                self._payload.append(b)
                if len(self._payload) == self._len:
                    self._state = self._CRC0
            elif st == self._CRC0:
                self._crc_lo = b
                self._state = self._CRC1
            else:  # _CRC1
                got = self._crc_lo | (b << 8)
                body = bytes((self._len, self._seq, self._type)) + bytes(self._payload)
                if got == crc16(body):
                    self.frames_ok += 1
                    out.append(Frame(self._seq, self._type, bytes(self._payload)))
                else:
                    self.crc_errors += 1
                self._reset()
        return out


# ---------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------

_PULSE = struct.Struct("<BBHHI")        # channel, shape, width_us, amplitude, delay_us
_TRAIN = struct.Struct("<BBHHIHI")      # ... + count, interval_us
_ACK = struct.Struct("<BII")            # cmd type, rx_us, edge_us
_NACK = struct.Struct("<BBI")           # cmd type, reason, rx_us
_STATUS = struct.Struct("<BBHIIIIHHHHIHBB")


@dataclass(frozen=True)
class PulseCmd:
    """PULSE (count 1) or TRAIN payload.

    Attributes
    ----------
    channel : int
        1-based output channel.
    shape : int
        A ``Shape`` code.
    width_us : int
        Phase (TTL high / click burst) duration, microseconds, 1..65535.
    amplitude : int
        Channel-specific level code 0..65535 (TTL: non-zero = high; click: linear
        fraction of full scale x 65535).
    delay_us : int
        Delay from receipt of the frame to the first edge, microseconds.
    count : int
        Pulses in the train (1 for PULSE).
    interval_us : int
        Onset-to-onset interval of a train, microseconds (0 for PULSE).
    """

    channel: int
    shape: int
    width_us: int
    amplitude: int
    delay_us: int = 0
    count: int = 1
    interval_us: int = 0

    @property
    def msg_type(self) -> MsgType:
        return MsgType.PULSE if self.count == 1 and self.interval_us == 0 else MsgType.TRAIN

    def pack(self) -> bytes:
        if self.msg_type == MsgType.PULSE:
            return _PULSE.pack(self.channel, self.shape, self.width_us, self.amplitude,
                               self.delay_us)
        return _TRAIN.pack(self.channel, self.shape, self.width_us, self.amplitude,
                           self.delay_us, self.count, self.interval_us)

    @classmethod
    def unpack(cls, msg_type: int, payload: bytes) -> PulseCmd:
        """Decode a PULSE/TRAIN payload. Raises ValueError on a wrong length."""
        if msg_type == MsgType.PULSE:
            if len(payload) != _PULSE.size:
                raise ValueError("PULSE payload length")
            return cls(*_PULSE.unpack(payload))
        if len(payload) != _TRAIN.size:
            raise ValueError("TRAIN payload length")
        return cls(*_TRAIN.unpack(payload))


@dataclass(frozen=True)
class Ack:
    """ACK payload: the acknowledged command type, device time (us, uint32, wraps) at
    which its frame completed, and the device time of the (first) output edge it caused
    (equal to ``rx_us`` for commands without an edge)."""

    cmd: int
    rx_us: int
    edge_us: int

    def pack(self) -> bytes:
        return _ACK.pack(self.cmd, self.rx_us & 0xFFFFFFFF, self.edge_us & 0xFFFFFFFF)

    @classmethod
    def unpack(cls, payload: bytes) -> Ack:
        return cls(*_ACK.unpack(payload))


@dataclass(frozen=True)
class Nack:
    """NACK payload: the refused command type, a ``NackReason`` code, device time (us)."""

    cmd: int
    reason: int
    rx_us: int

    def pack(self) -> bytes:
        return _NACK.pack(self.cmd, self.reason, self.rx_us & 0xFFFFFFFF)

    @classmethod
    def unpack(cls, payload: bytes) -> Nack:
        return cls(*_NACK.unpack(payload))

    @property
    def reason_name(self) -> str:
        try:
            r = NackReason(self.reason)
        except ValueError:
            return f"UNKNOWN_REASON_{self.reason}"
        return f"{r.name} ({NACK_TEXT[r]})"


@dataclass(frozen=True)
class Status:
    """STATUS_REPLY payload (36 bytes): state, counters and the device's own limits."""

    armed: int
    disarm_cause: int
    fw_version: int
    now_us: int
    frames_ok: int
    edges: int
    garbage_bytes: int
    crc_errors: int
    gap_discards: int
    length_errors: int
    nacks: int
    refractory_us: int
    max_rate_per_s: int
    n_ttl: int
    audio_channel: int

    def pack(self) -> bytes:
        v = [self.armed, self.disarm_cause, self.fw_version, self.now_us & 0xFFFFFFFF,
             self.frames_ok, self.edges, self.garbage_bytes, self.crc_errors,
             self.gap_discards, self.length_errors, self.nacks, self.refractory_us,
             self.max_rate_per_s, self.n_ttl, self.audio_channel]
        caps = [0xFF, 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF,
                0xFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFF, 0xFF, 0xFF]
        return _STATUS.pack(*(min(int(x), c) for x, c in zip(v, caps, strict=True)))

    @classmethod
    def unpack(cls, payload: bytes) -> Status:
        return cls(*_STATUS.unpack(payload))


PAYLOAD_SIZES = {MsgType.ARM: 0, MsgType.DISARM: 0, MsgType.STOP: 0, MsgType.STATUS: 0,
                 MsgType.HEARTBEAT: 0, MsgType.PULSE: _PULSE.size, MsgType.TRAIN: _TRAIN.size,
                 MsgType.ACK: _ACK.size, MsgType.NACK: _NACK.size,
                 MsgType.STATUS_REPLY: _STATUS.size}

__all__ = ["SYNC0", "SYNC1", "MAX_PAYLOAD", "MAX_FRAME", "INTRA_FRAME_GAP_US", "WATCHDOG_US",
           "FIRMWARE_VERSION", "MsgType", "Shape", "NackReason", "NACK_TEXT", "DisarmCause",
           "crc16", "Frame", "encode_frame", "FrameParser", "PulseCmd", "Ack", "Nack",
           "Status", "PAYLOAD_SIZES"]
