"""The reference firmware's state machine (drivers/stimbox/firmware/stimbox/stimbox_core.h),
compiled with g++ for the host, against the Python emulator (sim/stimbox_emulator.py):
the same byte streams at the same device times must give byte-identical replies and the
same output edges. Streams mix valid commands (good and bad parameters), garbage,
truncated frames, long gaps and the uint32 clock wrap."""
from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

from engramloop.drivers.stimbox.protocol import MsgType, PulseCmd, encode_frame
from engramloop.sim.emulators.stimbox_emulator import StimBoxDevice

FIRMWARE = Path(__file__).resolve().parents[2] / "src/engramloop/drivers/stimbox/firmware"


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    gxx = require_tool("g++", package="g++")
    exe = tmp_path_factory.mktemp("fw") / "harness"
    subprocess.run([gxx, "-std=c++11", "-O1", "-Wall", "-Wextra", "-Werror",
                    "-I", str(FIRMWARE / "stimbox"), str(FIRMWARE / "host_harness.cpp"),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    return exe


def scenario(seed: int, t0: int) -> list[tuple[int, bytes]]:
    """A reproducible stream of (device time us, bytes) steps."""
    rng = random.Random(seed)
    t, seq, steps = t0, 0, []
    # a fixed prefix: a truncated frame left to the 100 ms gap rule, then pulses every
    # 45 ms on alternating channels until the 20-per-second limit refuses one
    steps.append((t & 0xFFFFFFFF, encode_frame(0, MsgType.ARM)[:4]))
    t += 150_000
    steps.append((t & 0xFFFFFFFF, encode_frame(1, MsgType.ARM)))
    for k in range(24):
        t += 45_000
        cmd = PulseCmd(1 + k % 4, 0, 100, 5000)
        steps.append((t & 0xFFFFFFFF, encode_frame(2, MsgType.HEARTBEAT)
                      + encode_frame(3, MsgType.PULSE, cmd.pack())))
    for _ in range(400):
        t += (rng.choice((99_000, 101_000, 250_000)) if rng.random() < 0.08
              else rng.choice((0, 5, 300, 2_000, 20_000, 45_000)))
        seq = (seq + 1) & 0xFF
        r = rng.random()
        if r < 0.12:
            data = encode_frame(seq, MsgType.ARM)
        elif r < 0.35:
            data = encode_frame(seq, MsgType.HEARTBEAT)
        elif r < 0.62:
            count = rng.choice((1, 1, 1, 3, 150))
            if rng.random() < 0.6:  # a pulse the device should accept when armed
                ch = rng.choice((1, 2, 3, 4, 5))
                cmd = PulseCmd(ch, 2 if ch == 5 else 0, rng.choice((100, 500, 10_000)), 5000,
                               rng.choice((0, 0, 2_000, 80_000)), min(count, 3),
                               0 if count == 1 else 30_000)
            else:
                cmd = PulseCmd(rng.choice((0, 1, 2, 3, 4, 5, 6)), rng.choice((0, 0, 1, 2)),
                               rng.choice((5, 100, 500, 10_000, 60_000)),
                               rng.choice((0, 1, 5000, 65535)),
                               rng.choice((0, 0, 2_000, 80_000, 2_000_000)), count,
                               0 if count == 1 else rng.choice((50, 2_000, 30_000)))
            data = encode_frame(seq, cmd.msg_type, cmd.pack())
        elif r < 0.67:
            data = encode_frame(seq, rng.choice((MsgType.STOP, MsgType.DISARM,
                                                 MsgType.STATUS, 0x42)))
        elif r < 0.72:
            data = encode_frame(seq, MsgType.HEARTBEAT, b"\x01")  # bad length
        elif r < 0.82:
            good = encode_frame(seq, MsgType.PULSE, PulseCmd(1, 0, 100, 1, 0).pack())
            data = good[:rng.randrange(1, len(good))]          # truncated
        elif r < 0.90:
            bad = bytearray(encode_frame(seq, MsgType.ARM))
            bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)   # corrupted
            data = bytes(bad)
        else:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        steps.append((t & 0xFFFFFFFF, data))
        if rng.random() < 0.3:
            t += rng.randrange(1, 3000)
            steps.append((t & 0xFFFFFFFF, b""))  # a tick without bytes
    return steps


@pytest.mark.parametrize("seed,t0", [(0, 0), (1, 10_000_000), (2, 2**32 - 3_000_000),
                                     (3, 123_456_789)])
def test_firmware_core_matches_the_emulator(harness, seed, t0):
    steps = scenario(seed, t0)
    text = "".join(f"{t} {d.hex() or '-'}\n" for t, d in steps)
    out = subprocess.run([str(harness)], input=text, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    dev = StimBoxDevice()
    i = 0
    unwrapped = t0
    n_edges = n_replies = 0
    for k, (t, data) in enumerate(steps):
        unwrapped += (t - unwrapped) & 0xFFFFFFFF  # the emulator counts time unwrapped
        reply, edges = dev.step(data, unwrapped)
        fw_reply, fw_edges = b"", []
        while out[i] != ".":  # edges are printed as they fire, the reply after them
            if out[i].startswith("R "):
                fw_reply = b"" if out[i] == "R -" else bytes.fromhex(out[i][2:])
            else:
                _, ch, us, idx = out[i].split()
                fw_edges.append((int(us), int(ch), int(idx)))
            i += 1
        i += 1
        assert fw_reply == reply, f"step {k} at t={t}: replies differ"
        py_edges = sorted((e.device_us & 0xFFFFFFFF, e.channel, e.params["index"])
                          for e in edges)
        assert sorted(fw_edges) == py_edges, f"step {k} at t={t}: edges differ"
        n_edges += len(edges)
        n_replies += bool(reply)
    s = out[i].split()
    p = dev.parser
    assert [int(x) for x in s[1:]] == [int(dev.armed), dev.edges_fired, p.garbage_bytes,
                                       p.crc_errors, p.gap_discards, p.length_errors,
                                       dev.nacks]
    # the scenario really exercised the device
    assert n_edges > 5 and n_replies > 100 and dev.nacks > 10 and p.crc_errors > 0
    assert p.gap_discards > 0 and dev.log.disarms
    assert any(r.name == "RATE_LIMIT" for _, _, r in dev.log.nacks)


ARDUINO_STUB = """
#pragma once
#include <stdint.h>
#include <stddef.h>
#define HIGH 1
#define LOW 0
#define OUTPUT 1
inline void pinMode(uint8_t, uint8_t) {}
inline void digitalWrite(uint8_t, uint8_t) {}
inline uint32_t micros() { return 0; }
struct SerialStub {
  void begin(unsigned long) {}
  int available() { return 0; }
  int read() { return -1; }
  size_t write(const uint8_t*, size_t n) { return n; }
};
static SerialStub Serial;
"""


def test_sketch_compiles_against_an_arduino_stub(tmp_path):
    """The .ino glue (non-AVR path, so no audio timer) compiles as C++; the AVR path needs
    the Arduino toolchain (see the firmware README)."""
    gxx = require_tool("g++", package="g++")
    (tmp_path / "Arduino.h").write_text(ARDUINO_STUB)
    main = tmp_path / "main.cpp"
    main.write_text('#include "stimbox.ino"\nint main() { setup(); loop(); return 0; }\n')
    subprocess.run([gxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path),
                    "-I", str(FIRMWARE / "stimbox"), str(main), "-o", str(tmp_path / "sk")],
                   check=True, capture_output=True, text=True)


AUDIO_CHECK = r"""
#include <stdio.h>
#include "stimbox_audio.h"
using namespace stimbox::audio;
int main() {
  // every level and every pink value: the multiply gives what the division gave
  long mismatches = 0;
  for (long a = 0; a <= 65535; a++) {
    uint32_t g = click_gain((uint16_t)a);
    for (int p = -144; p <= 144; p++) {
      int32_t s = (int32_t)p * (int32_t)a;
      uint8_t want = (uint8_t)(128 + (int16_t)(s / 74000L));   // the first firmware's ISR
      if (scale((int16_t)p, (uint8_t)g, (uint8_t)(g >> 8), (uint8_t)(g >> 16)) != want)
        mismatches++;
    }
  }
  printf("%ld\n", mismatches);
  Pink pink;
  pink.reset();
  for (int i = 0; i < 4096; i++) printf("%d\n", pink.next());
  return 0;
}
"""


def reference_pink(n: int) -> list[int]:
    """The click noise as the firmware comments specify it, written independently: a
    Galois LFSR with taps 0xB400 from 0xACE1, 8 Voss-McCartney rows (row k redrawn when
    the 8-bit sample counter has k trailing zeros, 7 also for counter 0), each term the
    LFSR's low byte as int8 shifted right by 3, plus one fresh term per sample."""
    lfsr, rows, counter, out = 0xACE1, [0] * 8, 0, []

    def white() -> int:
        nonlocal lfsr
        lsb = lfsr & 1
        lfsr >>= 1
        if lsb:
            lfsr ^= 0xB400
        b = lfsr & 0xFF
        return (b - 256 if b > 127 else b) >> 3

    for _ in range(n):
        counter = (counter + 1) & 0xFF
        k = 7 if counter == 0 else min(7, (counter & -counter).bit_length() - 1)
        rows[k] = white()
        out.append(sum(rows) + white())
    return out


def test_click_samples_are_the_division_free_equal_of_the_first_firmware(tmp_path):
    """stimbox_audio.h (what the ISR runs): for all 65536 levels x 289 pink values the
    24-bit gain multiply equals the first firmware's trunc(pink * level / 74000), and the
    pink sequence is the one the firmware comments specify (an independent Python
    reference)."""
    gxx = require_tool("g++", package="g++")
    src = tmp_path / "audio_check.cpp"
    src.write_text(AUDIO_CHECK)
    exe = tmp_path / "audio_check"
    subprocess.run([gxx, "-std=c++11", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
                    str(FIRMWARE / "stimbox"), str(src), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    lines = [int(x) for x in out.split()]
    assert lines[0] == 0, f"{lines[0]} (level, pink) pairs differ from the division"
    pink = lines[1:]
    assert pink == reference_pink(len(pink))
    assert min(pink) >= -144 and max(pink) <= 135


CRC_CHECK = r"""
#include <stdio.h>
#include "stimbox_core.h"
int main() {
  const char* s = "123456789";
  uint16_t crc = 0xFFFF;
  for (const char* p = s; *p; p++) crc = stimbox::crc16_update(crc, (uint8_t)*p);
  printf("%04x\n", crc);
  return 0;
}
"""


def test_core_crc_gives_the_catalogue_check_value(tmp_path):
    """The core's table-driven CRC-16/CCITT-FALSE gives the catalogue's check value 0x29B1
    for "123456789" (and agrees with Python's binascii.crc_hqx, an implementation we did
    not write)."""
    import binascii

    gxx = require_tool("g++", package="g++")
    src = tmp_path / "crc.cpp"
    src.write_text(CRC_CHECK)
    subprocess.run([gxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I",
                    str(FIRMWARE / "stimbox"), str(src), "-o", str(tmp_path / "crc")],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(tmp_path / "crc")], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert int(out, 16) == 0x29B1 == binascii.crc_hqx(b"123456789", 0xFFFF)
