"""The uplift prediction off the loop thread (issue 21): a real worker thread answers in
posting order; the policy decides a pending candidate at the first chunk after the answer
if it came within ``uplift_max_wait_s``, else refuses it as ``uplift_late`` -- counted in
the summary, noted in the recording, shown on the live view; ``--speed max`` waits for
every answer, so it decides exactly as a synchronous prediction.

Synchronisation is by events and condition variables with generous timeouts (never a
sleep), so the tests hold on a machine at load 8: a "slow" model is one that blocks on a
``threading.Event`` the test controls, not one that sleeps."""
import dataclasses
import json
import math
import threading

import numpy as np
import pytest
import pyxdf
from test_loop_status import Snapshots, StubForecaster

from engramloop.controller.allocator import AllocatorSettings, BudgetAllocator, UpliftGate
from engramloop.controller.build import build_loop
from engramloop.controller.config import SHIPPED_DIR, load_config
from engramloop.controller.policy import Policy, PolicySettings
from engramloop.controller.uplift_worker import UpliftWorker, UpliftWorkerError
from engramloop.core.events import Event
from engramloop.decoders.features import FeatureSettings
from engramloop.decoders.pulse_features import CANDIDATE_NAMES

CFG = SHIPPED_DIR / "sim-ripple-forecast.toml"
WAIT = 60.0        # generous: a loaded machine may take seconds to schedule a thread
SCORE = CANDIDATE_NAMES.index("ripple_score")


class ScoreModel:
    """predicted gain = ripple score x 1e-5 (a known ranking)."""

    def predict(self, x):
        return float(x[SCORE]) * 1e-5


