"""Scoring a replay of the first part of a night (``--duration``, or a run killed early)
against expert annotations of the whole night: the annotations after the replay's last
sample were counted as missed. DREAMS excerpt 1 replayed for 400 s against its expert's
52 spindles -- 7 of them in the first 400 s -- reported n_truth 52 and recall 0.115 in
`replay --sweep`, and `score` of the recording said the same. Only what the detectors
could see counts, at the end as at the start (the calibration). The reference: the
expert CSV read here with the csv module."""
from __future__ import annotations

import csv
import json

import pytest
from shared_data import DATA, require_data

from engramloop.cli import main

SECONDS = 400.0


def _cfg(tmp_path):
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nchannels = ["C3-A1"]\n[detectors.spindle]\n'
                   'channels = ["C3-A1"]\nthreshold_sd = 2.5\n[policy]\ntarget = "spindle"\n')
    return cfg


def _expert_between(path, t0: float, t1: float) -> int:
    with open(path, newline="") as f:
        return sum(t0 <= float(r["onset_s"]) < t1 for r in csv.DictReader(f))


@pytest.mark.slow
def test_truth_after_the_last_replayed_sample_is_not_counted(tmp_path, capsys) -> None:
    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    expert = require_data(DATA / "dreams_dev" / "excerpt1_expert1.csv")
    cfg = _cfg(tmp_path)
    assert main(["replay", str(cfg), str(edf), "--sweep", "detectors.spindle.threshold_sd=2.5",
                 "--duration", str(SECONDS), "--truth", str(expert), "--json",
                 "--quiet"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[-1])
    cal = row["score"]["calibration_end_s"]
    # the replay's clock starts at the file's first sample: annotations are seconds from it
    t_end = row["duration_s"]
    want = _expert_between(expert, cal, t_end)
    assert 0 < want < _expert_between(expert, 0.0, 1e9)
    sp = row["score"]["spindle"]
    assert sp["n_truth"] == want
    assert sp["true_positives"] + sp["false_negatives"] == want

    rec = tmp_path / "r.xdf"
    assert main(["replay", str(cfg), str(edf), "--speed", "max", "--duration", str(SECONDS),
                 "--quiet", "--record", str(rec)]) == 0
    capsys.readouterr()
    assert main(["score", str(rec), "--truth", str(expert), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["spindle"]["n_truth"] == want
    # the scored span: from the end of calibration to the last sample, as the sweep's
    assert res["duration_s"] == pytest.approx(row["score"]["duration_s"], abs=0.05)
