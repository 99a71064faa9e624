"""``engramloop score`` on an .npz holding non-finite samples (a real CLI process).

Before this test, the detectors that ``score`` runs on an .npz got every chunk as it
came: one NaN sample at 30 s ended all detection for the rest of the file (ripples 86 ->
6 detected of 96 in a 120 s simulation), and ``score`` printed a table and exited 0 --
it looked like a detector with poor recall. Now the same NonFiniteGuard as the live loop
screens the chunks; the output says where the non-finite samples were.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "engramloop", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sim_npz(tmp_path_factory):
    d = tmp_path_factory.mktemp("score_nan")
    p = _cli("sim", "--duration", 90, "--out", d / "sim.npz", "--quiet", "--seed", 3, cwd=d)
    assert p.returncode == 0, p.stderr
    return d / "sim.npz"


def _with_nan(src: Path, dst: Path, a_s: float, n: int, cols) -> None:
    d = dict(np.load(src, allow_pickle=False))
    x = d["samples"].copy()
    a = int(a_s * float(d["rate_hz"]))
    x[a:a + n, cols] = np.nan
    d["samples"] = x
    np.savez(dst, **d)


@pytest.mark.parametrize("n,cols", [(1, slice(None)), (2000, [0])])
def test_score_detects_after_non_finite_samples_and_says_so(sim_npz, tmp_path, n, cols):
    clean = _cli("score", sim_npz, "--json", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    ref = json.loads(clean.stdout)
    bad = tmp_path / "nan.npz"
    _with_nan(sim_npz, bad, 30.0, n, cols)
    p = _cli("score", bad, "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    got = json.loads(p.stdout)
    # detection carries on after the bad samples: recall as on the clean file, less what
    # falls in the hole and the settling time after it
    for kind in ("ripple", "so"):
        assert got[kind]["recall"] >= ref[kind]["recall"] - 0.1, (kind, got[kind], ref[kind])
    eps = got["nonfinite"]
    assert len(eps) == 1 and eps[0]["nonfinite_samples"] >= n
    assert eps[0]["start_s"] == pytest.approx(30.0 + float(np.load(sim_npz)["timestamps"][0]),
                                              abs=0.01)
    table = _cli("score", bad, cwd=tmp_path)
    assert table.returncode == 0 and "non-finite" in table.stdout, table.stdout
