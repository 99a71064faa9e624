"""The recording module: one schema (versioned in the file header), one reader (our own
streaming XDF reader), a markers-only read and footers read without decoding samples --
checked against pyxdf reading the whole file."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from engramloop.controller import recorder
from engramloop.controller.recorder import Recorder
from engramloop.core.chunk import Chunk
from engramloop.recording import reader, schema, xdf

SRC = Path(__file__).resolve().parents[2] / "src" / "engramloop"


def _record(path: Path, n_chunks: int = 30) -> list[Chunk]:
    rng = np.random.default_rng(0)
    chunks = []
    with Recorder(path, 'name = "t"\n', flush_interval_s=0.05) as rec:
        for i in range(n_chunks):
            t = 100.0 + (i * 50 + np.arange(50)) / 500.0
            c = Chunk(rng.normal(size=(50, 2)) * 1e-5, t, 500.0, ("C3", "C4"), float(t[-1]))
            rec.write_chunk(c)
            rec.write_marker("events", float(t[0]), {"kind": "spindle", "i": i})
            chunks.append(c)
    return chunks


def test_schema_version_and_config_are_in_the_header(tmp_path):
    path = tmp_path / "r.xdf"
    _record(path, 3)
    got = reader.read(path)
    assert got.ours and got.schema_version == schema.SCHEMA_VERSION
    assert got.config_text == 'name = "t"\n'
    _, header = pyxdf.load_xdf(str(path))
    assert header["info"]["engramloop"][0]["schema_version"] == [str(schema.SCHEMA_VERSION)]


def test_a_file_without_the_version_reads_as_version_1(tmp_path):
    path = tmp_path / "old.xdf"
    with open(path, "wb") as f:
        f.write(xdf.file_header("<engramloop><config>x = 1</config></engramloop>"))
        f.write(xdf.stream_header(1, name=schema.RAW, stream_type="EEG", channels=["a"],
                                  rate_hz=10.0, channel_format="double64", units="V"))
        f.write(xdf.numeric_samples(1, np.ones((5, 1)), np.arange(5) / 10.0))
    got = reader.read(path)
    assert got.ours and got.schema_version == 1 and got.config_text == "x = 1"
    np.testing.assert_array_equal(got.signals[0].x, np.ones((5, 1)))


def test_full_read_equals_pyxdf_and_markers_only_skips_signals(tmp_path):
    path = tmp_path / "r.xdf"
    chunks = _record(path)
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                dejitter_timestamps=False)
    raw = next(s for s in streams if s["info"]["name"][0] == schema.RAW)
    got = reader.read(path)
    (sig,) = got.signals
    np.testing.assert_array_equal(sig.x, raw["time_series"])
    np.testing.assert_array_equal(sig.t, raw["time_stamps"])
    np.testing.assert_array_equal(sig.x, np.concatenate([c.samples for c in chunks]))
    assert sig.channels == ("C3", "C4") and sig.rate_hz == 500.0
    assert [obj["i"] for _, obj in got.markers["events"]] == list(range(30))
    light = reader.read(path, signals=False)
    assert light.signals == [] and light.markers["events"] == got.markers["events"]
    assert set(light.markers) >= set(schema.MARKER_STREAMS)


def test_footers_give_each_streams_span_without_decoding(tmp_path):
    path = tmp_path / "r.xdf"
    chunks = _record(path)
    sums = {s.name: s for s in reader.footers(path)}
    raw = sums[schema.RAW]
    t = np.concatenate([c.timestamps for c in chunks])
    assert raw.has_footer and raw.sample_count == t.size
    assert raw.first_timestamp == t[0] and raw.last_timestamp == t[-1]
    assert sums["engramloop.events"].sample_count == 30
    # a run killed before its footers: the headers are still listed
    cut = tmp_path / "cut.xdf"
    data = path.read_bytes()
    cut.write_bytes(data[:data.rfind(b"<first_timestamp>") - 40])
    assert any(not s.has_footer for s in reader.footers(cut))


def test_one_reader_and_one_list_of_stream_names():
    """The product reads XDF with its own reader only (pyxdf is the tests' reference);
    no module but the schema spells the marker-stream list."""
    callers = [p for p in SRC.rglob("*.py")
               if re.search(r"pyxdf\.load_xdf\(|import pyxdf", p.read_text(encoding="utf-8"))]
    assert callers == []
    spelled = [p for p in SRC.rglob("*.py")
               if re.search(r"\(\s*\"events\",\s*\"pulses\"", p.read_text(encoding="utf-8"))]
    assert spelled == [SRC / "recording" / "schema.py"]
    assert recorder.MARKER_STREAMS is schema.MARKER_STREAMS


def test_unreadable_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.xdf"
    bad.write_bytes(b"hello")
    with pytest.raises(reader.RecordingReadError, match="not a readable XDF file"):
        reader.read(bad)
    with pytest.raises(reader.RecordingReadError, match="no such recording"):
        reader.read(tmp_path / "none.xdf")
