"""Samples our reader cannot attribute or decode are named, never dropped in silence, and
do not stop the rest of the file from being read: a Samples chunk of a stream whose
header has not been seen (a writer that lost its header chunk), and a stream whose
channel_format is not one of the XDF specification's (``float64`` instead of
``double64``). pyxdf, the independent reader, raises on both files (KeyError / loses the
stream), so the reference here is the specification: the other streams' samples and
markers are all there, and the warning names what was not read."""
from __future__ import annotations

import numpy as np
import pytest

from engramloop.recording import reader, xdf

RATE = 100.0


def _good_parts():
    hdr = xdf.stream_header(1, name="eeg", stream_type="EEG", channels=["a", "b"],
                            rate_hz=RATE, channel_format="float32", units="uV")
    mk = xdf.stream_header(2, name="marks", stream_type="Markers", channels=["m"],
                           rate_hz=0.0, channel_format="string")
    x = np.arange(200.0).reshape(100, 2)
    t = np.arange(100) / RATE
    return [hdr, mk, xdf.numeric_samples(1, x, t, "<f4"),
            xdf.string_samples(2, ["go"], [0.5])], x


def test_samples_of_a_stream_without_header_are_named_not_dropped_silently(tmp_path):
    good, x = _good_parts()
    orphan = xdf.numeric_samples(7, np.ones((10, 1)), np.arange(10.0), "<f4")
    path = tmp_path / "orphan.xdf"
    path.write_bytes(xdf.file_header() + orphan + b"".join(good))
    with pytest.warns(reader.RecordingDamageWarning, match="stream id 7.*10 samples"):
        rec = reader.read(path)
    np.testing.assert_array_equal(rec.signals[0].x, x)
    assert [r[1] for r in rec.markers["marks"]] == [{"text": "go"}]


def test_a_stream_of_unknown_format_is_named_and_the_rest_is_read(tmp_path):
    good, x = _good_parts()
    odd = xdf.stream_header(3, name="odd", stream_type="EEG", channels=["c"], rate_hz=RATE,
                            channel_format="float64")
    odd_samples = xdf.numeric_samples(3, np.ones((10, 1)), np.arange(10.0), "<f8")
    path = tmp_path / "odd.xdf"
    path.write_bytes(xdf.file_header() + odd + odd_samples + b"".join(good))
    with pytest.warns(reader.RecordingDamageWarning, match="'odd'.*float64"):
        rec = reader.read(path)
    eeg = [s for s in rec.signals if s.name == "eeg"][0]
    np.testing.assert_array_equal(eeg.x, x)
    assert [r[1] for r in rec.markers["marks"]] == [{"text": "go"}]


def test_a_marker_whose_length_runs_past_its_chunk_is_damage_not_a_short_marker(tmp_path):
    # the string's byte count says 50 but its chunk holds 10 (a corrupted length): the
    # specification's value is 50 bytes, so this chunk cannot be decoded -- it is named,
    # and the marker is not returned cut to 10 bytes as if it were whole
    good, x = _good_parts()
    bad = xdf.chunk(xdf.TAG_SAMPLES, b"\x02\x00\x00\x00" + xdf.varlen_int(1)
                    + b"\x08" + np.float64(0.7).tobytes() + xdf.varlen_int(50) + b"0123456789")
    path = tmp_path / "short.xdf"
    path.write_bytes(xdf.file_header() + b"".join(good) + bad + xdf.boundary()
                     + xdf.string_samples(2, ["after"], [0.9]))
    with pytest.warns(reader.RecordingDamageWarning, match="damaged chunk at byte"):
        rec = reader.read(path)
    assert [r[1] for r in rec.markers["marks"]] == [{"text": "go"}, {"text": "after"}]
    np.testing.assert_array_equal(rec.signals[0].x, x)
