"""Recorder: pyxdf reads what we write; SIGKILL leaves a loadable file; write errors surface."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from engramloop.controller.recorder import MARKER_STREAMS, Recorder, RecordingError
from engramloop.core.chunk import Chunk

ROOT = Path(__file__).resolve().parents[2]


def _chunks(n_chunks: int, n: int = 25, rate: float = 250.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    for k in range(n_chunks):
        x = np.ascontiguousarray(rng.normal(0, 20e-6, (n, 2)))
        t = 100.0 + (k * n + np.arange(n)) / rate
        yield Chunk(x, t, rate, ("C3", "Cz"), arrival_s=float(t[-1]), first_index=k * n)


def _by_name(streams):
    return {s["info"]["name"][0]: s for s in streams}


def test_round_trip_signals_markers_config(tmp_path):
    path = tmp_path / "s.xdf"
    chunks = list(_chunks(40))
    with Recorder(path, 'name = "x"\n# <&> escaped\n', flush_interval_s=0.05) as rec:
        rec.add_signal_stream(chunks[0])
        for i, c in enumerate(chunks):
            rec.write_chunk(c)
            rec.write_marker("events", float(c.timestamps[0]),
                             {"kind": "ripple", "i": i, "amp": np.float32(1.5),
                              "nan": float("nan")})
        rec.write_marker("log", 1.0, {"msg": "ünïcode"})
    streams, header = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    assert header["info"]["engramloop"][0]["config"][0] == 'name = "x"\n# <&> escaped\n'
    by = _by_name(streams)
    assert set(by) == {"engramloop.raw"} | {f"engramloop.{k}" for k in MARKER_STREAMS}
    raw = by["engramloop.raw"]
    want_x = np.concatenate([c.samples for c in chunks])
    want_t = np.concatenate([c.timestamps for c in chunks])
    np.testing.assert_array_equal(raw["time_series"], want_x)  # double64: bit-exact
    np.testing.assert_allclose(raw["time_stamps"], want_t, rtol=0, atol=1e-9)
    assert [c["label"][0] for c in raw["info"]["desc"][0]["channels"][0]["channel"]] == ["C3", "Cz"]
    assert float(raw["info"]["nominal_srate"][0]) == 250.0
    assert int(raw["footer"]["info"]["sample_count"][0]) == len(want_t)
    ev = by["engramloop.events"]
    objs = [json.loads(v[0]) for v in ev["time_series"]]
    assert [o["i"] for o in objs] == list(range(40))
    assert objs[0]["nan"] is None and objs[0]["amp"] == 1.5
    np.testing.assert_allclose(ev["time_stamps"], [c.timestamps[0] for c in chunks])
    assert json.loads(by["engramloop.log"]["time_series"][0][0])["msg"] == "ünïcode"
    assert len(by["engramloop.pulses"]["time_series"]) == 0


def test_unknown_marker_stream_and_wrong_width(tmp_path):
    with Recorder(tmp_path / "a.xdf", "") as rec:
        with pytest.raises(ValueError, match="unknown stream 'bogus'"):
            rec.write_marker("bogus", 0.0, {})
        c = next(_chunks(1))
        rec.write_chunk(c)
        bad = Chunk(np.zeros((3, 1)), np.arange(3.0), 250.0, ("C3",), 0.0)
        with pytest.raises(ValueError, match="channels"):
            rec.write_chunk(bad, stream="engramloop.raw")


def test_full_disk_surfaces_recording_error():
    # /dev/full accepts open() but every write fails with ENOSPC: a real full-disk error.
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    rec = Recorder("/dev/full", "", flush_interval_s=0.01)
    rec.start()
    c = next(_chunks(1))
    with pytest.raises(RecordingError, match="No space left"):
        for _ in range(100000):  # until the writer thread has failed (bounded)
            rec.write_chunk(c)
            rec._thread.join(0.001)
    with pytest.raises(RecordingError):
        rec.check()
    with pytest.raises(RecordingError):
        rec.close()


def test_open_error_names_file(tmp_path):
    rec = Recorder(tmp_path / "missing-dir" / "x.xdf", "")
    with pytest.raises(RecordingError, match="missing-dir"):
        rec.start()


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    from engramloop.controller.recorder import Recorder
    from engramloop.core.chunk import Chunk
    rec = Recorder({path!r}, "crash test", flush_interval_s=0.05)
    rec.start()
    rate, n, k = 200.0, 20, 0
    announced = False
    while True:
        t = (k * n + np.arange(n)) / rate
        x = np.ascontiguousarray((k * n + np.arange(n, dtype=float))[:, None] * 1e-6)
        rec.write_chunk(Chunk(x, t, rate, ("Cz",), 0.0))
        rec.write_marker("events", float(t[0]), {{"k": k}})
        k += 1
        if not announced and rec.flushed_samples("engramloop.raw") >= 2000:
            print(rec.flushed_samples("engramloop.raw"), flush=True)
            announced = True
        time.sleep(0.001)
""")


