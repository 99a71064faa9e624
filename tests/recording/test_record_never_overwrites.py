"""``run``/``replay --record PATH`` never replaces an existing file.

Before this test ``engramloop replay cfg night.xdf --record night.xdf`` exited 0 having
replaced the input recording (with its truth stream) by the replay's own recording, and
any ``--record`` onto an earlier session silently destroyed it. Real ``engramloop``
processes on a recording written by ``engramloop sim``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engramloop", *args], cwd=cwd,
                          capture_output=True, text=True, env=dict(os.environ), timeout=600)


@pytest.fixture()
def setup(tmp_path) -> tuple[Path, Path]:
    night = tmp_path / "night.xdf"
    assert cli("sim", "--duration", "8", "--out", str(night), "--quiet",
               cwd=tmp_path).returncode == 0
    assert cli("configs", "--copy", "sim-ripple", "--to", str(tmp_path),
               cwd=tmp_path).returncode == 0
    return night, tmp_path / "sim-ripple.toml"


@pytest.mark.parametrize("target", ["input", "earlier"])
def test_record_onto_an_existing_file_is_refused_and_leaves_it_untouched(setup, target):
    night, cfg = setup
    path = night if target == "input" else night.with_name("earlier.xdf")
    if target == "earlier":
        path.write_bytes(night.read_bytes()[:1000])
    before = path.read_bytes()
    p = cli("replay", str(cfg), str(night), "--speed", "max", "--record", str(path),
            "--quiet", cwd=night.parent)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert len([ln for ln in p.stderr.splitlines() if ln.startswith("error:")]) == 1, p.stderr
    assert path.read_bytes() == before
