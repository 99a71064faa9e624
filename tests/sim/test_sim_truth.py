"""Truth: queries, phase convention, persistence; and the `engramloop sim` command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engramloop.cli import main
from engramloop.core.angles import wrap_deg
from engramloop.sim.generate import simulate
from engramloop.sim.settings import HypnogramSettings, SimSettings
from engramloop.sim.truth import Truth, TruthEvent, theta_warp


@pytest.fixture(scope="module")
def run():
    s = SimSettings(hypnogram=HypnogramSettings(schedule=("N3:20", "REM:20")))
    return simulate(s, seed=21, duration_s=40.0)


def test_wrap_is_half_open():
    w = wrap_deg(np.array([-180.0, 180.0, 540.0, -190.0, 0.0, 359.0]))
    np.testing.assert_allclose(w, [180.0, 180.0, 180.0, 170.0, 0.0, -1.0])


def test_theta_warp_keeps_peak_and_trough_order():
    g = np.linspace(-np.pi, np.pi, 1001)
    w = theta_warp(g, 0.3)
    assert np.all(np.diff(np.unwrap(w)) > 0)
    # the rise (trough -> peak) takes (1 - asym)/2 of the cycle
    rising = np.mean(np.mod(w, 2 * np.pi) >= np.pi)
    assert rising == pytest.approx(0.35, abs=0.01)


def test_events_are_sorted_typed_and_within_the_recording(run):
    x, t, truth = run
    ev = truth.events()
    assert all(isinstance(e, TruthEvent) for e in ev)
    assert [e.onset_s for e in ev] == sorted(e.onset_s for e in ev)
    assert all(e.onset_s < t[-1] + 1 / 2000 for e in ev)
    assert all(e.onset_s <= e.peak_s <= e.offset_s for e in ev if e.kind != "artefact")
    assert {e.kind for e in truth.events("ripple")} == {"ripple"}
    d = ev[0].to_dict()
    assert set(d) == {"kind", "channel", "onset_s", "peak_s", "offset_s", "meta"}


def test_phase_shapes_ranges_and_nan(run):
    x, t, truth = run
    for g in ("so", "spindle", "theta"):
        ph = truth.phase(g, t[::100])
        assert ph.shape == t[::100].shape
        ok = np.isfinite(ph)
        assert ok.any() and (~ok).any()
        assert np.all((ph[ok] > -180) & (ph[ok] <= 180))
    assert np.ndim(truth.phase("so", 1.0)) == 0
    with pytest.raises(ValueError, match="unknown generator"):
        truth.phase("gamma", 1.0)


def test_so_phase_landmarks(run):
    x, t, truth = run
    so = truth.events("so")[0]
    ph = truth.phase("so", np.array([so.onset_s, so.meta["trough_s"], so.meta["rise_s"],
                                     so.peak_s]))
    np.testing.assert_allclose(ph, [90.0, 180.0, -90.0, 0.0], atol=1e-6)


def test_json_roundtrip_and_files(run, tmp_path):
    x, t, truth = run
    again = Truth.from_json(truth.to_json())
    assert [e.to_dict() for e in again.events()] == [e.to_dict() for e in truth.events()]
    tt = t[::37]
    for g in ("so", "spindle", "theta"):
        np.testing.assert_array_equal(again.phase(g, tt), truth.phase(g, tt))
    np.testing.assert_array_equal(again.stages(tt), truth.stages(tt))
    p = tmp_path / "truth.json"
    truth.save(p)
    assert Truth.load(p).to_json() == truth.to_json()
    assert "recall" in json.loads(p.read_text())["memory"]
    with pytest.raises(ValueError, match="not an engramloop truth"):
        Truth.from_json('{"a": 1}')
    with pytest.raises(FileNotFoundError, match="truth file not found"):
        Truth.load(tmp_path / "missing.json")


def test_stages_outside_the_schedule_are_empty(run):
    x, t, truth = run
    assert truth.stages(-5.0) == ""
    assert truth.stages(1e6) == ""
    assert list(truth.stages(np.array([1.0, 25.0]))) == ["N3", "REM"]


def test_cli_sim_npz_is_readable_by_the_file_source(tmp_path, capsys):
    from engramloop.drivers.files import load_file

    out = tmp_path / "night.npz"
    assert main(["sim", "--duration", "3", "--out", str(out), "--seed", "4"]) == 0
    data = load_file(out)
    z = np.load(out)
    assert z["samples"].shape == (6000, 8)
    x, t, truth = simulate(SimSettings(), seed=4, duration_s=3.0)
    np.testing.assert_array_equal(z["samples"], x)
    assert Truth.from_json(str(z["truth"])).to_json() == truth.to_json()
    assert np.asarray(data.samples).shape == (6000, 8)


def test_cli_sim_xdf_has_signal_and_truth(tmp_path):
    import pyxdf

    out = tmp_path / "night.xdf"
    assert main(["sim", "--duration", "2", "--out", str(out), "--seed", "4"]) == 0
    streams, _ = pyxdf.load_xdf(str(out))
    by = {s["info"]["name"][0]: s for s in streams}
    raw = by["engramloop.raw"]
    assert np.asarray(raw["time_series"]).shape == (4000, 8)
    x, t, truth = simulate(SimSettings(), seed=4, duration_s=2.0)
    np.testing.assert_allclose(np.asarray(raw["time_series"]), x, rtol=1e-6, atol=1e-12)
    marks = [json.loads(v[0]) for v in by["engramloop.truth"]["time_series"]]
    assert marks[-1]["kind"] == "truth_document"
    assert len(marks) - 1 == len(truth.events())
    assert Truth.from_json(marks[-1]["truth"]).to_json() == truth.to_json()


def test_cli_sim_rejects_bad_output(tmp_path, capsys):
    assert main(["sim", "--duration", "1", "--out", str(tmp_path / "x.wav")]) == 2
    assert "use a .xdf or .npz" in capsys.readouterr().err
    assert main(["sim", "--duration", "1", "--out", str(tmp_path / "no" / "x.npz")]) == 2
