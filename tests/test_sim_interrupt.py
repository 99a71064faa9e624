"""An interrupted `engramloop sim` leaves no recording without its truth: a real process
gets SIGINT mid-run, removes its partial output and says so."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.parametrize("ext", [".xdf", ".npz"])
def test_sigint_removes_the_partial_output(tmp_path, ext):
    out = tmp_path / f"night{ext}"
    proc = subprocess.Popen([sys.executable, "-m", "engramloop", "sim", "--duration", "36000",
                             "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # the XDF exists once the recorder starts; the npz path builds in memory first
        while time.monotonic() < deadline and proc.poll() is None:
            if ext == ".npz" or out.exists():
                time.sleep(1.5)
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (stdout, stderr)
    assert not out.exists()
    assert "interrupted; removed the partial" in stdout
    assert "Traceback" not in stderr
