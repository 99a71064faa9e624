"""engramloop devices"""
from __future__ import annotations

import argparse

from engramloop.core.errors import UserError
from engramloop.drivers.brainflow_source import board_names
from engramloop.drivers.ftdi import read_latency_timer_ms
from engramloop.drivers.lsl_source import describe_stream, visible_streams

HELP = "list BrainFlow board names, serial ports (with FTDI latency timers) and LSL streams"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lsl-wait", type=float, default=1.0, metavar="S",
                   help="seconds to listen for LSL streams (default 1; 0 skips LSL)")
    p.add_argument("--no-boards", action="store_true", help="do not list BrainFlow boards")


def run(args: argparse.Namespace) -> int:
    if args.lsl_wait < 0:
        raise UserError(f"--lsl-wait must be >= 0 seconds, got {args.lsl_wait}")
    if not args.no_boards:
        import warnings

        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

        names = board_names()
        print(f"BrainFlow boards ({len(names)}; use as source.brainflow.board):")
        line = "  "
        for n in names:
            if len(line) + len(n) + 2 > 96:
                print(line.rstrip(", "))
                line = "  "
            line += n + ", "
        print(line.rstrip(", "))

    from serial.tools import list_ports

    ports = sorted(list_ports.comports(), key=lambda p: p.device)
    print(f"\nSerial ports ({len(ports)}):")
    if not ports:
        print("  none found")
    for p in ports:
        ms = read_latency_timer_ms(p.device)
        lat = "" if ms is None else (f"  FTDI latency {ms} ms" + ("" if ms <= 1 else
                                                                   " (closed loop needs 1)"))
        desc = p.description if p.description and p.description != "n/a" else ""
        print(f"  {p.device}  {desc}  {p.hwid if p.hwid != 'n/a' else ''}{lat}".rstrip())

    if args.lsl_wait > 0:
        streams = visible_streams(args.lsl_wait)
        print(f"\nLSL streams ({len(streams)} seen in {args.lsl_wait:g} s; use as "
              "source.lsl.name or --stream):")
        if not streams:
            print("  none found")
        for s in sorted(streams, key=lambda i: i.name()):
            print(f"  {describe_stream(s)}")
    return 0
