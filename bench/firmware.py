"""The stim-box firmware on a simulated ATmega328P (simavr), counted in CPU cycles: the
click interrupt of the first firmware (a 32-bit division per sample) and of the current
one, and how late TTL edges rise after the time the device acknowledged.

Cycles are what simavr executes for the real avr-gcc build (Arduino Uno, 16 MHz),
including the 4-cycle interrupt response; they do not depend on the host's load. Method:
tests/drivers/test_stimbox_avr.py and src/engramloop/drivers/stimbox/firmware/simavr_harness.c.

Needs the Debian packages gcc-avr, avr-libc, binutils-avr, arduino-core-avr, simavr,
libsimavr-dev, libelf-dev.

Run:  .venv/bin/python bench/firmware.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "drivers"))

from test_stimbox_avr import MS, SAMPLE_PERIOD, click_run, run_conformance  # noqa: E402

from engramloop.drivers.stimbox import avr_build, avr_sim  # noqa: E402
from engramloop.drivers.stimbox.protocol import MsgType, PulseCmd, encode_frame  # noqa: E402

INO = "src/engramloop/drivers/stimbox/firmware/stimbox/stimbox.ino"


def first_firmware_sketch() -> tuple[str, dict[str, str]] | None:
    """(commit, {file name: text}) of the sketch folder at the newest commit whose
    stimbox.ino still divided per sample, or None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                              text=True, check=True).stdout

    try:
        for rev in git("log", "--format=%h", "--", INO).split():
            if "/ 74000L" in git("show", f"{rev}:{INO}"):
                folder = str(Path(INO).parent)
                names = git("ls-tree", "--name-only", f"{rev}:{folder}").split()
                return rev, {n: git("show", f"{rev}:{folder}/{n}") for n in names}
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return None


def report(name: str, elf: Path, harness: Path) -> None:
    run = click_run(harness, elf)
    hist = run.isr_cycles
    worst = run.isr_max
    sample = {c: n for c, n in hist.items() if c > worst // 2}
    other = {c: n for c, n in hist.items() if c <= worst // 2}
    played = sum(sample.values())
    start = next(c for c, v in run.audio if v != 128)   # first firmware: boot 128 first
    span = run.audio[-1][0] - start
    flash, ram = avr_build.sizes(elf)
    vector = avr_sim.audio_vector(elf, "uno")
    # the first firmware's Timer1 overflow ISR also ran twice between samples (divider)
    extra = 2 * min(other) if vector == 13 and other else 0
    print(f"{name}:")
    print(f"  flash {flash} B, static RAM {ram} B; audio ISR __vector_{vector}")
    print(f"  sample ISR cycles: min {min(sample)}, median "
          f"{statistics.median_low([c for c, n in sample.items() for _ in range(n)])}, "
          f"max {worst}" + (f"; divider-only overflows: 2 x {min(other)}" if extra else ""))
    print(f"  audio interrupts per {SAMPLE_PERIOD}-cycle sample period: {worst + extra} "
          f"cycles ({100 * (worst + extra) / SAMPLE_PERIOD:.0f}%)")
    print(f"  audio ISR runs that played no sample (silence, divider) in the "
          f"{run.end_cycle / avr_sim.CYCLES_PER_US / 1000:.0f} ms run: "
          f"{sum(hist.values()) - played}")
    print(f"  samples played in a 50 ms click: {played}, one per "
          f"{span / max(played, 1):.0f} cycles (intended {SAMPLE_PERIOD})")


def command_to_edge_us(harness: Path, elf: Path) -> list[float]:
    """Microseconds from a delay-0 PULSE's last byte arriving at the UART to its TTL edge
    rising (all on the simulated clock; the ACK reports the edge at the frame's time)."""
    steps = [(100 * MS, encode_frame(1, MsgType.ARM))]
    t, arrivals = 100 * MS, []
    for k in range(8):
        t += 50 * MS
        frame = encode_frame(2 + k, MsgType.PULSE, PulseCmd(1 + k % 4, 0, 100, 5000).pack())
        steps.append((t, frame))
        arrivals.append(t + (len(frame) - 1) * 1400 + 1360)   # the harness's byte pacing
        steps.append((t + 20 * MS, encode_frame(100 + k, MsgType.HEARTBEAT)))
        t += 20 * MS
    steps.append((t + 20 * MS, b""))
    run = avr_sim.run(harness, elf, "uno", steps)
    rises = sorted(c for c, pin, level in run.pins
                   if level == 1 and pin in ("D2", "D3", "D4", "D5"))
    return [(r - a) / avr_sim.CYCLES_PER_US for r, a in zip(rises, arrivals, strict=True)]


def print_latency(name: str, harness: Path, elf: Path) -> None:
    lat = command_to_edge_us(harness, elf)
    print(f"  {name}: delay-0 PULSE, last byte in -> TTL edge: median "
          f"{statistics.median(lat):.0f} us, max {max(lat):.0f} us ({len(lat)} pulses)")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            harness = avr_sim.build_harness(tmp / "sim")
            elf = avr_build.build_sketch("uno", tmp / "now")
        except avr_build.BuildError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        old = first_firmware_sketch()
        if old is None:
            print("(no git history: the first firmware is not measured)")
        else:
            rev, files = old
            d = tmp / "first" / "stimbox"
            d.mkdir(parents=True)
            for name, text in files.items():
                (d / name).write_text(text)
            first = avr_build.build_sketch("uno", tmp / "first-build",
                                           sketch=d / "stimbox.ino")
            report(f"first firmware ({rev}, Uno)", first, harness)
        report("current firmware (Uno)", elf, harness)
        print("command to edge on the simulated MCU:")
        if old is not None:
            print_latency("first firmware", harness, first)
        print_latency("current firmware", harness, elf)
        host = tmp / "host_harness"
        fw = avr_build.FIRMWARE
        subprocess.run(["g++", "-std=c++11", "-O1", "-I", str(fw / "stimbox"),
                        str(fw / "host_harness.cpp"), "-o", str(host)], check=True)
        c = run_conformance(harness, elf, host)
        same = sum(a == b for a, b in zip(c.mcu, c.emulator, strict=True))
        print(f"conformance frames: {same}/{len(c.mcu)} steps answered identically by the "
              f"simulated MCU and the emulator")
        print(f"TTL edge rise after the acknowledged edge time (upper bound, {len(c.late_us)}"
              f" edges): median {statistics.median(c.late_us):.0f} us, "
              f"max {max(c.late_us):.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
