"""The streaming XDF reader (recording.xdf_blocks) against pyxdf, the independent reader:
recordings written by engramloop's Recorder, and hand-written files with omitted stamps
(none written, only each chunk's first, a mix), float32/double64/int16 samples, a marker
stream, clock offsets that drift, and a gap (two dejitter segments)."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from engramloop.controller.recorder import Recorder
from engramloop.core.chunk import Chunk
from engramloop.recording import xdf
from engramloop.recording.xdf_blocks import XdfFile


def _samples(sid: int, values: np.ndarray, stamps: list[float | None]) -> bytes:
    """A Samples chunk written byte by byte: a None stamp is omitted (TimestampBytes 0)."""
    parts = []
    for row, t in zip(values, stamps, strict=True):
        parts.append(b"\x00" if t is None else struct.pack("<Bd", 8, t))
        parts.append(np.ascontiguousarray(row).tobytes())
    return xdf.chunk(xdf.TAG_SAMPLES, struct.pack("<I", sid) + xdf.varlen_int(len(values))
                     + b"".join(parts))


RATES = {1: 250.0, 2: 100.0, 3: 500.0}
FORMATS = {1: ("float32", "<f4"), 2: ("double64", "<f8"), 3: ("int16", "<i2")}


def _foreign(path: Path) -> dict[int, np.ndarray]:
    """A LabRecorder-like file (no <engramloop> header): three numeric streams and one
    marker stream, on a remote clock whose offset drifts linearly; stream 1 has a 5-s
    gap. Returns the values written per stream."""
    rng = np.random.default_rng(3)
    with open(path, "wb") as f:
        f.write(xdf.file_header())
        for sid, (fmt, _) in FORMATS.items():
            f.write(xdf.stream_header(sid, name=f"s{sid}", stream_type="EEG",
                                      channels=["a", "b", "c"], rate_hz=RATES[sid],
                                      channel_format=fmt, units="uV"))
        f.write(xdf.stream_header(9, name="marks", stream_type="Markers", channels=["m"],
                                  rate_hz=0.0, channel_format="string"))
        vals = {sid: [] for sid in FORMATS}
        t_next = {sid: 10.0 for sid in FORMATS}
        for k in range(40):
            for sid, (_, dt) in FORMATS.items():
                n = 1 + int(rng.integers(1, 60))
                x = (rng.normal(size=(n, 3)) * 1000).astype(dt)
                if sid == 1 and k == 20:
                    t_next[sid] += 5.0                     # a gap: two segments
                t = t_next[sid] + np.arange(n) / RATES[sid] + rng.normal(0, 2e-4, n)
                t_next[sid] += n / RATES[sid]
                # layouts: every stamp / first only / none / a mix
                mode = k % 4
                stamps = [float(v) if mode == 0 or (mode == 1 and i == 0)
                          or (mode == 3 and i % 3 == 0) else None for i, v in enumerate(t)]
                if k == 0:
                    stamps[0] = float(t[0])
                f.write(_samples(sid, x, stamps))
                vals[sid].append(x)
                # clock offsets: a drift of 1 ms per 10 s, plus a constant 2.5 s
                f.write(xdf.clock_offset(sid, float(t[-1]), 2.5 + 1e-4 * float(t[-1])))
            f.write(xdf.string_samples(9, [f"m{k}"], [10.0 + k * 0.3]))
            f.write(xdf.clock_offset(9, 10.0 + k * 0.3, 2.5 + 1e-4 * (10.0 + k * 0.3)))
    return {sid: np.concatenate(v) for sid, v in vals.items()}


def _by_name(streams: list) -> dict[str, dict]:
    return {s["info"]["name"][0]: s for s in streams}


def _concat(f: XdfFile, sid: int, **kw) -> tuple[np.ndarray, np.ndarray]:
    got = list(f.blocks(sid, **kw))
    return np.concatenate([t for t, _ in got]), np.concatenate([x for _, x in got])


@pytest.mark.parametrize("block", [1, 7, 64, 10**9])
def test_hand_written_file_decodes_as_pyxdf_does(tmp_path, block):
    path = tmp_path / "f.xdf"
    written = _foreign(path)
    ref = _by_name(pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                  dejitter_timestamps=False)[0])
    f = XdfFile(path)
    for sid, (_, dt) in FORMATS.items():
        t, x = _concat(f, sid, block_samples=block)
        r = ref[f"s{sid}"]
        assert x.dtype == np.dtype(dt).newbyteorder("=")
        np.testing.assert_array_equal(x, r["time_series"])
        np.testing.assert_array_equal(x, written[sid])
        # omitted stamps: previous + 1/rate, summed sample by sample as pyxdf does
        np.testing.assert_array_equal(t, r["time_stamps"])
        assert f.sample_count(sid) == x.shape[0]
    t, vals = f.markers(9)
    np.testing.assert_array_equal(t, ref["marks"]["time_stamps"])
    assert vals == ref["marks"]["time_series"]


def test_clock_sync_and_dejitter_match_pyxdf(tmp_path):
    path = tmp_path / "f.xdf"
    _foreign(path)
    ref = _by_name(pyxdf.load_xdf(str(path))[0])
    f = XdfFile(path)
    for sid in FORMATS:
        t, _ = _concat(f, sid, synchronize=True, block_samples=50)
        np.testing.assert_allclose(t, ref[f"s{sid}"]["time_stamps"], rtol=0, atol=1e-7)
    # the gap splits stream 1 into two constant-rate segments
    t, _ = _concat(f, 1, synchronize=True)
    steps = np.diff(t)
    gap = int(np.argmax(steps))
    assert steps[gap] > 4.0
    assert np.ptp(steps[:gap]) < 1e-12 and np.ptp(steps[gap + 1:]) < 1e-12
    t, _ = f.markers(9, synchronize=True)
    np.testing.assert_allclose(t, ref["marks"]["time_stamps"], rtol=0, atol=1e-9)


def _record(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    parts = []
    with Recorder(path, 'name = "t"\n', flush_interval_s=0.02) as rec:
        for i in range(40):
            t = 100.0 + (i * 50 + np.arange(50)) / 500.0
            x = rng.normal(size=(50, 2)) * 1e-5
            rec.write_chunk(Chunk(x, t, 500.0, ("C3", "C4"), float(t[-1])))
            rec.write_marker("events", float(t[0]), {"kind": "spindle", "i": i})
            parts.append(x)
    return np.concatenate(parts)


def test_our_recording_reads_as_pyxdf_reads_it_and_seeks(tmp_path):
    path = tmp_path / "r.xdf"
    x_in = _record(path)
    ref = _by_name(pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                  dejitter_timestamps=False)[0])
    f = XdfFile(path)
    raw = f.by_name("engramloop.raw")
    assert raw.channels == ("C3", "C4") and raw.rate_hz == 500.0 and raw.units == ("V", "V")
    assert raw.footer["sample_count"] == x_in.shape[0]
    t, x = _concat(f, raw.stream_id, block_samples=64)
    np.testing.assert_array_equal(x, x_in)
    np.testing.assert_array_equal(t, ref["engramloop.raw"]["time_stamps"])
    assert f.span(raw.stream_id) == (t[0], t[-1])
    ev = f.by_name("engramloop.events")
    te, vals = f.markers(ev.stream_id)
    np.testing.assert_array_equal(te, ref["engramloop.events"]["time_stamps"])
    assert vals == ref["engramloop.events"]["time_series"]


@pytest.mark.parametrize("sid", list(FORMATS))
def test_a_seek_starts_at_or_before_the_time_and_equals_the_whole_read(tmp_path, sid):
    path = tmp_path / "f.xdf"
    _foreign(path)
    f = XdfFile(path)
    t, x = _concat(f, sid)
    for at in (t[0], t[t.size // 3], t[-5]):
        ts, xs = _concat(f, sid, start_s=float(at), block_samples=16)
        assert ts[0] <= at <= ts[-1] and ts.size <= t.size
        np.testing.assert_array_equal(xs, x[t.size - ts.size:])
        np.testing.assert_array_equal(ts, t[t.size - ts.size:])
    assert _concat(f, sid, start_s=float(t[-5]))[0].size < t.size
    # synchronised (clock offsets, dejittering) the same way
    t, x = _concat(f, sid, synchronize=True)
    for at in (t[0], t[t.size // 2], t[-3]):
        ts, xs = _concat(f, sid, synchronize=True, start_s=float(at), block_samples=16)
        assert ts[0] <= at <= ts[-1] and ts.size < t.size or at == t[0]
        np.testing.assert_array_equal(ts, t[t.size - ts.size:])
        np.testing.assert_array_equal(xs, x[t.size - ts.size:])


def test_not_xdf_is_one_line(tmp_path):
    from engramloop.recording.xdf_blocks import XdfFormatError

    bad = tmp_path / "bad.xdf"
    bad.write_bytes(b"hello")
    with pytest.raises(XdfFormatError, match="no 'XDF:' magic"):
        XdfFile(bad)


@pytest.mark.parametrize("stamps", ["every", "first", "every 100th"])
def test_a_seek_inside_one_big_chunk_lands_on_the_sample(tmp_path, stamps):
    """`engramloop sim` writes its signal in a few big chunks: a seek lands inside one (a
    bisection on the stamps, arithmetic when only the first stamp is written, else at the
    last stamped sample before the time -- the recorder stamps one every few seconds)."""
    path = tmp_path / "one.xdf"
    n = 5000
    t = 7.0 + np.arange(n) / 1000.0
    x = np.arange(n * 2, dtype="<f4").reshape(n, 2)
    with open(path, "wb") as f:
        f.write(xdf.file_header("<engramloop/>"))
        f.write(xdf.stream_header(1, name="raw", stream_type="EEG", channels=["a", "b"],
                                  rate_hz=1000.0, channel_format="float32"))
        f.write(_samples(1, x, [float(v) if stamps == "every" or i == 0
                                or (stamps == "every 100th" and i % 100 == 0) else None
                                for i, v in enumerate(t)]))
    f = XdfFile(path)
    ref = pyxdf.load_xdf(str(path), dejitter_timestamps=False)[0][0]
    for at in (7.0, 7.0004, 8.2345, 11.999, 50.0):
        ts, xs = _concat(f, 1, start_s=at, block_samples=300)
        k = max(int(np.searchsorted(ref["time_stamps"], at, side="right")) - 1, 0)
        if stamps == "every 100th":                     # from the stamp before
            k = k // 100 * 100
        assert ts.size == n - k
        np.testing.assert_array_equal(ts, ref["time_stamps"][k:])
        np.testing.assert_array_equal(xs, ref["time_series"][k:])


def test_span_is_the_first_and_last_stamp_blocks_give(tmp_path):
    path = tmp_path / "f.xdf"
    _foreign(path)
    f = XdfFile(path)
    for sid in FORMATS:
        for sync in (False, True):
            t, _ = _concat(f, sid, synchronize=sync)
            np.testing.assert_allclose(f.span(sid, synchronize=sync), (t[0], t[-1]),
                                       rtol=0, atol=1e-9)


def test_a_damaged_region_is_skipped_to_the_next_boundary_as_pyxdf_does(tmp_path):
    """Garbage in the middle of a file (a bad sector, a botched copy): the chunks up to
    it and from the next Boundary chunk on are read, as pyxdf reads them, and the damage
    is named."""
    rng = np.random.default_rng(5)
    parts = [xdf.file_header("<engramloop/>"),
             xdf.stream_header(1, name="raw", stream_type="EEG", channels=["a", "b"],
                               rate_hz=100.0, channel_format="double64"),
             xdf.stream_header(2, name="m", stream_type="Markers", channels=["m"],
                               rate_hz=0.0, channel_format="string")]
    for i in range(12):
        t = 5.0 + (i * 20 + np.arange(20)) / 100.0
        parts.append(xdf.numeric_samples(1, rng.normal(size=(20, 2)), t))
        parts.append(xdf.string_samples(2, [f"m{i}"], [float(t[0])]))
        if i % 3 == 2:
            parts.append(xdf.boundary())
    data = bytearray(b"".join(parts))
    # garbage over the start of block 5's samples chunk (its header) and into the next
    at = sum(len(p) for p in parts[:3 + 2 * 5 + 1])
    data[at:at + 40] = bytes(range(200, 240))
    path = tmp_path / "bad.xdf"
    path.write_bytes(bytes(data))
    f = XdfFile(path)
    assert "damaged chunk" in f.damage and "boundary chunk" in f.damage
    ref = _by_name(pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                  dejitter_timestamps=False)[0])
    t, x = _concat(f, 1)
    np.testing.assert_array_equal(t, ref["raw"]["time_stamps"])
    np.testing.assert_array_equal(x, ref["raw"]["time_series"])
    assert 0 < t.size < 240
    tm, vals = f.markers(2)
    np.testing.assert_array_equal(tm, ref["m"]["time_stamps"])
    assert vals == ref["m"]["time_series"]
