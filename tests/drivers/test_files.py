"""FileSource: EDF/BDF via pyedflib, XDF (ours and LabRecorder-style), BrainFlow CSV, .npz;
pacing; and clear errors for truncated or malformed files."""
from __future__ import annotations

import warnings

import numpy as np
import pyedflib
import pytest

from engramloop.controller.build_source import make_source
from engramloop.controller.config import loads_config
from engramloop.controller.recorder import Recorder
from engramloop.core.chunk import Chunk, EndOfStream, SourceError
from engramloop.core.clock import SimClock
from engramloop.drivers.files import FileSource, load_file
from engramloop.recording import xdf

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")


def _drain(src, timeout=1.0):
    out = []
    src.start()
    while True:
        try:
            c = src.read(timeout)
        except EndOfStream:
            return out
        if c is not None:
            out.append(c)


def _write_edf(path, sig_uv, rate=200, dims=("uV", "uV"), labels=("C3", "Cz")):
    headers = [{"label": lab, "dimension": d, "sample_frequency": rate,
                "physical_max": 500.0, "physical_min": -500.0,
                "digital_max": 32767, "digital_min": -32768, "transducer": "", "prefilter": ""}
               for lab, d in zip(labels, dims, strict=True)]
    signals = [np.ascontiguousarray(s) for s in sig_uv.T]
    assert pyedflib.highlevel.write_edf(str(path), signals, headers)


@pytest.mark.parametrize("ext", ["edf", "bdf"])
def test_edf_bdf_round_trip_in_volts(tmp_path, ext):
    rng = np.random.default_rng(1)
    sig = rng.normal(0, 40, (2000, 2)).clip(-400, 400)  # microvolts
    sig[:, 1] /= 1000.0  # second channel stored in millivolts
    path = tmp_path / f"rec.{ext}"
    _write_edf(path, sig, dims=("uV", "mV"))
    # independent reference: pyedflib's own reader, physical units
    ref = pyedflib.highlevel.read_edf(str(path))[0].T
    src = FileSource(path, speed="max", chunk_samples=64)
    assert src.channels == ("C3", "Cz") and src.rate_hz == 200.0
    x = np.concatenate([c.samples for c in _drain(src)])
    np.testing.assert_allclose(x[:, 0], ref[:, 0] * 1e-6, rtol=1e-12)
    np.testing.assert_allclose(x[:, 1], ref[:, 1] * 1e-3, rtol=1e-12)
    step = 1000.0 / 65535 * 1e-6  # quantisation: 1000 uV over the 16-bit digital range
    np.testing.assert_allclose(x[:, 0], sig[:, 0] * 1e-6, atol=step)


def test_truncated_edf_names_file_and_offset(tmp_path):
    path = tmp_path / "cut.edf"
    _write_edf(path, np.zeros((2000, 2)))
    data = path.read_bytes()
    path.write_bytes(data[:-700])
    with pytest.raises(SourceError, match=rf"cut.edf: truncated EDF file: .*byte offset "
                                          rf"{len(data) - 700}"):
        FileSource(path)
    path.write_bytes(data[:100])
    with pytest.raises(SourceError, match=r"cut.edf: truncated EDF header.*offset 100"):
        FileSource(path)


def _record(path, n_chunks=30, n=20, rate=250.0, gap_at=None):
    chunks = []
    t0 = 1000.0
    k = 0
    for i in range(n_chunks):
        if gap_at is not None and i == gap_at:
            k += 50  # 50 samples missing
        t = t0 + (k + np.arange(n)) / rate
        x = np.ascontiguousarray(np.sin(t[:, None] * [1.0, 2.0]) * 1e-5)
        chunks.append(Chunk(x, t, rate, ("C3", "Cz"), float(t[-1])))
        k += n
    with Recorder(path, "name='t'", flush_interval_s=0.05) as rec:
        for c in chunks:
            rec.write_chunk(c)
        rec.write_marker("events", 1000.1, {"kind": "so"})
    return chunks


def test_xdf_replay_is_bit_identical_and_marks_gaps(tmp_path):
    path = tmp_path / "ours.xdf"
    chunks = _record(path, gap_at=10)
    clock = SimClock(50.0)
    src = FileSource(path, speed="max", clock=clock, chunk_samples=7)
    out = _drain(src)
    x = np.concatenate([c.samples for c in out])
    np.testing.assert_array_equal(x, np.concatenate([c.samples for c in chunks]))
    t = np.concatenate([c.timestamps for c in out])
    want = np.concatenate([c.timestamps for c in chunks]) - 1000.0 + 50.0
    np.testing.assert_allclose(t, want, atol=1e-9)
    assert clock.now() == pytest.approx(want[-1])
    gaps = [c for c in out if c.gap_before]
    assert len(gaps) == 1 and gaps[0].timestamps[0] == pytest.approx(want[200])
    assert src.data.markers["events"] == [(pytest.approx(1000.1), {"kind": "so"})]


