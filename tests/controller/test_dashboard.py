"""Live dashboard, status snapshot helpers and progress bars.

The dashboard is drawn into a non-interactive rich Console (a StringIO) and, for the keys,
into a real pseudo-terminal, as over SSH. The loop side is a small recording implementation
of the LoopControls callback interface (the real loop implements the same three methods).
"""
from __future__ import annotations

import io
import math
import os
import pty
import threading

import numpy as np
import pytest
from rich.console import Console

from engramloop.controller.dashboard import Dashboard, live_dashboard, make_dashboard, render_status
from engramloop.controller.progress import progress, track
from engramloop.controller.status import (
    ChannelQuality,
    LoopStatus,
    QuantileWindow,
    RateWindow,
    StatusBoard,
    channel_quality,
)


def _status(**kw) -> LoopStatus:
    base = dict(
        source="brainflow cyton /dev/ttyUSB0", rate_hz=250.0, elapsed_s=3725.0,
        channels=(ChannelQuality("C3", 12.3e-6), ChannelQuality("Cz", 0.0, flat=True),
                  ChannelQuality("C4", 0.18, clipping=True)),
        detections_per_min={"spindle": 4.5, "so": 11.0}, pulses_sent=42,
        pulses_refused={"refractory": 7, "rate": 2, "gap": 0}, armed=True,
        lockouts=("refractory 0.8 s",), loop_latency_p99_s=0.0015,
        scheduler_lateness_p99_s=0.00031, forecast={"recall.m0": 0.61}, forecast_age_s=12.0,
        recording_path="session.xdf", recording_bytes=12_345_678,
        messages=("gap of 3 samples on C3",))
    base.update(kw)
    return LoopStatus(**base)


