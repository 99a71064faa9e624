"""The Python API (engramloop.api, re-exported from engramloop) against independent
references: the simulator's ground truth for the detectors, pyxdf for reading a
recording, pyedflib and MNE for reading exports back."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import engramloop
from engramloop import api
from engramloop.cli import main
from engramloop.controller.config import SHIPPED_DIR
from engramloop.core.chunk import Chunk
from engramloop.core.schema import ConfigError
from engramloop.decoders.spindle import SpindleDetector, SpindleSettings
from engramloop.sim.generate import simulate

CHANNELS = ("CA1", "CA1b", "Fz", "C3", "Cz", "C4", "Pz", "Oz")  # SimSettings() default
FS = 2000.0


@pytest.fixture(scope="module")
def night():
    """120 s of the simulator (N2 then N3) with its ground truth."""
    x, t, truth = simulate(seed=1, duration_s=120.0)
    assert x.shape[1] == len(CHANNELS)
    return x, truth


def _score(table, truth_events, tol_s=0.05):
    """(precision, recall): a detection is true when it is decided inside a true event
    (widened by tol_s); a true event is found when a detection is decided inside it."""
    iv = np.array([(e.onset_s, e.offset_s) for e in truth_events])
    d = np.asarray(table["detect_s"], dtype=float)
    hit = [bool(((iv[:, 0] - tol_s <= s) & (s <= iv[:, 1] + tol_s)).any()) for s in d]
    found = [bool(((d >= a - tol_s) & (d <= b + tol_s)).any()) for a, b in iv]
    return float(np.mean(hit)), float(np.mean(found))


@pytest.mark.parametrize("func,kind,channel,min_p,min_r", [
    (engramloop.detect_ripples, "ripple", "CA1", 0.9, 0.75),
    (engramloop.detect_spindles, "spindle", "Cz", 0.9, 0.65),
    (engramloop.detect_slow_oscillations, "so", "Cz", 0.75, 0.5),
])
def test_detectors_on_arrays_find_the_simulated_events(night, func, kind, channel, min_p,
                                                       min_r):
    # floors well under what the detectors reach here (ripples 0.99/0.85, spindles
    # 1.0/0.76, SOs 0.80/0.76 -- SO recall counts the calibration's first seconds; spindle
    # recall was 0.94 before issue 20 tuned the spindle defaults on real EEG, where the
    # stricter relative-power rule and 0.15 s minimum run miss some simulated spindles; SO
    # precision was 1.0 with the fixed -40 uV threshold, the adaptive one sits at its
    # 30 uV floor in this night's first minute of N2 and takes some non-SO dips there)
    x, truth = night
    table = func(x[:, [CHANNELS.index(channel)]], FS, [channel])
    assert list(table.columns) == [c for c, _ in api.EVENT_COLUMNS]
    assert set(table["kind"]) == {kind} and set(table["channel"]) == {channel}
    assert (table["detect_s"] >= table["onset_s"]).all()  # causal: decided after onset
    p, r = _score(table, truth.events(kind))
    assert p >= min_p and r >= min_r, (p, r)


def test_same_events_as_the_detector_class_fed_as_the_loop_feeds_it(night):
    """The API is the loop's detector: 10-sample chunks with host-clock stamps, as the
    simulator source delivers them, give the events the API returns from 1 s chunks."""
    x, _ = night
    cz = np.ascontiguousarray(x[:, [CHANNELS.index("Cz")]])
    det = SpindleDetector(SpindleSettings(channels=("Cz",)))
    t = 100.0 + np.arange(cz.shape[0]) / FS
    events = []
    for i in range(0, cz.shape[0], 10):
        events += det.process(Chunk(cz[i:i + 10].copy(), t[i:i + 10].copy(), FS, ("Cz",),
                                    arrival_s=float(t[min(i + 10, len(t)) - 1])))
    ref = [e for e in events if e.kind == "spindle"]
    table = engramloop.detect_spindles(cz[:, 0], FS, ["Cz"], t0_s=100.0)
    assert len(table) == len(ref) > 5
    np.testing.assert_array_equal(table["detect_s"], [e.detect_s for e in ref])
    np.testing.assert_array_equal(table["amplitude"], [e.amplitude for e in ref])
    # microvolts in, the same events out
    uv = engramloop.detect_spindles(cz[:, 0] * 1e6, FS, ["Cz"], t0_s=100.0, unit="uV")
    np.testing.assert_allclose(uv["detect_s"], table["detect_s"])


def test_structured_array_without_pandas(night, monkeypatch):
    x, _ = night
    frame = engramloop.detect_spindles(x[:, 4], FS, ["Cz"])
    monkeypatch.setattr(api, "_pandas", lambda: None)
    arr = engramloop.detect_spindles(x[:, 4], FS, ["Cz"])
    assert isinstance(arr, np.ndarray) and arr.dtype.names == tuple(frame.columns)
    np.testing.assert_array_equal(arr["onset_s"], frame["onset_s"].to_numpy())
    assert list(arr["kind"]) == list(frame["kind"])


def test_settings_and_bad_input_are_errors_that_name_the_thing(night):
    x, _ = night
    strict = engramloop.detect_ripples(x[:, 0], FS, ["CA1"], threshold_sd=8.0)
    loose = engramloop.detect_ripples(x[:, 0], FS, ["CA1"])
    assert 0 < len(strict) < len(loose)
    with pytest.raises(ConfigError, match=r"detect_ripples: threshold_sd: .*> 0"):
        engramloop.detect_ripples(x[:, 0], FS, threshold_sd=-1)
    with pytest.raises(ConfigError, match="detect_spindles: threshold: unknown key"):
        engramloop.detect_spindles(x[:, 4], FS, threshold=3)
    bad = x[:, 4].copy()
    bad[1234] = np.nan
    with pytest.raises(ValueError, match="1 non-finite samples .*sample 1234"):
        engramloop.detect_spindles(bad, FS)
    with pytest.raises(ValueError, match="2 ch_names for 1 columns"):
        engramloop.detect_spindles(x[:, 4], FS, ["Cz", "C3"])
    with pytest.raises(ValueError, match="fs must be"):
        engramloop.detect_spindles(x[:, 4], 0)


# ------------------------------------------------------------------------- recordings
@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A 20 s closed-loop ripple run recorded to XDF by the real CLI."""
    out = tmp_path_factory.mktemp("rec")
    path = out / "session.xdf"
    assert main(["run", str(SHIPPED_DIR / "sim-ripple.toml"), "--duration", "20",
                 "--speed", "max", "--record", str(path), "--quiet"]) == 0
    return path