def test_sigkill_leaves_loadable_file(tmp_path):
    path = tmp_path / "crash.xdf"
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip(), "child died before its first flushes"
        flushed = int(line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    streams, header = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    by = _by_name(streams)
    raw = by["engramloop.raw"]
    n = len(raw["time_stamps"])
    assert n >= flushed
    # every sample up to the last flush is intact and in order
    np.testing.assert_array_equal(raw["time_series"][:, 0], np.arange(n) * 1e-6)
    np.testing.assert_allclose(raw["time_stamps"], np.arange(n) / 200.0)
    ks = [json.loads(v[0])["k"] for v in by["engramloop.events"]["time_series"]]
    assert ks == list(range(len(ks))) and len(ks) >= flushed // 20 - 1


def test_sim_session_recorded_then_replayed_identically(tmp_path):
    """Record a simulated session through the recorder, replay the file: every chunk's
    samples come back bit-identical (a stream declared from a chunk is float64), its
    timestamps within the recorder's timestamp tolerance (regular samples are stored
    without a stamp and deduced by the reader), and so do the spindle detections."""
    from engramloop.core.chunk import EndOfStream
    from engramloop.core.clock import SimClock
    from engramloop.decoders.spindle import SpindleDetector, SpindleSettings
    from engramloop.drivers.files import FileSource
    from engramloop.sim.settings import SimSettings
    from engramloop.sim.source import SimSource

    path = tmp_path / "engramloop.sim.xdf"
    src = SimSource(SimSettings(), seed=3, chunk_samples=50, duration_s=20.0)
    live, det = [], SpindleDetector(SpindleSettings(channels=("Cz",)))
    events_live = []
    src.start()
    with Recorder(path, "seed = 3", flush_interval_s=0.2) as rec:
        while True:
            try:
                c = src.read(0.0)
            except EndOfStream:
                break
            live.append(c)
            rec.write_chunk(c)
            for e in det.process(c):
                events_live.append(e)
                rec.write_marker("events", e.detect_s, e)
    src.stop()
    replay = FileSource(path, speed="max", clock=SimClock(0.0), chunk_samples=50)
    assert replay.channels == src.channels and replay.rate_hz == src.rate_hz
    det2 = SpindleDetector(SpindleSettings(channels=("Cz",)))
    events_replay = []
    back = []
    replay.start()
    while True:
        try:
            c = replay.read(0.0)
        except EndOfStream:
            break
        back.append(c)
        events_replay.extend(det2.process(c))
    np.testing.assert_array_equal(np.concatenate([c.samples for c in back]),
                                  np.concatenate([c.samples for c in live]))
    np.testing.assert_allclose(np.concatenate([c.timestamps for c in back]),
                               np.concatenate([c.timestamps for c in live]), rtol=0, atol=1e-9)
    assert [(e.kind, e.channel) for e in events_replay] == \
        [(e.kind, e.channel) for e in events_live]
    np.testing.assert_allclose([e.onset_s for e in events_replay],
                               [e.onset_s for e in events_live], rtol=0, atol=1e-9)
    streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    ev = _by_name(streams)["engramloop.events"]
    assert len(ev["time_series"]) == len(events_live) > 0


def test_write_before_start_or_after_close_is_an_error(tmp_path):
    rec = Recorder(tmp_path / "x.xdf", "")
    c = next(_chunks(1))
    with pytest.raises(RecordingError, match="not open"):
        rec.write_chunk(c)
    rec.start()
    rec.close()
    with pytest.raises(RecordingError, match="not open"):
        rec.write_marker("log", 0.0, {})
    rec.close()  # twice is fine


def test_discard_stops_without_writing_what_is_queued(tmp_path):
    """An interrupted `sim` removes its file: discard() stops the writer without first
    writing the queue (close() writes all of it -- up to 128 MB, over a minute after
    Ctrl-C on a loaded CI machine)."""
    path = tmp_path / "r.xdf"
    n = 65536
    block = np.zeros((n, 2))

    def chunk(k):
        t = (k * n + np.arange(n)) / 1000.0
        return Chunk(block, t, 1000.0, ("a", "b"), arrival_s=float(t[-1]), first_index=k * n)

    rec = Recorder(path, "x = 1\n")
    rec.add_signal_stream(chunk(0), name="engramloop.raw")
    rec.start()
    queued = 0
    for k in range(64):          # 1 MB a chunk + 0.5 MB stamps: under the 128 MB bound
        rec.write_chunk(chunk(k), stream="engramloop.raw")
        queued += block.nbytes
    rec.discard()
    assert not rec._thread.is_alive()
    assert path.stat().st_size < queued / 2, "the queue was written anyway"
    with pytest.raises(RecordingError):       # nothing more can be written
        rec.write_chunk(chunk(64), stream="engramloop.raw")
