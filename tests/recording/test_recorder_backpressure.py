"""Storage that blocks (not fails) stops stimulation and ends the run.

The blocking storage is a real FIFO whose reader is open but never reads: the kernel
accepts 64 KiB, then every write() blocks, exactly as a write to a full network share or
a hung NFS server blocks the writing process. No stub of ours stands in for the storage,
so the recorder's real write path is what gets stuck.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from test_loop import ripple_cfg

from engramloop.controller.build import build_loop
from engramloop.controller.recorder import Recorder, RecordingError
from engramloop.core.chunk import Chunk
from engramloop.core.clock import HostClock
from engramloop.sim.source import SimSource

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)


@pytest.fixture
def stuck_fifo(tmp_path):
    """A FIFO with a reader that never reads (held open for the test)."""
    path = tmp_path / "stuck.xdf"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    yield path
    os.close(fd)


def test_a_fifo_nobody_reads_is_refused_at_start(tmp_path):
    path = tmp_path / "lonely.xdf"
    os.mkfifo(path)
    rec = Recorder(path, "")
    with pytest.raises(RecordingError, match="FIFO nobody reads"):
        rec.start()


def test_blocked_storage_is_reported_by_check_and_close_does_not_hang(stuck_fifo):
    rec = Recorder(stuck_fifo, "", flush_interval_s=0.05, max_lag_s=0.5)
    rec.start()
    clock = HostClock()
    x = np.zeros((100, 8))
    err = None
    for _ in range(200_000):  # paced by the clock, 1000 chunks/s: ~0.8 MB/s of data
        t = clock.now()
        try:   # write_chunk checks first, as the loop's check() every chunk does
            rec.write_chunk(Chunk(x, t + np.arange(100) * 1e-4, 10_000.0,
                                  tuple(f"c{k}" for k in range(8)), t))
        except RecordingError as exc:
            err = exc
            break
        clock.sleep_until(t + 0.001)
    assert err is not None and "blocked" in str(err) and "FIFO" in str(err)
    assert rec.queued_bytes > 0
    done: list = []

    def close():
        try:
            rec.close()
        except RecordingError as exc:
            done.append(exc)

    t = threading.Thread(target=close, daemon=True)
    t.start()
    t.join(60.0)   # a hang check, not a speed check: the bound is 0.5 s
    assert not t.is_alive(), "close() hung on blocked storage"
    assert done and "never written" in str(done[0])


def test_a_run_recording_to_blocked_storage_stops_stimulating(tmp_path):
    """Real time on the simulator, pulses going to the simulated brain: the storage takes
    everything until the first pulses were sent (detectors calibrated, pulses flow), then
    stops reading while staying open. The run ends with a RecordingError, stimulation
    off, without hanging."""
    path = tmp_path / "stalls.xdf"
    os.mkfifo(path)
    stalled = threading.Event()
    keep: list[int] = []
    box: list = []

    def pulses_flow() -> bool:
        return bool(box) and len([d for _, d in list(box[0].result.deliveries)
                                  if d.status == "sent"]) >= 2

    def storage():
        fd = os.open(path, os.O_RDONLY)
        keep.append(fd)
        os.set_blocking(fd, False)
        while not pulses_flow():
            try:
                if not os.read(fd, 1 << 16):
                    break
            except BlockingIOError:
                time.sleep(0.01)
        stalled.set()   # from here on nobody reads; the fd stays open

    cfg = ripple_cfg()
    src = SimSource(cfg.sim, seed=cfg.seed, clock=HostClock(), paced=True,
                    chunk_samples=cfg.source.chunk_samples, duration_s=120.0)
    loop = build_loop(cfg, speed=1, source=src, record=str(path))
    box.append(loop)
    threading.Thread(target=storage, daemon=True).start()
    try:
        with pytest.raises(RecordingError, match="blocked"):
            loop.run(120.0)
    finally:
        for fd in keep:
            os.close(fd)
    assert stalled.is_set()
    assert not loop.governor.armed and loop.scheduler.pending == 0
    assert loop.result.duration_s < 60.0
    sent = [p for p, d in loop.result.deliveries if d.status == "sent"]
    assert sent and len(src.pulses) == len(sent)   # pulses flowed, then stopped
