"""Live LSL runs against real pylsl outlets in another process (tests/drivers/lsl_outlet_proc.py:
pylsl's SendData pattern, chunked, irregular pushes, a real 0.5 s loss, an irregular-rate
stream, an outlet killed and restarted), through ``engramloop run``, read back with pyxdf.

The reference is the data itself: the outlet publishes the YASA N3 excerpt, whose slow
waves the slow-oscillation detector finds offline (count below); a live run must build
its detectors once the stream is resolved and see events."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

pylsl = pytest.importorskip("pylsl")
pyxdf = pytest.importorskip("pyxdf")

from engramloop.cli import main  # noqa: E402

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

HERE = Path(__file__).resolve().parent
from shared_data import DATA as SHARED  # noqa: E402

DATA = SHARED / "data_N3_no-spindles_30sec_100Hz.txt"

CONFIG = """
name = "lsl-live-test"
seed = 0

[source]
kind = "lsl"

[source.lsl]
name = "unused"
resolve_timeout_s = 5.0
stale_after_s = 0.5
error_after_s = 20.0

[detectors.ripple]
enabled = false

[detectors.spindle]
enabled = false

[detectors.so]
channels = ["C3"]
calibration_s = 2.0
threshold_mode = "fixed"
threshold_v = -20e-6        # this excerpt's slow waves are small (signal SD ~20 uV)
predict = "fixed"           # every down state predicts its up state: every one is a decision
sws_gate_ratio = 0.0        # no slow-wave-sleep gate: it needs 10 s of history, the run is 12 s

[policy]
target = "so_upstate"
condition = "sham"
so_mode = "phase"
max_lead_s = 1.5

[policy.pulse]
modality = "auditory"
shape = "monophasic"
amplitude = 50.0
phase_width_s = 0.05
channel = 1

[safety]
arm_on_start = true
refractory_s = 0.5
modalities = ["auditory"]
auditory_lockout_s = 0.0

[stimulators]
kinds = ["sham"]
"""


class Outlet:
    """tests/drivers/lsl_outlet_proc.py in its own process."""

    def __init__(self, mode: str, name: str, sid: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "lsl_outlet_proc.py"), mode, name, sid, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout.readline().strip() == "up"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()    # else an unclosed-pipe ResourceWarning at exit


@pytest.fixture
def outlet():
    made: list[Outlet] = []

    def make(*a: str) -> Outlet:
        o = Outlet(*a)
        made.append(o)
        return o

    yield make
    for o in made:
        o.kill()


def _config(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "lsl-live.toml"
    p.write_text(CONFIG + extra)
    return p


def _streams(xdf: Path) -> dict:
    streams, _ = pyxdf.load_xdf(str(xdf), dejitter_timestamps=False)
    out = {}
    for s in streams:
        name = s["info"]["name"][0]
        if name == "engramloop.raw":
            out[name] = s
        else:
            out[name] = [json.loads(m[0]) for m in s["time_series"]]
            out[name + ".t"] = np.asarray(s["time_stamps"])
    return out


def _name() -> str:
    return f"engramloop-live-{uuid.uuid4().hex[:10]}"


def offline_so_count(x: np.ndarray) -> int:
    """SO events the same detector settings find offline in ``x`` (volts, 100 Hz): the
    samples the live run recorded, so a live run must find the same waves."""
    from engramloop.core.chunk import Chunk
    from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings

    det = SlowOscDetector(SlowOscSettings(channels=("C3",), calibration_s=2.0,
                                          threshold_mode="fixed", threshold_v=-20e-6,
                                          predict="fixed", sws_gate_ratio=0.0))
    n = 0
    for i in range(0, len(x), 10):
        seg = np.ascontiguousarray(x[i:i + 10, :1], dtype=np.float64)
        c = Chunk(seg, np.arange(i, i + len(seg)) / 100.0, 100.0, ("C3",), 0.0)
        n += sum(e.kind == "so" for e in det.process(c))
    return n


MODES = ("sample", "chunk", "irregular")


@pytest.fixture(scope="module")
def live_runs(tmp_path_factory) -> dict:
    """One 12 s ``engramloop run`` per outlet mode (one after another, each on its own
    outlet process), read back; the tests below share them (the SendData check reads the
    very "sample" run the detector check makes instead of making its own). Not side by
    side: three live runs at once on a busy 2-core machine fell behind (backlog: no
    decisions at all)."""
    recs = {}
    for mode in MODES:
        tmp = tmp_path_factory.mktemp(f"live-{mode}")
        name = _name()
        out = Outlet(mode, name, name)
        try:
            xdf = tmp / "live.xdf"
            rc = main(["run", str(_config(tmp)), "--stream", name, "--duration", "12",
                       "--record", str(xdf), "--quiet"])
            assert rc == 0, mode
            recs[mode] = _streams(xdf)
        finally:
            out.kill()
    return recs


@pytest.mark.parametrize("mode", MODES)
def test_live_lsl_run_builds_detectors_and_sees_events(live_runs, mode) -> None:
    rec = live_runs[mode]
    log = [m["message"] for m in rec["engramloop.log"] if "message" in m]
    assert any("detectors SlowOscDetector" in m for m in log), log
    so = [e for e in rec["engramloop.events"] if e.get("kind") == "so"]
    assert so, "no slow-oscillation events in a live run"
    # the same waves as offline on the very samples the run recorded (+-1 at the ends)
    ref = offline_so_count(rec["engramloop.raw"]["time_series"])
    assert abs(len(so) - ref) <= 1 and ref >= 2, (len(so), ref)
    # no sample is lost, so there is no gap and no decision is refused for one
    assert not [m for m in rec["engramloop.log"] if m.get("kind") == "gap"]
    dec = rec.get("engramloop.governor", [])
    assert dec and not [d for d in dec if d["rule"] == "gap"], dec


def _decisions(rec: dict) -> list[dict]:
    return rec.get("engramloop.governor", [])


def test_senddata_jitter_refuses_no_decision_for_gap(live_runs) -> None:
    """pylsl's SendData pattern (bursts every 10 ms, stamped at the push): no gap, so no
    decision is refused for "gap" (before: 11 of 11 were). The 12 s run of the "sample"
    outlet above."""
    rec = live_runs["sample"]
    dec = _decisions(rec)
    gaps = [m for m in rec["engramloop.log"] if m.get("kind") == "gap"]
    assert not gaps, gaps[:3]
    assert dec and not [d for d in dec if d["rule"] == "gap"], dec
    assert [d for d in dec if d["approved"]], dec


class Board:
    """The loop's real StatusBoard, keeping every snapshot it publishes."""

    def __init__(self) -> None:
        from engramloop.controller.status import StatusBoard

        self.inner = StatusBoard()
        self.seen: list = []

    def publish(self, status) -> None:
        self.seen.append(status)
        self.inner.publish(status)

    def latest(self):
        return self.inner.latest()