class Controls:
    """Records what the dashboard asked the loop to do."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.armed = threading.Event()

    def arm(self) -> None:
        self.calls.append("arm")
        self.armed.set()

    def disarm(self) -> None:
        self.calls.append("disarm")

    def stop(self) -> None:
        self.calls.append("stop")


def _plain_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=140, color_system=None), buf


def test_render_every_field_in_a_non_interactive_console():
    con, buf = _plain_console()
    con.print(render_status(_status()))
    out = buf.getvalue()
    assert "\x1b[" not in out  # plain text: no escape codes in logs
    for text in ("brainflow cyton /dev/ttyUSB0", "250 Hz", "1:02:05", "ARMED", "C3",
                 "12.3 uV", "FLAT", "CLIPPING", "spindle", "4.5", "11.0", "pulses sent",
                 "42", "refused", "refractory", "9", "refractory 0.8 s", "1.50 ms", "0.31 ms",
                 "recall.m0", "0.61", "12 s", "session.xdf (12.3 MB)",
                 "gap of 3 samples on C3", "[d] disarm"):
        assert text in out, text
    assert "  gap " not in out  # rules with no refusals are not listed


def test_render_before_first_status_and_with_missing_numbers():
    con, buf = _plain_console()
    con.print(render_status(None))
    con.print(render_status(LoopStatus()))
    out = buf.getvalue()
    assert "waiting for the loop" in out and "disarmed" in out and "not recording" in out
    assert "none yet" in out and "no data yet" in out


def test_dashboard_non_interactive_prints_snapshots_and_reads_no_keys():
    con, buf = _plain_console()
    board = StatusBoard()
    dash = Dashboard(board, Controls(), console=con, plain_interval_s=3600)
    assert not dash.interactive and not dash.keys
    with dash:
        board.publish(_status(state="stopping"))
    assert "stopping" in buf.getvalue()  # final snapshot printed on stop
    assert make_dashboard(board, quiet=True) is None
    assert isinstance(make_dashboard(board, console=con), Dashboard)


def test_live_dashboard_context_stops_on_error_and_is_silent_when_quiet():
    con, buf = _plain_console()
    board = StatusBoard()
    board.publish(_status(state="failing"))
    with pytest.raises(RuntimeError, match="boom"):
        with live_dashboard(board, Controls(), console=con, plain_interval_s=3600) as dash:
            assert isinstance(dash, Dashboard)
            raise RuntimeError("boom")
    assert "failing" in buf.getvalue()  # the last snapshot was printed on the way out
    quiet_con, quiet_buf = _plain_console()
    with live_dashboard(board, Controls(), quiet=True, console=quiet_con) as dash:
        assert dash is None
    assert quiet_buf.getvalue() == ""


def test_recording_size_read_from_the_file_when_not_given(tmp_path):
    rec = tmp_path / "s.xdf"
    rec.write_bytes(b"x" * 2500)
    con, buf = _plain_console()
    dash = Dashboard(lambda: _status(recording_path=str(rec), recording_bytes=0),
                     console=con)
    con.print(dash.renderable())
    assert "(2.5 kB)" in buf.getvalue()


def test_keys_arm_needs_confirmation():
    c = Controls()
    con, _ = _plain_console()
    dash = Dashboard(lambda: None, c, console=con)
    assert "press y" in dash.handle_key("a")
    assert dash.handle_key("x") == "arming cancelled"
    dash.handle_key("y")  # y without a pending arm does nothing
    assert c.calls == []
    dash.handle_key("a")
    assert dash.handle_key("y") == "armed" and c.calls == ["arm"]
    dash.handle_key("d")
    dash.handle_key("q")
    assert c.calls == ["arm", "disarm", "disarm", "stop"]


def test_failing_control_is_shown_not_raised():
    class Refuses(Controls):
        def arm(self) -> None:
            raise RuntimeError("governor: calibrating")

    con, _ = _plain_console()
    dash = Dashboard(lambda: None, Refuses(), console=con)
    dash.handle_key("a")
    assert dash.handle_key("y") == "RuntimeError: governor: calibrating"
    con2, buf = _plain_console()
    con2.print(dash.renderable())
    assert "governor: calibrating" not in buf.getvalue()  # no status yet: waiting panel
    dash2 = Dashboard(lambda: _status(), Refuses(), console=con2)
    dash2.handle_key("a")
    dash2.handle_key("y")
    con2.print(dash2.renderable())
    assert "RuntimeError: governor: calibrating" in buf.getvalue()


def test_live_dashboard_on_a_real_pty_takes_keys():
    """Interactive mode as over ``ssh -t``: a real pseudo-terminal, cbreak keys."""
    master, slave = pty.openpty()
    out = os.fdopen(os.dup(slave), "w", encoding="utf-8", buffering=1)
    keys_in = os.fdopen(os.dup(slave), "r", encoding="utf-8")
    received = bytearray()
    done = threading.Event()

    def drain() -> None:  # keep the pty buffer from filling while Live redraws
        while not done.is_set():
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            received.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    c = Controls()
    board = StatusBoard()
    board.publish(_status(armed=False))
    con = Console(file=out, force_terminal=True, width=140, height=40)
    dash = Dashboard(board, c, console=con, keys=True, key_input=keys_in, refresh_hz=20)
    try:
        assert dash.interactive and dash.keys
        dash.start()
        assert dash.keys_ready.wait(10), "key thread did not start"
        os.write(master, b"ay")
        assert c.armed.wait(10), "arm key sequence not received"
    finally:
        dash.stop()
        done.set()
        for f in (out, keys_in):
            f.close()
        os.close(slave)
        os.close(master)
        reader.join(5)
    assert c.calls == ["arm"]
    assert b"disarmed" in bytes(received) and b"\x1b[" in bytes(received)


def test_channel_quality_against_numpy():
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.normal(0, 10e-6, 500) + 5e-3, np.full(500, 2e-6),
                         np.clip(rng.normal(0, 0.2, 500), -0.1875, 0.1875)])
    q = channel_quality(x, ("a", "b", "c"), clip_v=0.1875)
    assert [c.name for c in q] == ["a", "b", "c"]
    assert math.isclose(q[0].rms_v, float(np.std(x[:, 0])), rel_tol=1e-12)
    assert (q[0].flat, q[1].flat, q[2].flat) == (False, True, False)
    assert (q[0].clipping, q[2].clipping) == (False, True)
    with pytest.raises(ValueError, match="does not match"):
        channel_quality(x, ("a",))
    assert math.isnan(channel_quality(np.empty((0, 1)), ("a",))[0].rms_v)


def test_rate_and_quantile_windows():
    r = RateWindow(60.0)
    for t in np.arange(0.0, 120.0, 2.0):
        r.add("ripple", t)
    assert r.per_minute(119.0)["ripple"] == pytest.approx(30.0)
    early = RateWindow(60.0)
    for t in np.arange(0.0, 31.0, 2.0):
        early.add("ripple", t)
    assert early.per_minute(30.0)["ripple"] == pytest.approx(16 * 2.0)  # 16 in 30 s
    q = QuantileWindow(100, 0.99)
    assert math.isnan(q.value())
    vals = np.arange(250.0)
    for v in vals:
        q.add(v)
    assert q.value() == pytest.approx(np.quantile(vals[-100:], 0.99))


def test_status_is_a_read_only_snapshot():
    s = _status()
    with pytest.raises(AttributeError):
        s.armed = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.pulses_refused["rate"] = 0  # type: ignore[index]
    assert s.pulses_refused_total == 9
    board = StatusBoard()
    assert board.latest() is None
    board.publish(s)
    assert board.latest() is s and board.version == 1


def test_progress_plain_lines_without_terminal_and_silent_with_quiet():
    con, buf = _plain_console()
    with progress(10, "replay", console=con, plain_min_s=0.0) as bar:
        bar.advance(4)
        bar.update(10)
    out = buf.getvalue()
    assert not bar.shown and bar.completed == 10 and "\x1b[" not in out
    assert out.splitlines()[0].startswith("replay: 0% (0/10)")
    assert "replay: 40% (4/10)" in out and out.splitlines()[-1].startswith("replay: 100%")
    quiet, qbuf = _plain_console()
    with progress(10, "replay", console=quiet, quiet=True) as bar:
        bar.advance(10)
    assert qbuf.getvalue() == ""
    term = io.StringIO()
    tcon = Console(file=term, force_terminal=True, width=120)
    assert list(track(range(3), "x", quiet=True, console=tcon)) == [0, 1, 2]
    assert term.getvalue() == ""


def test_progress_on_a_terminal_shows_counts_and_eta():
    term = io.StringIO()
    con = Console(file=term, force_terminal=True, width=120, color_system=None)
    assert list(track(range(5), "sweep", console=con)) == list(range(5))
    with progress(30.0, "replay", unit="s", console=con) as bar:
        bar.advance(30.0)
    with progress(None, "unknown", unit="files", console=con) as bar:
        bar.advance(3)
    assert list(track(iter("ab"), "iter", console=con)) == ["a", "b"]
    out = term.getvalue()
    assert "sweep" in out and "5/5" in out and "ETA" in out and "30/30 s" in out
    assert "3 files" in out and "2 done" in out
