"""Run the stim-box firmware's real AVR build on simavr: talk to it over its UART and count
the cycles of its audio sample interrupt.

``firmware/simavr_harness.c`` links libsimavr (Debian packages ``simavr``,
``libsimavr-dev``, ``libelf-dev``) and is compiled here with the host's C compiler. Time
on the simulated MCU is in cycles of its 16 MHz clock, counted from reset.
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engramloop.drivers.stimbox.avr_build import (
    BOARDS,
    F_CPU_HZ,
    FIRMWARE,
    Board,
    BuildError,
    symbol_address,
)

HARNESS_SRC = FIRMWARE / "simavr_harness.c"
SIMAVR_INCLUDE = Path("/usr/include/simavr")
# The audio sample interrupt's vector number, and each vector-table entry is 4 bytes
# (avr-libc iom328p.h / iom32u4.h, from the datasheets' reset-and-interrupt-vector
# tables): the sample clock's compare match (ATmega328P Timer2 COMPA = 7, ATmega32U4
# Timer3 COMPA = 32), or, in the first firmware, Timer1 overflow (13 and 20).
AUDIO_VECTORS = {"atmega328p": (7, 13), "atmega32u4": (32, 20)}


def audio_vector(elf: Path, board: Board | str) -> int:
    """The vector number of the audio sample ISR the ELF defines."""
    board = BOARDS[board] if isinstance(board, str) else board
    for n in AUDIO_VECTORS[board.mcu]:
        try:
            symbol_address(elf, f"__vector_{n}")
        except BuildError:
            continue
        return n
    raise BuildError(f"{elf} defines no audio sample ISR (vectors {AUDIO_VECTORS[board.mcu]})")
CYCLES_PER_US = F_CPU_HZ // 1_000_000


def build_harness(out: Path) -> Path:
    """Compile the simavr harness into ``out`` (once), or BuildError naming the package."""
    exe = Path(out) / "simavr_harness"
    if exe.is_file():
        return exe
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise BuildError("no C compiler (cc) found: install the Debian package gcc")
    if not (SIMAVR_INCLUDE / "sim_avr.h").is_file():
        raise BuildError("simavr headers not found in /usr/include/simavr: install the "
                         "Debian package libsimavr-dev")
    Path(out).mkdir(parents=True, exist_ok=True)
    r = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(SIMAVR_INCLUDE),
                        str(HARNESS_SRC), "-o", str(exe), "-lsimavr", "-lelf"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"building the simavr harness failed (needs libsimavr-dev and "
                         f"libelf-dev):\n{r.stderr.strip()}")
    return exe


@dataclass
class SimRun:
    """What the simulated MCU did: bytes it sent, pin changes, audio ISR timing
    (``isr_cycles``: cycles -> how many runs of the audio ISR took that many)."""

    tx: list[tuple[int, int]] = field(default_factory=list)          # (cycle, byte)
    pins: list[tuple[int, str, int]] = field(default_factory=list)   # (cycle, pin, level)
    audio: list[tuple[int, int]] = field(default_factory=list)       # (cycle, OCR1A)
    isr_cycles: dict[int, int] = field(default_factory=dict)         # cycles -> count
    end_cycle: int = 0

    @property
    def isr_max(self) -> int:
        return max(self.isr_cycles) if self.isr_cycles else 0


def run(harness: Path, elf: Path, board: Board | str,
        steps: Iterable[tuple[int, bytes]], *, audio_trace: bool = False,
        timeout_s: float = 600.0) -> SimRun:
    """Run ``elf`` on simavr; ``steps`` are (cycle, bytes to send from that cycle on).

    The last step's cycle is where the run ends (give it ``b""``)."""
    board = BOARDS[board] if isinstance(board, str) else board
    vector = audio_vector(elf, board) * 4
    text = "".join(f"{int(c)} {d.hex() or '-'}\n" for c, d in steps)
    cmd = [str(harness), str(elf), board.mcu, f"{vector:x}"] + (["-a"] if audio_trace else [])
    r = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        raise BuildError(f"simavr run of {elf} failed: {r.stderr.strip()}")
    out = SimRun()
    for line in r.stdout.splitlines():
        kind, *rest = line.split()
        if kind == "U":
            out.tx.append((int(rest[0]), int(rest[1], 16)))
        elif kind == "P":
            out.pins.append((int(rest[0]), rest[1], int(rest[2])))
        elif kind == "A":
            out.audio.append((int(rest[0]), int(rest[1])))
        elif kind == "H":
            out.isr_cycles[int(rest[0])] = int(rest[1])
        elif kind == "C":
            out.end_cycle = int(rest[0])
    return out
