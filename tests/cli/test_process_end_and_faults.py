"""Every way an ``engramloop run`` process ends disarms its stimulators, and a device fault
stops stimulation: tested on REAL processes.

Each test starts a device emulator in its own process (``python -m
engramloop.sim.emulators.stimbox_emulator`` / ``pulsepal_emulator``, on a pseudo-terminal,
writing every command it receives to a log with host monotonic times -- the clock every
process on the machine shares), then a real ``python -m engramloop run`` on the built-in
simulator driving that port, sends it signals from outside, and judges only by what the
emulator received, the exit status, stderr and the recording read back with pyxdf. The
emulators stand in for the hardware (no stim box or Pulse Pal is attached here); the
driver, the pty and pyserial are the real ones.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pyxdf

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

CONFIG = """
name = "rig-{kind}"
seed = 1
[source]
kind = "sim"
chunk_samples = 10
[sim]
rate_hz = 2000.0
[sim.hypnogram]
schedule = ["N3:600"]
[detectors.ripple]
channels = ["CA1", "CA1b"]
pool_weights = [1.0, 0.7]
[detectors.spindle]
enabled = false
[detectors.so]
enabled = false
[policy]
target = "ripple"
condition = "stim"
[policy.pulse]
modality = "ttl"
shape = "monophasic"
amplitude = 5.0
phase_width_s = 0.001
channel = 1
[safety]
arm_on_start = true
refractory_s = 0.2
rate_window_s = [1.0, 60.0]
rate_max_pulses = [3, 90]
modalities = ["ttl"]
[stimulators]
kinds = ["{kind}"]
[stimulators.pulsepal]
ttl_max_v = 5.0
"""

MODULE = {"stimbox": "engramloop.sim.emulators.stimbox_emulator",
          "pulsepal": "engramloop.sim.emulators.pulsepal_emulator"}


class Rig:
    """An emulator process and an ``engramloop run`` process driving it."""

    def __init__(self, tmp: Path, kind: str, emulator_args: tuple[str, ...] = ()) -> None:
        self.kind, self.tmp = kind, tmp
        self.log_path = tmp / f"{kind}-emulator.log"
        self.record = tmp / "run.xdf"
        self.emu = subprocess.Popen(
            [PY, "-m", MODULE[kind], "--log", str(self.log_path), *emulator_args],
            stdout=subprocess.PIPE, text=True)
        self.port = self.emu.stdout.readline().strip()
        assert self.port.startswith("/dev/"), self.port
        cfg = tmp / "rig.toml"
        cfg.write_text(CONFIG.format(kind=kind))
        self.proc = subprocess.Popen(
            [PY, "-m", "engramloop", "run", str(cfg), "--stim-port", self.port,
             "--record", str(self.record), "--duration", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def lines(self) -> list[list[str]]:
        if not self.log_path.exists():
            return []
        return [ln.split() for ln in self.log_path.read_text().splitlines() if ln]

    def wait_for(self, word: str, timeout_s: float = 90.0) -> float:
        """Host time of the first log line with ``word`` (a command name or op name)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for ln in self.lines():
                if word in ln:
                    return float(ln[1])
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        out, err = self.proc.communicate(timeout=30) if self.proc.poll() is not None \
            else ("", "")
        raise AssertionError(f"{word} never reached the emulator; run: {out} {err}")

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout_s)
        return self.proc.returncode, out, err

    def close(self) -> None:
        for p in (self.proc, self.emu):
            if p.poll() is None:
                p.kill()
                p.wait(10)
        self.emu.stdout.close()


@pytest.fixture
def rigs(tmp_path):
    made: list[Rig] = []

    def make(kind: str, *emulator_args: str) -> Rig:
        made.append(Rig(tmp_path, kind, tuple(emulator_args)))
        return made[-1]

    yield make
    for r in made:
        r.close()


def recording(path: Path) -> dict:
    """The recording, read back by pyxdf; every stream must have its footer."""
    streams, _ = pyxdf.load_xdf(str(path))
    by = {s["info"]["name"][0]: s for s in streams}
    for name, s in by.items():
        assert s.get("footer"), f"{name} has no footer: the recording was not closed"
    return by


