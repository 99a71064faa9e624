"""Other writers' timing oddities read by our reader as pyxdf (the independent reader)
reads them: a stream whose clock jumps backwards (a restarted source), and a stream that
declares it can drop samples (video, HMD: pyxdf does not dejitter it). Files are written
chunk by chunk from the XDF specification with the writer primitives; no <engramloop>
header, so the reader applies clock synchronisation and dejittering."""
from __future__ import annotations

import logging

import numpy as np
import pyxdf

from engramloop.recording import reader, xdf

RATE = 100.0


def _write(path, parts) -> None:
    path.write_bytes(xdf.file_header() + b"".join(parts))


def _pyxdf_stamps(path) -> np.ndarray:
    logging.getLogger("pyxdf").setLevel(logging.CRITICAL)
    streams, _ = pyxdf.load_xdf(str(path))
    return np.asarray(streams[0]["time_stamps"])


def test_a_backward_clock_jump_breaks_the_dejitter_line_as_in_pyxdf(tmp_path):
    # a source restarted with a fresh clock: stamps jump back by ~990 s between chunks
    hdr = xdf.stream_header(1, name="s", stream_type="EEG", channels=["a"], rate_hz=RATE,
                            channel_format="float32", units="uV")
    t = np.r_[1000 + np.arange(1000) / RATE, 10 + np.arange(1000) / RATE]
    x = np.arange(2000, dtype=np.float64)[:, None]
    path = tmp_path / "reset.xdf"
    _write(path, [hdr, xdf.numeric_samples(1, x[:1000], t[:1000], "<f4"),
                  xdf.numeric_samples(1, x[1000:], t[1000:], "<f4")])
    ours = reader.read(path).signals[0]
    ref = _pyxdf_stamps(path)
    np.testing.assert_allclose(ours.t, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.t, t, rtol=0, atol=1e-6)   # each segment's own line


def test_a_stream_that_can_drop_samples_is_not_dejittered_as_in_pyxdf(tmp_path):
    desc = "<synchronization><can_drop_samples>true</can_drop_samples></synchronization>"
    hdr = xdf.stream_header(1, name="video", stream_type="Video", channels=["frame"],
                            rate_hz=RATE, channel_format="float32", desc_xml=desc)
    # 50 frames dropped (0.5 s, under the 1-s break): a line through them would move
    # every frame by up to a quarter of a second
    t = np.r_[np.arange(500) / RATE, 5.5 + np.arange(500) / RATE]
    path = tmp_path / "video.xdf"
    _write(path, [hdr, xdf.numeric_samples(1, np.arange(1000.0)[:, None], t, "<f4")])
    ours = reader.read(path).signals[0]
    np.testing.assert_allclose(ours.t, _pyxdf_stamps(path), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.t, t, rtol=0, atol=1e-9)


