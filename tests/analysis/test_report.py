"""engramloop report: HTML + PNG figures from one XDF recording.

Recordings are written by the real Recorder (controller/recorder.py). The "simulated"
session is synthesised here with known ground truth (slow oscillations at a known phase,
spindles, ripples, stim and sham pulses at known phases) so the report's numbers can be
checked against it; the "replayed EDF" session replays a real EDF file (made from the YASA
N2 example in /work/shared/data) through the real FileSource.
"""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from shared_data import DATA  # noqa: E402

from engramloop.analysis.report import expand_truth, load_recording, merge_pulses, write_report
from engramloop.analysis.scoring import circular_mean_sd
from engramloop.controller.config import SHIPPED_DIR
from engramloop.controller.recorder import Recorder
from engramloop.core.angles import wrap_deg
from engramloop.core.chunk import Chunk

ROOT = Path(__file__).resolve().parents[2]
FS = 500.0
T0 = 1000.0          # host-clock time of the first sample
DUR = 90.0
SO_HZ = 0.8
STIM_PHASE = -20.0   # where the synthetic stim pulses land on the SO cycle (degrees)


def _sim_session(path: Path) -> dict:
    """Write a synthetic simulated session; return its ground truth for the checks."""
    rng = np.random.default_rng(7)
    n = int(DUR * FS)
    t = T0 + np.arange(n) / FS
    tt = t - T0
    x = rng.normal(0, 8e-6, (n, 2))
    # N2 for 30 s, N3 for 50 s, REM for 10 s
    stages = [("N2", 0.0, 30.0), ("N3", 30.0, 80.0), ("REM", 80.0, 90.0)]
    n3 = (tt >= 30) & (tt < 80)
    # slow oscillation on Cz in N3: cosine, so cosine phase = 2*pi*f*t exactly
    so_phase = np.degrees(2 * np.pi * SO_HZ * tt)
    x[:, 1] += np.where(n3, 60e-6 * np.cos(2 * np.pi * SO_HZ * tt), 0.0)
    truth, events = [], []
    # spindles: 13 Hz, 1 s, every 5 s in N2
    for on in np.arange(3.0, 29.0, 5.0):
        seg = (tt >= on) & (tt < on + 1.0)
        x[seg, 1] += 30e-6 * np.hanning(seg.sum()) * np.sin(2 * np.pi * 13 * (tt[seg] - on))
        truth.append({"kind": "spindle", "channel": "Cz", "onset_s": T0 + on,
                      "peak_s": T0 + on + 0.5, "offset_s": T0 + on + 1.0, "meta": {}})
        events.append({"kind": "spindle", "channel": "Cz", "onset_s": T0 + on + 0.1,
                       "detect_s": T0 + on + 0.25 + 0.1 * rng.random(), "peak_s": T0 + on + 0.5,
                       "amplitude": 25e-6, "score": 3.0, "threshold": 10e-6,
                       "predicted_s": None})
    # ripples: 200 Hz, 60 ms, every 2 s throughout
    for on in np.arange(1.5, 88.0, 2.0):
        seg = (tt >= on) & (tt < on + 0.06)
        x[seg, 0] += 80e-6 * np.hanning(seg.sum()) * np.sin(2 * np.pi * 200 * (tt[seg] - on))
        truth.append({"kind": "ripple", "channel": "CA1", "onset_s": T0 + on,
                      "peak_s": T0 + on + 0.03, "offset_s": T0 + on + 0.06, "meta": {}})
        events.append({"kind": "ripple", "channel": "CA1", "onset_s": T0 + on + 0.005,
                       "detect_s": T0 + on + 0.012 + 0.008 * rng.random(), "peak_s": T0 + on + 0.03,
                       "amplitude": 70e-6, "score": 5.0, "threshold": 30e-6,
                       "predicted_s": None})
    # one false-positive ripple detection
    events.append({"kind": "ripple", "channel": "CA1", "onset_s": T0 + 50.9,
                   "detect_s": T0 + 50.91, "peak_s": T0 + 50.92, "amplitude": 1e-6,
                   "score": 3.1, "threshold": 30e-6, "predicted_s": None})
    # SO cycles: trough at phase 180 deg; detector reports the trough as peak_s
    so_troughs = [(k + 0.5) / SO_HZ for k in range(int(30 * SO_HZ) + 1, int(79 * SO_HZ))]
    for tr in so_troughs:
        truth.append({"kind": "so", "channel": "Cz", "onset_s": T0 + tr - 0.3125,
                      "peak_s": T0 + tr + 0.625, "offset_s": T0 + tr + 0.9375, "meta": {}})
        events.append({"kind": "so", "channel": "Cz", "onset_s": T0 + tr - 0.2,
                       "detect_s": T0 + tr + 0.02 + 0.01 * rng.random(),
                       "peak_s": T0 + tr,
                       "amplitude": -60e-6, "score": 2.0, "threshold": -40e-6,
                       "predicted_s": T0 + tr + 0.6})
    # pulses: one per SO cycle at STIM_PHASE, alternating stim/sham; 5 ripple-triggered
    pulses, deliveries, governor = [], [], []
    pid = 0
    for k, tr in enumerate(so_troughs):
        # peak + phase offset + timing jitter (SD 15 deg of SO phase)
        fire = tr + 0.5 / SO_HZ + (STIM_PHASE + 15.0 * rng.standard_normal()) / 360.0 / SO_HZ
        if k % 6 == 5:   # the governor refuses every sixth for refractoriness
            governor.append((T0 + tr + 0.02, {"t_s": T0 + tr + 0.02, "approved": False,
                                              "rule": "refractory", "target": "so_upstate",
                                              "modality": "auditory", "condition": "stim",
                                              "detect_s": T0 + tr + 0.02, "pulse_id": -1,
                                              "detail": "0.4 s after previous"}))
            continue
        cond = "stim" if k % 2 == 0 else "sham"
        spec = {"modality": "auditory", "shape": "monophasic", "amplitude": 50.0,
                "phase_width_s": 0.05, "interphase_s": 0.0, "train_count": 1,
                "train_interval_s": 0.0, "channel": 1}
        pulses.append({"pulse_id": pid, "target": "so_upstate", "spec": spec,
                       "detect_s": T0 + tr + 0.02, "intended_s": T0 + fire - 0.0005,
                       "deadline_s": T0 + fire + 0.01, "condition": cond})
        deliveries.append({"pulse_id": pid, "output": "stimbox" if cond == "stim" else "sham",
                           "status": "acked" if cond == "stim" else "sent",
                           "sent_s": T0 + fire - 0.0003 + 0.0001 * (k % 3),
                           "ack_s": T0 + fire + 0.0008 + 0.0008 * rng.random()
                           if cond == "stim" else None,
                           "device_edge_s": T0 + fire if cond == "stim" else None,
                           "reason": ""})
        governor.append((T0 + tr + 0.02, {"t_s": T0 + tr + 0.02, "approved": True,
                                          "rule": "", "target": "so_upstate",
                                          "pulse_id": pid}))
        pid += 1
    # as decoders.features.Forecast.to_dict() writes them
    forecasts = [(T0 + s, {"time_s": T0 + s, "horizon_s": 3600.0, "p_below_median": 0.3 + s / 500,
                           "delta_strength": -0.01 * s / 90, "model_version": "test",
                           "per_memory": [0.01, -0.02]})
                 for s in range(10, 90, 10)]
    memory = [(T0 + s, {"kind": "memory", "t_s": T0 + s,
                        "recall_scores": {"stim.m0": 0.5 + s / 900, "sham.m1": 0.5 + s / 1800}})
              for s in range(0, 90, 15)]
    with Recorder(path, "name = \"synthetic-sim\"\nseed = 7\n", flush_interval_s=0.5) as rec:
        rec.add_signal_stream(name="engramloop.raw", channels=("CA1", "Cz"), rate_hz=FS)
        for i in range(0, n, 250):
            rec.write_chunk(Chunk(np.ascontiguousarray(x[i:i + 250]), t[i:i + 250].copy(), FS,
                                  ("CA1", "Cz"), arrival_s=float(t[min(i + 249, n - 1)])))
        for e in events:
            rec.write_marker("events", e["detect_s"], e)
        for tr in truth:
            rec.write_marker("truth", tr["onset_s"], tr)
        for st, a, b in stages:
            rec.write_marker("truth", T0 + a, {"kind": "stage", "stage": st,
                                               "onset_s": T0 + a, "offset_s": T0 + b})
        for tm, m in memory:
            rec.write_marker("truth", tm, m)
        for p in pulses:
            rec.write_marker("pulses", p["detect_s"], p)
        for d in deliveries:
            rec.write_marker("pulses", d["sent_s"], d)
        for tg, g in governor:
            rec.write_marker("governor", tg, g)
        rec.write_marker("governor", T0, {"armed": True, "by": "test"})
        for tf, f in forecasts:
            rec.write_marker("forecasts", tf, f)
        rec.write_marker("log", T0 + 40, {"level": "warning", "message": "gap of 3 samples"})
    return {"so_phase_at": lambda ts: np.interp(ts - T0, tt, so_phase), "n_pulses": pid,
            "n_refused": len([g for g in governor if not g[1].get("approved", True)])}


