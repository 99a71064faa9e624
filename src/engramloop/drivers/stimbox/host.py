"""Host driver for the engramloop stim box (see ``PROTOCOL.md``).

One ``StimBox`` owns the serial port and two small threads:

- a **reader** that parses every frame the device sends, hands ACK/NACK/STATUS replies
  to the command waiting for that sequence number, and turns each acknowledged
  HEARTBEAT into a clock-sync sample;
- a **heartbeat** sender that writes a HEARTBEAT frame every ``heartbeat_interval_s``
  (default 20 ms, five per 100 ms watchdog window) from ``open()`` until ``close()``.
  Stopping it — on close, on any exception in the process, or when the process is killed
  — lets the device's watchdog disarm it within 100 ms.

Every command is one ``write()`` of one frame. ``send(pulse)`` measures the round trip
(``sent_s`` -> ``ack_s``) and maps the device's edge timestamp from the ACK onto the host
clock (``device_edge_s``) with a :class:`ClockMap` fitted to the heartbeat exchanges.
Errors of either thread are kept and raised as ``DeviceError`` by the next call, never
swallowed.
"""
from __future__ import annotations

import atexit
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from engramloop.core.pulse import Delivery, DeviceError, Pulse, PulseSpec
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
from engramloop.drivers.thread_priority import raise_thread_priority

__all__ = ["StimBox", "ClockMap", "spec_to_command"]


#: every this many heartbeats the heartbeat thread also asks for STATUS (every 100 ms at
#: the default 20 ms period), so a device that disarmed itself is known within ~0.1 s
#: even when no pulse is due
STATUS_POLL_EVERY = 5
class ClockMap:
    """Maps device microseconds (uint32, wrapping) onto the host clock (seconds).

    Each sample is one command/ACK exchange: host send time ``t0``, host receive time
    ``t1`` and the device time ``d`` at which the device handled the frame. The device
    time is taken to correspond to the midpoint ``(t0 + t1) / 2`` (symmetric-delay
    assumption, as in NTP/LSL time correction); the error is at most half the round trip.
    The fit uses the samples with the smallest round trips in a sliding window: a
    least-squares line host = a + b * device when the window spans >= 2 s, otherwise an
    offset with unit slope.

    Parameters
    ----------
    window : int
        Number of recent samples kept.
    """

    def __init__(self, window: int = 200) -> None:
        self._samples: deque = deque(maxlen=window)
        self._last_raw: int | None = None
        self._unwrapped = 0
        self._fit: tuple[float, float, float] | None = None  # (a, b, d_ref)
        self._lock = threading.Lock()

    def unwrap(self, raw_us: int) -> int:
        """Unwrap a uint32 device time relative to the newest one seen (any order within
        +-35 minutes)."""
        with self._lock:
            if self._last_raw is None:
                self._last_raw, self._unwrapped = raw_us, raw_us
                return raw_us
            delta = (raw_us - self._last_raw) & 0xFFFFFFFF
            if delta >= 1 << 31:
                delta -= 1 << 32
            value = self._unwrapped + delta
            if delta > 0:
                self._last_raw, self._unwrapped = raw_us, value
            return value

    def add(self, t_send_s: float, t_recv_s: float, device_raw_us: int) -> None:
        """Add one exchange (host seconds, device uint32 microseconds)."""
        d = self.unwrap(device_raw_us)
        with self._lock:
            self._samples.append((0.5 * (t_send_s + t_recv_s), d, t_recv_s - t_send_s))
            self._fit = None

    @property
    def n_samples(self) -> int:
        return len(self._samples)

    def _fitted(self) -> tuple[float, float, float]:
        with self._lock:
            if self._fit is not None:
                return self._fit
            if not self._samples:
                raise DeviceError("stim box clock map has no samples yet (no ACK received)")
            s = np.array(self._samples, dtype=float)
            keep = s[:, 2] <= np.quantile(s[:, 2], 0.5)
            mids, devs = s[keep, 0], s[keep, 1]
            d_ref = float(devs[-1])
            x = (devs - d_ref) * 1e-6
            if len(x) >= 3 and x.max() - x.min() >= 2.0:
                b, a = np.polyfit(x, mids, 1)
            else:
                b, a = 1.0, float(np.median(mids - x))
            self._fit = (float(a), float(b), d_ref)
            return self._fit

    def to_host(self, device_raw_us: int) -> float:
        """Host time (s) of a device time (raw uint32 microseconds)."""
        d = self.unwrap(device_raw_us)
        a, b, d_ref = self._fitted()
        return a + b * (d - d_ref) * 1e-6


