"""`engramloop run CONFIG --report DIR` (and so `engramloop demo`) stopped by SIGTERM or
SIGHUP: the run ends in order and the summary is written, but the HTML report and the
sham twin are not made -- and nothing said so ('stopped by signal SIGTERM: outputs
disarmed, recording closed'), so DIR looked like a finished report folder without its
page. The stop line says what was not made and the command that makes the report. A
real process, a real signal."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from engramloop.controller.config import SHIPPED_DIR


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_stopped_run_says_its_report_was_not_written(tmp_path, sig) -> None:
    out = tmp_path / "rep"
    proc = subprocess.Popen([sys.executable, "-m", "engramloop", "run",
                             str(SHIPPED_DIR / "sim-ripple.toml"), "--speed", "max",
                             "--duration", "36000", "--report", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        rec = out / "session.xdf"
        while not (rec.exists() and rec.stat().st_size > 100_000) \
                and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, getattr(signal, sig))
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + getattr(signal, sig), (stdout, stderr)
    assert "Traceback" not in stderr
    assert not (out / "index.html").exists()
    said = [ln for ln in stdout.splitlines() if f"stopped by signal {sig}" in ln
            and "recording closed" in ln]
    assert len(said) == 1, stdout
    assert "no HTML report" in said[0] and "sham twin" in said[0]
    assert f"engramloop report {rec} --out {out}" in said[0]
    # the progress bar stops where the run stopped (it jumped to the full 36000 s)
    assert "(36000/" not in stderr, stderr[-500:]
