"""Slow oscillations the policy drops are not a night without slow oscillations: the
policy's ``_so`` used to drop an SO whose target phase was predicted more than
``max_lead_s`` ahead without a trace, so a night whose predictions all landed beyond the
lead ended with exit 0 and no trigger.

Real EEG we did not record: DREAMS excerpt 5 (C3-A1, 200 Hz, Devuyst et al. 2011),
replayed by a real ``engramloop`` process with ``max_lead_s`` 0.01 s (shorter than most
predictions' lead: the detector releases a prediction ``confirm_lead_s``, 30 ms, before
the up state) and again with the default 1.5 s as the reference; the recordings are
read back with pyxdf.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import pyxdf
from gate_runs import AUDITORY_SHAM, replay_watched
from gate_runs import cli as _cli
from shared_data import DATA, require_data  # noqa: E402

EXCERPT = DATA / "dreams_dev" / "excerpt5.edf"

CONFIG = """
name = "policy-lead"
[source]
kind = "file"
chunk_samples = 10
[detectors.ripple]
enabled = false
[detectors.spindle]
enabled = false
[detectors.so]
channels = ["C3-A1"]
[policy]
target = "so_upstate"
max_lead_s = {lead}
""" + AUDITORY_SHAM




@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    require_data(EXCERPT)
    d = tmp_path_factory.mktemp("policy_lead")
    shutil.copy(EXCERPT, d / "night.edf")
    (d / "short.toml").write_text(CONFIG.format(lead=0.01), encoding="utf-8")
    (d / "default.toml").write_text(CONFIG.format(lead=1.5), encoding="utf-8")
    return d


def _read(path: Path) -> tuple[list[dict], list[dict]]:
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    logs = [json.loads(v[0]) for v in by["engramloop.log"]["time_series"]]
    events = [json.loads(v[0]) for v in by["engramloop.events"]["time_series"]]
    return logs, events


def _sent(stdout: str) -> int:
    m = re.search(r"\bsent (\d+)\b", stdout)
    assert m, stdout
    return int(m.group(1))


def test_replay_counts_the_slow_oscillations_beyond_the_lead(night) -> None:
    p = _cli("replay", "short.toml", "night.edf", "--speed", "max", "--quiet", "--record",
             "short.xdf", cwd=night)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    m = re.search(r"policy: (\d+) slow oscillations not stimulated: the target phase was "
                  r"predicted more than max_lead_s ahead", p.stdout)
    assert m, p.stdout
    printed = int(m.group(1))
    logs, events = _read(night / "short.xdf")
    skips = [r for r in logs if r.get("kind") == "detector_skips"
             and r["detector"] == "policy"]
    assert len(skips) == 1 and skips[0]["counts"] == {"so_beyond_lead": printed}, skips
    # every one dropped was an SO event with a prediction in the recording
    # (a NaN prediction is written as null)
    predicted = [e for e in events if e["kind"] == "so" and e.get("predicted_s") is not None
                 and math.isfinite(e["predicted_s"])]
    assert 10 <= printed <= len(predicted), (printed, len(predicted))
    # the reference: with the default lead these are stimulated, and nothing is dropped
    q = _cli("replay", "default.toml", "night.edf", "--speed", "max", "--quiet", cwd=night)
    assert q.returncode == 0, q.stderr
    assert "max_lead_s ahead" not in q.stdout
    assert _sent(q.stdout) > _sent(p.stdout), (q.stdout, p.stdout)


def test_live_view_shows_the_dropped_slow_oscillations(night, monkeypatch) -> None:
    res, seen = replay_watched(night / "short.toml", night / "night.edf", monkeypatch)
    n = res.detector_skips["policy"]["so_beyond_lead"]
    lines = [line for st in seen for line in st.detector_states
             if line.startswith("policy passing over slow oscillations")]
    assert lines and lines[-1].endswith(f"{n} in all") or any(
        line.endswith(f"{n} in all") for line in lines), lines
    assert seen[0].detector_states == ()
