"""XDF replay reads the file block by block (issue 23), and gives what pyxdf (the
counterpart we did not write) decodes from the same file: the same samples, the same
stamps, and -- replayed through a real ``engramloop replay`` -- the same events as a replay
of pyxdf's arrays. The recording is written by a real ``engramloop sim`` process."""
from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from engramloop.core.chunk import EndOfStream
from engramloop.core.clock import SimClock
from engramloop.drivers.files import FileSource

CONFIG = Path(__file__).resolve().parents[2] / "src" / "engramloop" / "configs" / "sim-ripple.toml"


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("xdfreplay") / "sim.xdf"
    subprocess.run([sys.executable, "-m", "engramloop", "sim", "--duration", "60", "--out",
                    str(out), "--quiet"], check=True, timeout=600)
    return out


def _raw(path: Path) -> dict:
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                dejitter_timestamps=False)
    return {s["info"]["name"][0]: s for s in streams}


def test_replay_gives_pyxdfs_samples_and_stamps_in_bounded_memory(night, monkeypatch):
    """Every chunk equals pyxdf's decode; the source's own allocations stay at a few
    blocks (4096 samples here), far below the night as float64 (8 x 120 000 x 8 B =
    7.7 MB), which the whole-file path held (pyxdf's arrays and the lazy imports are
    made before tracing)."""
    from engramloop.drivers import file_blocks

    monkeypatch.setattr(file_blocks, "BLOCK_SAMPLES", 4096)
    ref = _raw(night)["engramloop.raw"]
    x_ref, t_ref = ref["time_series"], ref["time_stamps"]
    n = 0
    FileSource(night, speed="max").read(0.0)     # the lazy imports, before tracing
    tracemalloc.start()
    try:
        src = FileSource(night, speed="max", clock=SimClock(0.0), chunk_samples=10)
        src.use_blocks(0.5)
        src.start()
        shift = None
        while True:
            try:
                c = src.read(0.0)
            except EndOfStream:
                break
            i, m = c.first_index, c.timestamps.size
            assert i == n
            shift = c.timestamps[0] - t_ref[0] if shift is None else shift
            np.testing.assert_array_equal(c.samples, x_ref[i:i + m].astype(np.float64))
            np.testing.assert_allclose(c.timestamps - shift, t_ref[i:i + m], rtol=0,
                                       atol=1e-9)
            n += m
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == src.n_samples == len(t_ref) == 60 * 2000
    whole = x_ref.size * 8
    # the whole-file path held at least the night in float64 and its scaled copy (2x)
    assert peak < whole / 2, (peak, whole)


def test_replay_events_equal_a_replay_of_pyxdfs_arrays(night, tmp_path):
    ref = _raw(night)["engramloop.raw"]
    npz = tmp_path / "same.npz"
    chans = [c["label"][0] for c in ref["info"]["desc"][0]["channels"][0]["channel"]]
    np.savez(npz, samples=np.asarray(ref["time_series"], dtype=np.float64),
             timestamps=ref["time_stamps"], rate_hz=float(ref["info"]["nominal_srate"][0]),
             channels=np.array(chans))
    recs = {}
    for src in (night, npz):
        rec = tmp_path / f"{src.stem}.rec.xdf"
        subprocess.run([sys.executable, "-m", "engramloop", "replay", str(CONFIG), str(src),
                        "--speed", "max", "--quiet", "--record", str(rec)], check=True,
                       timeout=600, stdout=subprocess.DEVNULL)
        recs[src.suffix] = _raw(rec)
    a, b = recs[".xdf"], recs[".npz"]
    for name in ("engramloop.events", "engramloop.governor", "engramloop.pulses"):
        ea = [json.loads(v[0]) for v in a[name]["time_series"]]
        eb = [json.loads(v[0]) for v in b[name]["time_series"]]
        assert ea == eb, name
    assert len(a["engramloop.events"]["time_series"]) > 10
