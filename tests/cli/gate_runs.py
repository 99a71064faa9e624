"""What the tests of counted gates share (test_run_summary_says_*): the CLI in a real
process, and an in-process replay whose every live-view snapshot is kept."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import engramloop.controller.loop as loop_mod
from engramloop.controller.build import build_loop
from engramloop.controller.config import load_config
from engramloop.controller.status import StatusBoard

SRC = str(Path(__file__).resolve().parents[2] / "src")

#: the end of a test config: auditory clicks to a sham output, armed at start
AUDITORY_SHAM = """[policy.pulse]
modality = "auditory"
shape = "monophasic"
amplitude = 50.0
phase_width_s = 0.05
channel = 1
[safety]
arm_on_start = true
modalities = ["auditory"]
auditory_max_db_spl = 60.0
[stimulators]
kinds = ["sham"]
"""


def cli(*args, cwd):
    """``engramloop ARGS`` in a real process, from ``cwd``."""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "engramloop", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def replay_watched(config: Path, data: Path, monkeypatch):
    """Replay ``data`` with ``config`` at --speed max in-process; returns the run's result
    and every live-view snapshot published, one per 0.25 s of signal.

    A --speed max sham replay decodes the file in blocks of BLOCK_S (30 s) and the live
    view is read between blocks; a live session reads it every 0.25 s, as blocks of
    0.25 s do here."""
    seen = []

    class Board(StatusBoard):
        def publish(self, status) -> None:
            super().publish(status)
            seen.append(status)

    monkeypatch.setattr(loop_mod, "BLOCK_S", 0.25)
    loop = build_loop(load_config(config), speed="max", path=str(data), status_board=Board())
    loop.wall_clock = loop.clock.now      # a snapshot every 0.25 s of signal
    return loop.run(None), seen
