"""A file replayed at N x real time paces and stamps its chunks on its own scaled clock;
the loop (governor staleness, scheduler deadlines, latency) must use that same clock, or
every decision looks stale or late (found in review: 1 decision, cancelled, at 10x)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from engramloop.cli import main
from engramloop.controller.build import build_loop
from engramloop.controller.config import SHIPPED_DIR, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_replay_at_n_times_real_time_runs_on_the_source_clock(tmp_path: Path) -> None:
    rec = tmp_path / "s.npz"
    assert main(["sim", "--duration", "8", "--out", str(rec), "--config",
                 str(SHIPPED_DIR / "sim-ripple.toml")]) == 0
    cfg = load_config(SHIPPED_DIR / "sim-ripple.toml")
    cfg = dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, kind="file"),
                              policy=dataclasses.replace(cfg.policy, condition="sham"))
    loop = build_loop(cfg, speed=2, path=str(rec))
    assert loop.clock is loop.source.clock  # the ScaledClock the file source paces on
    result = loop.run(None)
    assert result.error == "" and result.stop_reason == "end of source"
    assert result.decisions, "the replayed ripples produced no decisions"
    # Decisions are taken on the loop clock, detections are stamped by the source: on one
    # clock they differ by processing time (ms); on two clocks running at 1x and 2x they
    # drift apart by seconds over this 8 s file.
    lag = max(abs(d.t_s - d.intent.detect_s) for d in result.decisions)
    assert lag < 0.5, f"decision and detection clocks disagree by {lag:.2f} s"
