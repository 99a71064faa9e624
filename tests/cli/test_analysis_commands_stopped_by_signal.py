"""`sweep`, `replay --sweep`, `score` and `report` killed with SIGTERM (``kill``) or SIGHUP
(the terminal closed) died with no word (status -15 / -1): nothing said what was kept.
Each now ends as Ctrl-C ends it: one line "... stopped by SIGTERM ..." saying what was
kept or removed, exit 128 + the signal, no partial output (no --out table of part of a
sweep), no traceback -- also from Dask's local pool, which an interrupt while it started
left to an atexit hook that failed with one.

Real `engramloop` processes get the real signal once they handle it: the test waits until
the process's caught-signal mask (/proc/PID/status SigCgt) has the signal, so the signal
lands inside the command, not during Python's start-up (where the default ends any
program)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from shared_data import DATA, require_data

from engramloop.controller.config import SHIPPED_DIR

pytestmark = pytest.mark.slow


def _catches(pid: int, sig: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        pass
    return False


def _stopped(args: list[str], sig: int = signal.SIGTERM, cwd=None) -> tuple[int, str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "engramloop", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not _catches(proc.pid, sig) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def _one_line(err: str, start: str) -> str:
    assert "Traceback" not in err and "leaked semaphore" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(start), err
    return lines[0]


def _eeg_cfg(tmp_path):
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nchannels = ["C3-A1"]\n[detectors.spindle]\n'
                   'channels = ["C3-A1"]\n[policy]\ntarget = "spindle"\n')
    return cfg


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sweep_stopped_by_sigterm_says_nothing_is_kept(tmp_path, workers) -> None:
    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    out = tmp_path / "sweep.csv"
    rc, stdout, err = _stopped(["sweep", str(_eeg_cfg(tmp_path)), str(edf), "--set",
                                "detectors.spindle.threshold_sd=2,3", "--workers", workers,
                                "--out", str(out), "--quiet"])
    assert rc == 128 + signal.SIGTERM, (stdout, err)
    line = _one_line(err, "sweep: stopped by SIGTERM")
    assert "nothing is kept" in line and f"{out} not written" in line
    assert not out.exists() and stdout == ""


def test_replay_sweep_stopped_by_sighup(tmp_path) -> None:
    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    rc, stdout, err = _stopped(["replay", str(_eeg_cfg(tmp_path)), str(edf), "--sweep",
                                "detectors.spindle.threshold_sd=2,3", "--quiet"],
                               signal.SIGHUP)
    assert rc == 128 + signal.SIGHUP, (stdout, err)
    assert "Traceback" not in err
    if not stdout:       # before the first replay ended
        _one_line(err, "replay --sweep: stopped by SIGHUP before the first replay ended")
    else:                # the rows so far, the last one said to be partial or complete
        note = stdout.strip().splitlines()[-1]
        assert note.startswith("# stopped by SIGHUP"), stdout
        assert "not replayed: detectors.spindle.threshold_sd=3" in note


def test_score_stopped_by_sigterm(tmp_path) -> None:
    rec = tmp_path / "sim.npz"
    assert subprocess.run([sys.executable, "-m", "engramloop", "sim", "--duration", "120",
                           "--out", str(rec), "--quiet"], capture_output=True).returncode == 0
    rc, stdout, err = _stopped(["score", str(rec)])
    assert rc == 128 + signal.SIGTERM, (stdout, err)
    _one_line(err, "score: stopped by SIGTERM; nothing was scored")
    assert stdout == ""


def test_report_stopped_by_sigterm(tmp_path) -> None:
    rec = tmp_path / "night.xdf"
    assert subprocess.run([sys.executable, "-m", "engramloop", "run",
                           str(SHIPPED_DIR / "sim-ripple.toml"), "--speed", "max",
                           "--duration", "6", "--quiet", "--record", str(rec)],
                          capture_output=True).returncode == 0
    out = tmp_path / "rep"
    rc, stdout, err = _stopped(["report", str(rec), "--out", str(out), "--quiet"])
    assert rc == 128 + signal.SIGTERM, (stdout, err)
    _one_line(err, "report: stopped by SIGTERM; the report was not finished")
    assert not (out / "index.html").exists()


def _group(pgid: int) -> list[int]:
    """The processes of process group ``pgid``."""
    out = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[2] == str(pgid):
            out.append(int(p))
    return out


def test_sweep_stopped_by_ctrl_c_in_a_terminal(tmp_path) -> None:
    """A terminal's Ctrl-C goes to every process of the foreground group, the pool's
    workers too: each printed a KeyboardInterrupt traceback under the sweep's one line.
    The workers leave the stop to the sweep's process, which closes the pool."""
    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    out = tmp_path / "sweep.csv"
    proc = subprocess.Popen([sys.executable, "-m", "engramloop", "sweep",
                             str(_eeg_cfg(tmp_path)), str(edf), "--set",
                             "detectors.spindle.threshold_sd=2,3", "--workers", "2",
                             "--out", str(out), "--quiet"], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        # the sweep's process handles SIGINT and its pool's worker processes stand
        while not (_catches(proc.pid, signal.SIGINT) and len(_group(proc.pid)) >= 4) \
                and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        stdout, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, (stdout, err)
    line = _one_line(err, "sweep: interrupted")
    assert "nothing is kept" in line and not out.exists()
