"""A local pool's scheduler serves HTTP (Dask's health routes) even without a dashboard;
on Dask's fixed port 8787 a second pool, or a user's own Dask dashboard, made every sweep
print Dask's "Port 8787 is already in use" warning under its output. The pool takes any
free port. A real ``engramloop sweep`` process on 2 workers, with 8787 held by a socket."""
from __future__ import annotations

import socket
import subprocess
import sys

from shared_data import DATA, require_data


def test_a_sweep_with_port_8787_taken_prints_no_dask_warning(tmp_path) -> None:
    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nchannels = ["C3-A1"]\n[detectors.spindle]\n'
                   'channels = ["C3-A1"]\n[policy]\ntarget = "spindle"\n')
    held = socket.socket()
    try:
        held.bind(("", 8787))
    except OSError:
        held.close()
        held = None       # already taken by something else: the same situation
    try:
        if held is not None:
            held.listen()
        proc = subprocess.run([sys.executable, "-m", "engramloop", "sweep", str(cfg), str(edf),
                               "--set", "detectors.spindle.threshold_sd=3,4", "--workers", "2",
                               "--duration", "120", "--out", str(tmp_path / "s.csv"),
                               "--quiet"], capture_output=True, text=True, timeout=600)
    finally:
        if held is not None:
            held.close()
    assert proc.returncode == 0, proc.stderr
    assert "8787" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    assert (tmp_path / "s.csv").exists()


