"""LSL source against real outlets on loopback in a separate process (unique stream names
per test), including an outlet that dies and comes back; and our own outlets."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

pylsl = pytest.importorskip("pylsl")

from engramloop.core.chunk import SourceError  # noqa: E402
from engramloop.drivers.lsl_outlets import MarkerOutlet, SignalOutlet  # noqa: E402
from engramloop.drivers.lsl_source import LslSource  # noqa: E402
from engramloop.drivers.sources import LslSettings  # noqa: E402

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

OUTLET = textwrap.dedent("""
    import sys, time, pylsl
    name, sid, start, unit = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    jump_at = int(sys.argv[5])  # from this sample on, stamps step back 100 s (clock reset)
    rate = 200.0
    info = pylsl.StreamInfo(name, "EEG", 2, rate, "float32", sid)
    chans = info.desc().append_child("channels")
    for lab in ("C3", "Cz"):
        ch = chans.append_child("channel")
        ch.append_child_value("label", lab)
        ch.append_child_value("unit", unit)
    out = pylsl.StreamOutlet(info)
    print("up", flush=True)
    t0 = pylsl.local_clock()
    k = 0
    while True:
        due = t0 + (k + 10) / rate
        time.sleep(max(0.0, due - pylsl.local_clock()))
        out.push_chunk([[float(start + k + i), -float(start + k + i)] for i in range(10)],
                       [t0 + (k + i) / rate - (100.0 if k + i >= jump_at > 0 else 0.0)
                        for i in range(10)])
        k += 10
