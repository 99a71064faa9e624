"""Build the stim-box sketch for a real AVR board with avr-gcc and the Arduino AVR core,
without the Arduino IDE or arduino-cli.

The flags are the ones the Arduino AVR core's own ``platform.txt`` and ``boards.txt`` give
for the board (optimise for size, one section per function, unused sections dropped at
link time), except that the sketch is compiled with ``-Wall -Wextra -Werror`` (the core's
sources with ``-w``, as the IDE does: they are not ours) and without LTO, so the code
measured on the simulator is the code of a plain build. On Debian the tools come from the
packages ``gcc-avr``, ``avr-libc``, ``binutils-avr`` and ``arduino-core-avr``
(``/usr/share/arduino/hardware/arduino/avr``).

    python -m engramloop.drivers.stimbox.avr_build uno build/uno
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent / "firmware"
SKETCH = FIRMWARE / "stimbox" / "stimbox.ino"
# where Debian's arduino-core-avr puts the core; ARDUINO_AVR_CORE overrides it
DEFAULT_CORE = Path("/usr/share/arduino/hardware/arduino/avr")
# the Arduino IDE version the core expects in ARDUINO (1.8.19 -> 10819)
ARDUINO_VERSION = "10819"


class BuildError(RuntimeError):
    """A tool is missing or a compile/link step failed; the message says which."""


@dataclass(frozen=True)
class Board:
    """One board entry of the core's boards.txt (the fields the build needs)."""

    name: str
    mcu: str
    variant: str
    board_define: str
    flash_bytes: int      # upload.maximum_size: flash left by the bootloader
    ram_bytes: int        # upload.maximum_data_size
    extra: tuple[str, ...] = ()


BOARDS = {
    "uno": Board("uno", "atmega328p", "standard", "AVR_UNO", 32256, 2048),
    "leonardo": Board("leonardo", "atmega32u4", "leonardo", "AVR_LEONARDO", 28672, 2560,
                      ("-DUSB_VID=0x2341", "-DUSB_PID=0x8036",
                       '-DUSB_MANUFACTURER="Unknown"', '-DUSB_PRODUCT="Arduino Leonardo"')),
}

F_CPU_HZ = 16_000_000


def core_dir() -> Path:
    """The Arduino AVR core (``cores/``, ``variants/``), or BuildError naming the package."""
    d = Path(os.environ.get("ARDUINO_AVR_CORE", DEFAULT_CORE))
    if not (d / "cores" / "arduino" / "Arduino.h").is_file():
        raise BuildError(f"Arduino AVR core not found in {d}: install the Debian package "
                         "arduino-core-avr or set ARDUINO_AVR_CORE")
    return d


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pkg = "gcc-avr" if name.startswith("avr-g") else "binutils-avr"
        raise BuildError(f"{name} not found: install the Debian package {pkg}")
    return path


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"{Path(cmd[0]).name} failed:\n{' '.join(cmd)}\n{r.stderr.strip()}")


def _common(board: Board, core: Path) -> list[str]:
    return ["-Os", "-g", "-ffunction-sections", "-fdata-sections", f"-mmcu={board.mcu}",
            f"-DF_CPU={F_CPU_HZ}L", f"-DARDUINO={ARDUINO_VERSION}",
            f"-DARDUINO_{board.board_define}", "-DARDUINO_ARCH_AVR", *board.extra,
            "-I", str(core / "cores" / "arduino"),
            "-I", str(core / "variants" / board.variant)]


CXX_FLAGS = ["-std=gnu++11", "-fno-exceptions", "-fno-threadsafe-statics"]


def build_core(board: Board, out: Path) -> Path:
    """Compile the Arduino core for ``board`` into ``out/core.a`` (once per directory)."""
    archive = out / "core.a"
    if archive.is_file():
        return archive
    core = core_dir()
    gcc, gxx, ar = tool("avr-gcc"), tool("avr-g++"), tool("avr-gcc-ar")
    objs = []
    obj_dir = out / "core"
    obj_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted((core / "cores" / "arduino").iterdir()):
        obj = obj_dir / (src.name + ".o")
        if src.suffix == ".c":
            cmd = [gcc, "-c", "-w", "-std=gnu11"]
        elif src.suffix == ".cpp":
            # gcc-avr 5's <float.h> hides DECIMAL_DIG from C++ (WString.cpp uses it):
            # give it the compiler's own value
            cmd = [gxx, "-c", "-w", *CXX_FLAGS, "-fpermissive",
                   "-DDECIMAL_DIG=__DECIMAL_DIG__"]
        elif src.suffix == ".S":
            cmd = [gcc, "-c", "-x", "assembler-with-cpp"]
        else:
            continue
        _run([*cmd, *_common(board, core), str(src), "-o", str(obj)])
        objs.append(str(obj))
    tmp = out / "core.a.tmp"
    tmp.unlink(missing_ok=True)
    _run([ar, "rcs", str(tmp), *objs])
    tmp.replace(archive)
    return archive


def build_sketch(board: Board | str, out: Path, *, sketch: Path = SKETCH,
                 defines: tuple[str, ...] = ()) -> Path:
    """Compile ``sketch`` (C++, warnings are errors) and link it with the core.

    Returns the ELF file ``out/<sketch stem>.elf``; also writes the ``.hex`` to flash.
    ``defines`` are extra ``-D`` flags for the sketch only (e.g. a test build option).
    """
    board = BOARDS[board] if isinstance(board, str) else board
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    core = core_dir()
    archive = build_core(board, out)
    gxx = tool("avr-g++")
    obj = out / (sketch.stem + ".o")
    elf = out / (sketch.stem + ".elf")
    _run([gxx, "-c", "-x", "c++", "-Wall", "-Wextra", "-Werror", *CXX_FLAGS,
          *_common(board, core), *[f"-D{d}" for d in defines],
          "-I", str(sketch.parent), str(sketch), "-o", str(obj)])
    _run([tool("avr-gcc"), "-Os", "-g", "-Wl,--gc-sections", f"-mmcu={board.mcu}",
          "-o", str(elf), str(obj), str(archive), "-lm"])
    _run([tool("avr-objcopy"), "-O", "ihex", "-R", ".eeprom", str(elf),
          str(elf.with_suffix(".hex"))])
    return elf


def sizes(elf: Path) -> tuple[int, int]:
    """(flash bytes, static RAM bytes) of an ELF, from its section headers."""
    out = subprocess.run([tool("avr-size"), "-A", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    sec = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    flash = sec.get(".text", 0) + sec.get(".data", 0)
    ram = sec.get(".data", 0) + sec.get(".bss", 0) + sec.get(".noinit", 0)
    return flash, ram


def symbol_address(elf: Path, name: str) -> int:
    """Byte address of a function the ELF defines (e.g. ``__vector_13``); the weak aliases
    of unused vectors to ``__bad_interrupt`` do not count."""
    out = subprocess.run([tool("avr-nm"), str(elf)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name and parts[1] in "Tt":
            return int(parts[0], 16)
    raise BuildError(f"symbol {name} not found in {elf}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("board", choices=sorted(BOARDS))
    ap.add_argument("out", type=Path, help="build directory (the .elf and .hex go here)")
    args = ap.parse_args(argv)
    try:
        elf = build_sketch(args.board, args.out)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    flash, ram = sizes(elf)
    b = BOARDS[args.board]
    print(f"{elf.with_suffix('.hex')}: flash {flash}/{b.flash_bytes} B, "
          f"static RAM {ram}/{b.ram_bytes} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
