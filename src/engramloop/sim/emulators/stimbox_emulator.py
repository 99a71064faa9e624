"""The engramloop stim box, emulated: the firmware's state machine in Python, served on a
pseudo-terminal so pyserial opens a real tty and the host driver cannot tell the difference.

``StimBoxDevice`` is the device logic with injected time (microseconds), mirroring
``drivers/stimbox/firmware/stimbox/stimbox.ino`` function by function: boot disarmed with
outputs low, byte-wise frame parsing with a 100 ms intra-frame gap rule, a 100 ms heartbeat
watchdog, its own refractory and maximum-rate limits, explicit NACK reasons, and edges
timestamped in device microseconds. Tests drive it directly (no sleeping) and through
``StimBoxEmulator``, which runs it in a thread on ``os.openpty()`` against the host's
monotonic clock and calls ``on_edge(host_time_s, channel, params)`` at every output edge.

Run standalone for a bench or a demo (prints the port, serves until killed)::

    python -m sim.stimbox_emulator
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engramloop.drivers.stimbox.protocol import (
    FIRMWARE_VERSION,
    INTRA_FRAME_GAP_US,
    WATCHDOG_US,
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
from engramloop.sim.emulators.pty_device import StimulatorDevice, serve

# Firmware limits (the same #defines as stimbox.ino; see PROTOCOL.md "Device limits").
N_TTL = 4                      # TTL output channels 1..4
AUDIO_CHANNEL = 5              # pink-noise click output
REFRACTORY_US = 40_000         # min spacing of trigger onsets (PULSE/TRAIN), device-wide
MAX_RATE_PER_S = 20            # max trigger onsets in any 1 s window
MIN_WIDTH_US, MAX_WIDTH_US = 10, 50_000
MAX_DELAY_US = 1_000_000
MAX_TRAIN_COUNT = 100
MIN_TRAIN_INTERVAL_US = 1_000
MAX_TRAIN_SPAN_US = 2_000_000

OnEdge = Callable[[float, int, dict], None]


@dataclass(frozen=True)
class DeviceEdge:
    """A rising output edge as the device produced it.

    Attributes
    ----------
    device_us : int
        Device time of the edge, microseconds (unwrapped).
    channel : int
        1-based output channel.
    params : dict
        shape, width_us, amplitude, index (0-based within the train), count, seq.
    """

    device_us: int
    channel: int
    params: dict


@dataclass
class _Scheduled:
    channel: int
    edges_us: deque
    width_us: int
    params: dict
    end_us: int = 0


@dataclass
class DeviceLog:
    """What the device did, for tests and benches (device microseconds)."""

    disarms: list = field(default_factory=list)   # (device_us, DisarmCause, last_hb_us)
    nacks: list = field(default_factory=list)     # (device_us, cmd, NackReason)
    acks: list = field(default_factory=list)      # (device_us, cmd, seq)


class StimBoxDevice:
    """The stim-box firmware state machine with injected time.

    Parameters
    ----------
    refractory_us, max_rate_per_s : int
        The device's own limits (firmware constants; the bench relaxes them to measure the
        host driver alone; ``max_rate_per_s=None`` disables the rate limit).
    watchdog_us, gap_us : int
        Heartbeat watchdog and intra-frame gap, microseconds.
    """

    def __init__(self, *, refractory_us: int = REFRACTORY_US,
                 max_rate_per_s: int | None = MAX_RATE_PER_S, watchdog_us: int = WATCHDOG_US,
                 gap_us: int = INTRA_FRAME_GAP_US, n_ttl: int = N_TTL,
                 audio_channel: int = AUDIO_CHANNEL) -> None:
        self.refractory_us = int(refractory_us)
        # None switches the rate limit off: for benches that measure the host driver alone
        # (the firmware always enforces it).
        self.rate_limited = max_rate_per_s is not None
        self.max_rate_per_s = int(max_rate_per_s) if self.rate_limited else 0xFFFF
        self.watchdog_us = int(watchdog_us)
        self.n_ttl = int(n_ttl)
        self.audio_channel = int(audio_channel)
        self.parser = FrameParser(gap_us)
        # Boot: disarmed, every output low, nothing scheduled.
        self.armed = False
        self.disarm_cause = DisarmCause.BOOT
        self.last_hb_us = 0
        self.edges_fired = 0
        self.nacks = 0
        self.now_us = 0
        self._scheduled: dict[int, _Scheduled] = {}
        self._high_until: dict[int, int] = {}
        self._recent_onsets: deque = deque(maxlen=max(1, self.max_rate_per_s)
                                           if self.rate_limited else 1)
        self._last_onset_us: int | None = None
        self.log = DeviceLog()

    # -- outputs ---------------------------------------------------------------------------
    def output_high(self, channel: int, now_us: int | None = None) -> bool:
        """Is ``channel`` driven high at ``now_us`` (default: the last step time)?"""
        t = self.now_us if now_us is None else now_us
        return self._high_until.get(channel, -1) > t

    def all_outputs_low(self, now_us: int | None = None) -> bool:
        return not any(self.output_high(c, now_us) for c in self._all_channels())

    def _all_channels(self) -> range:
        return range(1, max(self.n_ttl, self.audio_channel) + 1)

    def _outputs_off(self, now_us: int) -> None:
        self._scheduled.clear()
        for c in list(self._high_until):
            self._high_until[c] = min(self._high_until[c], now_us)

    def _disarm(self, now_us: int, cause: DisarmCause) -> None:
        if self.armed:
            self.log.disarms.append((now_us, cause, self.last_hb_us))
        self.armed = False
        self.disarm_cause = cause
        self._outputs_off(now_us)

    # -- time ------------------------------------------------------------------------------
    def tick(self, now_us: int) -> list[DeviceEdge]:
        """Advance to ``now_us``: intra-frame gap, watchdog, then due edges."""
        self.now_us = now_us
        self.parser.poll(now_us)
        if self.armed and now_us - self.last_hb_us > self.watchdog_us:
            self._disarm(now_us, DisarmCause.WATCHDOG)
        fired: list[DeviceEdge] = []
        for ch, s in list(self._scheduled.items()):
            while s.edges_us and s.edges_us[0] <= now_us:
                t = s.edges_us.popleft()
                idx = s.params["count"] - len(s.edges_us) - 1
                self._high_until[ch] = t + s.width_us
                self.edges_fired += 1
                fired.append(DeviceEdge(t, ch, dict(s.params, index=idx)))
            if not s.edges_us and now_us >= s.end_us:
                del self._scheduled[ch]
        return fired

    def next_due_us(self) -> int | None:
        """Device time of the next scheduled edge, or None."""
        due = [s.edges_us[0] for s in self._scheduled.values() if s.edges_us]
        return min(due) if due else None

    # -- bytes in, bytes out ---------------------------------------------------------------
    def step(self, data: bytes, now_us: int) -> tuple[bytes, list[DeviceEdge]]:
        """Receive ``data`` at device time ``now_us``.

        Returns
        -------
        reply : bytes
            Frames to send back (ACK/NACK/STATUS_REPLY), possibly empty.
        edges : list of DeviceEdge
            Edges that became due up to ``now_us``.
        """
        edges = self.tick(now_us)
        out = bytearray()
        for fr in self.parser.feed(data, now_us):
            out += self._handle(fr.seq, fr.type, fr.payload, now_us)
        edges += self.tick(now_us)  # a PULSE with delay 0 fires in this same pass
        return bytes(out), edges

    def _nack(self, seq: int, cmd: int, reason: NackReason, now_us: int) -> bytes:
        self.nacks += 1
        self.log.nacks.append((now_us, cmd, reason))
        return encode_frame(seq, MsgType.NACK, Nack(cmd, int(reason), now_us).pack())

    def _ack(self, seq: int, cmd: int, now_us: int, edge_us: int | None = None) -> bytes:
        self.log.acks.append((now_us, cmd, seq))
        return encode_frame(seq, MsgType.ACK,
                            Ack(cmd, now_us, now_us if edge_us is None else edge_us).pack())

    def status(self, now_us: int) -> Status:
        p = self.parser
        return Status(int(self.armed), int(DisarmCause.ARMED if self.armed
                                           else self.disarm_cause),
                      FIRMWARE_VERSION, now_us, p.frames_ok, self.edges_fired,
                      p.garbage_bytes, p.crc_errors, p.gap_discards, p.length_errors,
                      self.nacks, self.refractory_us, self.max_rate_per_s, self.n_ttl,
                      self.audio_channel)

    def _handle(self, seq: int, cmd: int, payload: bytes, now_us: int) -> bytes:
        simple = {MsgType.ARM, MsgType.DISARM, MsgType.STOP, MsgType.STATUS,
                  MsgType.HEARTBEAT}
        if cmd in simple and payload:
            return self._nack(seq, cmd, NackReason.BAD_LENGTH, now_us)
        if cmd == MsgType.HEARTBEAT:
            self.last_hb_us = now_us
            return self._ack(seq, cmd, now_us)
        if cmd == MsgType.ARM:
            self.armed = True
            self.last_hb_us = now_us
            return self._ack(seq, cmd, now_us)
        if cmd == MsgType.DISARM:
            self._disarm(now_us, DisarmCause.HOST)
            return self._ack(seq, cmd, now_us)
        if cmd == MsgType.STOP:
            self._outputs_off(now_us)
            return self._ack(seq, cmd, now_us)
        if cmd == MsgType.STATUS:
            return encode_frame(seq, MsgType.STATUS_REPLY, self.status(now_us).pack())
        if cmd in (MsgType.PULSE, MsgType.TRAIN):
            try:
                pc = PulseCmd.unpack(cmd, payload)
            except ValueError:
                return self._nack(seq, cmd, NackReason.BAD_LENGTH, now_us)
            reason = self._check_pulse(cmd, pc, now_us)
            if reason is not None:
                return self._nack(seq, cmd, reason, now_us)
            edge0 = now_us + pc.delay_us
            count = pc.count if cmd == MsgType.TRAIN else 1
            interval = pc.interval_us if cmd == MsgType.TRAIN else 0
            edges = deque(edge0 + k * interval for k in range(count))
            params = {"shape": Shape(pc.shape).name.lower(), "width_us": pc.width_us,
                      "amplitude": pc.amplitude, "count": count, "interval_us": interval,
                      "seq": seq}
            self._scheduled[pc.channel] = _Scheduled(pc.channel, edges, pc.width_us, params,
                                                     end_us=edges[-1] + pc.width_us)
            self._last_onset_us = edge0
            self._recent_onsets.append(edge0)
            return self._ack(seq, cmd, now_us, edge0)
        return self._nack(seq, cmd, NackReason.UNKNOWN_COMMAND, now_us)

    def _check_pulse(self, cmd: int, pc: PulseCmd, now_us: int) -> NackReason | None:
        if not self.armed:
            return NackReason.NOT_ARMED
        ttl = 1 <= pc.channel <= self.n_ttl
        if not (ttl or pc.channel == self.audio_channel):
            return NackReason.BAD_CHANNEL
        if (ttl and pc.shape != Shape.MONOPHASIC) or (not ttl and pc.shape != Shape.CLICK):
            return NackReason.BAD_SHAPE
        if not MIN_WIDTH_US <= pc.width_us <= MAX_WIDTH_US:
            return NackReason.BAD_WIDTH
        if pc.amplitude == 0:
            return NackReason.BAD_AMPLITUDE
        if pc.delay_us > MAX_DELAY_US:
            return NackReason.BAD_DELAY
        if cmd == MsgType.TRAIN:
            if not (1 <= pc.count <= MAX_TRAIN_COUNT
                    and pc.interval_us >= max(MIN_TRAIN_INTERVAL_US, pc.width_us + MIN_WIDTH_US)
                    and (pc.count - 1) * pc.interval_us <= MAX_TRAIN_SPAN_US):
                return NackReason.BAD_TRAIN
        busy = self._scheduled.get(pc.channel)
        if busy is not None and (busy.edges_us or now_us < busy.end_us):
            return NackReason.BUSY
        edge0 = now_us + pc.delay_us
        if self._last_onset_us is not None and abs(edge0 - self._last_onset_us) < \
                self.refractory_us:
            return NackReason.REFRACTORY
        # The last max_rate_per_s accepted onsets are kept (a ring in the firmware); an
        # onset with that many of them less than 1 s away would exceed the rate.
        if self.rate_limited:
            near = sum(1 for t in self._recent_onsets if abs(edge0 - t) < 1_000_000)
            if near >= self.max_rate_per_s:
                return NackReason.RATE_LIMIT
        return None


class StimBoxEmulator(StimulatorDevice):
    """A ``StimBoxDevice`` on a pseudo-terminal, running in a thread on the host clock.

    Parameters
    ----------
    on_edge : callable(host_time_s, channel, params), optional
        Called from the emulator thread for every output edge, with the edge time on the
        host monotonic clock (``time.monotonic``, = ``pylsl.local_clock``), seconds.
    device_offset_us : int
        Device clock at start, microseconds (a non-zero value exercises the host's
        device-to-host mapping and uint32 wrap handling).
    drift_ppm : float
        Device crystal error, parts per million.
    **device_kwargs
        Passed to ``StimBoxDevice`` (limits).

    Attributes
    ----------
    port : str
        Path of the tty to open with pyserial (the pty slave).
    edges : list of (host_time_s, DeviceEdge)
    """

    def __init__(self, *, on_edge: OnEdge | None = None, device_offset_us: int = 0,
                 drift_ppm: float = 0.0, **device_kwargs) -> None:
        self.device = StimBoxDevice(**device_kwargs)
        self.on_edge = on_edge
        self._offset_us = int(device_offset_us)
        self._rate = 1e6 * (1.0 + drift_ppm * 1e-6)
        super().__init__("stimbox-emulator", nonblocking=True)
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.rx_bytes = 0
        #: a text file (line-buffered) that gets one line per command the device handled
        #: and per disarm, with host times; see :meth:`log_to`
        self._log_fh: Any = None
        self._logged = [0, 0, 0]    # entries of device.log.acks/nacks/disarms written
        #: fault injection: device time (us) at which an armed device disarms itself as if
        #: its watchdog had tripped (None: never)
        self.trip_at_us: int | None = None

    # device clock <-> host clock
    def device_now_us(self) -> int:
        return int((time.monotonic() - self._t0) * self._rate) + self._offset_us

    def host_time(self, device_us: int) -> float:
        """Host monotonic time (s) of an unwrapped device time (us)."""
        return self._t0 + (device_us - self._offset_us) / self._rate

    def inject(self, data: bytes) -> None:
        """Process ``data`` as if it arrived on the line now (used by benches)."""
        with self._lock:
            self._process(data)

    def log_to(self, fh: Any) -> None:
        """Write what the device received and did to ``fh`` from now on, one line each::

            rx <host_s> <COMMAND> seq=<n> ack|nack=<REASON>
            disarm <host_s> cause=<HOST|WATCHDOG|...>
            edge <host_s> ch=<n> index=<k>

        (host monotonic seconds, the clock of every process on this machine), so a test in
        another process can read what a host really sent even after that host died."""
        self._log_fh = fh

    def _write_log(self, edges: Any) -> None:
        fh, lg, done = self._log_fh, self.device.log, self._logged
        lines = []
        for t, cmd, seq in lg.acks[done[0]:]:
            lines.append(f"rx {self.host_time(t):.6f} {_name(cmd)} seq={seq} ack")
        for t, cmd, reason in lg.nacks[done[1]:]:
            lines.append(f"rx {self.host_time(t):.6f} {_name(cmd)} nack={reason.name}")
        for t, cause, _ in lg.disarms[done[2]:]:
            lines.append(f"disarm {self.host_time(t):.6f} cause={cause.name}")
        for e in edges:
            lines.append(f"edge {self.host_time(e.device_us):.6f} ch={e.channel} "
                         f"index={e.params.get('index', 0)}")
        done[:] = [len(lg.acks), len(lg.nacks), len(lg.disarms)]
        if lines:
            fh.write("\n".join(lines) + "\n")
            fh.flush()

    def _process(self, data: bytes) -> None:
        now = self.device_now_us()
        if self.trip_at_us is not None and now >= self.trip_at_us and self.device.armed:
            self.trip_at_us = None
            self.device._disarm(now, DisarmCause.WATCHDOG)
        reply, edges = self.device.step(data, now)
        self._emit(reply, edges)
        if self._log_fh is not None:
            self._write_log(edges)


    def _run(self) -> None:
        while not self._stop.is_set():
            due = self.device.next_due_us()
            timeout = 0.001
            if due is not None:
                timeout = max(0.0, min(timeout, (due - self.device_now_us()) / 1e6))
            try:
                r, _, _ = select.select([self._master], [], [], timeout)
            except (OSError, ValueError):
                return
            data = b""
            if r:
                try:
                    data = os.read(self._master, 4096)
                except BlockingIOError:
                    data = b""
                except OSError:
                    time.sleep(0.001)
                    data = b""
            self.rx_bytes += len(data)
            with self._lock:
                self._process(data)


def main(argv: list[str] | None = None) -> int:
    """Serve an emulated stim box on a pty until SIGTERM/SIGINT; print the port first."""
    ap = argparse.ArgumentParser(prog="python -m sim.stimbox_emulator", description=__doc__)
    ap.add_argument("--refractory-us", type=int, default=REFRACTORY_US)
    ap.add_argument("--max-rate", type=int, default=MAX_RATE_PER_S)
    ap.add_argument("--no-rate-limit", action="store_true",
                    help="switch the rate limit off (benches of the host driver only)")
    ap.add_argument("--offset-us", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="print every edge")
    ap.add_argument("--log", metavar="PATH",
                    help="write every command received, disarm and edge to PATH, one line "
                         "each with host monotonic times (for tests and benches)")
    ap.add_argument("--trip-after-s", type=float, default=None, metavar="S",
                    help="fault injection: S seconds after the first ARM the device "
                         "disarms itself as if its heartbeat watchdog had tripped")
    args = ap.parse_args(argv)

    def show(t: float, ch: int, params: dict) -> None:
        print(f"edge t={t:.6f} ch={ch} {params}", flush=True)

    emu = StimBoxEmulator(on_edge=show if args.verbose else None,
                          device_offset_us=args.offset_us,
                          refractory_us=args.refractory_us,
                          max_rate_per_s=None if args.no_rate_limit else args.max_rate)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fh = open(args.log, "w", buffering=1) if args.log else None  # noqa: SIM115
    if fh is not None:
        emu.log_to(fh)
    if args.trip_after_s is not None:
        trip = args.trip_after_s

        def arm_watch() -> None:
            # the first ARM the device acknowledged starts the countdown
            while not stop.wait(0.001):
                acks = emu.device.log.acks
                first = next((t for t, cmd, _ in acks if cmd == MsgType.ARM), None)
                if first is not None:
                    emu.trip_at_us = first + int(trip * 1e6)
                    return

        threading.Thread(target=arm_watch, daemon=True).start()
    return serve(emu, stop, fh)


def _name(cmd: int) -> str:
    try:
        return MsgType(cmd).name
    except ValueError:
        return f"0x{cmd:02x}"


if __name__ == "__main__":
    sys.exit(main())