@dataclass
class _Waiter:
    seq: int
    t_send: float
    event: threading.Event
    frame_type: int = -1
    payload: bytes = b""
    t_recv: float = math.nan
    heartbeat: bool = False
    #: a STATUS poll from the heartbeat thread (nobody waits for it): the arm epoch when
    #: it was sent, or -1 when the host did not consider the device armed then
    poll_epoch: int | None = None


def spec_to_command(spec: PulseSpec, *, audio_channel: int = 5,
                    click_full_scale_db_spl: float = 90.0,
                    delay_us: int = 0, opto_mw_when_high: float = 0.0) -> PulseCmd:
    """Map a PulseSpec onto a stim-box PULSE/TRAIN command, refusing what it cannot do.

    TTL/electrical/optogenetic specs become monophasic TTL pulses (the reference stim box
    drives logic lines: a current stimulator or LED driver is gated by them), on channels
    1-4; auditory specs become a pink-noise click on the audio channel, its level a linear
    fraction of full scale, ``10 ** ((dB - full_scale_dB) / 20)``.

    An optogenetic spec's amplitude is mW, but a TTL line only gates a light source whose
    power is set on the source: ``opto_mw_when_high`` declares that power (measured at the
    fibre tip), the spec must ask for exactly it (so the governor's light accounting is
    what reaches the tissue), and the line is driven at 5 V logic. 0 = not declared, and
    optogenetic specs are refused (as on Pulse Pal without ``opto_mw_per_v``).

    Raises
    ------
    ValueError
        Naming the field the box cannot produce.
    """
    width_us = int(round(spec.phase_width_s * 1e6))
    if not 10 <= width_us <= 50_000:
        raise ValueError(f"phase_width_s={spec.phase_width_s} s: stim box widths are 10 us"
                         " to 50 ms")
    if spec.modality == "auditory":
        if spec.amplitude > click_full_scale_db_spl:
            raise ValueError(f"amplitude={spec.amplitude} dB SPL exceeds the click channel's "
                             f"calibrated full scale {click_full_scale_db_spl} dB SPL")
        level = 10.0 ** ((spec.amplitude - click_full_scale_db_spl) / 20.0)
        amplitude = max(1, min(65535, int(round(level * 65535))))
        channel, shape = audio_channel, Shape.CLICK
    elif spec.modality == "optogenetic":
        if not opto_mw_when_high > 0:
            raise ValueError("modality='optogenetic' on the stim box needs the light power "
                             "its TTL line gates: set stimulators.stimbox.opto_mw_when_high "
                             "(mW at the fibre tip, measured with a power meter)")
        if spec.shape != "monophasic":
            raise ValueError(f"shape={spec.shape!r}: the stim box's outputs are TTL lines")
        if abs(spec.amplitude - opto_mw_when_high) > 1e-9 * max(1.0, opto_mw_when_high):
            raise ValueError(f"amplitude={spec.amplitude} mW: the stim box gates a light "
                             f"source set to {opto_mw_when_high:g} mW "
                             f"(stimulators.stimbox.opto_mw_when_high); ask for exactly that")
        amplitude = 5000  # millivolts: logic high
        channel, shape = spec.channel, Shape.MONOPHASIC
    else:
        if spec.shape != "monophasic":
            raise ValueError(f"shape={spec.shape!r}: the stim box's outputs are TTL lines; "
                             "biphasic waveforms need an analog stimulator (use pulsepal)")
        if not 0 < spec.amplitude <= 5.0:
            raise ValueError(f"amplitude={spec.amplitude} V: TTL lines give 5 V logic; use "
                             "an amplitude in (0, 5]")
        amplitude = int(round(spec.amplitude * 1000))  # millivolts, informational on TTL
        channel, shape = spec.channel, Shape.MONOPHASIC
    count = int(spec.train_count)
    interval_us = int(round(spec.train_interval_s * 1e6)) if count > 1 else 0
    if count < 1 or count > 100:
        raise ValueError(f"train_count={count}: stim box trains hold 1 to 100 pulses")
    return PulseCmd(channel, int(shape), width_us, amplitude, int(delay_us), count,
                    interval_us)


