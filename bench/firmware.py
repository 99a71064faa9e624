"""The stim-box firmware on a simulated ATmega328P (simavr), counted in CPU cycles: the
click interrupt of the first firmware (a 32-bit division per sample) and of the current
one, and how late TTL edges rise after the time the device acknowledged.

Cycles are what simavr executes for the real avr-gcc build (Arduino Uno, 16 MHz),
including the 4-cycle interrupt response; they do not depend on the host's load. Method:
tests/test_stimbox_avr.py and src/engramloop/drivers/stimbox/firmware/simavr_harness.c.

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

from test_stimbox_avr import SAMPLE_PERIOD, click_run, run_conformance  # noqa: E402

from engramloop.drivers.stimbox import avr_build, avr_sim  # noqa: E402

INO = "src/engramloop/drivers/stimbox/firmware/stimbox/stimbox.ino"


def first_firmware_sketch() -> tuple[str, str] | None:
    """(commit, text) of the newest stimbox.ino in git history that still divided per
    sample, or None outside a git checkout."""
    try:
        revs = subprocess.run(["git", "-C", str(ROOT), "log", "--format=%h", "--", INO],
                              capture_output=True, text=True, check=True).stdout.split()
        for rev in revs:
            text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{INO}"],
                                  capture_output=True, text=True, check=True).stdout
            if "/ 74000L" in text:
                return rev, text
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
            rev, text = old
            d = tmp / "first" / "stimbox"
            d.mkdir(parents=True)
            (d / "stimbox.ino").write_text(text)
            for h in (avr_build.SKETCH.parent).glob("*.h"):
                (d / h.name).write_text(h.read_text())
            report(f"first firmware ({rev}, Uno)", avr_build.build_sketch(
                "uno", tmp / "first-build", sketch=d / "stimbox.ino"), harness)
        report("current firmware (Uno)", elf, harness)
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