def _run_loop(tmp_path: Path, name: str, duration: float, during=None, until=None):
    """Build and run the loop in-process (its status board kept); ``during(loop)`` runs
    in a thread meanwhile (kills and restarts outlets). With ``until(loop, board)``, the
    run stops once that holds (``duration`` is then only the ceiling, and reaching it
    fails the test)."""
    import threading

    from run_until import run_until

    from engramloop.controller.build import build_loop
    from engramloop.controller.config import load_config

    board = Board()
    xdf = tmp_path / "live.xdf"
    loop = build_loop(load_config(_config(tmp_path)), stream=name, record=str(xdf),
                      status_board=board)
    th = threading.Thread(target=during, args=(loop,), daemon=True) if during else None
    if th:
        th.start()
    if until is None:
        res = loop.run(duration)
    else:
        res, met = run_until(loop, lambda: until(loop, board), duration)
        assert met, f"not done within {duration} s: {res.stop_reason} {res.error}"
    if th:
        th.join(timeout=30)
    return res, board, _streams(xdf)


def test_a_real_half_second_loss_is_a_gap_and_inhibits(tmp_path, outlet) -> None:
    """The outlet skips 0.5 s of samples (never sent) 4 s in: one gap of ~50 samples, and
    the governor blocks pulses after it (its lockout on the live view)."""
    name = _name()
    outlet("drop", name, name, "4.0")
    def gap_shown(loop, board) -> bool:
        # the gap counted and its lockout on the live view: what is checked below
        return loop.result.n_gaps >= 1 and any(
            lk.startswith("gap") for st in list(board.seen) for lk in st.lockouts)

    res, board, rec = _run_loop(tmp_path, name, 30.0, until=gap_shown)
    gaps = [m for m in rec["engramloop.log"] if m.get("kind") == "gap"]
    assert len(gaps) == 1 and res.n_gaps == 1, gaps
    assert abs(gaps[0]["missing_samples"] - 50) <= 3, gaps
    assert any(lk.startswith("gap") for st in board.seen for lk in st.lockouts)


