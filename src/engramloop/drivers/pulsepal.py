"""Sanworks Pulse Pal (v2/v3, firmware v21-v22) as an engramloop ``Output``, over pyserial.

Written from the published USB serial protocol, Sanworks ``Firmware/PROTOCOL.md`` (firmware
v22 reference, github.com/sanworks/PulsePal) and the firmware's ``processUSBCommands()``
(``Firmware/PulsePal3/USBOps.ino``). The facts used here:

- Every command is ``213`` (OpMenuByte), op code, op data; multi-byte values little-endian.
- Op 72 handshake -> ``75`` then the firmware version (uint32). v21 and v22 are supported.
- Op 94 (v22+) hardware info -> hardware version (uint8), timer period in us (uint32),
  number of custom trains (uint8), max pulses per train (uint32). v21 implies Pulse Pal 2,
  50 us cycles.
- Times are timer cycles of 50 us (20 000 per second). Voltages are 16-bit DAC codes,
  0 = -10 V, 32768 = 0 V, 65535 = +10 V (code = round((V + 10) / 20 * 65535)).
- Op 74 programs one parameter: code, channel, value (1, 2 or 4 bytes by code) -> confirm
  byte 1 (done) / 0 (rejected). Op 92 (v22) programs everything in one 182-byte block,
  op 73 (v21) in the legacy 178-byte layout; both answer one confirm byte.
- Op 77 soft-triggers the channels in a bit mask (bit 0 = channel 1), no reply; the device
  starts them on the next 50 us timer cycle. Op 80 stops all channels, no reply.
- Op 89 sets the 6-character client name; op 81 disconnects.

A pulse train plays ``pulse_train_duration`` cycles from its first onset; pulses start every
``phase1 [+ inter-phase + phase2] + inter_pulse_interval`` cycles; so a train of N pulses at
onset interval T is programmed as inter-pulse interval ``T - P`` and duration
``(N - 1) T + P`` where P is the pulse duration (Playback.ino, ``handler()``).

Pulse Pal has no acknowledgement for op 77 and no timestamp of its output edge. With
``confirm_trigger`` (default) the driver follows each trigger with a handshake (op 72):
replies are sent in order once a command is done (PROTOCOL.md, "Timeouts and error
handling"), so its arrival proves the device took the trigger and is alive; ``ack_s`` is
that arrival, ``device_edge_s`` stays NaN (unknown).
"""
from __future__ import annotations

import atexit
import struct
import time
from dataclasses import dataclass

from engramloop.core.pulse import Delivery, DeviceError, Pulse, PulseSpec

OP_MENU = 213
OP_HANDSHAKE = 72
HANDSHAKE_REPLY = 75
OP_PROGRAM_ALL_LEGACY = 73
OP_PROGRAM_PARAM = 74
OP_SOFT_TRIGGER = 77
OP_STOP_ALL = 80
OP_DISCONNECT = 81
OP_CLIENT_NAME = 89
OP_PROGRAM_PARAM_ALL_CHANNELS = 91
OP_PROGRAM_ALL = 92
OP_HARDWARE_INFO = 94
SUPPORTED_FIRMWARE = (21, 22)

# Parameter codes (PROTOCOL.md "Parameter codes (ops 74 and 91)"), with the value width.
PARAMS: dict[int, tuple[str, str]] = {
    1: ("is_biphasic", "B"), 2: ("phase1_voltage", "H"), 3: ("phase2_voltage", "H"),
    4: ("phase1_duration", "I"), 5: ("inter_phase_interval", "I"),
    6: ("phase2_duration", "I"), 7: ("inter_pulse_interval", "I"),
    8: ("burst_duration", "I"), 9: ("burst_interval", "I"),
    10: ("pulse_train_duration", "I"), 11: ("pulse_train_delay", "I"),
    12: ("link_trigger_channel1", "B"), 13: ("link_trigger_channel2", "B"),
    14: ("custom_train_id", "B"), 15: ("custom_train_target", "B"),
    16: ("custom_train_loop", "B"), 17: ("resting_voltage", "H"),
    18: ("continuous_loop", "B"), 128: ("trigger_mode", "B"),
}
CODE = {name: code for code, (name, _) in PARAMS.items()}
TIME_CODES = (4, 5, 6, 7, 8, 9, 10, 11)    # op 92/73 order of the uint32 block
VOLT_CODES = (2, 3, 17)                    # op 92/73 order of the uint16 block
N_CHANNELS = 4


