"""A Sanworks Pulse Pal emulated on a pseudo-terminal, speaking its USB serial protocol
(Sanworks ``Firmware/PROTOCOL.md``, firmware v21/v22; see ``drivers/pulsepal.py`` for the
facts used). pyserial opens the pty slave like a real ``/dev/ttyACM0``.

``PulsePalDevice`` is the command interpreter with injected time (microseconds): it reads
``213, op, data``, answers handshakes (75 + firmware version), hardware info (op 94),
confirm bytes for ops 73/74/79/91/92, keeps the parameter table per channel, plays soft
triggers (op 77) as pulse trains starting on the next 50 us timer cycle, stops on op 80/98,
and, like the firmware, gives up on a command whose next byte does not arrive within
100 ms (counted in ``comm_failures``; the parameters return to the defaults). Bytes other
than 213 at a command start are ignored, as in ``processUSBCommands()``.

Fault injection for tests: ``silent=True`` (never answers), ``reject_codes`` (parameter
codes answered with confirm byte 0).
"""
from __future__ import annotations

import os
import select
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engramloop.drivers.pulsepal import (
    CODE,
    OP_MENU,
    PARAMS,
    TIME_CODES,
    VOLT_CODES,
    dac_to_volts,
    volts_to_dac,
)
from engramloop.sim.emulators.pty_device import StimulatorDevice, serve

CYCLE_US = 50
READ_TIMEOUT_US = 100_000


def default_params() -> dict[int, int]:
    """Firmware defaults (PulsePal.py ``set_default_params``): 1 ms +5 V pulses every 10 ms
    for 1 s, linked to trigger channel 1."""
    return {1: 0, 2: volts_to_dac(5), 3: volts_to_dac(-5), 4: 20, 5: 20, 6: 20, 7: 200,
            8: 0, 9: 0, 10: 20000, 11: 0, 12: 1, 13: 0, 14: 0, 15: 0, 16: 0,
            17: volts_to_dac(0), 18: 0}


@dataclass(frozen=True)
class PulsePalEdge:
    """A pulse onset produced by the emulated device (device microseconds)."""

    device_us: int
    channel: int
    params: dict


