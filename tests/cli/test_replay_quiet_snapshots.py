"""``--speed max --quiet``: nothing reads the live status, so the loop makes no periodic
snapshot (issue 23: the channel-quality pass over every chunk cost ~4 % of a whole-night
replay's CPU) -- and what the user sees is unchanged: a real ``engramloop replay`` process
on real EEG (DREAMS excerpt 5, C3-A1, 200 Hz, Devuyst et al. 2011) prints the same summary
and records the same markers (read back with pyxdf) with and without ``--quiet``; in
process, a quiet progress board gets the last snapshot only, a shown one every period."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pyxdf
from shared_data import DATA, require_data  # noqa: E402

from engramloop.controller.build import build_loop
from engramloop.controller.config import loads_config
from engramloop.controller.progress import ProgressHandle
from engramloop.controller.run_progress import ProgressBoard
from engramloop.drivers.files import FileSource

SRC = str(Path(__file__).resolve().parents[2] / "src")
EXCERPT = DATA / "dreams_dev" / "excerpt5.edf"
CONFIG = """
name = "quiet-snapshots"
[source]
kind = "file"
chunk_samples = 10
[detectors.ripple]
enabled = false
[detectors.so]
channels = ["C3-A1"]
[detectors.spindle]
channels = ["C3-A1"]
[policy]
target = "spindle"
condition = "sham"
"""


def _replay(tmp_path: Path, name: str, *extra: str) -> tuple[str, list]:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    xdf = tmp_path / f"{name}.xdf"
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-m", "engramloop", "replay", str(cfg),
                          str(EXCERPT), "--speed", "max", "--duration", "300",
                          "--record", str(xdf), *extra],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    streams, _ = pyxdf.load_xdf(str(xdf))
    markers = sorted((s["info"]["name"][0], tuple(map(str, s["time_series"])))
                     for s in streams if s["info"]["type"][0] != "EEG"
                     and s["info"]["name"][0] != "engramloop.log")
    return out.stdout, markers


@pytest.mark.slow
def test_quiet_replay_shows_and_records_what_a_shown_one_does(tmp_path) -> None:
    require_data(EXCERPT)
    quiet_out, quiet_marks = _replay(tmp_path, "quiet", "--quiet")
    shown_out, shown_marks = _replay(tmp_path, "shown")
    assert "events:" in quiet_out
    # (without --quiet the summary adds the per-chunk stage times, measured wall time)
    shown = [ln for ln in shown_out.replace("shown.xdf", "X").splitlines()
             if "stage times" not in ln]
    assert quiet_out.replace("quiet.xdf", "X").splitlines() == shown
    assert quiet_marks == shown_marks and quiet_marks


class Counting(ProgressBoard):
    def __init__(self, handle) -> None:
        super().__init__(handle)
        self.states: list[str] = []

    def publish(self, status) -> None:
        super().publish(status)
        self.states.append(status.state)


def _run(board: ProgressBoard) -> None:
    cfg = loads_config(CONFIG)
    src = FileSource(require_data(EXCERPT), speed="max", chunk_samples=10)
    lp = build_loop(cfg, speed="max", source=src, duration_s=120.0)
    lp.status_board = board
    lp.run(120.0)


def test_a_quiet_bar_gets_only_the_last_snapshot() -> None:
    quiet = Counting(ProgressHandle(total=120.0))        # what progress(quiet=True) yields
    assert not quiet.watched
    _run(quiet)
    assert quiet.states == ["stopped"]
    assert quiet.latest().channels and quiet.latest().channels[0].name == "C3-A1"


def test_a_shown_bar_gets_the_periodic_snapshots(monkeypatch) -> None:
    from engramloop.controller import loop as loop_mod

    monkeypatch.setattr(loop_mod, "STATUS_EVERY_S", 0.0)   # every decoded block
    shown = Counting(ProgressHandle(total=120.0))
    monkeypatch.setattr(ProgressHandle, "visible", property(lambda self: True))
    assert shown.watched
    _run(shown)
    assert len(shown.states) > 2 and shown.states[-1] == "stopped"
