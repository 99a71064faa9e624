"""An OpenBCI Cyton on a pseudo-terminal, written from the documented board protocol, so
tests and demos can run BrainFlow's real Cyton driver end to end.

Protocol facts used (OpenBCI documentation, "Cyton SDK" and "Cyton Data Format"):

- serial at 115200 baud; the host sends single-character commands;
- ``v``: soft reset; the board answers with a text banner ending in ``$$$``;
- ``d``: set every channel to default settings; answer ends in ``$$$``;
- ``b``: start streaming; ``s``: stop streaming (no answer);
- each sample is a 33-byte packet: header ``0xA0``; a sample counter byte (0-255,
  wrapping); 8 channels x 3 bytes, each a 24-bit big-endian two's-complement ADS1299
  count; 6 bytes of auxiliary data (3 x 16-bit accelerometer values); footer ``0xC0``
  (``0xC0``..``0xC6`` say how the aux bytes are to be read);
- 250 samples per second;
- channel value in volts = count x 4.5 V / gain / (2^23 - 1), gain 24 by default (ADS1299
  datasheet: full scale +/-VREF/gain with VREF = 4.5 V; OpenBCI "Interpreting the EEG
  data"), i.e. about 0.02235 uV per count.
"""
from __future__ import annotations

import os
import select
import time
from collections.abc import Iterable, Sequence

import numpy as np

from engramloop.drivers.files import load_file
from engramloop.sim.emulators.pty_device import PtyDevice
from engramloop.sim.generate import simulate

RATE_HZ = 250.0
N_CHANNELS = 8
HEADER = 0xA0
FOOTER = 0xC0
VREF_V = 4.5
GAIN = 24.0
VOLTS_PER_COUNT = VREF_V / GAIN / (2 ** 23 - 1)

BANNER = (b"OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\n"
          b"LIS3DH Device ID: 0x33\nFirmware: v3.1.2\n$$$")
DEFAULTS_REPLY = b"updating channel settings to default$$$"


def volts_to_counts(volts: np.ndarray) -> np.ndarray:
    """ADS1299 counts (int32, clipped to 24 bits) for values in volts."""
    c = np.round(np.asarray(volts, dtype=np.float64) / VOLTS_PER_COUNT)
    return np.clip(c, -(2 ** 23), 2 ** 23 - 1).astype(np.int32)


def encode_packet(counter: int, counts: np.ndarray, aux: bytes = b"\x00" * 6) -> bytes:
    """One 33-byte Cyton packet for 8 channel counts (int, 24-bit range)."""
    body = bytearray([HEADER, counter & 0xFF])
    for c in counts:
        body += (int(c) & 0xFFFFFF).to_bytes(3, "big")
    body += aux
    body.append(FOOTER)
    return bytes(body)


def decode_packet(packet: bytes) -> tuple[int, np.ndarray]:
    """(counter, counts (8,)) from a 33-byte packet; the test's independent reference."""
    if len(packet) != 33 or packet[0] != HEADER or not 0xC0 <= packet[32] <= 0xC6:
        raise ValueError("not a Cyton packet")
    counts = []
    for i in range(N_CHANNELS):
        v = int.from_bytes(packet[2 + 3 * i: 5 + 3 * i], "big")
        counts.append(v - (1 << 24) if v & 0x800000 else v)
    return packet[1], np.array(counts, dtype=np.int32)


def to_cyton_signal(samples: np.ndarray, rate_hz: float,
                    channels: Sequence[str] = ()) -> np.ndarray:
    """Fit any recording to the Cyton's 8 channels at 250 Hz.

    Parameters
    ----------
    samples : ndarray, shape (n_samples, n_channels), volts
        Signals at ``rate_hz``; resampled with a polyphase anti-aliasing filter
        (``scipy.signal.resample_poly``) when ``rate_hz`` is not 250 Hz.
    channels : sequence of str
        Names of the columns; only their count matters (the first 8 are kept, missing
        ones are zeros).

    Returns
    -------
    ndarray, shape (n_out, 8), volts at 250 Hz
    """
    from fractions import Fraction

    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if abs(rate_hz - RATE_HZ) > 1e-9:
        from scipy.signal import resample_poly

        frac = Fraction(RATE_HZ / rate_hz).limit_denominator(1000)
        x = resample_poly(x, frac.numerator, frac.denominator, axis=0)
    out = np.zeros((x.shape[0], N_CHANNELS))
    k = min(N_CHANNELS, x.shape[1])
    out[:, :k] = x[:, :k]
    return out