class PulsePalDevice:
    """Pulse Pal's USB command interpreter and pulse-train timing, with injected time.

    Parameters
    ----------
    firmware_version : int
        21 (no ops 91-98, no op 94) or 22.
    hardware_version : int
        2 or 3 (reported by op 94).
    silent : bool
        Never reply (a device that does not answer the handshake).
    reject_codes : iterable of int
        Parameter codes whose op 74 is answered with confirm byte 0.
    """

    def __init__(self, *, firmware_version: int = 22, hardware_version: int = 3,
                 silent: bool = False, reject_codes: tuple[int, ...] = ()) -> None:
        self.firmware_version = firmware_version
        self.hardware_version = hardware_version
        self.silent = silent
        self.reject_codes = set(reject_codes)
        self.params = {ch: default_params() for ch in range(1, 5)}
        self.trigger_mode = [0, 0]
        self.client_name = ""
        self.connected = False
        self.comm_failures = 0
        self.ignored_bytes = 0
        self.confirms: list[tuple[int, int]] = []   # (op, confirm byte)
        self.ops: list[int] = []
        self.op_times_us: list[int] = []             # device time of each entry of ops
        self._buf = bytearray()
        self._last_rx_us = 0
        self._pending: list[PulsePalEdge] = []
        self._playing_until: dict[int, int] = {}

    # -- timing -----------------------------------------------------------------------------
    def train_edges(self, channel: int, start_us: int) -> list[PulsePalEdge]:
        """Pulse onsets of one parametric train started at ``start_us`` on ``channel``."""
        p = self.params[channel]
        biphasic = p[1] == 1
        pulse = p[4] + (p[5] + p[6] if biphasic else 0)
        period = pulse + p[7]
        t0 = start_us + p[11] * CYCLE_US
        out, k = [], 0
        while k * period < p[10] and period > 0:
            out.append(PulsePalEdge(t0 + k * period * CYCLE_US, channel, {
                "index": k, "biphasic": biphasic,
                "phase1_v": round(dac_to_volts(p[2]), 4),
                "phase2_v": round(dac_to_volts(p[3]), 4) if biphasic else None,
                "phase1_us": p[4] * CYCLE_US,
                "interphase_us": p[5] * CYCLE_US if biphasic else 0,
                "phase2_us": p[6] * CYCLE_US if biphasic else 0}))
            k += 1
        if out:
            self._playing_until[channel] = t0 + p[10] * CYCLE_US
        return out

    def playing(self, channel: int, now_us: int) -> bool:
        return self._playing_until.get(channel, -1) > now_us

    def next_due_us(self) -> int | None:
        return min((e.device_us for e in self._pending), default=None)

    def tick(self, now_us: int) -> list[PulsePalEdge]:
        if self._buf and now_us - self._last_rx_us > READ_TIMEOUT_US:
            # PROTOCOL.md: every read gives up after 100 ms without a byte; the device
            # shows COMM. FAILURE and loads the default parameters.
            self.comm_failures += 1
            self._buf.clear()
            self.params = {ch: default_params() for ch in range(1, 5)}
        due = [e for e in self._pending if e.device_us <= now_us]
        self._pending = [e for e in self._pending if e.device_us > now_us]
        return due

    def _stop(self, mask: int, now_us: int) -> None:
        chans = [c for c in range(1, 5) if mask & (1 << (c - 1))]
        self._pending = [e for e in self._pending if e.channel not in chans]
        for c in chans:
            if self._playing_until.get(c, -1) > now_us:
                self._playing_until[c] = now_us

    # -- bytes ------------------------------------------------------------------------------
    def step(self, data: bytes, now_us: int) -> tuple[bytes, list[PulsePalEdge]]:
        """Receive ``data`` at ``now_us``; return (reply bytes, edges now due)."""
        edges = self.tick(now_us)
        if data:
            self._buf += data
            self._last_rx_us = now_us
        out = bytearray()
        while self._buf:
            if self._buf[0] != OP_MENU:
                self._buf.pop(0)
                self.ignored_bytes += 1
                continue
            n = self._needed()
            if n is None or len(self._buf) < n:
                break
            msg = bytes(self._buf[:n])
            del self._buf[:n]
            out += self._execute(msg, now_us)
        edges += self.tick(now_us)
        return (b"" if self.silent else bytes(out)), edges

    def _needed(self) -> int | None:
        """Total length of the command at the buffer head, or None if not yet known."""
        b = self._buf
        if len(b) < 2:
            return None
        op = b[1]
        fw22 = self.firmware_version >= 22
        fixed = {72: 2, 73: 2 + 178, 77: 3, 79: 5, 80: 2, 81: 2, 89: 8}
        if fw22:
            fixed.update({92: 2 + 182, 93: 2, 94: 2, 98: 3})
        if op in fixed:
            return fixed[op]
        if op == 74:
            if len(b) < 3:
                return None
            fmt = PARAMS.get(b[2], (None, "B"))[1]
            return 4 + struct.calcsize(fmt)
        if op == 91 and fw22:
            if len(b) < 3:
                return None
            fmt = PARAMS.get(b[2], (None, "B"))[1]
            return 3 + (2 if b[2] == 128 else 4) * struct.calcsize(fmt)
        return 2  # unknown op: the firmware's switch does nothing with it

    def _execute(self, msg: bytes, now_us: int) -> bytes:
        op = msg[1]
        self.ops.append(op)
        self.op_times_us.append(now_us)
        if op == 72:
            self.connected = True
            return bytes((75,)) + struct.pack("<I", self.firmware_version)
        if op == 94:
            return struct.pack("<BIBI", self.hardware_version, CYCLE_US,
                               4 if self.hardware_version > 2 else 2, 5000)
        if op == 89:
            self.client_name = msg[2:8].decode("ascii", "replace")
            return b""
        if op == 74:
            code, ch = msg[2], msg[3]
            name_fmt = PARAMS.get(code)
            ok = name_fmt is not None and code not in self.reject_codes and (
                1 <= ch <= 2 if code == 128 else 1 <= ch <= 4)
            if ok:
                value = struct.unpack("<" + name_fmt[1], msg[4:])[0]
                if code == 128:
                    ok = value <= 3
                    if ok:
                        self.trigger_mode[ch - 1] = value
                else:
                    ok = self._valid(code, value)
                    if ok:
                        self.params[ch][code] = value
            return self._confirm(op, ok)
        if op in (73, 92):
            return self._confirm(op, self._program_all(op, msg[2:]))
        if op == 91:
            code = msg[2]
            fmt = PARAMS.get(code, (None, "B"))[1]
            n = 2 if code == 128 else 4
            vals = struct.unpack(f"<{n}{fmt}", msg[3:])
            ok = code in PARAMS and code not in self.reject_codes
            if ok and code != 128:
                for ch, v in zip(range(1, 5), vals, strict=False):
                    self.params[ch][code] = v
            elif ok:
                self.trigger_mode = list(vals)
            return self._confirm(op, ok)
        if op == 77:
            start = now_us + CYCLE_US  # scheduled for the next timer cycle (USBOps.ino)
            for ch in range(1, 5):
                if msg[2] & (1 << (ch - 1)) and not self.playing(ch, now_us):
                    self._pending += self.train_edges(ch, start)
            return b""
        if op == 79:
            return self._confirm(op, 1 <= msg[2] <= 4)
        if op == 80:
            self._stop(0x0F, now_us)
            return b""
        if op == 98:
            self._stop(msg[2], now_us)
            return b""
        if op == 81:
            self.connected = False
            return b""
        return b""

    def _valid(self, code: int, value: int) -> bool:
        # validateOutputParams() in USBOps.ino: the byte parameters with a bounded range.
        if code in (CODE["is_biphasic"], CODE["custom_train_target"],
                    CODE["custom_train_loop"]):
            return value <= 1
        if code == CODE["custom_train_id"]:
            return value <= (4 if self.hardware_version > 2 else 2)
        return True

    def _confirm(self, op: int, ok: bool) -> bytes:
        self.confirms.append((op, int(ok)))
        return bytes((1 if ok else 0,))

    def _program_all(self, op: int, data: bytes) -> bool:
        ch = range(1, 5)
        if op == 92:
            v = struct.unpack("<32I12H30B", data)
            times, volts, b = v[:32], v[32:44], v[44:]
            for i, code in enumerate(TIME_CODES):
                for j, c in enumerate(ch):
                    self.params[c][code] = times[i * 4 + j]
            for i, code in enumerate(VOLT_CODES):
                for j, c in enumerate(ch):
                    self.params[c][code] = volts[i * 4 + j]
            for i, code in enumerate((1, 14, 15, 16, 18, 12, 13)):
                for j, c in enumerate(ch):
                    self.params[c][code] = b[i * 4 + j]
            self.trigger_mode = list(b[28:30])
        else:
            v = struct.unpack("<32I12H26B", data)
            times, volts, b = v[:32], v[32:44], v[44:]
            for j, c in enumerate(ch):
                for i, code in enumerate(TIME_CODES):
                    self.params[c][code] = times[j * 8 + i]
                for i, code in enumerate(VOLT_CODES):
                    self.params[c][code] = volts[j * 3 + i]
                for i, code in enumerate((1, 14, 15, 16)):
                    self.params[c][code] = b[j * 4 + i]
                self.params[c][12] = b[16 + j]
                self.params[c][13] = b[20 + j]
            self.trigger_mode = list(b[24:26])
        return all(self._valid(k, v) for c in ch for k, v in self.params[c].items())