class StimBox:
    """The stim box as an ``Output``.

    Parameters
    ----------
    port : str
        Serial device (``/dev/ttyACM0``, ``COM5``, or an emulator's pty path).
    name : str
        Output name used in deliveries.
    handshake_timeout_s : float
        How long ``open()`` waits for the STATUS reply.
    ack_timeout_s : float
        How long a command waits for its ACK/NACK before the device counts as gone.
    heartbeat_interval_s : float
        HEARTBEAT period; must be well under the device's 100 ms watchdog.
    click_full_scale_db_spl : float
        SPL the click output produces at full scale (calibrate with a sound-level meter).
    baudrate : int
        Ignored by USB CDC devices and ptys; the reference firmware uses 115200.
    """

    def __init__(self, port: str, *, name: str = "stimbox", handshake_timeout_s: float = 0.5,
                 ack_timeout_s: float = 0.1, heartbeat_interval_s: float = 0.02,
                 click_full_scale_db_spl: float = 90.0, baudrate: int = 115200,
                 opto_mw_when_high: float = 0.0) -> None:
        if not 0 < heartbeat_interval_s <= 0.05:
            raise ValueError(f"heartbeat_interval_s={heartbeat_interval_s}: must be in "
                             "(0, 0.05] s to keep the device's 100 ms watchdog fed")
        self.port = port
        self.name = name
        self.handshake_timeout_s = handshake_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.click_full_scale_db_spl = click_full_scale_db_spl
        self.opto_mw_when_high = float(opto_mw_when_high)
        self.baudrate = baudrate
        self.clock = ClockMap()
        self.status: Status | None = None
        self.round_trips_s: list[float] = []
        self._ser = None
        self._seq = 0
        self._write_lock = threading.Lock()
        self._wait_lock = threading.Lock()
        self._waiters: dict[int, _Waiter] = {}
        self._error: DeviceError | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._armed = False
        #: bumped at every ARM and DISARM, so a STATUS poll answered across one is ignored
        self._arm_epoch = 0
        #: why the device is not doing what the host asked ("" while it is): it reported
        #: itself disarmed (watchdog) or NACKed a pulse; read by :meth:`health`
        self._fault = ""
        self._last_hb_ack = math.nan
        #: send time of the oldest heartbeat not yet acknowledged (NaN: none outstanding)
        self._first_unacked_hb = math.nan
        #: how the heartbeat thread runs ("SCHED_FIFO 90", or why it could not)
        self.heartbeat_priority = ""

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        """Open the port, check the device answers STATUS within the handshake timeout,
        make sure it is disarmed, and start the reader and heartbeat threads."""
        import serial

        try:
            self._ser = serial.Serial(self.port, self.baudrate, timeout=0.02,
                                      write_timeout=1.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(f"stim box: cannot open serial port {self.port} ({exc}); check "
                              "the cable, the port name (--stim-port) and permissions "
                              "(dialout group)") from None
        self._ser.reset_input_buffer()
        self._stop.clear()
        self._error = None
        reader = threading.Thread(target=self._read_loop, name=f"{self.name}-reader",
                                  daemon=True)
        reader.start()
        self._threads = [reader]
        try:
            reply = self._command(MsgType.STATUS, b"", timeout_s=self.handshake_timeout_s,
                                  what="handshake (STATUS)")
            if reply.frame_type != MsgType.STATUS_REPLY:
                raise DeviceError(f"stim box on {self.port} answered STATUS with frame type "
                                  f"{reply.frame_type:#x}; is this an engramloop stim box?")
            self.status = Status.unpack(reply.payload)
            self._expect_ack(self._command(MsgType.DISARM, b""), "DISARM")
        except BaseException:
            self._shutdown()
            raise
        hb = threading.Thread(target=self._heartbeat_loop, name=f"{self.name}-heartbeat",
                              daemon=True)
        hb.start()
        self._threads.append(hb)
        # At interpreter exit without close(), DISARM at once rather than after the 100 ms
        # watchdog (a killed process gets the watchdog).
        atexit.register(self.close)

    def arm(self) -> None:
        """ARM the device (it stays armed while heartbeats arrive)."""
        self._raise_if_failed()
        self._expect_ack(self._command(MsgType.ARM, b""), "ARM")
        self._fault = ""
        self._arm_epoch += 1
        self._armed = True

    def disarm(self) -> None:
        """DISARM the device: outputs low, pending pulses cancelled."""
        self._armed = False
        self._arm_epoch += 1
        self._raise_if_failed()
        self._expect_ack(self._command(MsgType.DISARM, b""), "DISARM")

    def stop(self) -> None:
        """STOP: cancel pending pulses and drive outputs low, staying armed."""
        self._raise_if_failed()
        self._expect_ack(self._command(MsgType.STOP, b""), "STOP")

    def read_status(self) -> Status:
        """Ask the device for its STATUS (state, counters, limits)."""
        self._raise_if_failed()
        reply = self._command(MsgType.STATUS, b"")
        if reply.frame_type != MsgType.STATUS_REPLY:
            raise DeviceError(f"stim box on {self.port}: STATUS answered with frame type "
                              f"{reply.frame_type:#x}")
        self.status = Status.unpack(reply.payload)
        return self.status

    def close(self) -> None:
        """DISARM (best effort), stop heartbeating, close the port. Safe to call twice;
        even if DISARM cannot be delivered the device disarms itself within 100 ms
        because the heartbeats stop."""
        self._armed = False
        atexit.unregister(self.close)
        try:
            if self._ser is not None and self._error is None:
                try:
                    self._command(MsgType.DISARM, b"", timeout_s=self.ack_timeout_s)
                except DeviceError:
                    pass
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(1.0)
        self._threads = []
        if self._ser is not None:
            try:
                self._ser.close()
            except Exception:  # noqa: BLE001 - closing a dead port must not mask the cause
                pass
            self._ser = None

    def __enter__(self) -> StimBox:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------
    def send(self, pulse: Pulse, *, at_s: float | None = None) -> Delivery:
        """Send one approved pulse; wait for its ACK/NACK.

        Parameters
        ----------
        pulse : Pulse
        at_s : float, optional
            Host-clock time (``time.monotonic``, seconds) at which the edge should happen,
            up to 1 s ahead: the frame carries ``delay_us`` = at_s - now - (estimated
            one-way latency, half the median of the last 64 round trips), so a scheduler
            can send early and let the device's clock place the edge. Default: fire on
            receipt.

        Returns
        -------
        Delivery
            "acked" with ``device_edge_s`` on the host clock; "nacked" with the device's
            reason; "failed" when the spec is impossible or the output is not armed.

        Raises
        ------
        DeviceError
            When the device is gone: port error, no reply within ``ack_timeout_s``.
        """
        self._raise_if_failed()
        if not self._armed:
            return Delivery(pulse.pulse_id, self.name, "failed", reason="output not armed")
        delay_us = 0
        if at_s is not None:
            recent = self.round_trips_s[-64:]
            one_way = 0.5 * float(np.median(recent)) if recent else 0.0
            delay_us = max(0, int(round((at_s - time.monotonic() - one_way) * 1e6)))
        try:
            cmd = spec_to_command(
                pulse.spec, audio_channel=self.status.audio_channel if self.status else 5,
                click_full_scale_db_spl=self.click_full_scale_db_spl, delay_us=delay_us,
                opto_mw_when_high=self.opto_mw_when_high)
        except ValueError as exc:
            return Delivery(pulse.pulse_id, self.name, "failed",
                            reason=f"stim box cannot do this pulse: {exc}")
        w = self._command(cmd.msg_type, cmd.pack())
        if w.frame_type == MsgType.ACK:
            ack = Ack.unpack(w.payload)
            edge = self.clock.to_host(ack.edge_us) if self.clock.n_samples else math.nan
            return Delivery(pulse.pulse_id, self.name, "acked", sent_s=w.t_send,
                            ack_s=w.t_recv, device_edge_s=edge)
        if w.frame_type == MsgType.NACK:
            nack = Nack.unpack(w.payload)
            if nack.reason == NackReason.NOT_ARMED:
                self._armed = False
                self._fault = self._fault or (
                    f"stim box on {self.port} refused a pulse as NOT_ARMED: it disarmed "
                    "itself (heartbeat watchdog?)")
            else:
                self._fault = self._fault or (
                    f"stim box on {self.port} refused a pulse (NACK {nack.reason_name})")
            return Delivery(pulse.pulse_id, self.name, "nacked", sent_s=w.t_send,
                            ack_s=w.t_recv, reason=f"stim box NACK {nack.reason_name}")
        raise DeviceError(f"stim box on {self.port} answered a pulse with frame type "
                          f"{w.frame_type:#x}")

    def health(self) -> str:
        """"" while the device does what the host asked; otherwise why not, one line: it
        stopped answering (port error, heartbeats unacknowledged), reported itself
        disarmed while the host had it armed (a STATUS poll every
        ``STATUS_POLL_EVERY`` heartbeats, or a NOT_ARMED NACK), or NACKed a pulse.
        Never blocks (the loop calls it every chunk)."""
        if self._error is not None:
            return str(self._error)
        return self._fault

    def reset_fault(self) -> None:
        """Forget a reported fault (the device disarmed itself, a NACK) once the host has
        disarmed it, so :meth:`health` says whether it is healthy *now*; a device that is
        gone (port error, heartbeats unanswered) stays failed."""
        self._fault = ""

    # -- plumbing --------------------------------------------------------------------------
    def check(self) -> None:
        """Raise the reader's or heartbeat's error (DeviceError), if any."""
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._ser is None:
            raise DeviceError(f"stim box on {self.port} is not open; call open() first")

    def _fail(self, message: str) -> None:
        if self._error is None:
            self._error = DeviceError(message)
        self._armed = False
        with self._wait_lock:
            for w in self._waiters.values():
                w.event.set()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _write_frame(self, msg_type: int, payload: bytes, heartbeat: bool,
                     poll_epoch: int | None = None) -> _Waiter:
        with self._write_lock:
            seq = self._next_seq()
            w = _Waiter(seq, math.nan, threading.Event(), heartbeat=heartbeat,
                        poll_epoch=poll_epoch)
            with self._wait_lock:
                self._waiters[seq] = w  # a reused seq replaces a long-dead waiter
            frame = encode_frame(seq, msg_type, payload)
            w.t_send = time.monotonic()
            try:
                n = self._ser.write(frame)
            except Exception as exc:  # noqa: BLE001 - serial raises several types
                self._fail(f"stim box on {self.port}: write failed ({exc}); the device is "
                           "gone (unplugged or emulator killed)")
                raise self._error from None
            if n != len(frame):
                self._fail(f"stim box on {self.port}: short write ({n}/{len(frame)} bytes)")
                raise self._error
        return w

    def _command(self, msg_type: int, payload: bytes, *, timeout_s: float | None = None,
                 what: str | None = None) -> _Waiter:
        if self._ser is None:
            raise DeviceError(f"stim box on {self.port} is not open; call open() first")
        w = self._write_frame(msg_type, payload, heartbeat=False)
        timeout = self.ack_timeout_s if timeout_s is None else timeout_s
        got = w.event.wait(timeout)
        with self._wait_lock:
            self._waiters.pop(w.seq, None)
        if self._error is not None:
            raise self._error
        if not got:
            name = what or MsgType(msg_type).name
            raise DeviceError(f"no response from stim box on {self.port} ({name}, seq "
                              f"{w.seq}) after {timeout:g} s; check the port and that the "
                              "firmware is running")
        self.round_trips_s.append(w.t_recv - w.t_send)
        return w

    def _expect_ack(self, w: _Waiter, what: str) -> None:
        if w.frame_type == MsgType.NACK:
            raise DeviceError(f"stim box on {self.port} refused {what}: "
                              f"{Nack.unpack(w.payload).reason_name}")
        if w.frame_type != MsgType.ACK:
            raise DeviceError(f"stim box on {self.port} answered {what} with frame type "
                              f"{w.frame_type:#x}")

    def _read_loop(self) -> None:
        raise_thread_priority()
        parser = FrameParser()
        ser = self._ser
        while not self._stop.is_set():
            try:
                data = ser.read(max(1, ser.in_waiting))
            except Exception as exc:  # noqa: BLE001 - serial raises several types
                if not self._stop.is_set():
                    self._fail(f"stim box on {self.port}: read failed ({exc}); the device "
                               "is gone (unplugged or emulator killed)")
                return
            if not data:
                continue
            t = time.monotonic()
            for fr in parser.feed(data, int(t * 1e6)):
                with self._wait_lock:
                    w = self._waiters.get(fr.seq)
                    if w is None or w.event.is_set():
                        continue
                    if w.heartbeat:
                        self._waiters.pop(fr.seq, None)
                w.frame_type, w.payload, w.t_recv = fr.type, fr.payload, t
                if w.poll_epoch is not None and fr.type == MsgType.STATUS_REPLY:
                    self._judge_poll(w.poll_epoch, fr.payload)
                if fr.type == MsgType.ACK:
                    ack = Ack.unpack(fr.payload)
                    if ack.cmd in (MsgType.HEARTBEAT, MsgType.ARM, MsgType.STOP,
                                   MsgType.DISARM):
                        self.clock.add(w.t_send, t, ack.rx_us)
                    if w.heartbeat:
                        self._last_hb_ack = t
                        self._first_unacked_hb = math.nan
                w.event.set()

    def _judge_poll(self, epoch: int, payload: bytes) -> None:
        """A STATUS poll's answer: the device says it is disarmed although the host armed
        it (and neither side changed it since the poll was sent) -> a fault."""
        if epoch < 0 or epoch != self._arm_epoch or not self._armed:
            return
        try:
            st = Status.unpack(payload)
        except ValueError:
            return
        if not st.armed:
            try:
                cause = DisarmCause(st.disarm_cause).name
            except ValueError:
                cause = str(st.disarm_cause)
            hint = (" (heartbeat watchdog: the host's heartbeats arrived more than 100 ms "
                    "apart)" if st.disarm_cause == DisarmCause.WATCHDOG else "")
            self._armed = False
            self._fault = self._fault or (f"stim box on {self.port} disarmed itself, cause "
                                          f"{cause}{hint}")

    def _heartbeat_loop(self) -> None:
        self.heartbeat_priority = raise_thread_priority()
        next_t = time.monotonic()
        self._last_hb_ack = next_t
        self._first_unacked_hb = math.nan
        n = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_t:
                try:
                    w = self._write_frame(MsgType.HEARTBEAT, b"", heartbeat=True)
                    if self._first_unacked_hb != self._first_unacked_hb:
                        self._first_unacked_hb = w.t_send
                    n += 1
                    if n % STATUS_POLL_EVERY == 0:
                        # the device's own word on whether it is still armed: nobody waits
                        # for the answer, the reader judges it (_judge_poll)
                        self._write_frame(MsgType.STATUS, b"", heartbeat=True,
                                          poll_epoch=self._arm_epoch if self._armed else -1)
                except DeviceError:
                    return
                next_t += self.heartbeat_interval_s
                if next_t < now:
                    next_t = now + self.heartbeat_interval_s
            # silence is judged on heartbeats this thread actually sent: if the host itself
            # was stalled (no heartbeat went out), that is not the device's fault
            unanswered = self._first_unacked_hb
            if unanswered == unanswered and now - unanswered > max(0.5, 5 * self.ack_timeout_s):
                self._fail(f"stim box on {self.port} did not acknowledge heartbeats for "
                           f"{now - unanswered:.2f} s; treating the device as gone")
                return
            self._stop.wait(max(0.0, next_t - time.monotonic()))
