"""Random files from "other writers" read by our reader as pyxdf (the independent
reader, default clock synchronisation and dejittering) reads them: rates 0/100/250/512
Hz, every numeric format, 1-3 channels, chunks of 0-200 samples with every stamp layout
(all written, the first only, some, none), jitter, forward gaps and backward jumps, and
clock offsets that drift. Seed 168 is the file that showed a gap inside the first block
being ignored."""
from __future__ import annotations

import logging
import struct

import numpy as np
import pytest
import pyxdf

from engramloop.recording import reader, xdf

FORMATS = [("float32", "<f4"), ("double64", "<f8"), ("int16", "<i2"), ("int32", "<i4"),
           ("int64", "<i8")]


def _samples(sid: int, values: np.ndarray, stamps: list) -> bytes:
    parts = []
    for row, t in zip(values, stamps, strict=True):
        parts.append(b"\x00" if t is None else struct.pack("<Bd", 8, t))
        parts.append(np.ascontiguousarray(row).tobytes())
    return xdf.chunk(xdf.TAG_SAMPLES, struct.pack("<I", sid) + xdf.varlen_int(len(values))
                     + b"".join(parts))


def _random_file(path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rate = float(rng.choice([100.0, 250.0, 512.0, 0.0]))
    fmt, dt = FORMATS[int(rng.integers(len(FORMATS)))]
    nch = int(rng.integers(1, 4))
    parts = [xdf.stream_header(1, name="s", stream_type="EEG",
                               channels=[f"c{i}" for i in range(nch)], rate_hz=rate,
                               channel_format=fmt)]
    t = float(rng.uniform(0, 1e5))
    off, drift = float(rng.uniform(-1e3, 1e3)), float(rng.normal(0, 1e-5))
    tc = t
    per = 1 / rate if rate else 0.05
    for _ in range(int(rng.integers(1, 30))):
        n = int(rng.integers(0, 200))
        ts = t + np.arange(n) * per + rng.normal(0, per * 0.01, n) * (rng.random() < 0.5)
        ev = rng.random()
        if ev < 0.1:
            t += rng.uniform(1, 20)                 # a gap
        elif ev < 0.15:
            t -= rng.uniform(2, 20)                 # the sender's clock steps back
        t += n * per
        v = (rng.normal(size=(n, nch)) * 1000).astype(dt)
        mode = rng.integers(4)
        st = [float(x) if mode == 0 or (mode == 1 and i == 0)
              or (mode == 3 and rng.random() < 0.2) else None for i, x in enumerate(ts)]
        parts.append(_samples(1, v, st))
        if rng.random() < 0.7:
            tc = max(tc + 0.5, t)
            parts.append(xdf.clock_offset(1, tc, off + drift * tc + rng.normal(0, 1e-6)))
    path.write_bytes(xdf.file_header() + b"".join(parts))


@pytest.mark.parametrize("seed", [*range(12), 168])
def test_random_foreign_file_reads_as_pyxdf_reads_it(tmp_path, seed):
    path = tmp_path / "f.xdf"
    _random_file(path, seed)
    logging.getLogger("pyxdf").setLevel(logging.CRITICAL)
    ref = pyxdf.load_xdf(str(path))[0][0]
    ours = reader.read(path).signals[0]
    rt = np.asarray(ref["time_stamps"])
    rx = np.asarray(ref["time_series"], dtype=np.float64).reshape(ours.x.shape)
    np.testing.assert_array_equal(ours.x, rx)
    np.testing.assert_allclose(ours.t, rt, rtol=0, atol=1e-5)
