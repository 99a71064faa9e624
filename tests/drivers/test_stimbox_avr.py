"""The stim-box firmware as it runs on the board: built with avr-gcc against the Arduino
AVR core for the Uno (ATmega328P) and the Leonardo (ATmega32U4), warnings as errors, and
run on simavr's model of the ATmega328P -- its click interrupt timed in cycles, its UART
answering the protocol's conformance frames byte for byte like the Python emulator and
the host build of the same core.

Needs the Debian packages gcc-avr, avr-libc, binutils-avr, arduino-core-avr, simavr,
libsimavr-dev and libelf-dev (.ci/run installs them); without them these tests skip
naming the package, and under CI=true they fail."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_tool

from engramloop.drivers.stimbox import avr_build, avr_sim
from engramloop.drivers.stimbox.protocol import (
    FrameParser,
    MsgType,
    NackReason,
    PulseCmd,
    encode_frame,
)
from engramloop.sim.emulators.stimbox_emulator import StimBoxDevice

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

FIRMWARE = avr_build.FIRMWARE
MS = avr_sim.CYCLES_PER_US * 1000          # cycles per millisecond
SAMPLE_PERIOD = 768                        # cycles per click sample (16 MHz / 20.833 kHz)


def _require_avr_toolchain() -> None:
    require_tool("avr-g++", package="gcc-avr")
    require_tool("avr-objdump", package="binutils-avr")
    require_tool("/usr/lib/avr/include/avr/io.h", package="avr-libc")
    require_tool(str(avr_build.DEFAULT_CORE / "cores/arduino/Arduino.h"),
                 package="arduino-core-avr")


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    _require_avr_toolchain()
    root = tmp_path_factory.mktemp("avr")
    return {b: avr_build.build_sketch(b, root / b) for b in avr_build.BOARDS}


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    require_tool("simavr", package="simavr")
    require_tool("/usr/include/simavr/sim_avr.h", package="libsimavr-dev")
    require_tool("/usr/include/libelf.h", package="libelf-dev")
    return avr_sim.build_harness(tmp_path_factory.mktemp("simavr"))


def isr_disassembly(elf: Path, board: str) -> str:
    vector = f"__vector_{avr_sim.audio_vector(elf, board)}"
    text = subprocess.run([shutil.which("avr-objdump"), "-d", str(elf)], check=True,
                          capture_output=True, text=True).stdout
    start = text.index(f"<{vector}>:")
    return text[start:text.index("reti", start)]


@pytest.mark.parametrize("board", sorted(avr_build.BOARDS))
def test_sketch_builds_for_the_board_with_warnings_as_errors(builds, board):
    elf = builds[board]
    b = avr_build.BOARDS[board]
    flash, ram = avr_build.sizes(elf)
    assert 0 < flash <= b.flash_bytes
    # static RAM leaves room for the stack (interrupts nest the ISR on the main loop's)
    assert 0 < ram <= b.ram_bytes - 512
    assert elf.with_suffix(".hex").stat().st_size > 0
    # the per-sample ISR calls nothing: no library divide or multiply
    isr = isr_disassembly(elf, board)
    assert "call" not in isr and "__divmod" not in isr and "__mul" not in isr


def test_the_build_fails_on_a_warning(tmp_path):
    """-Werror is really on: the same build of a sketch with an unused variable fails."""
    _require_avr_toolchain()
    sketch = tmp_path / "warn" / "warn.ino"
    sketch.parent.mkdir()
    sketch.write_text("#include <Arduino.h>\nvoid setup() { int unused = 1; }\n"
                      "void loop() {}\n")
    with pytest.raises(avr_build.BuildError, match="unused"):
        avr_build.build_sketch("uno", tmp_path / "out", sketch=sketch)


def click_run(harness: Path, elf: Path, *, amplitude: int = 65535):
    """ARM, then a 50 ms click, heartbeats every 20 ms; the audio compare value traced."""
    steps = [(100 * MS, encode_frame(1, MsgType.ARM))]
    t, seq = 100 * MS, 2
    for k in range(7):
        t += 20 * MS
        steps.append((t, encode_frame(seq, MsgType.HEARTBEAT)))
        seq += 1
        if k == 1:
            t += 5 * MS
            cmd = PulseCmd(5, 2, 50_000, amplitude, 0)
            steps.append((t, encode_frame(seq, MsgType.PULSE, cmd.pack())))
            seq += 1
    steps.append((t + 20 * MS, b""))
    return avr_sim.run(harness, elf, "uno", steps, audio_trace=True)


def test_click_isr_fits_its_cycle_budget_on_the_simulated_mcu(builds, harness):
    """Cycles counted by simavr (deterministic, so a bound is safe to assert): the sample
    ISR takes well under the 768-cycle sample period (the first firmware's took 860-956,
    with two more Timer1 overflows of 91 cycles between samples), samples land once per
    768 cycles while the click plays, and micros() keeps time (the ACKs' device times
    track the simulated clock)."""
    run = click_run(harness, builds["uno"])
    hist = run.isr_cycles
    worst = run.isr_max
    assert worst <= 0.4 * SAMPLE_PERIOD
    # the samples of the click: one per 768 cycles while it plays, none lost (the first
    # firmware lost Timer1 overflows: a sample every ~1280 cycles)
    played = sum(n for c, n in hist.items() if c > worst // 2)   # the silent path is short
    span = run.audio[-1][0] - run.audio[0][0]
    assert played > 1000 and abs(played - span / SAMPLE_PERIOD) <= 2
    # and only while it plays: the silent box takes no audio interrupts
    assert sum(hist.values()) - played <= 2
    # micros() vs the simulated clock across the click: every ACK's rx time (us) is
    # within the UART byte time plus one loop pass of when its last byte was sent
    acks = replies(run)
    lags = [cyc / avr_sim.CYCLES_PER_US - frame.payload_rx_us for cyc, frame in acks]
    assert max(lags) - min(lags) < 200


def test_click_sound_on_the_mcu_is_the_reference_noise(builds, harness):
    """The PWM values the simulated MCU writes during a click at level 40000 are the reference
    pink noise scaled as 128 + trunc(pink * level / 74000) (consecutive repeats merge in
    the trace, so both sides are compared with runs merged)."""
    from test_stimbox_firmware import reference_pink

    run = click_run(harness, builds["uno"], amplitude=40000)
    vals = [v for _, v in run.audio]
    assert vals[-1] == 128                          # silent after (mid-scale)
    played = vals[:-1]
    ref = [128 + int(p * 40000 / 74000) for p in reference_pink(2000)]
    merged = [v for i, v in enumerate(ref) if i == 0 or v != ref[i - 1]]
    assert len(played) > 500
    assert played == merged[:len(played)]


class _Reply:
    """A reply frame from the MCU, its bytes and the device time it carries (ACK and NACK
    rx_us, STATUS_REPLY now_us; PROTOCOL.md)."""

    def __init__(self, frame):
        self.frame = frame
        self.raw = encode_frame(frame.seq, frame.type, frame.payload)
        at = {MsgType.ACK: 1, MsgType.NACK: 2}.get(frame.type, 4)
        self.payload_rx_us = int.from_bytes(frame.payload[at:at + 4], "little")


def replies(run) -> list[tuple[int, _Reply]]:
    """The MCU's reply frames with the cycle their last byte left its TX line."""
    parser = FrameParser()
    out = []
    for cyc, byte in run.tx:
        for frame in parser.feed(bytes([byte]), cyc // avr_sim.CYCLES_PER_US):
            out.append((cyc, _Reply(frame)))
    return out


def conformance_frames() -> list[tuple[int, bytes]]:
    """Every reply type and NACK reason, garbage, a corrupted and a truncated frame, the
    gap rule and the heartbeat watchdog, with the device limits exercised -- as (ms after
    reset, bytes) steps far enough apart that each frame is answered before the next."""
    seq = 0
    steps: list[tuple[int, bytes]] = []
    t = 100

    def send(msg_type, payload=b"", dt=15):
        nonlocal seq, t
        seq = (seq + 1) & 0xFF
        steps.append((t, encode_frame(seq, msg_type, payload)))
        t += dt

    def pulse(cmd, dt=15):
        send(cmd.msg_type, cmd.pack(), dt)

    def hb():
        send(MsgType.HEARTBEAT)

    send(MsgType.STATUS)
    pulse(PulseCmd(1, 0, 100, 5000))                       # NOT_ARMED
    send(MsgType.ARM)
    send(MsgType.HEARTBEAT, b"\x01")                       # BAD_LENGTH
    send(0x42)                                             # UNKNOWN_COMMAND
    pulse(PulseCmd(0, 0, 100, 5000))                       # BAD_CHANNEL
    hb()
    pulse(PulseCmd(1, 2, 100, 5000))                       # BAD_SHAPE
    pulse(PulseCmd(1, 0, 5, 5000))                         # BAD_WIDTH
    pulse(PulseCmd(1, 0, 100, 0))                          # BAD_AMPLITUDE
    hb()
    pulse(PulseCmd(1, 0, 100, 5000, 2_000_000))            # BAD_DELAY
    pulse(PulseCmd(1, 0, 100, 5000, 0, 150, 30_000))       # BAD_TRAIN
    hb()
    pulse(PulseCmd(2, 0, 500, 5000, 2_000, 3, 30_000), dt=10)   # a train: ACK
    pulse(PulseCmd(2, 0, 100, 5000), dt=5)                 # BUSY
    pulse(PulseCmd(3, 0, 100, 5000))                       # REFRACTORY
    hb()
    for k in range(21):                                    # the 21st in 1 s: RATE_LIMIT
        pulse(PulseCmd(1 + k % 4, 0, 200, 5000, 1_000), dt=30)
        hb()
    steps.append((t, bytes(range(0x10, 0x30))))            # garbage: no reply
    t += 15
    bad = bytearray(encode_frame(0x77, MsgType.HEARTBEAT))
    bad[4] ^= 0x10
    steps.append((t, bytes(bad)))                          # corrupted: no reply
    t += 15
    hb()
    t += 30
    pulse(PulseCmd(5, 2, 20_000, 30_000, 3_000))           # a click: ACK
    hb()
    send(MsgType.STOP)
    send(MsgType.STATUS)
    steps.append((t, encode_frame(0x55, MsgType.ARM)[:4]))   # truncated, then silence:
    t += 150                                                 # gap discard and watchdog
    pulse(PulseCmd(1, 0, 100, 5000))                       # NOT_ARMED (watchdog)
    send(MsgType.STATUS)
    send(MsgType.ARM)
    send(MsgType.DISARM)
    send(MsgType.STATUS, dt=30)
    steps.append((t, b""))
    return steps


@dataclass
class Conformance:
    """One run of the conformance frames: the simulated MCU's replies per step, what the
    emulator answered at the device time the MCU reported, the host build's answers, and
    how late each TTL edge rose on the MCU's pins after the time it acknowledged."""

    steps: list[tuple[int, bytes]]
    mcu: list[bytes]
    emulator: list[bytes]
    host: list[bytes]
    nack_reasons: set[NackReason]
    rise_channels: list[int]
    edge_channels: list[int]
    late_us: list[float]


def run_conformance(harness: Path, elf: Path, host_exe: Path) -> Conformance:
    steps = conformance_frames()
    run = avr_sim.run(harness, elf, "uno", [(ms * MS, data) for ms, data in steps])
    got = replies(run)
    # group the MCU's replies by the step they answer (before the next step starts)
    starts = [ms * MS for ms, _ in steps] + [run.end_cycle + 1]
    by_step: list[list[_Reply]] = [[] for _ in steps]
    for cyc, r in got:
        i = max(k for k, s in enumerate(starts) if s <= cyc)
        by_step[i].append(r)

    dev = StimBoxDevice()
    host_lines, times, emulated, edges_py = [], [], [], []
    last_us, last_cyc = 0, 0
    for k, (ms, data) in enumerate(steps):
        end_cyc = ms * MS + len(data) * 1400
        if by_step[k]:
            t_us = by_step[k][0].payload_rx_us
        else:   # no reply to time it by: the device clock advanced like the simulated one
            t_us = last_us + (end_cyc - last_cyc) // avr_sim.CYCLES_PER_US
        last_us, last_cyc = t_us, end_cyc
        times.append(t_us)
        reply, edges = dev.step(data, t_us)
        emulated.append(reply)
        edges_py += [(e.device_us, e.channel) for e in edges]
        host_lines.append(f"{t_us} {data.hex() or '-'}\n")
    edges_py += [(e.device_us, e.channel) for e in dev.tick(last_us + 100_000)]

    out = subprocess.run([str(host_exe)], input="".join(host_lines), check=True,
                         capture_output=True, text=True).stdout.splitlines()
    host = [bytes.fromhex(x[2:]) if x != "R -" else b"" for x in out if x.startswith("R ")]

    # the pins: micros() starts with Timer0 (in init(), after the C runtime), so the
    # device clock lags the simulated one by an offset; its lower bound is how much later
    # than micros() each command's last byte surely arrived (sent + one byte time), which
    # makes the lateness below an upper bound
    rises = sorted((cyc, int(pin[1]) - 1) for cyc, pin, level in run.pins
                   if level == 1 and pin in ("D2", "D3", "D4", "D5"))
    ttl_py = sorted((us, ch) for us, ch in edges_py if ch <= 4)
    offset = max((ms * MS + (len(data) - 1) * 1400 + 1360) / avr_sim.CYCLES_PER_US - t_us
                 for (ms, data), t_us, rs in zip(steps, times, by_step, strict=True) if rs)
    late = [cyc / avr_sim.CYCLES_PER_US - offset - us
            for (cyc, _), (us, _) in zip(rises, ttl_py, strict=False)]
    return Conformance(
        steps, [b"".join(r.raw for r in rs) for rs in by_step], emulated, host,
        {NackReason(r.frame.payload[1]) for _, r in got if r.frame.type == MsgType.NACK},
        [ch for _, ch in rises], [ch for _, ch in ttl_py], late)


@pytest.fixture(scope="module")
def host_build(tmp_path_factory) -> Path:
    gxx = require_tool("g++", package="g++")
    exe = tmp_path_factory.mktemp("host") / "host_harness"
    subprocess.run([gxx, "-std=c++11", "-O1", "-Wall", "-Wextra", "-Werror", "-I",
                    str(FIRMWARE / "stimbox"), str(FIRMWARE / "host_harness.cpp"), "-o",
                    str(exe)], check=True, capture_output=True, text=True)
    return exe


def test_conformance_frames_on_the_simulated_mcu(builds, harness, host_build):
    """The same frames to the real AVR build on simavr (through its UART, at the line's
    byte rate), to the Python emulator and to the host (g++) build of the core: the same
    replies, byte for byte -- the emulator and the host build are stepped at the device
    time the MCU reported for each frame -- and the same output edges on the pins."""
    c = run_conformance(harness, builds["uno"], host_build)
    for k, (mcu, emu) in enumerate(zip(c.mcu, c.emulator, strict=True)):
        assert mcu == emu, f"step {k} ({c.steps[k][1][:5].hex()}...): MCU and emulator differ"
    assert c.host == c.mcu
    assert sum(map(bool, c.mcu)) > 50
    assert c.nack_reasons == set(NackReason)          # every reason was answered
    # a rising edge on D2-D5 for every TTL edge the emulator fired, in the same order,
    # within one main-loop pass of the time the ACK gave
    assert c.rise_channels == c.edge_channels and len(c.rise_channels) >= 20
    assert max(c.late_us) <= 200, c.late_us