""")


def _name() -> str:
    return f"engramloop-test-{uuid.uuid4().hex[:10]}"


class Outlet:
    """A real LSL outlet in another process."""

    def __init__(self, name: str, source_id: str = "", start: int = 0,
                 unit: str = "microvolts", jump_at: int = 0):
        self.proc = subprocess.Popen([sys.executable, "-c", OUTLET, name, source_id,
                                      str(start), unit, str(jump_at)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "up"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def outlets():
    made = []

    def make(*a, **k):
        o = Outlet(*a, **k)
        made.append(o)
        return o

    yield make
    for o in made:
        o.kill()


def _collect(src, pred, max_reads=400):
    chunks = []
    for _ in range(max_reads):
        c = src.read(0.05)
        if c is not None:
            chunks.append(c)
            if pred(chunks):
                return chunks
    raise AssertionError("condition never met")


def test_reads_volts_labels_and_host_timestamps(outlets):
    name = _name()
    outlets(name, name + "-sid")
    src = LslSource(LslSettings(name=name, resolve_timeout_s=5), channels=("Cz", "C3"))
    try:
        src.start()
        chunks = _collect(src, lambda cs: sum(c.n_samples for c in cs) >= 100)
    finally:
        src.stop()
    assert src.channels == ("Cz", "C3") and src.rate_hz == 200.0
    x = np.concatenate([c.samples for c in chunks])
    idx = -x[:, 0] / 1e-6  # Cz carries -index microvolts
    np.testing.assert_allclose(x[:, 1], idx * 1e-6, rtol=1e-7)
    np.testing.assert_array_equal(np.diff(np.round(idx)), 1)  # nothing lost
    assert not any(c.gap_before for c in chunks[1:])
    t = np.concatenate([c.timestamps for c in chunks])
    np.testing.assert_allclose(np.diff(t), 1 / 200.0, atol=1e-4)  # + clock-offset refinements
    assert all(c.timestamps[-1] <= c.arrival_s for c in chunks)  # on our host clock


@pytest.mark.parametrize("with_source_id", [True, False])
def test_outlet_dies_and_comes_back(outlets, with_source_id):
    name = _name()
    sid = name + "-sid" if with_source_id else ""
    first = outlets(name, sid)
    settings = LslSettings(name=name, resolve_timeout_s=5, stale_after_s=0.2,
                           error_after_s=30)
    src = LslSource(settings)
    try:
        src.start()
        _collect(src, lambda cs: sum(c.n_samples for c in cs) >= 40)
        first.kill()
        for _ in range(20):  # drain what was already in flight, then go quiet
            if src.read(0.05) is None and src.stale:
                break
        outlets(name, sid, start=100000)  # a new process with the same stream
        chunks = _collect(src, lambda cs: cs[-1].samples[-1, 0] >= 100000e-6, max_reads=600)
    finally:
        src.stop()
    back = next(c for c in chunks if c.samples[0, 0] >= 100000e-6 - 1e-12)
    assert back.gap_before
    assert not src.stale


def test_resolve_timeout_lists_visible_streams(outlets):
    visible = _name()
    outlets(visible, visible + "-sid")
    missing = _name()
    src = LslSource(LslSettings(name=missing, resolve_timeout_s=0.3))
    with pytest.raises(SourceError, match=rf"no LSL stream \[name='{missing}'\] found within "
                                          rf"0.3 s; visible streams: .*{visible} \(EEG, 2 ch "
                                          rf"@ 200 Hz"):
        src.start()


def test_dead_stream_is_an_error_after_error_after_s(outlets):
    name = _name()
    o = outlets(name, name + "-sid")
    src = LslSource(LslSettings(name=name, stale_after_s=0.1, error_after_s=0.6))
    try:
        src.start()
        _collect(src, lambda cs: True)
        o.kill()
        with pytest.raises(SourceError, match=rf"name='{name}'\]: no data for"):
            for _ in range(400):
                src.read(0.05)
    finally:
        src.stop()


def test_needs_something_to_resolve():
    with pytest.raises(SourceError, match="source.lsl.name"):
        LslSource(LslSettings())


def test_our_outlets_round_trip():
    name = _name()
    sig = SignalOutlet(name, ("env",), 100.0, unit="volts")
    marks = MarkerOutlet(name + ".events")
    src = LslSource(LslSettings(name=name, resolve_timeout_s=5))
    ev_info = pylsl.resolve_byprop("name", name + ".events", 1, 5)[0]
    ev_inlet = pylsl.StreamInlet(ev_info)
    try:
        src.start()
        ev_inlet.open_stream(timeout=5)
        assert sig._outlet.wait_for_consumers(5) and marks._outlet.wait_for_consumers(5)
        now = pylsl.local_clock()
        t = now + np.arange(20) / 100.0
        sig.push(np.arange(20.0)[:, None] * 1e-3, t)
        marks.push(now, {"kind": "ripple", "amp": float("nan")})
        chunks = _collect(src, lambda cs: sum(c.n_samples for c in cs) >= 20)
        text, ts = ev_inlet.pull_sample(timeout=5)
    finally:
        src.stop()
        ev_inlet.close_stream()
    x = np.concatenate([c.samples for c in chunks])[:, 0]
    np.testing.assert_allclose(x[:20], np.arange(20.0) * 1e-3)  # volts stay volts
    np.testing.assert_allclose(np.concatenate([c.timestamps for c in chunks])[:20], t,
                               atol=1e-3)
    assert json.loads(text[0]) == {"kind": "ripple", "amp": None} and ts == pytest.approx(now)


def test_timestamps_stepping_back_are_a_gap(outlets):
    name = _name()
    outlets(name, name + "-sid", jump_at=60)
    src = LslSource(LslSettings(name=name))
    try:
        src.start()
        chunks = _collect(src, lambda cs: sum(c.n_samples for c in cs) >= 100)
    finally:
        src.stop()
    x = np.concatenate([c.samples for c in chunks])[:, 0] / 1e-6
    first = np.round(x[0])
    after = [c for c in chunks if np.any(np.round(c.samples[:, 0] / 1e-6) >= 60)]
    assert first < 60  # the reset happened while we were reading
    assert after[0].gap_before


def test_devices_command_lists_visible_stream(outlets, capsys):
    from engramloop.cli import main

    name = _name()
    outlets(name, name + "-sid")
    assert main(["devices", "--lsl-wait", "1.0", "--no-boards"]) == 0
    out = capsys.readouterr().out
    assert "Serial ports" in out and f"{name} (EEG, 2 ch @ 200 Hz, source_id {name}-sid" in out
