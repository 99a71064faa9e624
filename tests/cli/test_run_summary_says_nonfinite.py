"""The summary a run or replay prints says when the detectors were paused for non-finite
samples (a real CLI process). Before this test the log stream in the recording and the
live view said so, but the printed summary -- all a user sees with ``--quiet`` or without
``--record`` -- read like a clean night with fewer events.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "engramloop", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def test_replay_summary_counts_non_finite_stretches(tmp_path):
    p = _cli("sim", "--duration", 30, "--out", "sim.npz", "--quiet", "--seed", 5, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = dict(np.load(tmp_path / "sim.npz", allow_pickle=False))
    x = d["samples"].copy()
    x[int(12 * float(d["rate_hz"])), :] = np.nan
    d["samples"] = x
    np.savez(tmp_path / "bad.npz", **d)
    assert _cli("configs", "--copy", "sim-ripple", "--to", "cfg", cwd=tmp_path).returncode == 0
    p = _cli("replay", "cfg/sim-ripple.toml", "bad.npz", "--speed", "max", "--quiet",
             cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if "non-finite" in ln]
    assert len(lines) == 1 and " 1 stretch" in lines[0], p.stdout
    clean = _cli("replay", "cfg/sim-ripple.toml", "sim.npz", "--speed", "max", "--quiet",
                 cwd=tmp_path)
    assert clean.returncode == 0 and "non-finite" not in clean.stdout