class HeldModel(ScoreModel):
    """Answers only once the test sets ``release`` (a prediction as slow as we like)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def predict(self, x):
        self.started.set()
        assert self.release.wait(WAIT)
        return super().predict(x)


class FailingModel:
    def predict(self, x):
        raise RuntimeError("weights corrupted")


def _ripple(t, score=6.0):
    return Event("ripple", "CA1", t - 0.01, t, amplitude=50e-6, score=score)


def _gate(model, budget=100, min_gap_s=0.0):
    g = UpliftGate(model, AllocatorSettings(budget=budget, night_s=100.0,
                                            min_gap_s=min_gap_s, warmup=5), max_wait_s=0.02)
    g.start()
    return g


def test_the_worker_answers_in_posting_order_and_surfaces_errors():
    w = UpliftWorker(ScoreModel())
    w.start()
    try:
        for k in range(200):
            w.post(float(k), np.full(len(CANDIDATE_NAMES), float(k)))
        assert w.wait_answered(WAIT)
        got = w.take()
        assert [k for k, _ in got] == [float(k) for k in range(200)]
        assert [g for _, g in got] == pytest.approx([k * 1e-5 for k in range(200)])
        assert len(w.predict_s) == 200
    finally:
        w.stop()
    bad = UpliftWorker(FailingModel())
    bad.start()
    try:
        bad.post(1.0, np.zeros(len(CANDIDATE_NAMES)))
        assert not bad.wait_answered(WAIT)
        assert bad.failed
        with pytest.raises(UpliftWorkerError, match="RuntimeError: weights corrupted"):
            bad.check()
    finally:
        bad.stop()


def test_decisions_follow_the_answer_order_and_match_the_allocator():
    """Candidates decided one by one through the worker make the same decisions as the
    pure allocator on the same gains (the independent reference)."""
    rng = np.random.default_rng(0)
    scores = rng.uniform(3.0, 12.0, 60)
    times = np.cumsum(rng.uniform(0.5, 2.0, 60))
    gate = _gate(ScoreModel(), budget=15, min_gap_s=2.0)
    settings = gate.allocator.s
    try:
        got = []
        for t, sc in zip(times, scores, strict=True):
            gate.see([_ripple(t, sc)], t)
            key = gate.post(t)
            assert key == t
            assert gate.predictor.wait_answered(WAIT)
            (k, ok, reason), = gate.poll(t + 0.005)     # the next chunk, inside the wait
            assert k == key
            got.append(ok)
    finally:
        gate.stop()
    ref = BudgetAllocator(settings)
    t0 = times[0]
    want = [ref.decide(sc * 1e-5, t - t0) for t, sc in zip(times, scores, strict=True)]
    assert got == want
    assert any(want) and not all(want)


def test_an_answer_later_than_the_wait_is_refused_and_counted_never_sent_late():
    model = HeldModel()
    gate = _gate(model)
    try:
        gate.see([_ripple(10.0)], 10.0)
        assert gate.post(10.0) == 10.0
        assert model.started.wait(WAIT)
        assert gate.poll(10.005) == []                  # still inside the wait: pending
        gate.see([_ripple(10.01)], 10.01)
        assert gate.post(10.01) is None                 # one decision at a time
        assert gate.last_reason == "uplift_pending"
        assert gate.poll(10.021) == [(10.0, False, "uplift_late")]
        assert gate.n_late == 1
        assert "1 uplift_late" in gate.status(10.03)
        seen = gate.allocator._n_seen
        model.release.set()
        assert gate.predictor.wait_answered(WAIT)
        assert gate.poll(10.5) == []                    # the late answer decides nothing
        assert gate.allocator._n_seen == seen + 1       # but enters the history
        assert gate.allocator.spent == 0
    finally:
        model.release.set()
        gate.stop()


def test_the_policy_sends_a_decided_pulse_no_earlier_than_the_decision():
    model = HeldModel()
    gate = _gate(model)
    pol = Policy(PolicySettings(), budget_s=0.002, gate=gate)
    try:
        assert pol.step([_ripple(20.0)], 20.0) == []     # pending: the answer is held
        assert model.started.wait(WAIT)
        model.release.set()
        assert gate.predictor.wait_answered(WAIT)
        (it,) = pol.step([], 20.005)                     # the next chunk decides
        assert it.detect_s == 20.0
        assert it.intended_s == pytest.approx(20.005)    # leaves no earlier than now
        assert it.deadline_s == pytest.approx(20.007)    # with the scheduler's budget
        assert pol.gate_allowed == 1 and pol.gate_refusals == {}
    finally:
        model.release.set()
        gate.stop()


def test_the_policy_counts_a_late_answer():
    model = HeldModel()
    gate = _gate(model)
    pol = Policy(PolicySettings(), budget_s=0.002, gate=gate)
    try:
        assert pol.step([_ripple(30.0)], 30.0) == []
        assert model.started.wait(WAIT)
        assert pol.step([], 30.01) == []
        assert pol.step([], 30.03) == []
        assert pol.gate_refusals == {"uplift_late": 1}
        assert pol.gate_allowed == 0
    finally:
        model.release.set()
        gate.stop()


def _model_file(tmp_path):
    cols = list(CANDIDATE_NAMES)
    w = [[1.0 if c == "ripple_score" else 0.0] for c in cols]
    path = tmp_path / "uplift.json"
    path.write_text(json.dumps({"columns": cols, "mean": [0.0] * len(cols),
                                "std": [1.0] * len(cols), "layers": [[w, [0.0]]],
                                "scale": 1e5}))
    return path


def _cfg(tmp_path, **fkw):
    base = load_config(CFG)
    fs = FeatureSettings(epoch_s=5.0, hop_s=5.0, eeg_channel="Cz", lfp_channel="CA1")
    fset = dataclasses.replace(base.forecaster, enabled=True, gate="uplift_budget",
                               uplift_model=str(_model_file(tmp_path)), budget_pulses=6,
                               night_s=40.0, min_gap_s=2.0, features=fs, **fkw)
    return dataclasses.replace(base, forecaster=fset)


def _pulses(res):
    return [(p.detect_s, p.intended_s) for p, _ in res.deliveries]


def test_speed_max_decides_as_a_synchronous_prediction(tmp_path):
    """--speed max waits for every answer: the same pulses as predicting on the loop
    thread itself (the worker replaced by a synchronous stand-in for the reference)."""
    cfg = _cfg(tmp_path)
    runs = []
    for synchronous_stand_in in (False, True):
        loop = build_loop(cfg, speed="max", duration_s=40.0)
        loop.forecaster._forecaster = StubForecaster(0.5)
        gate = loop.policy.gate
        assert gate.synchronous
        if synchronous_stand_in:
            gate.predictor = _InThread(gate.model)
        res = loop.run(40.0)
        runs.append((_pulses(res), dict(res.gate_refusals)))
    assert runs[0] == runs[1]
    assert runs[0][0], "no pulse at all: the comparison would be empty"
    assert "uplift_late" not in runs[0][1]


class _InThread:
    """Predicts in post() on the calling thread: the synchronous reference."""

    failed = False

    def __init__(self, model):
        self.model, self._a = model, []

    def start(self):
        pass

    def stop(self):
        pass

    def check(self):
        pass

    def post(self, key, x):
        self._a.append((key, self.model.predict(x)))

    def wait_answered(self, timeout_s):
        return True

    def take(self):
        a, self._a = self._a, []
        return a


@pytest.mark.realtime
def test_late_answers_in_a_paced_run_are_counted_recorded_and_shown(tmp_path):
    """A paced run whose model never answers in time: every candidate is refused as
    uplift_late; the summary, the recording's log stream and the live view say so, and
    no pulse is sent."""
    cfg = _cfg(tmp_path)
    # N3 (about one ripple a second), and every detected ripple proposed however late the
    # loop gets to it on a loaded machine (a starved loop would otherwise drop them all as
    # ripple_too_late before the gate sees one)
    cfg = dataclasses.replace(
        cfg, detectors=dataclasses.replace(cfg.detectors, ripple=dataclasses.replace(
            cfg.detectors.ripple, calibration_s=1.0)),
        policy=dataclasses.replace(cfg.policy, ripple_max_age_s=1.0),
        sim=dataclasses.replace(cfg.sim, hypnogram=dataclasses.replace(
            cfg.sim.hypnogram, schedule=("N3:600",))))
    board = Snapshots()
    rec = tmp_path / "late.xdf"
    loop = build_loop(cfg, speed=4, duration_s=20.0, status_board=board,
                      record=str(rec))
    loop.forecaster._forecaster = StubForecaster(0.5)
    model = HeldModel()
    loop.policy.gate.predictor.model = model
    try:
        res = loop.run(20.0)
    finally:
        model.release.set()
    assert not loop.policy.gate.synchronous
    assert res.gate_refusals.get("uplift_late", 0) >= 1
    assert not res.deliveries
    assert res.forecast_gate["held_back"]["uplift_late"] == res.gate_refusals["uplift_late"]
    assert any("uplift_late" in s.forecast_gate for s in board.all)
    streams, _ = pyxdf.load_xdf(str(rec), synchronize_clocks=False,
                                dejitter_timestamps=False)
    log = next(s for s in streams if s["info"]["name"][0] == "engramloop.log")
    logs = [str(m[0]) for m in log["time_series"]]
    assert any("uplift_late" in m and "not stimulated" in m for m in logs)
    assert any("uplift_late" in str(m) for m in logs if "forecast gate" in m)
    assert math.isfinite(res.duration_s)


def test_the_loop_can_decide_between_chunks_once_the_answer_is_back():
    """Policy.resolve (called by the loop after it has finished a chunk) decides a pending
    proposal as soon as its answer is back, without waiting for the next chunk."""
    model = HeldModel()
    gate = _gate(model)
    pol = Policy(PolicySettings(), budget_s=0.002, gate=gate)
    try:
        assert pol.step([_ripple(40.0)], 40.0) == []
        assert pol.waiting
        assert model.started.wait(WAIT)
        assert pol.resolve(40.001) == []                 # not back yet: still pending
        assert pol.waiting
        model.release.set()
        assert gate.predictor.wait_answered(WAIT)
        (it,) = pol.resolve(40.002)
        assert it.detect_s == 40.0 and it.intended_s == pytest.approx(40.002)
        assert not pol.waiting and pol.resolve(40.003) == []
    finally:
        model.release.set()
        gate.stop()


def test_a_pulse_the_governor_refuses_gives_its_budget_back():
    """The allocator spends on pulses sent: an allowed pulse the safety governor refuses
    is refunded, and its spacing does not hold back the next candidate."""
    gate = _gate(ScoreModel(), budget=10, min_gap_s=5.0)
    pol = Policy(PolicySettings(), budget_s=0.002, gate=gate)
    try:
        pol.step([_ripple(20.0, score=9.0)], 20.0)
        assert gate.predictor.wait_answered(WAIT)
        (it,) = pol.step([], 20.005)
        assert gate.allocator.spent == 1
        pol.governor_refused(it)
        assert gate.allocator.spent == 0 and gate.n_refunded == 1
        pol.governor_refused(it)                       # once only
        assert gate.allocator.spent == 0 and gate.n_refunded == 1
        pol.step([_ripple(21.0, score=9.0)], 21.0)     # within min_gap of the refused one
        assert gate.predictor.wait_answered(WAIT)
        (it2,) = pol.step([], 21.005)
        assert it2.detect_s == 21.0 and gate.allocator.spent == 1
    finally:
        gate.stop()


def test_in_a_run_the_budget_spent_equals_the_pulses_the_governor_approved(tmp_path):
    """A session cap (the governor) below the allocator's budget: the allocator's count
    follows the approved pulses, not the ones it allowed."""
    cfg = _cfg(tmp_path)
    cfg = dataclasses.replace(cfg, safety=dataclasses.replace(cfg.safety,
                                                              max_pulses_per_session=2))
    loop = build_loop(cfg, speed="max", duration_s=40.0)
    loop.forecaster._forecaster = StubForecaster(0.5)
    res = loop.run(40.0)
    approved = sum(1 for d in res.decisions if d.approved)
    assert approved == 2
    assert loop.policy.gate.allocator.spent == approved
    assert loop.policy.gate.n_refunded >= 1, "the cap refused nothing: nothing checked"


def test_a_ripple_decided_after_its_max_age_is_not_stimulated_and_its_budget_given_back():
    """ripple_max_age_s holds at the decision, not only at the proposal: a ripple 25 ms
    old when proposed (inside 30 ms) whose answer comes 19 ms later (inside the 20 ms
    wait) would leave 44 ms after its onset, past the peak's +-50 ms window the setting
    guards. Refused as too late, and the budget the allocator spent on it given back."""
    model = HeldModel()
    gate = _gate(model)
    try:
        p = Policy(PolicySettings(ripple_max_age_s=0.03), 0.002, gate=gate)
        ev = Event("ripple", "CA1", onset_s=9.975, detect_s=10.0, amplitude=50e-6,
                   score=6.0)
        assert p.step([ev], 10.0) == [] and p.waiting
        model.release.set()
        assert gate.predictor.wait_answered(WAIT)
        assert p.resolve(10.019) == []
        assert p.n_too_late == 1
        assert gate.allocator.spent == 0
        # one answered in time still goes
        ev2 = Event("ripple", "CA1", onset_s=19.99, detect_s=20.0, amplitude=50e-6,
                    score=6.0)
        assert p.step([ev2], 20.0) == [] and p.waiting
        assert gate.predictor.wait_answered(WAIT)
        [i] = p.resolve(20.005)
        assert i.intended_s == pytest.approx(20.005) and gate.allocator.spent == 1
    finally:
        gate.stop()
