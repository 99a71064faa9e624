"""Issue 18 point 10: files users have. OpenBCI GUI recordings (OpenBCI-RAW-*.txt),
EDF+ annotations (into the recording and as --truth), EDF+D records at their real times,
and LSL streams without unit metadata (refused unless the config gives the unit)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from engramloop.core.chunk import SourceError
from engramloop.drivers.lsl_source import LslSource
from engramloop.drivers.sources import LslSettings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")


# ------------------------------------------------------------------ LSL units
def test_lsl_stream_without_units_is_refused_unless_configured() -> None:
    pytest.importorskip("pylsl")
    from test_lsl import Outlet, _name

    name = _name()
    out = Outlet(name, unit="")                     # a real outlet declaring no unit
    try:
        src = LslSource(LslSettings(name=name, resolve_timeout_s=5.0))
        with pytest.raises(SourceError, match=r"channel C3 declares no unit; set "
                                              r"\[source.lsl\] units = \"uV\""):
            src.start()
        src = LslSource(LslSettings(name=name, resolve_timeout_s=5.0, units="uV"))
        src.start()
        try:
            c = None
            for _ in range(200):
                c = src.read(0.5)
                if c is not None and c.n_samples:
                    break
        finally:
            src.stop()
    finally:
        out.kill()
    assert c is not None and c.channels == ("C3", "Cz")
    # the outlet counts up on C3 and down on Cz, in the unit we declared (uV)
    np.testing.assert_allclose(c.samples[:, 1], -c.samples[:, 0])
    np.testing.assert_allclose(np.diff(c.samples[:, 0]), 1e-6, rtol=1e-6)


# ------------------------------------------------------------------ OpenBCI GUI
def _openbci_v5(path, eeg_uv: np.ndarray, *, drop=(), t0=1_700_000_000.0):
    """An OpenBCI GUI v5 recording of a Cyton, written from the documented format (OpenBCI
    docs "GUI data format"; the GUI's DataWriterODF): %-header, a column line, one sample
    per line; EXG in microvolts, Sample Index a wrapping 0-255 counter, Timestamp Unix
    seconds stamped per packet batch by the host (here every 4 samples, as a 16 ms USB
    latency timer bunches them), Marker Channel, a formatted time last."""
    import datetime as dt

    cols = (["Sample Index"] + [f"EXG Channel {i}" for i in range(8)]
            + [f"Accel Channel {i}" for i in range(3)] + ["Not Used"]
            + [f"Digital Channel {i} (D{p})" for i, p in enumerate((11, 12, 13, 17))]
            + ["Not Used", "Digital Channel 4 (D18)"]
            + [f"Analog Channel {i}" for i in range(3)]
            + ["Timestamp", "Marker Channel", "Timestamp (Formatted)"])
    lines = ["%OpenBCI Raw EXG Data", "%Number of channels = 8", "%Sample Rate = 250 Hz",
             "%Board = OpenBCI_GUI$BoardCytonSerial", ", ".join(cols)]
    drop = set(drop)
    for k in range(eeg_uv.shape[0]):
        if k in drop:
            continue
        ts = t0 + (k // 4 * 4 + 3) / 250.0 + 0.0021      # stamped when the batch arrived
        when = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        row = ([f"{k % 256:.1f}"] + [f"{v:.6f}" for v in eeg_uv[k]] + ["0.0"] * 3
               + ["0.0"] * 7 + ["0.0"] * 3 + [f"{ts:.6f}", "0.0", when[:-3]])
        lines.append(", ".join(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_openbci_gui_v5_recording_reads_volts_cyton_names_and_gaps(tmp_path) -> None:
    from engramloop.drivers.files import FileSource

    rng = np.random.default_rng(4)
    eeg = rng.normal(0, 30, (1500, 8))                     # microvolts
    drop = list(range(700, 710))                          # 10 packets lost on the radio
    f = _openbci_v5(tmp_path / "OpenBCI-RAW-2024-01-01_22-00-00.txt", eeg, drop=drop)
    src = FileSource(f, speed="max", chunk_samples=32)
    # BrainFlow's Cyton names, as a live brainflow source gives them
    assert src.channels == ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")
    assert src.rate_hz == 250.0
    kept = [k for k in range(1500) if k not in set(drop)]
    np.testing.assert_allclose(src.data.samples, eeg[kept] * 1e-6, rtol=1e-9, atol=1e-12)
    assert list(src._gaps) == [700]                       # the sample after the loss


def test_openbci_gui_v4_recording_without_column_line(tmp_path) -> None:
    """Older GUIs: no column line, the header describes the columns; times from the
    counter, so a lost packet is a real gap in time."""
    from engramloop.drivers.files import load_file

    eeg = np.random.default_rng(5).normal(0, 30, (600, 8))
    lines = ["%OpenBCI Raw EEG Data", "%Number of channels = 8", "%Sample Rate = 250.0 Hz",
             "%First Column = SampleIndex", "%Last Column = Timestamp",
             "%Other Columns = EEG data in microvolts followed by Accel Data (in G) "
             "interleaved with Aux Data"]
    for k in range(600):
        if k in (300, 301, 302):
            continue
        lines.append(", ".join([str(k % 256)] + [f"{v:.2f}" for v in eeg[k]]
                               + ["0.000", "0.000", "0.000", "15:31:23.878"]))
    f = tmp_path / "OpenBCI-RAW-old.txt"
    f.write_text("\n".join(lines) + "\n")
    d = load_file(f)
    assert d.channels == tuple(f"EXG Channel {i}" for i in range(8))
    np.testing.assert_allclose(d.samples[:300], eeg[:300] * 1e-6, atol=0.006e-6)
    assert d.timestamps[300] - d.timestamps[299] == pytest.approx(4 / 250.0)
    assert list(d.gaps) == [300]


def test_openbci_gui_recording_replays_through_the_cli(tmp_path, capsys) -> None:
    """Real N2 EEG (YASA example) resampled to the Cyton's 250 Hz on C3: the replay finds
    the spindles that the same detector finds on the array (offline reference)."""
    from scipy.signal import resample_poly
    from shared_data import DATA

    from engramloop.analysis.scoring import replay
    from engramloop.cli import main
    from engramloop.decoders.spindle import SpindleDetector, SpindleSettings

    x = np.loadtxt(DATA / "data_N2_spindles_15sec_200Hz.txt")
    c3 = resample_poly(np.tile(x, 2), 5, 4)               # 30 s at 250 Hz, microvolts
    eeg = np.zeros((c3.size, 8))
    eeg[:, 2] = c3
    f = _openbci_v5(tmp_path / "OpenBCI-RAW-n2.txt", eeg)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[detectors.ripple]\nenabled = false\n[detectors.so]\nenabled = false\n'
                   '[detectors.spindle]\nchannels = ["C3"]\n[policy]\ntarget = "spindle"\n')
    out = tmp_path / "r.xdf"
    assert main(["replay", str(cfg), str(f), "--speed", "max", "--record", str(out),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    ref = replay([SpindleDetector(SpindleSettings(channels=("C3",)))],
                 np.round(c3, 6)[:, None] * 1e-6, np.arange(c3.size) / 250.0, 250.0,
                 ("C3",), 10)
    n_ref = sum(e.kind == "spindle" for e in ref)
    assert n_ref > 0 and f"'spindle': {n_ref}" in text


# ------------------------------------------------------------------ EDF+
def _edf_plus(path, signals_uv, rate, labels, annotations, record_s=1.0):
    """An EDF+C file written by pyedflib (the counterpart), microvolts, 1 s records."""
    import pyedflib
    from pyedflib import highlevel

    hdr = [highlevel.make_signal_header(lab, dimension="uV", sample_frequency=rate,
                                        physical_min=-500, physical_max=500)
           for lab in labels]
    h = highlevel.make_header()
    h["annotations"] = [list(a) for a in annotations]
    assert highlevel.write_edf(str(path), [np.ascontiguousarray(s) for s in signals_uv],
                               hdr, h, file_type=pyedflib.FILETYPE_EDFPLUS)
    return path


def _make_discontinuous(src, dst, *, from_record: int, jump_s: float):
    """EDF+D from an EDF+C file (pyedflib cannot write EDF+D): the reserved field says
    EDF+D and the time-keeping TAL of every record from ``from_record`` on is moved
    ``jump_s`` later (EDF+ spec: a record's onset is its first TAL). Only records without
    other annotations are rewritten."""
    from engramloop.drivers.edf_plus import read_header

    b = bytearray(open(src, "rb").read())
    b[192:197] = b"EDF+D"
    h = read_header(src)
    rb = sum(h.per_record) * 2
    s = h.annotation_signals[0]
    off = sum(h.per_record[:s]) * 2
    size = h.per_record[s] * 2
    for r in range(from_record, h.n_records):
        slot = h.header_bytes + r * rb + off
        tal = f"+{r + jump_s:g}\x14\x14\x00".encode()
        b[slot:slot + size] = tal + b"\x00" * (size - len(tal))
    open(dst, "wb").write(bytes(b))
    return dst


def test_edf_plus_annotations_read_and_recorded(tmp_path, capsys) -> None:
    import pyedflib
    import pyxdf

    from engramloop.cli import main
    from engramloop.drivers.edf_plus import read_header, read_plus
    from engramloop.drivers.files import load_file

    rng = np.random.default_rng(2)
    sig = rng.normal(0, 20, (2, 3000))
    notes = [(1.5, 0.8, "spindle"), (7.25, -1, "Sleep stage 2"), (12.0, 1.2, "Spindle")]
    f = _edf_plus(tmp_path / "a.edf", sig, 100, ["C3", "Cz"], notes)
    d = load_file(f)
    ann_t, ann = d.markers["annotations"]
    r = pyedflib.EdfReader(str(f))                 # independent reader of the same file
    on, du, tx = r.readAnnotations()
    r.close()
    np.testing.assert_allclose(ann_t, on)
    assert [a["text"] for a in ann] == list(tx)
    # our own TAL parser (used for EDF+D) agrees with pyedflib's on this file
    _, mine = read_plus(f, read_header(f))
    assert [(o, t) for o, _, t in mine] == [(float(o), str(t))
                                            for o, t in zip(on, tx, strict=True)]
    # replayed with --record: the annotations are a marker stream at their file times
    cfg = tmp_path / "c.toml"
    cfg.write_text('[detectors.ripple]\nenabled = false\n[detectors.so]\nchannels = ["C3"]\n'
                   '[detectors.spindle]\nchannels = ["Cz"]\n[policy]\ntarget = "spindle"\n')
    out = tmp_path / "a.xdf"
    assert main(["replay", str(cfg), str(f), "--speed", "max", "--record", str(out),
                 "--quiet"]) == 0
    capsys.readouterr()
    streams, _ = pyxdf.load_xdf(str(out), dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    t0 = by["engramloop.raw"]["time_stamps"][0]
    import json
    rec = [json.loads(v[0]) for v in by["engramloop.annotations"]["time_series"]]
    assert [x["text"] for x in rec] == ["spindle", "Sleep stage 2", "Spindle"]
    np.testing.assert_allclose(by["engramloop.annotations"]["time_stamps"] - t0,
                               [1.5, 7.25, 12.0], atol=1e-9)
    # ... and the Python API hands them on (to MNE and EDF+ export), durations included
    from engramloop import read_recording

    got = read_recording(out).annotations
    rows = [(r["onset_s"] - t0, r["duration_s"], r["description"])
            for r in (got.to_dict("records") if hasattr(got, "to_dict") else
                      [dict(zip(got.dtype.names, x, strict=True)) for x in got])
            if not str(r["description"]).startswith(("detect/", "pulse/"))]
    assert [(round(o, 6), d, t) for o, d, t in rows] == [
        (1.5, pytest.approx(0.8), "spindle"), (7.25, 0.0, "Sleep stage 2"),
        (12.0, pytest.approx(1.2), "Spindle")]


def test_edf_plus_d_records_at_their_real_times(tmp_path, capsys) -> None:
    import pyedflib

    from engramloop.drivers.files import FileSource

    rng = np.random.default_rng(3)
    sig = rng.normal(0, 20, (2, 2000))
    c = _edf_plus(tmp_path / "c.edf", sig, 100, ["C3", "Cz"], [(0.5, 0.5, "spindle")])
    d = _make_discontinuous(c, tmp_path / "d.edf", from_record=10, jump_s=5.0)
    with pytest.raises(OSError, match="discontinuous"):
        pyedflib.EdfReader(str(d))                   # the counterpart refuses EDF+D
    ref = pyedflib.highlevel.read_edf(str(c))[0].T   # same samples, read from EDF+C
    src = FileSource(d, speed="max", chunk_samples=64)
    np.testing.assert_allclose(src.data.samples, ref * 1e-6, rtol=1e-12, atol=1e-15)
    t = src.data.timestamps
    np.testing.assert_allclose(t[:1000], np.arange(1000) / 100)
    np.testing.assert_allclose(t[1000:], 15.0 + np.arange(1000) / 100)  # 5 s later
    assert list(src._gaps) == [1000]                 # the discontinuity is a gap
    assert src.data.markers["annotations"][1][0]["text"] == "spindle"
    chunks = []
    src.start()
    while True:
        try:
            ch = src.read(1.0)
        except Exception:
            break
        if ch is not None:
            chunks.append(ch)
    assert [ch.first_index for ch in chunks if ch.gap_before] == [1000]


def test_edf_plus_annotations_as_truth_match_the_csv(tmp_path, capsys) -> None:
    """Real sleep EEG (DREAMS excerpt 1, C3-A1, 100 Hz) with expert 1's spindles written
    as EDF+ annotations: a sweep scored against them equals one scored against the
    expert's CSV."""
    import json

    import pyedflib
    from shared_data import DATA

    from engramloop.cli import main

    dreams = DATA / "dreams_dev"
    r = pyedflib.EdfReader(str(dreams / "excerpt1.edf"))
    x = r.readSignal(0)[:300 * 100]
    r.close()
    rows = [ln.split(",") for ln in (dreams / "excerpt1_expert1.csv").read_text().split()[1:]]
    spindles = [(float(a), float(b), "Spindle") for a, b in rows if float(a) < 299]
    csv = tmp_path / "truth.csv"
    csv.write_text("onset_s,duration_s\n" + "".join(f"{a},{b}\n" for a, b, _ in spindles))
    f = _edf_plus(tmp_path / "n2.edf", [x], 100, ["C3-A1"],
                  spindles + [(10.0, 30.0, "Sleep stage 2")])
    cfg = tmp_path / "c.toml"
    cfg.write_text('[detectors.ripple]\nenabled = false\n[detectors.so]\nenabled = false\n'
                   '[detectors.spindle]\nchannels = ["C3-A1"]\n[policy]\ntarget = "spindle"\n')
    scores = []
    for truth in (csv, f, None):
        argv = ["replay", str(cfg), str(f), "--sweep", "detectors.spindle.threshold_sd=3",
                "--json", "--quiet"] + (["--truth", str(truth)] if truth else [])
        assert main(argv) == 0
        scores.append(json.loads(capsys.readouterr().out.splitlines()[-1])["score"])
    assert scores[0] is not None and scores[0] == scores[1] == scores[2]


def test_xdf_stream_without_units_is_refused_unless_configured(tmp_path) -> None:
    """A LabRecorder file of a unit-less LSL stream is not silently read as microvolts
    either (the same rule as a live stream); source.file.units says what it is."""
    from engramloop.drivers.files import FileSource
    from engramloop.recording import xdf

    path = tmp_path / "lab.xdf"
    x = np.random.default_rng(3).normal(0, 30, (400, 2)).astype(np.float32)
    t = 5.0 + np.arange(400) / 200.0
    with open(path, "wb") as f:
        f.write(xdf.file_header())
        f.write(xdf.stream_header(1, name="Amp", stream_type="EEG", channels=["C3", "Cz"],
                                  rate_hz=200.0, channel_format="float32", units=""))
        f.write(xdf.numeric_samples(1, x, t, dtype="<f4"))
    with pytest.raises(SourceError, match=r"stream 'Amp' channel 'C3' declares no unit; "
                                          r"set source.file.units"):
        FileSource(path, speed="max")
    src = FileSource(path, speed="max", units="uV")
    np.testing.assert_allclose(src.data.samples, x.astype(np.float64) * 1e-6, rtol=1e-7)