@pytest.fixture(scope="module")
def sim_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("simrep")
    xdf = d / "session.xdf"
    _sim_session(xdf)
    result = write_report(xdf, d / "report")
    return xdf, result.index


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        for k, v in attrs:
            if k in ("src", "href") and v is not None:
                self.refs.append(v)


def _check_local(index: Path) -> list[str]:
    """Every src/href is a same-page anchor or a file next to index.html."""
    p = _Links()
    p.feed(index.read_text(encoding="utf-8"))
    assert "script" not in p.tags and "link" not in p.tags
    files = []
    for ref in p.refs:
        if ref.startswith("#"):
            continue
        assert not re.match(r"^[a-z]+:", ref) and not ref.startswith("/") and ".." not in ref
        assert (index.parent / ref).is_file(), ref
        files.append(ref)
    return files


def test_sim_report_has_every_section_and_only_local_files(sim_report):
    _, index = sim_report
    files = _check_local(index)
    expected = {"raster.png", "examples-ripple.png", "examples-spindle.png", "examples-so.png",
                "eta-ripple.png", "eta-spindle.png", "eta-so.png", "phase-so_upstate.png",
                "latency.png", "stim-vs-sham.png", "memory.png", "forecast.png",
                "forecast-gate.png", "refusals.png", "spectrogram.png"}
    assert expected <= set(files)
    for f in expected:
        data = (index.parent / f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    text = index.read_text(encoding="utf-8")
    assert "not in this recording" not in text.replace(
        "hypnogram: not in this recording", "")
    assert "All figures" in text and text.count("<figure") == len(expected)
    assert "<li>detections: ripple 45 (30.0/min), so 38 (25.3/min), spindle 6 (4.0/min)</li>" \
        in text
    assert "<li>pulses delivered: sham 13, stim 19</li>" in text
    assert "<li>governor refusals: 6</li>" in text


def test_sim_report_phase_matches_ground_truth(sim_report):
    xdf, index = sim_report
    rec = load_recording(xdf)
    pulses = merge_pulses(rec.markers["pulses"])
    stim = [p for p in pulses if p.condition == "stim"]
    assert len(pulses) > 20 and all(p.delivered for p in pulses)
    # the synthetic SO is a pure cosine, so its true phase is known in closed form
    truth_phase = wrap_deg((np.array([p.fire_s for p in stim]) - T0) * SO_HZ * 360.0)
    mean_t, sd_t, _ = circular_mean_sd(truth_phase)
    assert abs(wrap_deg(mean_t - STIM_PHASE)) < 10.0 and 8 < sd_t < 25
    text = index.read_text(encoding="utf-8")
    row = re.search(r"<td>so_upstate</td><td>stim</td><td>Cz</td><td>[^<]*</td><td>(\d+)"
                    r"</td><td>0</td><td>(-?\d+)</td><td>(\d+)</td>", text)
    assert row, "phase table row for stim pulses missing"
    n, mean, sd = int(row[1]), int(row[2]), int(row[3])
    assert n == len(stim)
    # Hilbert phase of the zero-phase band-passed signal vs the generator's phase
    assert abs(wrap_deg(mean - mean_t)) <= 5
    assert abs(sd - sd_t) <= 5


def test_sim_report_forecast_series(sim_report):
    from engramloop.analysis.report import numeric_series

    xdf, _ = sim_report
    series = numeric_series(load_recording(xdf).markers["forecasts"])
    assert set(series) == {"p_below_median", "delta_strength", "per_memory[0]", "per_memory[1]"}
    t, v = series["p_below_median"]
    assert np.allclose(t - T0, np.arange(10, 90, 10)) and np.allclose(v, 0.3 + (t - T0) / 500)


def test_sim_report_refusals_and_truth_agreement(sim_report):
    _, index = sim_report
    text = index.read_text(encoding="utf-8")
    m = re.search(r"(\d+) decisions: (\d+) approved, (\d+) refused", text)
    assert m and int(m[3]) == 6 and int(m[2]) + int(m[3]) == int(m[1])
    # ripple row: 44 true, 45 detections (one false positive), 44 matched
    assert re.search(r"<td>ripple</td><td>44</td><td>45</td><td>44</td><td>0.98</td>"
                     r"<td>1.00</td>", text)
    assert "stage" not in re.findall(r"<td>(\w+) \(truth\)", text)


def test_sim_report_is_deterministic(sim_report, tmp_path):
    xdf, index = sim_report
    again = write_report(xdf, tmp_path / "again")
    assert again.index.read_bytes() == index.read_bytes()
    for f in again.figures:
        assert f.read_bytes() == (index.parent / f.name).read_bytes(), f.name


def _n2_edf(pyedflib, path: Path, repeats: int) -> Path:
    """An EDF+ of the YASA N2 example (C3, 200 Hz, microvolts), repeated ``repeats`` times."""
    uv = np.tile(np.loadtxt(DATA / "data_N2_spindles_15sec_200Hz.txt"), repeats)
    w = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders([{"label": "C3", "dimension": "uV", "sample_frequency": 200,
                         "physical_max": 500.0, "physical_min": -500.0,
                         "digital_max": 32767, "digital_min": -32768}])
    w.writeSamples([uv])
    w.close()
    return path


def _edf_replay(tmp: Path) -> Path:
    """Make an EDF from the YASA N2 example, replay it with FileSource, record it."""
    pyedflib = pytest.importorskip("pyedflib")
    from engramloop.core.chunk import EndOfStream
    from engramloop.drivers.files import FileSource

    edf = _n2_edf(pyedflib, tmp / "n2.edf", repeats=1)
    src = FileSource(edf, speed="max", chunk_samples=20)
    out = tmp / "replay.xdf"
    with Recorder(out, "name = \"replay\"\n") as rec:
        rec.add_signal_stream(src)
        src.start()
        t_first = None
        while True:
            try:
                ch = src.read(0.1)
            except EndOfStream:
                break
            if ch is None:
                continue
            t_first = ch.timestamps[0] if t_first is None else t_first
            rec.write_chunk(ch)
        # spindles an offline reference detector (YASA) finds in this file (data README)
        for at in (3.3, 13.3):
            rec.write_marker("events", t_first + at + 0.3, {
                "kind": "spindle", "channel": "C3", "onset_s": t_first + at - 0.4,
                "detect_s": t_first + at + 0.3, "peak_s": t_first + at})
    return out


def test_edf_replay_report_renders_and_says_what_is_missing(tmp_path):
    xdf = _edf_replay(tmp_path)
    rec = load_recording(xdf)
    assert rec.signals and rec.signals[0].channels == ("C3",)
    assert {k for k, v in rec.markers.items() if v} == {"events"}
    res = write_report(xdf, tmp_path / "rep")
    files = _check_local(res.index)
    assert {"examples-spindle.png", "eta-spindle.png", "latency.png", "raster.png"} <= set(files)
    text = res.index.read_text(encoding="utf-8")
    for stream in ("engramloop.pulses", "engramloop.governor", "engramloop.forecasts"):
        assert f"{stream}): not in this recording" in text
    assert "Hypnogram (sleep stages in engramloop.truth): not in this recording" in text


REPLAY_TOML = """
name = "replay-edf"
[source]
kind = "file"
[detectors.spindle]
channels = ["C3"]
[detectors.so]
channels = ["C3"]
[detectors.ripple]
enabled = false
[policy]
target = "spindle"
condition = "sham"
[stimulators]
kinds = ["sham"]
"""


def test_engramloop_replay_of_an_edf_reports(tmp_path, capsys):
    """The real path: an EDF file -> `engramloop replay` (FileSource, detectors, policy,
    governor, recorder) -> `engramloop report`."""
    pyedflib = pytest.importorskip("pyedflib")
    from engramloop.cli import main

    edf = _n2_edf(pyedflib, tmp_path / "night.edf", repeats=4)   # 60 s of N2
    uv = np.tile(np.loadtxt(DATA / "data_N2_spindles_15sec_200Hz.txt"), 4)
    cfg = tmp_path / "replay.toml"
    cfg.write_text(REPLAY_TOML, encoding="utf-8")
    xdf = tmp_path / "replay.xdf"
    assert main(["replay", str(cfg), str(edf), "--speed", "max", "--record", str(xdf),
                 "--quiet"]) == 0
    rec = load_recording(xdf)
    assert rec.signals[0].channels == ("C3",) and rec.signals[0].rate_hz == 200.0
    # EDF microvolts arrive as volts
    _, x = rec.signals[0].window(0, -np.inf, np.inf)
    assert rec.signals[0].n == x.size
    assert np.allclose(x * 1e6, uv[:x.size], atol=0.02)
    spindles = [e for _, e in rec.markers["events"] if e.get("kind") == "spindle"]
    assert spindles
    assert main(["report", str(xdf), "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    index = tmp_path / "rep" / "index.html"
    files = _check_local(index)
    assert {"examples-spindle.png", "eta-spindle.png", "latency.png", "raster.png",
            "refusals.png"} <= set(files)
    text = index.read_text(encoding="utf-8")
    assert "engramloop.forecasts): not in this recording" in text
    assert "Both stim and sham (or yoked) pulses: not in this recording" in text


def test_report_cli(tmp_path, capsys):
    from engramloop.cli import main

    xdf = _edf_replay(tmp_path)
    assert main(["report", str(xdf), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").is_file()
    assert "index.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope.xdf"), "--out", str(tmp_path / "r2")]) == 2
    assert "nope.xdf not found" in capsys.readouterr().err
    bad = tmp_path / "bad.xdf"
    bad.write_bytes(b"not an xdf file")
    assert main(["report", str(bad), "--out", str(tmp_path / "r3")]) == 2
    assert "not a readable XDF file" in capsys.readouterr().err


def test_merge_pulses_accepts_wrapped_records():
    rows = [(1.0, {"pulse": {"pulse_id": 3, "target": "ripple", "condition": "sham",
                             "spec": {"modality": "electrical"}, "detect_s": 0.9,
                             "intended_s": 1.0, "deadline_s": 1.01},
                   "delivery": {"output": "sham", "status": "sent", "sent_s": 1.0001}}),
            (1.1, {"pulse_id": 4, "deliveries": [{"output": "pp", "status": "cancelled",
                                                  "reason": "deadline"}]})]
    p3, p4 = merge_pulses(rows)
    assert (p3.pulse_id, p3.target, p3.condition, p3.modality) == (3, "ripple", "sham",
                                                                    "electrical")
    assert p3.delivered and p3.fire_s == 1.0001
    assert not p4.delivered and p4.reasons == ["deadline"]


def test_truth_document_is_expanded():
    doc = {"format": "engramloop.truth/1", "t0_s": 100.0,
           "records": [["ripple", "CA1", 1.0, 1.02, 1.05, {}]],
           "segments": [[0.0, 10.0], [10.0, 20.0], ["N2", "N3"]], "memory": {"m0": 0.5}}
    rows = expand_truth([(120.0, doc), (5.0, {"note": "not an event"})])
    kinds = [d.get("kind") for _, d in rows]
    assert kinds == [None, "ripple", "stage", "stage", "memory"]
    assert rows[1][1]["onset_s"] == 101.0 and rows[3][1]["offset_s"] == 120.0
    assert json.dumps(rows)  # still plain JSON
    # as written by `engramloop sim`: events one by one plus the document as a string
    rows = expand_truth([(0.5, {"kind": "ripple", "onset_s": 101.0, "offset_s": 101.05}),
                         (120.0, {"kind": "truth_document", "truth": json.dumps(doc)})])
    assert [d["kind"] for _, d in rows] == ["ripple", "stage", "stage", "memory"]


def test_report_of_a_real_closed_loop_sim_run(tmp_path, capsys):
    """The whole system: simulator -> detectors -> policy -> governor -> recorder, then
    the report from the file alone agrees with the trial's in-memory scoring."""
    from engramloop.analysis.trial import run_sim
    from engramloop.controller.config import dump_config, load_config

    cfg = load_config(SHIPPED_DIR / "sim-so.toml")
    xdf = tmp_path / "so.xdf"
    _, score = run_sim(cfg, 20.0, speed="max", record=str(xdf), config_text=dump_config(cfg),
                       log=lambda msg: None)
    res = write_report(xdf, tmp_path / "rep")
    files = _check_local(res.index)
    assert {"raster.png", "examples-ripple.png", "eta-so.png", "eta-spindle.png",
            "phase-so_upstate.png", "latency.png"} <= set(files)
    text = res.index.read_text(encoding="utf-8")
    for kind, m in score["detection"].items():
        row = (f"<td>{kind}</td><td>{m['n_true']}</td><td>{m['n_detected']}</td>"
               f"<td>{m['hits']}</td>")
        assert row in text, row
    # and `engramloop score` on the same file: one scoring module, the same matches
    from engramloop.cli import main

    assert main(["score", str(xdf), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert score["detection"]
    for kind, m in score["detection"].items():
        s = scored[kind]
        assert (s["n_truth"], s["n_detected"], s["true_positives"]) == (
            m["n_true"], m["n_detected"], m["hits"]), kind
        assert s["f1"] == pytest.approx(m["f1"], nan_ok=True)
    pulses = merge_pulses(load_recording(xdf).markers["pulses"])
    n = sum(p.delivered and p.target == "so_upstate" for p in pulses)
    # sim-so.toml uses the two-click protocol: first and second clicks are shown apart
    counts = [int(m) for m in re.findall(r"<td>so_upstate</td><td>stim, (?:first|second) "
                                         r"click</td><td>Fz</td><td>0.5-1.25</td><td>(\d+)</td>",
                                         text)]
    assert n > 0 and len(counts) == 2 and sum(counts) == n


def test_labrecorder_style_xdf_reports(tmp_path):
    """An XDF not written by engramloop (LabRecorder-style: float32 microvolts, a marker
    stream of plain strings, no engramloop config) still gives a report."""
    from engramloop.recording import xdf as X

    rng = np.random.default_rng(5)
    n, fs = 3000, 250.0
    t = 50.0 + np.arange(n) / fs
    x = rng.normal(0, 10, (n, 2)).astype(np.float32)
    x[:, 1] += (40 * np.sin(2 * np.pi * 13 * t) * (np.abs(t - 55.0) < 0.5)).astype(np.float32)
    data = (X.file_header()
            + X.stream_header(1, name="Amp", stream_type="EEG", channels=["Fz", "Cz"],
                              rate_hz=fs, channel_format="float32", units="microvolts")
            + X.stream_header(2, name="Tasks", stream_type="Markers", channels=["m"],
                              rate_hz=0.0, channel_format="string")
            + X.numeric_samples(1, x, t, dtype="<f4")
            + X.string_samples(2, ["lights off", "lights on"], [51.0, 61.0])
            + X.stream_footer(1, first_timestamp=t[0], last_timestamp=t[-1], sample_count=n)
            + X.stream_footer(2, first_timestamp=51.0, last_timestamp=61.0, sample_count=2))
    path = tmp_path / "lab.xdf"
    path.write_bytes(data)
    rec = load_recording(path)
    assert rec.signals[0].channels == ("Fz", "Cz") and rec.signals[0].units == "microvolts"
    assert rec.markers["Tasks"] == [(51.0, {"text": "lights off"}), (61.0, {"text": "lights on"})]
    res = write_report(path, tmp_path / "rep")
    text = res.index.read_text(encoding="utf-8")
    assert "Detections (stream engramloop.events): not in this recording" in text
    assert "<td>Amp</td><td>signal</td><td>2</td><td>Fz, Cz</td><td>250</td><td>3000</td>" in text
