"""`score` (and a sweep's truth lookup, which shares ``xdf_streams``) read the marker
streams and the signal's span without decoding the signal: from the footers, or, in a file
cut off before them, from the first and last signal chunk only. Checked against pyxdf
reading the whole file."""
from __future__ import annotations

import numpy as np
import pytest
import pyxdf

from engramloop.analysis.truth_files import xdf_streams
from engramloop.controller.recorder import Recorder
from engramloop.core.chunk import Chunk
from engramloop.recording import xdf_blocks


def _record(path, n=30):
    rng = np.random.default_rng(1)
    with Recorder(path, 'name = "t"\n', flush_interval_s=0.01) as rec:
        for i in range(n):
            t = 50.0 + (i * 100 + np.arange(100)) / 1000.0
            rec.write_chunk(Chunk(rng.normal(size=(100, 3)) * 1e-5, t, 1000.0,
                                  ("C3", "C4", "Pz"), float(t[-1])))
            rec.write_marker("events", float(t[50]), {"kind": "spindle", "i": i,
                                                      "onset_s": float(t[0]),
                                                      "detect_s": float(t[50])})
            rec.write_marker("truth", float(t[0]), {"kind": "spindle", "onset_s": float(t[0]),
                                                     "offset_s": float(t[40])})


def _first_footer(data: bytes) -> int:
    """Byte offset of the first StreamFooter chunk (tag 6), by the XDF 1.0 layout."""
    off = 4
    while True:
        nb = data[off]
        length = int.from_bytes(data[off + 1:off + 1 + nb], "little")
        if int.from_bytes(data[off + 1 + nb:off + 3 + nb], "little") == 6:
            return off
        off += 1 + nb + length


def _decoded(monkeypatch):
    calls = []
    real = xdf_blocks._records

    def counting(raw, want, *a):
        out = real(raw, want, *a)
        calls.append(out[3])
        return out

    monkeypatch.setattr(xdf_blocks, "_records", counting)
    return calls


def test_score_reads_markers_and_the_span_from_footers_without_samples(tmp_path, monkeypatch):
    path = tmp_path / "r.xdf"
    _record(path)
    ref = {s["info"]["name"][0]: s for s in pyxdf.load_xdf(
        str(path), synchronize_clocks=False, dejitter_timestamps=False)[0]}
    calls = _decoded(monkeypatch)
    markers, duration, t0 = xdf_streams(path)
    assert calls == []                                   # no signal sample decoded
    t = ref["engramloop.raw"]["time_stamps"]
    # the footer holds the true last time; a reader deduces an omitted stamp within the
    # recorder's tolerance (1 % of a sample period) of it
    assert t0 == t[0] and duration == pytest.approx(t[-1] - t[0], abs=1e-5)
    assert [d["i"] for _, d in markers["events"]] == list(range(30))
    assert len(markers["truth"]) == len(ref["engramloop.truth"]["time_stamps"])


def test_a_file_cut_before_its_footers_decodes_only_its_first_and_last_chunk(
        tmp_path, monkeypatch):
    # written chunk by chunk with the recorder's codec (30 samples chunks), then cut
    # where a killed run ends: before the footers
    from engramloop.recording import xdf

    rng = np.random.default_rng(2)
    parts = [xdf.file_header("<engramloop><schema_version>1</schema_version></engramloop>"),
             xdf.stream_header(1, name="engramloop.raw", stream_type="EEG",
                               channels=["C3", "C4"], rate_hz=1000.0,
                               channel_format="double64", units="V"),
             xdf.stream_header(2, name="engramloop.events", stream_type="Markers",
                               channels=["events"], rate_hz=0.0, channel_format="string")]
    for i in range(30):
        t = 50.0 + (i * 100 + np.arange(100)) / 1000.0
        parts.append(xdf.numeric_samples(1, rng.normal(size=(100, 2)), t))
        parts.append(xdf.string_samples(2, ['{"kind": "spindle"}'], [float(t[50])]))
    parts.append(xdf.stream_footer(1, first_timestamp=50.0, last_timestamp=52.999,
                                   sample_count=3000))
    data = b"".join(parts)
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(data[:_first_footer(data)])
    ref = {s["info"]["name"][0]: s for s in pyxdf.load_xdf(
        str(cut), synchronize_clocks=False, dejitter_timestamps=False)[0]}
    calls = _decoded(monkeypatch)
    _, duration, t0 = xdf_streams(cut)
    t = ref["engramloop.raw"]["time_stamps"]
    assert t0 == t[0] and duration == t[-1] - t[0]
    f = xdf_blocks.XdfFile(cut)
    sid = f.by_name("engramloop.raw").stream_id
    # the first record and the last chunk, not the whole stream
    assert len(f._chunks[sid].n) == 30 and t.size == 3000
    assert sum(calls) == 1 + 100