def volts_to_dac(volts: float) -> int:
    """16-bit DAC code of a voltage in [-10, 10] V (0 = -10 V, 32768 = 0 V, 65535 = +10 V)."""
    return int(min(max(round((float(volts) + 10.0) / 20.0 * 65535), 0), 65535))


def dac_to_volts(code: int) -> float:
    """Volts of a 16-bit DAC code."""
    return code / 65535 * 20.0 - 10.0


def seconds_to_cycles(t_s: float, cycle_us: float = 50.0) -> int:
    """Timer cycles nearest to ``t_s`` seconds."""
    return int(round(t_s * 1e6 / cycle_us))


@dataclass(frozen=True)
class HardwareInfo:
    """What the device reported at open: firmware, hardware, timer period, custom trains."""

    firmware_version: int
    hardware_version: int = 2
    cycle_us: int = 50
    n_custom_trains: int = 2
    max_custom_pulses: int = 5000


def safe_channel_params() -> dict[int, int]:
    """The idle program the driver leaves on every channel: 0 V resting, 0 V pulses, no
    links to the BNC trigger inputs (so nothing but this driver's soft trigger can start
    a train), no custom trains, no looping."""
    z = volts_to_dac(0.0)
    return {1: 0, 2: z, 3: z, 4: 2, 5: 0, 6: 2, 7: 2, 8: 0, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0,
            14: 0, 15: 0, 16: 0, 17: z, 18: 0}


def _cycles(name: str, t_s: float, cycle_us: float, minimum: int) -> int:
    n = seconds_to_cycles(t_s, cycle_us)
    if abs(n * cycle_us - t_s * 1e6) > 0.01 * cycle_us:
        raise ValueError(f"{name}={t_s} s is not a whole number of Pulse Pal's "
                         f"{cycle_us:g} us timer cycles")
    if n < minimum:
        raise ValueError(f"{name}={t_s} s is shorter than {minimum} Pulse Pal cycle(s) of "
                         f"{cycle_us:g} us")
    return n