def test_a_clock_reset_splits_the_clock_offsets_as_in_pyxdf(tmp_path):
    # LabRecorder-like: the sending computer restarted mid-recording. Its clock ran
    # 1000..1100 s (local = remote + 5 s), then restarted at 0 (local = remote + 1110 s);
    # the ClockOffset chunks' collection times are on the remote clock, so they jump back.
    hdr = xdf.stream_header(1, name="s", stream_type="EEG", channels=["a"], rate_hz=RATE,
                            channel_format="float32", units="uV")
    mk = xdf.stream_header(2, name="marks", stream_type="Markers", channels=["m"],
                           rate_hz=0.0, channel_format="string")
    parts = [hdr, mk]
    truth = []
    for start, offset in ((1000.0, 5.0), (0.0, 1110.0)):
        for k in range(20):
            t = start + 5.0 * k + np.arange(500) / RATE
            parts.append(xdf.numeric_samples(1, np.zeros((500, 1)), t, "<f4"))
            parts.append(xdf.string_samples(2, [f"m{start}-{k}"], [t[250]]))
            parts.append(xdf.clock_offset(1, start + 5.0 * k, offset))
            parts.append(xdf.clock_offset(2, start + 5.0 * k, offset))
            truth.append(t + offset)
    path = tmp_path / "restart.xdf"
    _write(path, parts)
    logging.getLogger("pyxdf").setLevel(logging.CRITICAL)
    ref = {s["info"]["name"][0]: np.asarray(s["time_stamps"])
           for s in pyxdf.load_xdf(str(path))[0]}
    rec = reader.read(path)
    ours = rec.signals[0].t
    np.testing.assert_allclose(ours, ref["s"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours, np.concatenate(truth), rtol=0, atol=1e-6)
    marks = np.array([r[0] for r in rec.markers["marks"]])
    np.testing.assert_allclose(marks, np.sort(ref["marks"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(marks, [t[250] for t in truth], rtol=0, atol=1e-6)
    # a seek and the span agree with the whole read
    f, _ = reader.open_file(path)
    got = np.concatenate([t for t, _ in f.blocks(1, synchronize=True, start_s=1150.0)])
    assert got[0] <= 1150.0
    np.testing.assert_array_equal(got, ours[ours.size - got.size:])
    assert f.span(1, synchronize=True) == (ours[0], ours[-1])


def test_spans_of_another_writers_stream_are_on_the_clock_its_markers_are(tmp_path):
    # LabRecorder-like: an amplifier on another computer (local = remote + 100 s) and
    # engramloop's LSL marker outlet on this one; score aligns expert annotations to the
    # signal's first sample, so the span must be synchronised like the markers (pyxdf)
    eeg = xdf.stream_header(1, name="amp", stream_type="EEG", channels=["a"], rate_hz=RATE,
                            channel_format="float32", units="uV")
    mk = xdf.stream_header(2, name="engramloop.events", stream_type="Markers",
                           channels=["value"], rate_hz=0.0, channel_format="string")
    t = 50.0 + np.arange(3000) / RATE
    parts = [eeg, mk, xdf.numeric_samples(1, np.zeros((3000, 1)), t, "<f4"),
             xdf.string_samples(2, ['{"kind": "ripple"}'], [160.0])]
    parts += [xdf.clock_offset(1, 50.0 + 5 * k, 100.0) for k in range(7)]
    parts += [xdf.clock_offset(2, 150.0 + 5 * k, 0.0) for k in range(7)]
    with_footer = parts + [xdf.stream_footer(1, first_timestamp=t[0], last_timestamp=t[-1],
                                             sample_count=t.size)]
    logging.getLogger("pyxdf").setLevel(logging.CRITICAL)
    for name, body in (("footer.xdf", with_footer), ("killed.xdf", parts)):
        path = tmp_path / name
        _write(path, body)
        ref = {s["info"]["name"][0]: np.asarray(s["time_stamps"])
               for s in pyxdf.load_xdf(str(path))[0]}
        got, spans = reader.markers_and_spans(path)
        assert [r[0] for r in got.markers["events"]] == [160.0]
        (span,) = spans
        np.testing.assert_allclose([span.first_timestamp, span.last_timestamp],
                                   [ref["amp"][0], ref["amp"][-1]], rtol=0, atol=1e-6)
        assert span.sample_count == t.size


def test_a_gap_inside_the_first_chunk_breaks_the_dejitter_line_as_in_pyxdf(tmp_path):
    # a writer that puts a whole stream in one Samples chunk (as engramloop sim does):
    # the 10-s gap lies inside the first block the reader decodes
    hdr = xdf.stream_header(1, name="s", stream_type="EEG", channels=["a"], rate_hz=RATE,
                            channel_format="float32", units="uV")
    t = np.r_[np.arange(1000) / RATE, 20.0 + np.arange(1000) / RATE]
    path = tmp_path / "one_chunk.xdf"
    _write(path, [hdr, xdf.numeric_samples(1, np.zeros((2000, 1)), t, "<f4")])
    ours = reader.read(path).signals[0].t
    np.testing.assert_allclose(ours, _pyxdf_stamps(path), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours, t, rtol=0, atol=1e-6)