def test_irregular_rate_stream_is_a_one_line_error(tmp_path, outlet, capsys) -> None:
    name = _name()
    outlet("norate", name, name)
    rc = main(["run", str(_config(tmp_path)), "--stream", name, "--duration", "3",
               "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1, err
    assert "irregular rate" in err[0] and name in err[0], err


def test_outlet_killed_for_5_s_and_restarted_is_recorded_and_shown(tmp_path,
                                                                   outlet) -> None:
    """A real outlet process killed (SIGKILL) 4 s into the run and started again 5 s later
    with the same source_id: stale, lost and recovered are events in the recording with
    times, states on the live view, and the governor holds pulses while stale."""
    import time

    name = _name()
    first = outlet("sample", name, name)
    marks: dict = {}

    def outage(loop) -> None:
        time.sleep(4.0)
        first.kill()
        marks["killed"] = loop.clock.now()
        time.sleep(5.0)
        outlet("sample", name, name)
        marks["restarted"] = loop.clock.now()

    def recovered(loop, board) -> bool:
        # back after the restart, and the samples missed meanwhile counted as a gap
        return ("restarted" in marks and loop.result.n_gaps >= 1
                and board.latest() is not None and board.latest().state == "running")

    res, board, rec = _run_loop(tmp_path, name, 40.0, outage, until=recovered)
    log = {m["kind"]: m for m in rec["engramloop.log"] if "kind" in m}
    for kind in ("source_stale", "source_lost", "source_recovered"):
        assert kind in log, sorted(log)
    killed, back = marks["killed"], marks["restarted"]
    info = (marks, log)
    # (a busy machine delays the outlet's last pushes, its restart and liblsl's
    # reconnection: generous bounds, the order is what matters)
    assert killed - 1.0 <= log["source_stale"]["since_s"] <= killed + 0.6, info
    assert log["source_stale"]["t_s"] < log["source_lost"]["t_s"] < back, info
    assert log["source_recovered"]["t_s"] >= back, info
    assert 4.0 <= log["source_recovered"]["outage_s"] <= 12.0, info
    states = [st.state for st in board.seen]
    assert any(s.startswith("source stale") for s in states)
    assert any(s.startswith("source lost") for s in states)
    assert any("source stale" in st.lockouts for st in board.seen)
    assert states[-1] == "stopped" and res.stop_reason.startswith("test:") \
        and not res.error     # it ran on after the outage, until stopped
    # the data after the outage is a gap (samples missing by count), then detection goes on
    assert res.n_gaps >= 1


def test_nan_from_a_live_outlet_pauses_and_resumes_detection(tmp_path, outlet) -> None:
    """1 s of NaN pushed by a real outlet (a lead off) 5 s into its data: recorded as they
    came, one artefact episode (start, end, channels, ~1 s) in the log and on the live
    view, stimulation held, and detection afterwards the same as the detector finds
    offline in the clean samples the run recorded after it."""
    name = _name()
    outlet("nan", name, name, "5.0")
    res, board, rec = _run_loop(tmp_path, name, 14.0)
    raw = rec["engramloop.raw"]["time_series"]
    t_raw = rec["engramloop.raw"]["time_stamps"]
    bad = ~np.isfinite(raw[:, 0])
    assert 90 <= bad.sum() <= 100          # 1 s at 100 Hz, as pushed
    log = rec["engramloop.log"]
    start = [m for m in log if m.get("kind") == "artefact_start"]
    end = [m for m in log if m.get("kind") == "artefact_end"]
    assert len(start) == len(end) == 1 and end[0]["channels"] == ["C3"]
    assert end[0]["duration_s"] == pytest.approx(1.0, abs=0.15)
    assert any(st.state.startswith("artefact: non-finite on C3") for st in board.seen)
    assert any("artefact" in st.lockouts for st in board.seen)
    # events after the clean data returned: as many as offline on those samples (after
    # their own calibration, so compare from 3 s after the return)
    t_back = end[0]["end_s"]
    live = [e for e in rec["engramloop.events"]
            if e.get("kind") == "so" and e["detect_s"] >= t_back + 3.0]
    after = t_raw >= t_back
    off = offline_so_count_times(raw[after], t_raw[after])
    off = [t for t in off if t >= t_back + 3.0]
    assert abs(len(live) - len(off)) <= 1, (len(live), len(off))
    assert not [e for e in rec["engramloop.events"]
                if e.get("kind") == "so" and end[0]["start_s"] <= e["detect_s"] < t_back]


def offline_so_count_times(x: np.ndarray, t: np.ndarray) -> list[float]:
    from engramloop.core.chunk import Chunk
    from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings

    det = SlowOscDetector(SlowOscSettings(channels=("C3",), calibration_s=2.0,
                                          threshold_mode="fixed", threshold_v=-20e-6,
                                          predict="fixed"))
    out = []
    for i in range(0, len(x), 10):
        seg = np.ascontiguousarray(x[i:i + 10, :1], dtype=np.float64)
        c = Chunk(seg, np.ascontiguousarray(t[i:i + 10]), 100.0, ("C3",), 0.0)
        out += [e.detect_s for e in det.process(c) if e.kind == "so"]
    return out
