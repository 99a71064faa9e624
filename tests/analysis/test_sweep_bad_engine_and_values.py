"""``sweep`` / ``replay --sweep`` on bad engine addresses and repeated values.

Real ``engramloop`` processes: ``--scheduler`` naming an address where no Dask
scheduler listens ended in a distributed ``OSError`` traceback; ``--set KEY=3,3``
replayed every recording twice with the same setting and pooled both copies as if they
were separate evidence.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engramloop", *args], cwd=cwd,
                          capture_output=True, text=True, env=dict(os.environ), timeout=600)


def closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("sw")
    assert cli("sim", "--duration", "8", "--out", str(d / "n.xdf"), "--quiet",
               cwd=d).returncode == 0
    assert cli("configs", "--copy", "sim-ripple", "--to", str(d), cwd=d).returncode == 0
    return d / "sim-ripple.toml", d / "n.xdf"


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode not in (0, 1), (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith(("error:", "ConfigError:"))]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.parametrize("cmd", ["sweep", "replay"])
def test_an_unreachable_scheduler_is_a_one_line_error(files, cmd, tmp_path):
    cfg, night = files
    addr = f"tcp://127.0.0.1:{closed_port()}"
    args = (["sweep", str(cfg), str(night), "--set", "detectors.ripple.threshold_sd=3,4",
             "--out", str(tmp_path / "t.csv")] if cmd == "sweep" else
            ["replay", str(cfg), str(night), "--sweep", "detectors.ripple.threshold_sd=3,4"])
    p = cli(*args, "--scheduler", addr, "--quiet", cwd=tmp_path)
    assert addr in one_line_error(p)
    assert not (tmp_path / "t.csv").exists()


def test_a_value_repeated_in_a_sweep_is_refused(files, tmp_path):
    cfg, night = files
    p = cli("sweep", str(cfg), str(night), "--set", "detectors.ripple.threshold_sd=3,4,3",
            "--out", str(tmp_path / "t.csv"), "--quiet", cwd=tmp_path)
    assert "3" in one_line_error(p)
    assert not (tmp_path / "t.csv").exists()