class PulsePalEmulator(StimulatorDevice):
    """A ``PulsePalDevice`` on a pseudo-terminal, in a thread on the host monotonic clock.

    Parameters
    ----------
    on_edge : callable(host_time_s, channel, params), optional
        Called from the emulator thread at every pulse onset.
    **device_kwargs
        Passed to ``PulsePalDevice``.

    Attributes
    ----------
    port : str
        The pty slave path to open with pyserial.
    edges : list of (host_time_s, PulsePalEdge)
    """

    def __init__(self, *, on_edge: Callable[[float, int, dict], None] | None = None,
                 **device_kwargs) -> None:
        self.device = PulsePalDevice(**device_kwargs)
        self.on_edge = on_edge
        super().__init__("pulsepal-emulator", nonblocking=True)
        self._t0 = time.monotonic()
        self._log_fh: Any = None
        self._logged = [0, 0]   # entries of device.ops / device.confirms written

    def device_now_us(self) -> int:
        return int((time.monotonic() - self._t0) * 1e6)

    def host_time(self, device_us: int) -> float:
        return self._t0 + device_us * 1e-6

    def _run(self) -> None:
        while not self._stop.is_set():
            due = self.device.next_due_us()
            timeout = 0.001 if due is None else max(0.0, min(
                0.001, (due - self.device_now_us()) / 1e6))
            try:
                r, _, _ = select.select([self._master], [], [], timeout)
            except (OSError, ValueError):
                return
            data = b""
            if r:
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    data = b""
            reply, edges = self.device.step(data, self.device_now_us())
            self._emit(reply, edges)
            if self._log_fh is not None:
                self._write_log(edges)

    def log_to(self, fh: Any) -> None:
        """Write every command the device handled and every pulse onset to ``fh``, one
        line each (host monotonic seconds, the clock of every process on this machine)::

            rx <host_s> op=<code> <name> [confirm=<0|1>]
            edge <host_s> ch=<n> index=<k>
        """
        self._log_fh = fh

    def _write_log(self, edges: Any) -> None:
        d, lines = self.device, []
        n_conf = self._logged[1]
        for op, t in zip(d.ops[self._logged[0]:], d.op_times_us[self._logged[0]:],
                         strict=True):
            line = f"rx {self.host_time(t):.6f} op={op} {OP_NAMES.get(op, 'unknown')}"
            if op in (73, 74, 79, 91, 92) and n_conf < len(d.confirms):
                line += f" confirm={d.confirms[n_conf][1]}"
                n_conf += 1
            lines.append(line)
        for e in edges:
            lines.append(f"edge {self.host_time(e.device_us):.6f} ch={e.channel} "
                         f"index={e.params['index']}")
        self._logged = [len(d.ops), n_conf]
        if lines:
            self._log_fh.write("\n".join(lines) + "\n")
            self._log_fh.flush()