def output_volts(spec: PulseSpec, *, ttl_max_v: float = 0.0,
                 opto_mw_per_v: float = 0.0) -> float:
    """The voltage Pulse Pal must put out for ``spec``'s amplitude, volts.

    Pulse Pal makes analog output (+-10 V), so every modality needs a declared meaning:
    ``electrical`` amplitudes are volts into a stimulus isolator (the governor turns them
    into current with ``safety.current_per_volt_ma``); ``ttl`` is a logic level into a
    trigger input, declared by ``ttl_max_v`` (monophasic, at most that many volts);
    ``optogenetic`` amplitudes are mW, turned into volts by the light source's measured
    ``opto_mw_per_v`` (monophasic: an LED/laser driver's analog input makes no negative
    light). 0 for either means not declared, and that modality is refused.

    Raises
    ------
    ValueError
        Naming the config key to set (``stimulators.pulsepal.ttl_max_v`` or
        ``stimulators.pulsepal.opto_mw_per_v``) or the field Pulse Pal cannot produce.
    """
    if spec.modality == "auditory":
        raise ValueError("modality='auditory': Pulse Pal outputs voltages, not sound; use the"
                         " stim box click channel")
    if spec.modality == "ttl":
        if not ttl_max_v > 0:
            raise ValueError("modality='ttl' into Pulse Pal's analog output needs a declared "
                             "logic level: set stimulators.pulsepal.ttl_max_v (e.g. 5.0 for a "
                             "5 V trigger input), or use modality electrical/optogenetic")
        if spec.shape != "monophasic" or not 0 < spec.amplitude <= ttl_max_v:
            raise ValueError(f"modality='ttl': a logic pulse is monophasic with amplitude in "
                             f"(0, {ttl_max_v:g}] V (stimulators.pulsepal.ttl_max_v), got "
                             f"{spec.shape} at {spec.amplitude} V")
        return float(spec.amplitude)
    if spec.modality == "optogenetic":
        if not opto_mw_per_v > 0:
            raise ValueError("modality='optogenetic' on Pulse Pal needs the light source's "
                             "calibration: set stimulators.pulsepal.opto_mw_per_v (mW at the "
                             "fibre tip per volt of Pulse Pal output, measured with a power "
                             "meter)")
        if spec.shape != "monophasic":
            raise ValueError("modality='optogenetic': shape must be monophasic (a negative "
                             "phase into a light source's analog input is not light)")
        volts = spec.amplitude / opto_mw_per_v
        if not 0 < volts <= 10.0:
            raise ValueError(f"amplitude={spec.amplitude} mW is {volts:.3g} V at "
                             f"stimulators.pulsepal.opto_mw_per_v = {opto_mw_per_v:g} mW/V; "
                             "Pulse Pal outputs up to 10 V")
        return volts
    return float(spec.amplitude)


def spec_to_params(spec: PulseSpec, cycle_us: float = 50.0, *, ttl_max_v: float = 0.0,
                   opto_mw_per_v: float = 0.0) -> dict[int, int]:
    """Pulse Pal parameter codes -> device values (DAC codes, cycles) for one channel.

    Monophasic: phase 1 at the output voltage (:func:`output_volts`). Biphasic: phase 1 at
    +V, then the inter-phase interval at the resting 0 V, then phase 2 at -V (charge
    balanced).

    Raises
    ------
    ValueError
        Naming the field Pulse Pal cannot produce: auditory modality, TTL or optogenetic
        without their declared mapping (the message names the config key), a channel
        outside 1-4, an amplitude outside +-10 V, times off the 50 us grid or too short, a
        train interval not longer than one pulse.
    """
    if not 1 <= spec.channel <= N_CHANNELS:
        raise ValueError(f"channel={spec.channel}: Pulse Pal has output channels 1-4")
    if spec.modality not in ("ttl", "optogenetic", "auditory") and (
            not -10.0 <= spec.amplitude <= 10.0 or spec.amplitude == 0):
        raise ValueError(f"amplitude={spec.amplitude} V: Pulse Pal outputs non-zero voltages "
                         "in [-10, 10] V")
    volts = output_volts(spec, ttl_max_v=ttl_max_v, opto_mw_per_v=opto_mw_per_v)
    p = safe_channel_params()
    p1 = _cycles("phase_width_s", spec.phase_width_s, cycle_us, 1)
    p[2] = volts_to_dac(volts)
    p[4] = p1
    pulse = p1
    if spec.shape == "biphasic":
        ipi = _cycles("interphase_s", spec.interphase_s, cycle_us, 0)
        p[1], p[3], p[5], p[6] = 1, volts_to_dac(-volts), ipi, p1
        pulse = 2 * p1 + ipi
    elif spec.shape != "monophasic":
        raise ValueError(f"shape={spec.shape!r}: Pulse Pal plays monophasic or biphasic")
    if spec.train_count < 1:
        raise ValueError(f"train_count={spec.train_count}: must be >= 1")
    if spec.train_count == 1:
        p[7], p[10] = 1, pulse
    else:
        period = _cycles("train_interval_s", spec.train_interval_s, cycle_us, 1)
        if period <= pulse:
            raise ValueError(f"train_interval_s={spec.train_interval_s} s must exceed one "
                             f"pulse ({pulse * cycle_us:g} us) on Pulse Pal")
        p[7] = period - pulse
        p[10] = (spec.train_count - 1) * period + pulse
    return p