def markers(by: dict, stream: str) -> list[dict]:
    return [json.loads(x[0]) for x in by[f"engramloop.{stream}"]["time_series"]]


DISARM = {"stimbox": "DISARM", "pulsepal": "stop_all"}
FIRE = {"stimbox": "PULSE", "pulsepal": "soft_trigger"}


@pytest.mark.parametrize("kind, signals", [
    ("stimbox", ("SIGTERM",)),
    ("stimbox", ("SIGHUP",)),
    ("stimbox", ("SIGINT",)),
    ("stimbox", ("SIGINT", "SIGINT")),
    ("pulsepal", ("SIGTERM",)),
    ("pulsepal", ("SIGHUP",)),
])
def test_a_signal_disarms_the_device_writes_the_footer_and_exits_distinctly(
        rigs, kind, signals):
    rig = rigs(kind)
    # armed: the stim box got ARM; the Pulse Pal (no arming of its own) got a trigger
    rig.wait_for("ARM" if kind == "stimbox" else "soft_trigger")
    t_sig = time.monotonic()
    for name in signals:  # Ctrl-C twice: the second one must not cut the disarm short
        rig.proc.send_signal(getattr(signal, name))
        time.sleep(0.002)
    rc, out, err = rig.finish()
    assert rc == 128 + getattr(signal, signals[0]), (rc, out, err)
    assert "Traceback" not in err, err
    assert f"stopped by signal {signals[0]}" in out
    # what the device received after the signal: the disarm, and no pulse after it
    after = [ln for ln in rig.lines() if ln[0] == "rx" and float(ln[1]) >= t_sig]
    words = [w for ln in after for w in ln[2:4]]
    assert DISARM[kind] in words, after
    first_off = next(i for i, ln in enumerate(after) if DISARM[kind] in ln)
    assert not [ln for ln in after[first_off:] if FIRE[kind] in ln]
    if kind == "stimbox":
        assert ["disarm", "cause=HOST"] == [w for ln in rig.lines() if ln[0] == "disarm"
                                           for w in (ln[0], ln[2])][-2:]
    by = recording(rig.record)
    log = [m["message"] for m in markers(by, "log")]
    assert any("armed" in m for m in log)


def test_a_device_that_disarms_itself_is_a_fault_that_ends_the_run(rigs):
    """The stim box disarms itself (as after a watchdog trip) 1 s after ARM while the host
    keeps heartbeating: the host's STATUS poll or the next pulse's NOT_ARMED NACK finds it;
    the run stops with one line and exit status 2; the fault is in the recording; no pulse
    the device refused reaches the simulated brain."""
    rig = rigs("stimbox", "--trip-after-s", "1.0")
    rc, out, err = rig.finish(timeout_s=120)
    assert rc == 2, (rc, out, err)
    one_line_error(err)
    assert "disarmed itself" in err or "NOT_ARMED" in err, err
    tripped = [float(ln[1]) for ln in rig.lines() if ln[:1] == ["disarm"]
               and ln[2] == "cause=WATCHDOG"]
    assert len(tripped) == 1
    # no output edge after the device disarmed itself, and the host disarmed it on the way out
    assert not [ln for ln in rig.lines() if ln[0] == "edge" and float(ln[1]) > tripped[0]]
    assert [ln for ln in rig.lines() if ln[0] == "rx" and ln[2] == "DISARM"
            and float(ln[1]) > tripped[0]]
    by = recording(rig.record)
    faults = [m for m in markers(by, "log") if m.get("kind") == "fault"]
    assert len(faults) == 1 and faults[0]["output"] == "stimbox"
    _only_delivered_pulses_reach_the_simulator(by, "stimbox")


