"""The forecaster's nights from recordings read the signal block by block (issue 23):
the features equal the former whole-file pass -- the whole stream read by pyxdf (the
counterpart) and handed to the detectors and the feature stage as one chunk -- whatever
the block size. The recording is a real ``engramloop replay --record`` of a simulated
night (``engramloop sim``), so it carries (sham) pulses."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pyxdf

import engramloop.analysis.training as ft
from engramloop.analysis.training import dataset
from engramloop.cli import main
from engramloop.core.chunk import Chunk
from engramloop.decoders.features import EpochFeatures, FeatureSettings

CONFIG = Path(__file__).resolve().parents[2] / "src" / "engramloop" / "configs" / "sim-ripple.toml"


def _whole_file_features(path):
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    raw = by["engramloop.raw"]
    chans = tuple(c["label"][0] for c in raw["info"]["desc"][0]["channels"][0]["channel"])
    t = raw["time_stamps"]
    chunk = Chunk(np.asarray(raw["time_series"], dtype=np.float64), t,
                  float(raw["info"]["nominal_srate"][0]), chans, arrival_s=float(t[-1]))
    pulses = sorted(by["engramloop.pulses"]["time_stamps"].tolist()) \
        if "engramloop.pulses" in by else []
    events = []
    for det in dataset.night_detectors(chans):
        events.extend(det.process(chunk))
    vecs = EpochFeatures(FeatureSettings()).process(chunk, events, pulses)
    return (dataset.feature_matrix(vecs), np.array([v.t_end_s for v in vecs]) - t[0],
            len(events), len(pulses))


@pytest.mark.parametrize("block", [997, 65536])
def test_recording_features_equal_the_whole_file_pass(tmp_path, monkeypatch, block):
    sim = tmp_path / "sim.xdf"
    assert main(["sim", "--duration", "95", "--out", str(sim), "--seed", "4",
                 "--quiet"]) == 0
    rec = tmp_path / "night.xdf"
    assert main(["replay", str(CONFIG), str(sim), "--speed", "max", "--quiet",
                 "--record", str(rec)]) == 0
    csv = tmp_path / "outcomes.csv"
    csv.write_text("recording,time_s,memory,recall\nnight.xdf,0,a,0.6\nnight.xdf,90,a,0.5\n",
                   encoding="utf-8")
    monkeypatch.setattr(dataset, "RECORDING_BLOCK", block)
    n = ft.nights_from_recordings(csv)[0]
    ref, ends, n_events, n_pulses = _whole_file_features(rec)
    assert n_pulses > 0 and n_events > 0 and n.features.shape == ref.shape and ref.shape[0] >= 3
    np.testing.assert_allclose(n.t_end_s, ends, rtol=0, atol=1e-9)
    np.testing.assert_allclose(n.features, ref, rtol=1e-9, atol=1e-12)
    assert json.dumps(n.meta) and n.meta["kind"] == "recording"
