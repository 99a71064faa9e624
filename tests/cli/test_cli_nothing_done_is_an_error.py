"""A command that was asked for something it could not do exits non-zero with one line.

Found by running real ``engramloop`` processes on recordings written by ``engramloop
sim``: ``report --twin`` with a missing or unreadable twin exited 0 and the only trace
was a paragraph inside the HTML; ``score`` that could score no kind at all (a recording
without detections, or ``--truth`` annotations of a kind the detectors do not make)
exited 0 printing "no detected kind has truth of the same kind" (and with ``--json`` an
object with no scores).
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


@pytest.fixture(scope="module")
def sim_xdf(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "night.xdf"
    p = cli("sim", "--duration", "15", "--out", str(out), "--quiet", cwd=out.parent)
    assert p.returncode == 0, p.stderr
    return out


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode != 0, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, p.stderr
    return errors[0]


@pytest.mark.parametrize("twin", ["missing.xdf", "garbage.xdf"])
def test_report_with_an_unreadable_twin_is_an_error_and_writes_nothing(sim_xdf, tmp_path,
                                                                       twin):
    (tmp_path / "garbage.xdf").write_bytes(b"not an xdf file")
    p = cli("report", str(sim_xdf), "--out", str(tmp_path / "rep"), "--twin",
            str(tmp_path / twin), "--quiet", cwd=tmp_path)
    assert "twin" in one_line_error(p)
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("json", [False, True])
def test_score_that_can_score_no_kind_is_an_error(sim_xdf, tmp_path, json):
    # a recording written by `sim` has truth but no detections
    p = cli("score", str(sim_xdf), *(["--json"] if json else []), cwd=tmp_path)
    assert "nothing to score" in one_line_error(p)


def test_score_with_annotations_of_a_kind_no_detector_makes_is_an_error(sim_xdf, tmp_path):
    rec = tmp_path / "replayed.xdf"
    cfg = tmp_path / "sim-ripple.toml"
    assert cli("configs", "--copy", "sim-ripple", "--to", str(tmp_path),
               cwd=tmp_path).returncode == 0
    p = cli("replay", str(cfg), str(sim_xdf), "--speed", "max", "--record", str(rec),
            "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (tmp_path / "ann.csv").write_text("2.0,0.5\n5.0,0.5\n", encoding="utf-8")
    p = cli("score", str(rec), "--truth", str(tmp_path / "ann.csv"), "--kind", "spindel",
            cwd=tmp_path)
    assert "nothing to score" in one_line_error(p)
    # the same annotations as ripples do score
    p = cli("score", str(rec), "--truth", str(tmp_path / "ann.csv"), "--kind", "ripple",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr


def test_demo_into_a_path_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "taken").write_text("x", encoding="utf-8")
    p = cli("demo", "--out", str(tmp_path / "taken"), "--duration", "2", "--quiet",
            cwd=tmp_path)
    assert "taken" in one_line_error(p)
    assert (tmp_path / "taken").read_text(encoding="utf-8") == "x"
