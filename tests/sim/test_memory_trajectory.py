"""Loop recordings of simulated runs carry the engram model's trajectory
(engramloop.memory every sim.memory.record_every_s of signal, plus the end), and the report
draws it with the sham twin's."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from engramloop.analysis.report import load_twin_memory, write_report
from engramloop.analysis.trial import run_sim, run_trial, sham_twin_path
from engramloop.controller.config import SHIPPED_DIR, dump_config, load_config
from engramloop.sim.source import SimSource

ROOT = Path(__file__).resolve().parents[2]
CFG = SHIPPED_DIR / "sim-ripple.toml"


def _memory_stream(path: Path) -> list[tuple[float, dict]]:
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                dejitter_timestamps=False)
    st = next(s for s in streams if s["info"]["name"][0] == "engramloop.memory")
    return [(float(t), json.loads(v[0])) for t, v in zip(st["time_stamps"], st["time_series"],
                                                         strict=True)]


def _reference_at(cfg, sample: int) -> SimSource:
    """An independent simulator with the same seed, read in other chunks (7 samples, then
    what is left) up to ``sample``: without pulses its state depends on the seed and the
    samples handed out only."""
    ref = SimSource(cfg.sim, seed=cfg.seed, chunk_samples=7)
    ref.start()
    done = 0
    while done < sample:
        ref.chunk_samples = min(7, sample - done)
        done += ref.read(0.0).n_samples
    return ref


def test_memory_markers_at_the_expected_times_match_the_simulator(tmp_path):
    base = load_config(CFG)
    # sham: nothing reaches the simulator, so an independent copy can replay its state
    cfg = dataclasses.replace(base, policy=dataclasses.replace(base.policy, condition="sham"),
                              sim=dataclasses.replace(base.sim, memory=dataclasses.replace(
                                  base.sim.memory, record_every_s=7.0)))
    xdf = tmp_path / "run.xdf"
    result, score = run_sim(cfg, 22.0, speed="max", record=str(xdf),
                            config_text=dump_config(cfg))
    rows = _memory_stream(xdf)
    chunk_s = cfg.source.chunk_samples / cfg.sim.rate_hz
    periodic = [d for _, d in rows if not d.get("final")]
    final = [d for _, d in rows if d.get("final")]
    # one state at the first chunk, then at the first chunk at or after 7, 14 and 21 s
    assert len(periodic) == 4 and len(final) == 1
    for k, (t, d) in enumerate(rows[:4]):
        assert t == d["t_s"] and d["t_s"] == pytest.approx(result.t0_s + d["sim_t_s"])
        assert 7.0 * k <= d["sim_t_s"] <= 7.0 * k + chunk_s + 1e-9, (k, d["sim_t_s"])
    assert final[0]["sim_t_s"] == pytest.approx(22.0)
    rate = cfg.sim.rate_hz
    for d in periodic:
        ref = _reference_at(cfg, int(round(d["sim_t_s"] * rate)))
        want = ref.recall_scores()
        assert d["recall"] == pytest.approx(want, rel=1e-12)
        assert d["pooled"] == pytest.approx(float(np.mean(list(want.values()))), rel=1e-12)
        ref.stop()                  # applies every pending memory event to the model itself
        assert d["strength"] == pytest.approx(ref.memory.strengths(d["sim_t_s"]), rel=1e-12)
        assert d["stable"] == pytest.approx(dict(zip(ref.memory.names, ref.memory.stable,
                                                     strict=True)), rel=1e-12)
    # the final state is the recall the trial scores (the simulator's next-day test)
    assert final[0]["recall"] == pytest.approx(score["recall"], rel=1e-12)
    assert final[0]["pooled"] == pytest.approx(score["recall_mean"], rel=1e-12)
    assert sum(final[0]["replays"].values()) > 0


def test_a_replayed_file_has_no_memory_states(tmp_path):
    from engramloop.cli import main

    cfg = load_config(CFG)
    sim = tmp_path / "engramloop.sim.xdf"
    run_sim(cfg, 3.0, speed="max", record=str(sim))
    assert len(_memory_stream(sim)) == 2                 # start and end
    rec = tmp_path / "replay.xdf"
    assert main(["replay", str(CFG), str(sim), "--speed", "max", "--record", str(rec),
                 "--quiet"]) == 0
    assert _memory_stream(rec) == []                     # no simulator behind a file


def test_report_draws_the_run_and_its_sham_twin(tmp_path):
    cfg = load_config(CFG)
    xdf = tmp_path / "session.xdf"
    rep = run_trial(cfg, 25.0, speed="max", record=str(xdf), report=str(tmp_path),
                    config_text=dump_config(cfg))
    twin = sham_twin_path(xdf)
    assert twin == tmp_path / "session-sham-twin.xdf" and twin.is_file()
    track, twin_cfg = load_twin_memory(twin)
    assert twin_cfg["policy"]["condition"] == "sham" and twin_cfg["seed"] == cfg.seed
    assert track.final == pytest.approx(rep["sham"]["recall_mean"], rel=1e-12)
    res = write_report(xdf, tmp_path / "rep")
    assert (tmp_path / "rep" / "memory.png").is_file()
    assert tmp_path / "rep" / "memory.png" in res.figures
    text = res.index.read_text(encoding="utf-8")
    run, sham = rep["run"]["recall_mean"], rep["sham"]["recall_mean"]
    # 4 states each: start, 10 s, 20 s, end
    assert re.search(rf"<td>stim</td><td>session.xdf</td><td>4</td><td>[0-9.]+</td>"
                     rf"<td>{run:.3f}</td></tr>", text)
    assert re.search(rf"<td>sham</td><td>session-sham-twin.xdf</td><td>4</td><td>[0-9.]+"
                     rf"</td><td>{sham:.3f}</td></tr>", text)
    assert f"<td>stim - sham</td><td></td><td></td><td>0.000</td><td>{run - sham:.3f}</td>" \
        in text
    assert "sham twin with the same seed (dashed)" in text
    # without the twin file the report still draws this run's trajectory and says so
    twin.rename(tmp_path / "elsewhere.xdf")
    text = write_report(xdf, tmp_path / "rep2").index.read_text(encoding="utf-8")
    assert "Sham twin: not found" in text and (tmp_path / "rep2" / "memory.png").is_file()
    # ... and an explicit twin with another seed is drawn with a warning
    other = dataclasses.replace(cfg, seed=cfg.seed + 1)
    run_trial(other, 5.0, speed="max", record=str(tmp_path / "other.xdf"),
              config_text=dump_config(other))
    text = write_report(xdf, tmp_path / "rep3", twin=tmp_path / "other-sham-twin.xdf"
                        ).index.read_text(encoding="utf-8")
    assert "not a twin, compare with care" in text
    assert not math.isnan(track.final)