class PulsePal:
    """A Pulse Pal on a serial port, as an ``Output``.

    Parameters
    ----------
    port : str
        Serial device (``/dev/ttyACM0``, ``COM3``, or an emulator's pty path).
    name : str
        Output name used in deliveries.
    handshake_timeout_s : float
        How long ``open()`` waits for the op 72 reply before raising DeviceError.
    reply_timeout_s : float
        How long any other reply (confirm byte, hardware info) may take.
    confirm_trigger : bool
        Follow each soft trigger with a handshake to prove the device took it.
    ttl_max_v : float
        Declared logic level for ``ttl`` specs, volts; 0 refuses ttl (:func:`output_volts`).
    opto_mw_per_v : float
        Light-source calibration for ``optogenetic`` specs, mW per volt; 0 refuses them.
    """

    def __init__(self, port: str, *, name: str = "pulsepal", handshake_timeout_s: float = 0.5,
                 reply_timeout_s: float = 0.5, confirm_trigger: bool = True,
                 baudrate: int = 115200, ttl_max_v: float = 0.0,
                 opto_mw_per_v: float = 0.0) -> None:
        self.port = port
        self.ttl_max_v = float(ttl_max_v)
        self.opto_mw_per_v = float(opto_mw_per_v)
        self.name = name
        self.handshake_timeout_s = handshake_timeout_s
        self.reply_timeout_s = reply_timeout_s
        self.confirm_trigger = confirm_trigger
        self.baudrate = baudrate
        self.info: HardwareInfo | None = None
        self.round_trips_s: list[float] = []
        self._ser = None
        self._armed = False
        self._programmed: dict[int, dict[int, int]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        """Open the port, handshake (op 72), read hardware info (op 94 on v22), name the
        client, stop everything and program the safe idle parameters on all channels."""
        import serial

        try:
            self._ser = serial.Serial(self.port, self.baudrate, timeout=self.reply_timeout_s,
                                      write_timeout=1.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(f"Pulse Pal: cannot open serial port {self.port} ({exc}); check "
                              "the cable, the port name (--stim-port) and permissions "
                              "(dialout group)") from None
        try:
            self._ser.reset_input_buffer()
            self._write(bytes((OP_MENU, OP_HANDSHAKE)))
            reply = self._read(5, "handshake op 72", self.handshake_timeout_s)
            if reply[0] != HANDSHAKE_REPLY:
                raise DeviceError(f"Pulse Pal on {self.port} answered the handshake (op 72) "
                                  f"with {reply[0]} instead of 75; is this a Pulse Pal?")
            fw = struct.unpack("<I", reply[1:5])[0]
            if fw not in SUPPORTED_FIRMWARE:
                raise DeviceError(f"Pulse Pal on {self.port} runs firmware v{fw}; this "
                                  "driver supports v21-v22 (update the firmware)")
            if fw >= 22:
                self._write(bytes((OP_MENU, OP_HARDWARE_INFO)))
                hw, cyc, ntr, mx = struct.unpack("<BIBI", self._read(10, "hardware info op 94"))
                self.info = HardwareInfo(fw, hw, cyc, ntr, mx)
            else:
                self.info = HardwareInfo(fw)
            self._write(bytes((OP_MENU, OP_CLIENT_NAME)) + b"ENGRAM")
            self._write(bytes((OP_MENU, OP_STOP_ALL)))
            if self.info.hardware_version > 2:
                # Leave param-sync trigger mode (Pulse Pal 3), which would defer op 92.
                for trig in (1, 2):
                    self._program_one(128, trig, 0)
            self._program_all({ch: safe_channel_params() for ch in range(1, 5)})
        except BaseException:
            self._close_port()
            raise
        # Pulse Pal has no watchdog: if the process exits without close(), stop it anyway.
        atexit.register(self.close)

    def arm(self) -> None:
        """Allow ``send`` to trigger (Pulse Pal itself has no arming)."""
        self._require_open()
        self._armed = True

    def disarm(self) -> None:
        """Stop all channels (op 80), confirmed by a handshake reply (replies come once the
        preceding commands are done), and refuse further sends until ``arm``.

        Raises
        ------
        DeviceError
            If the device does not answer (it may still be playing a train).
        """
        self._armed = False
        self._require_open()
        self._stop_confirmed()

    def _stop_confirmed(self) -> None:
        try:
            self._ser.reset_input_buffer()
        except Exception as exc:  # noqa: BLE001 - termios.error on a vanished device
            raise DeviceError(f"Pulse Pal on {self.port}: port failed ({exc}); the device is "
                              "gone (unplugged or emulator killed)") from None
        self._write(bytes((OP_MENU, OP_STOP_ALL, OP_MENU, OP_HANDSHAKE)))
        if self._read(5, "handshake confirming stop op 80")[0] != HANDSHAKE_REPLY:
            raise DeviceError(f"Pulse Pal on {self.port}: unexpected reply after stop; the "
                              "serial stream is out of step")

    def close(self) -> None:
        """Stop all channels (confirmed), disconnect (op 81) and close the port; safe to
        call twice, and closes the port even when the device is gone."""
        self._armed = False
        atexit.unregister(self.close)
        if self._ser is None:
            return
        try:
            self._stop_confirmed()
            self._write(bytes((OP_MENU, OP_DISCONNECT)))
        except DeviceError:
            pass
        finally:
            self._close_port()

    def __enter__(self) -> PulsePal:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- programming -----------------------------------------------------------------------
    def program(self, spec: PulseSpec) -> None:
        """Program ``spec`` on its channel, sending only parameters that differ (op 74).

        Raises
        ------
        ValueError
            If Pulse Pal cannot produce the spec.
        DeviceError
            If the device rejects a parameter (confirm byte 0; the message names it) or
            does not answer.
        """
        self._require_open()
        want = spec_to_params(spec, self.info.cycle_us if self.info else 50,
                              ttl_max_v=self.ttl_max_v, opto_mw_per_v=self.opto_mw_per_v)
        have = self._programmed.setdefault(spec.channel, {})
        for code, value in want.items():
            if have.get(code) != value:
                self._program_one(code, spec.channel, value)
                have[code] = value

    def send(self, pulse: Pulse) -> Delivery:
        """Program the pulse's channel if needed, then soft-trigger it (op 77).

        Returns
        -------
        Delivery
            "acked" (trigger confirmed by the following handshake) or "sent"
            (``confirm_trigger`` off); "failed" when not armed or the spec is impossible;
            "nacked" when the device rejected a parameter.

        Raises
        ------
        DeviceError
            When the device is gone (write fails, no reply).
        """
        self._require_open()
        if not self._armed:
            return Delivery(pulse.pulse_id, self.name, "failed", reason="output not armed")
        try:
            self.program(pulse.spec)
        except ValueError as exc:
            return Delivery(pulse.pulse_id, self.name, "failed",
                            reason=f"Pulse Pal cannot do this pulse: {exc}")
        except _Rejected as exc:
            return Delivery(pulse.pulse_id, self.name, "nacked", reason=str(exc))
        msg = bytes((OP_MENU, OP_SOFT_TRIGGER, 1 << (pulse.spec.channel - 1)))
        if not self.confirm_trigger:
            sent = time.monotonic()
            self._write(msg)
            return Delivery(pulse.pulse_id, self.name, "sent", sent_s=sent)
        sent = time.monotonic()
        self._write(msg + bytes((OP_MENU, OP_HANDSHAKE)))
        reply = self._read(5, "handshake after soft trigger op 77")
        ack = time.monotonic()
        if reply[0] != HANDSHAKE_REPLY:
            raise DeviceError(f"Pulse Pal on {self.port}: unexpected byte {reply[0]} after a "
                              "trigger; the serial stream is out of step")
        self.round_trips_s.append(ack - sent)
        return Delivery(pulse.pulse_id, self.name, "acked", sent_s=sent, ack_s=ack)

    # -- plumbing --------------------------------------------------------------------------
    def _require_open(self) -> None:
        if self._ser is None:
            raise DeviceError(f"Pulse Pal on {self.port} is not open; call open() first")

    def _close_port(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - closing a dead port must not mask the cause
                pass

    def _write(self, data: bytes) -> None:
        if self._ser is None:
            raise DeviceError(f"Pulse Pal on {self.port} is not open")
        try:
            n = self._ser.write(data)
        except Exception as exc:  # noqa: BLE001 - serial raises several types
            raise DeviceError(f"Pulse Pal on {self.port}: write failed ({exc}); the device is "
                              "gone (unplugged or emulator killed)") from None
        if n != len(data):
            raise DeviceError(f"Pulse Pal on {self.port}: short write ({n}/{len(data)})")

    def _read(self, n: int, what: str, timeout_s: float | None = None) -> bytes:
        timeout = self.reply_timeout_s if timeout_s is None else timeout_s
        try:
            if self._ser.timeout != timeout:
                self._ser.timeout = timeout  # pyserial reapplies termios settings here
            data = self._ser.read(n)
        except Exception as exc:  # noqa: BLE001
            raise DeviceError(f"Pulse Pal on {self.port}: read failed ({exc}); the device is "
                              "gone (unplugged or emulator killed)") from None
        if len(data) < n:
            raise DeviceError(f"no response from Pulse Pal on {self.port} ({what}) after "
                              f"{timeout:g} s (got {len(data)}/{n} bytes)")
        return data

    def _confirm(self, what: str) -> None:
        b = self._read(1, what)[0]
        if b != 1:
            raise _Rejected(f"Pulse Pal on {self.port} rejected {what} (confirm byte {b})")

    def _program_one(self, code: int, channel: int, value: int) -> None:
        name, fmt = PARAMS[code]
        self._write(struct.pack("<BBBB" + fmt, OP_MENU, OP_PROGRAM_PARAM, code, channel, value))
        self._confirm(f"{name}={value} on channel {channel} (op 74, parameter code {code})")

    def _program_all(self, params: dict[int, dict[int, int]]) -> None:
        ch = range(1, 5)
        if self.info.firmware_version >= 22:
            times = [params[c][k] for k in TIME_CODES for c in ch]
            volts = [params[c][k] for k in VOLT_CODES for c in ch]
            b = [params[c][k] for k in (1, 14, 15, 16, 18) for c in ch]
            b += [params[c][12] for c in ch] + [params[c][13] for c in ch] + [0, 0]
            msg = struct.pack("<BB32I12H30B", OP_MENU, OP_PROGRAM_ALL, *times, *volts, *b)
            what = "the full parameter set (op 92)"
        else:
            times = [params[c][k] for c in ch for k in TIME_CODES]
            volts = [params[c][k] for c in ch for k in VOLT_CODES]
            b = [params[c][k] for c in ch for k in (1, 14, 15, 16)]
            b += [params[c][12] for c in ch] + [params[c][13] for c in ch] + [0, 0]
            msg = struct.pack("<BB32I12H26B", OP_MENU, OP_PROGRAM_ALL_LEGACY, *times, *volts,
                              *b)
            what = "the full parameter set (op 73)"
        self._write(msg)
        self._confirm(what)
        self._programmed = {c: dict(params[c]) for c in ch}


class _Rejected(DeviceError):
    """The device answered a confirm byte 0 (it is alive but refused a value)."""


__all__ = ["PulsePal", "HardwareInfo", "spec_to_params", "output_volts", "safe_channel_params",
           "volts_to_dac", "dac_to_volts", "seconds_to_cycles", "PARAMS", "CODE"]
