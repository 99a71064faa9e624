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
