"""The report of a recording whose process was killed (SIGKILL: no stream footers, no run
summary) looked like a whole, quiet session ending early. It now says, on the page and
on stderr, that the recording was never closed; a closed recording's report does not.

A real ``engramloop run`` process is killed with SIGKILL once its recording has grown
(``--speed max``: the size, not the wall clock, decides when)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from engramloop.cli import main
from engramloop.controller.config import SHIPPED_DIR

NEVER_CLOSED = "This recording was never closed"


def _killed_recording(tmp_path):
    rec = tmp_path / "killed.xdf"
    proc = subprocess.Popen([sys.executable, "-m", "engramloop", "run",
                             str(SHIPPED_DIR / "sim-ripple.toml"), "--speed", "max",
                             "--duration", "100000", "--quiet", "--record", str(rec)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t_end = time.monotonic() + 300
        while not (rec.exists() and rec.stat().st_size > 400_000):
            assert proc.poll() is None, "the run ended before it was killed"
            assert time.monotonic() < t_end, "the recording never grew"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return rec


def test_report_of_a_killed_run_says_it_was_never_closed(tmp_path, capsys) -> None:
    rec = _killed_recording(tmp_path)
    capsys.readouterr()
    assert main(["report", str(rec), "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert NEVER_CLOSED in err and "killed.xdf" in err and len(err.splitlines()) == 1
    assert NEVER_CLOSED in (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")


def test_report_of_a_closed_run_does_not(tmp_path, capsys) -> None:
    rec = tmp_path / "closed.xdf"
    assert main(["run", str(SHIPPED_DIR / "sim-ripple.toml"), "--speed", "max",
                 "--duration", "4", "--quiet", "--record", str(rec)]) == 0
    capsys.readouterr()
    assert main(["report", str(rec), "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    assert NEVER_CLOSED not in capsys.readouterr().err
    assert NEVER_CLOSED not in (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