#: op codes by name, for the emulator's log (drivers/pulsepal.py, PROTOCOL.md)
OP_NAMES = {72: "handshake", 73: "program_all_legacy", 74: "program_param",
            77: "soft_trigger", 79: "set_display", 80: "stop_all", 81: "disconnect",
            89: "client_name", 91: "program_param_all_channels", 92: "program_all",
            93: "program_all_done", 94: "hardware_info", 98: "stop_channels"}


def main(argv: list[str] | None = None) -> int:
    """Serve an emulated Pulse Pal on a pty until SIGTERM/SIGINT; print the port first."""
    import argparse
    import signal
    import threading

    ap = argparse.ArgumentParser(prog="python -m engramloop.sim.emulators.pulsepal_emulator",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--firmware", type=int, default=22, choices=(21, 22))
    ap.add_argument("--log", metavar="PATH",
                    help="write every command received and every pulse onset to PATH")
    ap.add_argument("--reject", type=int, action="append", default=[], metavar="CODE",
                    help="fault injection: answer op 74 for this parameter code with "
                         "confirm byte 0 (repeatable)")
    args = ap.parse_args(argv)
    emu = PulsePalEmulator(firmware_version=args.firmware,
                           reject_codes=tuple(args.reject))
    fh = open(args.log, "w", buffering=1) if args.log else None  # noqa: SIM115
    if fh is not None:
        emu.log_to(fh)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return serve(emu, stop, fh)


if __name__ == "__main__":
    import sys

    sys.exit(main())