def test_xdf_truncated_and_malformed(tmp_path):
    path = tmp_path / "ours.xdf"
    _record(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(data[:-30])
    with pytest.raises(SourceError, match=r"cut.xdf: truncated XDF file: chunk at byte offset "
                                          r"\d+ needs \d+ bytes"):
        FileSource(cut)
    bad = tmp_path / "bad.xdf"
    bad.write_bytes(b"XDF:" + bytes([3]) + b"\x00" * 10)
    with pytest.raises(SourceError, match=r"bad.xdf: malformed XDF chunk at byte offset 4"):
        FileSource(bad)
    notxdf = tmp_path / "n.xdf"
    notxdf.write_bytes(b"hello world")
    with pytest.raises(SourceError, match="not an XDF file"):
        FileSource(notxdf)


def test_labrecorder_style_xdf_microvolts_float32_clock_offsets(tmp_path):
    """A file laid out as LabRecorder writes it (float32 samples in microvolts, a marker
    stream, clock offsets, boundary chunks, footers), built with our XDF primitives."""
    path = tmp_path / "lab.xdf"
    rate, n = 500.0, 1000
    x = np.random.default_rng(3).normal(0, 30, (n, 3)).astype(np.float32)
    t = 20.0 + np.arange(n) / rate
    offset = 0.25  # remote clock lags the recorder's by 0.25 s
    with open(path, "wb") as f:
        f.write(xdf.file_header())
        f.write(xdf.stream_header(1, name="Markers", stream_type="Markers", channels=["m"],
                                  rate_hz=0, channel_format="string"))
        f.write(xdf.stream_header(2, name="BioSemi", stream_type="EEG",
                                  channels=["Fz", "Cz", "Pz"], rate_hz=rate,
                                  channel_format="float32", units="microvolts"))
        f.write(xdf.clock_offset(2, 19.0, offset))
        for i in range(0, n, 100):
            f.write(xdf.numeric_samples(2, x[i:i + 100], t[i:i + 100], dtype="<f4"))
        f.write(xdf.string_samples(1, ["start"], [20.5]))
        f.write(xdf.boundary())
        f.write(xdf.clock_offset(2, 23.0, offset))
        f.write(xdf.stream_footer(2, first_timestamp=t[0], last_timestamp=t[-1],
                                  sample_count=n, offsets=[(19.0, offset), (23.0, offset)]))
    src = FileSource(path, speed="max", clock=SimClock(0.0), chunk_samples=100)
    assert src.channels == ("Fz", "Cz", "Pz") and src.rate_hz == rate
    np.testing.assert_allclose(src.data.timestamps, t + offset, atol=1e-6)
    out = _drain(src)
    np.testing.assert_allclose(np.concatenate([c.samples for c in out]),
                               x.astype(np.float64) * 1e-6, rtol=1e-7)
    with pytest.raises(SourceError, match="no stream named 'EEG'; streams: Markers, BioSemi"):
        FileSource(path, stream="EEG")


def test_brainflow_csv(tmp_path):
    from brainflow.board_shim import BoardShim
    from brainflow.data_filter import DataFilter

    descr = BoardShim.get_board_descr(0)  # Cyton
    n = 300
    data = np.zeros((descr["num_rows"], n))
    rng = np.random.default_rng(5)
    data[descr["eeg_channels"]] = rng.normal(0, 20, (8, n))  # microvolts, as BrainFlow writes
    data[descr["package_num_channel"]] = np.arange(n) % 256
    # BrainFlow stamps packets as they are parsed: bunches of 4 (16 ms FTDI latency)
    data[descr["timestamp_channel"]] = 1.7e9 + (np.arange(n) // 4 * 4 + 3) / 250.0
    data = np.ascontiguousarray(np.delete(data, np.arange(100, 110), axis=1))  # 10 lost
    path = tmp_path / "bf.csv"
    DataFilter.write_file(data, str(path), "w")
    src = FileSource(path, speed="max", board="cyton", channels=("O2", "Fp1"))
    out = _drain(src)
    x = np.concatenate([c.samples for c in out])
    np.testing.assert_allclose(x, data[[8, 1]].T * 1e-6, rtol=1e-5, atol=1e-12)
    # the loss is found from the packet counter, not from the bunched stamps
    assert [c.first_index for c in out if c.gap_before] == [100]
    with pytest.raises(SourceError, match="set source.file.board"):
        FileSource(path)
    lines = path.read_text().splitlines()
    lines[7] = lines[7].replace("\t", "\tx", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"bf.csv: malformed BrainFlow CSV at line 8, "
                                          r"column 2 \(byte offset \d+\)"):
        FileSource(path, board="cyton")


def test_npz_and_speed_pacing(tmp_path):
    path = tmp_path / "engramloop.sim.npz"
    x = np.random.default_rng(2).normal(0, 1e-5, (400, 2))
    np.savez(path, samples=x, timestamps=np.arange(400) / 2000.0, rate_hz=2000.0,
             channels=np.array(["CA1", "C3"]))
    src = FileSource(path, speed=1000.0, chunk_samples=50)
    out = _drain(src)
    np.testing.assert_array_equal(np.concatenate([c.samples for c in out]), x)
    for c in out:  # never handed out before its last sample is due on the source clock
        assert c.arrival_s >= c.timestamps[-1]
    with pytest.raises(SourceError, match="no channel.*Cz.*has CA1, C3"):
        FileSource(path, channels=("Cz",))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(SourceError, match="bad.npz: malformed .npz"):
        load_file(bad)


def test_make_source_file(tmp_path):
    path = tmp_path / "ours.xdf"
    _record(path)
    cfg = loads_config(f'[source]\nkind = "file"\nchunk_samples = 25\n'
                       f'[source.file]\npath = "{path}"\nspeed = "max"\n')
    src = make_source(cfg, channels=["Cz"])
    assert src.channels == ("Cz",) and isinstance(src.clock, SimClock)
    c = _drain(src)[0]
    assert c.n_samples == 25
    wav = tmp_path / "x.wav"
    wav.write_text("")
    with pytest.raises(SourceError, match="x.wav: unknown file type '.wav'"):
        make_source(cfg, path=str(wav), speed=1)
