"""XDF writer primitives, checked against the specification's byte layout and pyxdf."""
from __future__ import annotations

import struct

import numpy as np
import pyxdf

from engramloop.recording import xdf


def test_varlen_and_chunk_layout():
    assert xdf.varlen_int(5) == b"\x01\x05"
    assert xdf.varlen_int(300) == b"\x04" + struct.pack("<I", 300)
    assert xdf.varlen_int(2 ** 33) == b"\x08" + struct.pack("<Q", 2 ** 33)
    b = xdf.boundary()
    # [NumLengthBytes=1][Length=18 (tag + 16-byte UUID)][Tag=5][UUID]
    assert b[:4] == b"\x01\x12\x05\x00" and b[4:] == xdf.BOUNDARY_UUID
    c = xdf.clock_offset(7, 1.5, -0.25)
    assert c[:4] == b"\x01\x16\x04\x00" and struct.unpack("<Idd", c[4:]) == (7, 1.5, -0.25)
    head = xdf.file_header()
    assert head.startswith(b"XDF:")


def test_pyxdf_reads_every_chunk_kind(tmp_path):
    path = tmp_path / "all.xdf"
    rng = np.random.default_rng(0)
    f64 = rng.normal(size=(600, 3))  # > 255 samples: 4-byte sample count
    i16 = rng.integers(-3000, 3000, size=(40, 2)).astype(np.int16)
    t64 = 5.0 + np.arange(600) / 100.0
    t16 = 5.0 + np.arange(40) / 10.0
    texts = ['{"a":1}', "ünïcödé", "x" * 300]  # a string > 255 bytes: 4-byte length
    with open(path, "wb") as f:
        f.write(xdf.file_header("<note>hi &amp; bye</note>", datetime_iso="2026-01-01T00:00:00"))
        f.write(xdf.stream_header(1, name="sig", stream_type="EEG", channels=["a", "b", "c"],
                                  rate_hz=100, channel_format="double64", units="V"))
        f.write(xdf.stream_header(2, name="adc", stream_type="Misc", channels=["x", "y"],
                                  rate_hz=10, channel_format="int16", units=["", ""]))
        f.write(xdf.stream_header(3, name="mk", stream_type="Markers", channels=["m"],
                                  rate_hz=0, channel_format="string"))
        f.write(xdf.stream_header(4, name="empty", stream_type="Markers", channels=["m"],
                                  rate_hz=0, channel_format="string"))
        f.write(xdf.numeric_samples(1, f64[:300], t64[:300]))
        f.write(xdf.numeric_samples(2, i16, t16, dtype="<i2"))
        f.write(xdf.boundary())
        f.write(xdf.numeric_samples(1, f64[300:], t64[300:]))
        f.write(xdf.string_samples(3, texts, [6.0, 7.0, 8.0]))
        for sid in (1, 2, 3):
            f.write(xdf.clock_offset(sid, 10.0, 0.0))
        f.write(xdf.stream_footer(1, first_timestamp=t64[0], last_timestamp=t64[-1],
                                  sample_count=600, offsets=[(10.0, 0.0)]))
        f.write(xdf.stream_footer(4, first_timestamp=0, last_timestamp=0, sample_count=0))
    streams, header = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    assert header["info"]["note"][0] == "hi & bye"
    by = {s["info"]["name"][0]: s for s in streams}
    np.testing.assert_array_equal(by["sig"]["time_series"], f64)
    np.testing.assert_allclose(by["sig"]["time_stamps"], t64)
    np.testing.assert_array_equal(by["adc"]["time_series"], i16)
    assert [v[0] for v in by["mk"]["time_series"]] == texts
    assert len(by["empty"]["time_series"]) == 0
    assert by["sig"]["footer"]["info"]["sample_count"][0] == "600"
