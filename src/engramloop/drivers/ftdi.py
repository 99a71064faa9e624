"""FTDI USB-serial latency timer check (Linux).

FTDI adapters (the OpenBCI Cyton dongle is an FT231X) hold received bytes for up to the
*latency timer* before sending a USB packet to the host; the Linux ``ftdi_sio`` driver
defaults it to 16 ms (FTDI application note AN232B-04, "Data Throughput, Latency and
Handshaking"). At 250 Hz with 33-byte packets that turns a smooth stream into bursts of
about four samples, which a closed loop cannot afford. The kernel exposes the timer as
``/sys/bus/usb-serial/devices/<ttyUSBn>/latency_timer`` (milliseconds, writable by root).
"""
from __future__ import annotations

import os
from pathlib import Path

SYSFS_ROOT = Path("/sys/bus/usb-serial/devices")


def latency_timer_path(port: str, sysfs_root: Path = SYSFS_ROOT) -> Path:
    """The sysfs file holding the latency timer of serial ``port`` (e.g. /dev/ttyUSB0)."""
    return Path(sysfs_root) / Path(os.path.realpath(port)).name / "latency_timer"


def read_latency_timer_ms(port: str, sysfs_root: Path = SYSFS_ROOT) -> int | None:
    """The latency timer of ``port`` in ms, or None when the port is not an FTDI
    usb-serial device (a pty, an ACM device, another OS)."""
    p = latency_timer_path(port, sysfs_root)
    try:
        return int(p.read_text().strip())
    except (OSError, ValueError):
        return None


def fix_command(port: str, sysfs_root: Path = SYSFS_ROOT) -> str:
    """The one-line shell fix that sets the timer to 1 ms (until the adapter is re-plugged)."""
    return f"echo 1 | sudo tee {latency_timer_path(port, sysfs_root)}"


def check_latency_timer(port: str, *, sysfs_root: Path = SYSFS_ROOT) -> tuple[bool, str]:
    """Check the FTDI latency timer of ``port``.

    Returns
    -------
    ok : bool
        True when the timer is 1 ms or the port has no such timer.
    message : str
        Empty when ok; otherwise a one-line explanation with the fix.
    """
    ms = read_latency_timer_ms(port, sysfs_root)
    if ms is None or ms <= 1:
        return True, ""
    return False, (f"FTDI latency timer of {port} is {ms} ms (data arrives in {ms} ms "
                   f"bursts); closed-loop needs 1 ms: run `{fix_command(port, sysfs_root)}`")


__all__ = ["check_latency_timer", "read_latency_timer_ms", "latency_timer_path", "fix_command"]
