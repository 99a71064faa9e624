"""``engramloop sweep`` over a recording with non-finite samples (a real CLI process).

The loop's NonFiniteGuard pauses the detectors reading a bad channel and writes the
episode to the recording's log -- but a sweep replays without a recording, and its table
and CSV had no trace of it: a recording whose detectors were paused for a stretch scored
like a clean one with a few misses. Now each row says how many stretches of non-finite
samples (and gaps) the replay met, and the command prints one line per such recording.
"""
from __future__ import annotations

import csv
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


def test_sweep_rows_count_the_non_finite_stretches(tmp_path):
    p = _cli("sim", "--duration", 40, "--out", "sim.npz", "--quiet", "--seed", 4, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = dict(np.load(tmp_path / "sim.npz", allow_pickle=False))
    x = d["samples"].copy()
    fs = float(d["rate_hz"])
    x[int(10 * fs), 0] = np.nan                     # one sample on CA1
    x[int(20 * fs):int(20.5 * fs), :] = np.inf      # half a second on every channel
    d["samples"] = x
    np.savez(tmp_path / "bad.npz", **d)
    p = _cli("configs", "--copy", "sim-ripple", "--to", "cfg", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = _cli("sweep", "cfg/sim-ripple.toml", "sim.npz", "bad.npz", "--workers", 1,
             "--out", "sw.csv", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {r["recording"]: r for r in csv.DictReader(open(tmp_path / "sw.csv"))}
    assert rows["bad.npz"]["nonfinite_stretches"] == "2"
    assert rows["sim.npz"]["nonfinite_stretches"] == "0"
    lines = [ln for ln in p.stdout.splitlines() if "non-finite" in ln]
    assert len(lines) == 1 and "bad.npz" in lines[0], p.stdout