def _pyxdf(path):
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                dejitter_timestamps=False)
    return {s["info"]["name"][0]: s for s in streams}


def test_read_recording_matches_pyxdf(session):
    rec = engramloop.read_recording(session)
    ref = _pyxdf(session)
    raw = rec.signal()
    np.testing.assert_array_equal(raw.x, np.asarray(ref["engramloop.raw"]["time_series"]))
    np.testing.assert_array_equal(raw.t, ref["engramloop.raw"]["time_stamps"])
    assert raw.rate_hz == 2000.0 and raw.channels[:2] == ("CA1", "CA1b")
    ev = [json.loads(v[0]) for v in ref["engramloop.events"]["time_series"]]
    assert len(rec.events) == len(ev) and len(ev) > 5
    assert list(rec.events["kind"]) == [e["kind"] for e in ev]
    np.testing.assert_array_equal(rec.events["detect_s"], [e["detect_s"] for e in ev])
    pulses = [json.loads(v[0]) for v in ref["engramloop.pulses"]["time_series"]]
    assert len(rec.pulses) == len(pulses) > 0
    assert list(rec.pulses["pulse_id"]) == [p["pulse"]["pulse_id"] for p in pulses]
    assert list(rec.pulses["status"]) == [p["delivery"]["status"] for p in pulses]
    assert (rec.pulses["duration_s"] == 0.05).all()  # sim-ripple.toml: one 50 ms light pulse
    assert "sim-ripple" in rec.config_text and rec.start is not None
    # truth and stages are there (the simulator wrote them) and in the annotations
    assert (rec.truth["description"] == "truth/ripple").sum() > 5
    assert "stage/N3" in set(rec.annotations["description"])
    n_det = sum(e["kind"] != "calibration_done" for e in ev)
    assert rec.annotations["description"].str.startswith("detect/").sum() == n_det
    assert (rec.annotations["description"] == "pulse/sim/sent").sum() == len(pulses)