def test_a_host_pause_trips_the_watchdog_and_the_run_stops(rigs):
    """A real 300 ms host pause (SIGSTOP/SIGCONT of the engramloop process, as a stalled VM
    or swap storm would do): the stim box's watchdog disarms it; on waking, the host finds
    out and ends the run instead of carrying on with a disarmed device."""
    rig = rigs("stimbox")
    rig.wait_for("ARM")
    time.sleep(0.5)
    rig.proc.send_signal(signal.SIGSTOP)
    time.sleep(0.3)
    rig.proc.send_signal(signal.SIGCONT)
    rc, out, err = rig.finish(timeout_s=120)
    assert rc == 2, (rc, out, err)
    one_line_error(err)
    assert [ln for ln in rig.lines() if ln[:1] == ["disarm"] and ln[2] == "cause=WATCHDOG"]
    by = recording(rig.record)
    assert [m for m in markers(by, "log") if m.get("kind") == "fault"]
    _only_delivered_pulses_reach_the_simulator(by, "stimbox")


def test_a_device_that_stops_answering_is_a_fault_that_ends_the_run(rigs):
    """The stim box's process is frozen (SIGSTOP): the port stays open but nothing answers.
    Unacknowledged heartbeats make it a fault; the run ends with one line, exit status 2,
    a closed recording, and does not hang on the disarm nobody acknowledges."""
    rig = rigs("stimbox")
    rig.wait_for("ARM")
    time.sleep(0.3)
    rig.emu.send_signal(signal.SIGSTOP)
    try:
        rc, out, err = rig.finish(timeout_s=60)
    finally:
        rig.emu.send_signal(signal.SIGCONT)
    assert rc == 2, (rc, out, err)
    # whichever notices first: the heartbeat watch, or a pulse sent into the silence
    line = one_line_error(err)
    assert "did not acknowledge heartbeats" in line or "no response from stim box" in line, err
    by = recording(rig.record)
    faults = [m for m in markers(by, "log") if m.get("kind") == "fault"]
    assert len(faults) == 1 and faults[0]["output"] == "stimbox"


def test_a_pulse_pal_nack_mid_run_is_a_fault_and_never_reaches_the_simulator(rigs):
    """The Pulse Pal refuses the pulse's phase width (confirm byte 0 for parameter code 4
    when the first pulse programs its channel, after calibration): fault, no trigger, the
    simulated output does not get the pulse, the run ends with one line."""
    rig = rigs("pulsepal", "--reject", "4")
    rc, out, err = rig.finish(timeout_s=120)
    assert rc == 2, (rc, out, err)
    assert "rejected" in one_line_error(err), err
    rx = [ln for ln in rig.lines() if ln[0] == "rx"]
    assert any("confirm=0" in ln for ln in rx)
    assert not [ln for ln in rx if "soft_trigger" in ln]
    assert not [ln for ln in rig.lines() if ln[0] == "edge"]
    assert any("stop_all" in ln for ln in rx[-4:])  # stopped on the way out
    by = recording(rig.record)
    faults = [m for m in markers(by, "log") if m.get("kind") == "fault"]
    assert len(faults) == 1 and faults[0]["output"] == "pulsepal"
    pulses = markers(by, "pulses")
    assert {p["delivery"]["status"] for p in pulses if p["delivery"]["output"] ==
            "pulsepal"} == {"nacked"}
    _only_delivered_pulses_reach_the_simulator(by, "pulsepal")


def one_line_error(err: str) -> str:
    """stderr ends with exactly one ``error:`` line and holds no traceback."""
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    return errors[0]


def _only_delivered_pulses_reach_the_simulator(by: dict, device: str) -> None:
    """The simulated output ("sim") stimulated exactly the pulses the device delivered."""
    got: dict[int, dict[str, str]] = {}
    for p in markers(by, "pulses"):
        got.setdefault(p["pulse"]["pulse_id"], {})[p["delivery"]["output"]] = \
            p["delivery"]["status"]
    for pid, st in got.items():
        delivered = st.get(device) in ("acked", "sent")
        assert (st.get("sim") == "sent") == delivered, (pid, st)


def test_signal_exit_codes_are_documented():
    text = (ROOT / "docs" / "safety.md").read_text()
    for code in ("129", "130", "143"):
        assert code in text
    assert os.path.exists(ROOT / "docs" / "safety.md")
