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
from engramloop.recording.xdf_blocks import XdfFile

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


def test_a_bad_stamp_flag_inside_a_samples_chunk_loses_that_chunk_only(tmp_path):
    # record 100 of chunk 5 has TimestampBytes 5 (neither 0 nor 8, specification): that
    # chunk cannot be decoded past it; every other chunk reads, and the damage is named
    # (it was an exception out of blocks(): `engramloop report` said "internal error")
    hdr = xdf.stream_header(1, name="eeg", stream_type="EEG", channels=["a"], rate_hz=RATE,
                            channel_format="float32", units="uV")
    x = np.arange(3000.0)[:, None]
    t = np.arange(3000) / RATE
    parts = [hdr]
    keep = np.r_[True, np.zeros(299, dtype=bool)]
    for k in range(10):
        c = bytearray(xdf.numeric_samples(1, x[k * 300:(k + 1) * 300],
                                          t[k * 300:(k + 1) * 300], "<f4", keep=keep))
        if k == 5:
            # 1+4 length, 2 tag, 4 stream id, 1+4 count, one stamped record, 99 bare ones
            flag = 5 + 2 + 4 + 5 + 13 + 99 * 5
            assert c[flag] == 0
            c[flag] = 5
        parts.append(bytes(c))
    path = tmp_path / "flag.xdf"
    path.write_bytes(xdf.file_header() + b"".join(parts))
    with pytest.warns(reader.RecordingDamageWarning, match="'eeg'.*TimestampBytes 5"):
        rec = reader.read(path)
    want = np.r_[np.arange(0, 1600), np.arange(1800, 3000)]
    np.testing.assert_array_equal(rec.signals[0].x[:, 0], x[want, 0])
    with pytest.warns(reader.RecordingDamageWarning, match="byte"):
        raw_t = np.concatenate([tt for tt, _ in XdfFile(path).blocks(1)])
    np.testing.assert_allclose(raw_t, t[want], rtol=0, atol=1e-9)   # as written (deduced)