def signal_from_file(path: str, channels: Sequence[str] = ()) -> np.ndarray:
    """A recording (any format :mod:`drivers.files` reads) as Cyton input: (n, 8) volts."""
    d = load_file(path)
    x = d.samples
    if channels:
        x = x[:, [d.channels.index(c) for c in channels]]
    return to_cyton_signal(x, d.rate_hz)


def signal_from_sim(duration_s: float, seed: int = 0, channels: Sequence[str] = ()) -> np.ndarray:
    """Simulated EEG (``sim.generate.simulate``) as Cyton input: (n, 8) volts at 250 Hz."""
    x, _, truth = simulate(None, seed=seed, duration_s=duration_s)
    names = list(truth.channels)
    if channels:
        x = x[:, [names.index(c) for c in channels]]
    return to_cyton_signal(x, truth.rate_hz)


class CytonEmulator(PtyDevice):
    """A Cyton on a pty streaming given signals.

    Parameters
    ----------
    signal : ndarray, shape (n_samples, 8), volts
        Samples to stream; after the last one the board keeps streaming zeros.
    rate_hz : float
        Packet rate (250 Hz on a real Cyton).
    drop : iterable of int
        Sample indices to skip (the counter still advances), to model radio loss.

    Attributes
    ----------
    port : str
        Path of the pty to hand to BrainFlow as the serial port.
    sent : int
        Samples (sent or dropped) so far.
    commands : list of bytes
        Every command byte received, in order.
    """

    def __init__(self, signal: np.ndarray, *, rate_hz: float = RATE_HZ,
                 drop: Iterable[int] = ()) -> None:
        signal = np.asarray(signal, dtype=np.float64)
        if signal.ndim != 2 or signal.shape[1] != N_CHANNELS:
            raise ValueError(f"CytonEmulator: signal must have shape (n, 8), got {signal.shape}")
        self.counts = volts_to_counts(signal)
        self.rate_hz = float(rate_hz)
        self.drop = set(int(i) for i in drop)
        super().__init__("cyton-emulator")
        self.sent = 0
        self.commands: list[bytes] = []
        self.streaming = False

    def _reply(self, data: bytes) -> None:
        os.write(self._master, data)

    def _handle(self, cmd: int) -> None:
        self.commands.append(bytes([cmd]))
        if cmd == ord("v"):
            self.streaming = False
            self._reply(BANNER)
        elif cmd == ord("d"):
            self._reply(DEFAULTS_REPLY)
        elif cmd == ord("b"):
            self.streaming = True
            self._t0 = time.monotonic()
            self._k0 = self.sent
        elif cmd == ord("s"):
            self.streaming = False

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        zeros = np.zeros(N_CHANNELS, dtype=np.int32)
        while not self._stop.is_set():
            if self.streaming:
                due = self._t0 + (self.sent - self._k0 + 1) * period
                timeout = max(0.0, due - time.monotonic())
            else:
                timeout = 0.05
            try:
                ready, _, _ = select.select([self._master], [], [], timeout)
            except (OSError, ValueError):
                return
            if ready:
                try:
                    data = os.read(self._master, 256)
                except OSError:  # the other side closed; wait for the next open
                    time.sleep(0.01)
                    continue
                for b in data:
                    self._handle(b)
                continue
            if not self.streaming:
                continue
            # send every packet that is due (absolute schedule: no drift)
            while self.streaming and self._t0 + (self.sent - self._k0 + 1) * period <= \
                    time.monotonic():
                k = self.sent
                if k not in self.drop:
                    counts = self.counts[k] if k < len(self.counts) else zeros
                    try:
                        os.write(self._master, encode_packet(k & 0xFF, counts))
                    except OSError:
                        self.streaming = False
                        break
                self.sent += 1


__all__ = ["CytonEmulator", "encode_packet", "decode_packet", "volts_to_counts",
           "VOLTS_PER_COUNT"]