def test_read_recording_errors_are_one_line(tmp_path):
    with pytest.raises(api.RecordingError, match="not found"):
        engramloop.read_recording(tmp_path / "nope.xdf")
    junk = tmp_path / "junk.xdf"
    junk.write_bytes(b"not an xdf file")
    with pytest.raises(api.RecordingError, match="not a readable XDF file"):
        engramloop.read_recording(junk)


def _annotation_onsets(rec, prefix):
    raw = rec.signal()
    a = rec.annotations[rec.annotations["description"].str.startswith(prefix)]
    # the sample each annotation starts at, on the stream's sample axis
    return np.searchsorted(raw.t, a["onset_s"].to_numpy()) / raw.rate_hz


def test_to_mne_is_the_signal_with_annotations(session):
    rec = engramloop.read_recording(session)
    raw = rec.to_mne()
    sig = rec.signal()
    assert raw.ch_names == list(sig.channels) and raw.info["sfreq"] == sig.rate_hz
    np.testing.assert_array_equal(raw.get_data(), sig.x.T)
    ann = raw.annotations
    pulses = [a for a in ann if a["description"] == "pulse/sim/sent"]
    assert len(pulses) == len(rec.pulses)
    np.testing.assert_allclose([a["onset"] for a in pulses],
                               _annotation_onsets(rec, "pulse/"), atol=1e-9)
    ripples = [a for a in ann if a["description"] == "detect/ripple"]
    assert ripples and all(a["ch_names"] in (("CA1",), ("CA1b",)) for a in ripples)


def test_to_edf_reads_back_with_pyedflib_and_mne(session, tmp_path):
    import mne
    import pyedflib

    rec = engramloop.read_recording(session)
    sig = rec.signal()
    path = rec.to_edf(tmp_path / "s.edf")
    with pyedflib.EdfReader(str(path)) as r:
        assert [lab.strip() for lab in r.getSignalLabels()] == list(sig.channels)
        steps = []
        for i in range(len(sig.channels)):
            x = r.readSignal(i)[:sig.x.shape[0]] * 1e-6
            steps.append((r.getPhysicalMaximum(i) - r.getPhysicalMinimum(i)) / 65535 * 1e-6)
            assert np.max(np.abs(x - sig.x[:, i])) <= steps[-1]  # 16-bit quantisation only
        onsets, durations, texts = r.readAnnotations()
    pulse = [k for k, s in enumerate(texts) if s == "pulse/sim/sent"]
    assert len(pulse) == len(rec.pulses)
    np.testing.assert_allclose(onsets[pulse], _annotation_onsets(rec, "pulse/"), atol=1e-4)
    # onset and end fall on samples: within one sample period of the 50 ms pulse
    np.testing.assert_allclose(durations[pulse], 0.05, atol=1 / sig.rate_hz + 1e-4)
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.info["sfreq"] == sig.rate_hz
    for i, step in enumerate(steps):
        np.testing.assert_allclose(raw.get_data()[i, :sig.x.shape[0]], sig.x[:, i],
                                   rtol=0, atol=step)
    desc = list(raw.annotations.description)
    assert desc.count("pulse/sim/sent") == len(rec.pulses)
    assert sum(d.startswith("detect/ripple") for d in desc) == (
        rec.events["kind"] == "ripple").sum()


def test_to_mne_without_mne_names_the_extra(session, monkeypatch):
    from engramloop.core.extras import MissingExtraError

    rec = engramloop.read_recording(session)
    monkeypatch.setitem(sys.modules, "mne", None)  # MNE not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'engramloop\[mne\]'"):
        rec.to_mne()
