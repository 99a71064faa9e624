"""The pulse-budget allocator: spend a night's pulses where the predicted gain is highest.

Online and causal. For each candidate it is given the predicted recall gain of a pulse now
(:class:`decoders.uplift.UpliftModel`) and decides on it with what it has seen so far
(:class:`BudgetAllocator`). The safety governor still reviews every pulse it proposes.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from engramloop.controller.uplift_worker import UpliftWorker, UpliftWorkerError
from engramloop.decoders.pulse_features import CANDIDATE_NAMES, CandidateFeatures

__all__ = ["AllocatorSettings", "BudgetAllocator", "UpliftGate", "SIM_UPLIFT_WAIT_S",
           "after_spindle"]

_SPINDLE_RECENT = CANDIDATE_NAMES.index("spindle_recent")


@dataclass(frozen=True)
class AllocatorSettings:
    budget: int = 30            # pulses for the night
    night_s: float = 1200.0     # planned session length, seconds
    min_gap_s: float = 5.0      # spacing between pulses, seconds
    warmup: int = 20            # candidates seen before the quantile is trusted
    recent: int = 100           # the threshold is a quantile of this many recent gains
    slack: float = 3.0          # pulses ahead of / behind the even pace before it acts
    # (the issue-21 experiment runs its allocator at 6: on training seeds 100-109, 5-fold,
    # 30 pulses, the spindle-gated allocator gained +0.0105 recall at 6 vs +0.0099 at 3;
    # docs/uplift.md)
    after_spindle_only: bool = False   # the gate spends only on ripples after a spindle
    # where the opportunity forecast (spaced candidates still to come) comes from: "rate"
    # (candidates per second so far times the seconds left) or "forecast" (the caller
    # passes ``expected`` to :meth:`BudgetAllocator.decide`, e.g. from
    # :class:`controller.opportunity.OpportunityModel`)
    opportunity: str = "rate"
    # what the even pace is over: "clock" (the night's seconds) or "opportunity" (the
    # night's expected candidates: the share already past). On training seeds 100-105
    # pacing over opportunities spread the pulses like the plain spindle rule and lost
    # what clock pacing gains over it (docs/uplift.md)
    pace: str = "clock"
    # spend the budget: in the last stretch of the night (fewer than ``endgame`` times the
    # pulses left expected) the threshold falls to take every candidate
    endgame: float = 0.0
    # more than ``slack`` pulses behind the pace, take anything at or above this quantile
    # of the recent gains
    behind_quantile: float = 0.5


class BudgetAllocator:
    """``decide(gain, t_s, eligible, x) -> bool``; pure state, no clocks (``t_s`` is the candidate's
    detection time, seconds from the session start).

    Paced: the budget is meant to be spent evenly over ``night_s`` (pulses interact: the
    engram saturates, so bunching them wastes some; in the fixed experiment an unpaced
    version spent half its budget in the first 200 s and did worse than even spacing).
    More than ``slack`` pulses ahead of the pace it waits; more than ``slack`` behind it
    takes any candidate at or above the ``behind_quantile`` of the recent gains; otherwise
    it takes a candidate at or above the ``1 - k/m`` quantile of the recent gains (``k``
    pulses left, ``m`` spaced candidates expected in the rest of the night -- the
    opportunity forecast: the rate so far, or ``opportunity.expected(...)`` of an
    :class:`controller.opportunity.OpportunityModel`), kept between the median and the
    90th percentile; and every candidate once ``m <= max(endgame, 1) * k``. The pace is
    over the clock (``pace = "clock"``) or over the expected opportunities
    (``"opportunity"``).

    Parameters
    ----------
    settings : AllocatorSettings
    opportunity : OpportunityModel, optional
        Required when ``settings.opportunity == "forecast"``.
    """

    def __init__(self, settings: AllocatorSettings, opportunity=None) -> None:
        if settings.opportunity not in ("rate", "forecast"):
            raise ValueError(f"AllocatorSettings.opportunity must be 'rate' or 'forecast', "
                             f"got {settings.opportunity!r}")
        if settings.pace not in ("clock", "opportunity"):
            raise ValueError(f"AllocatorSettings.pace must be 'clock' or 'opportunity', "
                             f"got {settings.pace!r}")
        if settings.opportunity == "forecast" and opportunity is None:
            raise ValueError("AllocatorSettings.opportunity 'forecast' needs an "
                             "OpportunityModel")
        self.s = settings
        #: :class:`controller.opportunity.OpportunityModel` (``opportunity = "forecast"``)
        self.opportunity = opportunity
        self.reset()

    def reset(self) -> None:
        self._recent: list[float] = []
        self._last_fire = -math.inf
        self._fire_before = -math.inf
        self._last_seen = -math.inf
        self._spaced_seen = 0
        self._n_seen = 0
        self.spent = 0
        self.threshold = math.inf
        self.expected = math.nan          # the last opportunity forecast used

    def observe(self, gain: float, t_s: float) -> None:
        """Count a candidate in the history without deciding on it (its prediction came
        too late to act on: it still tells the allocator what gains and how many
        candidates the night brings)."""
        s = self.s
        self._n_seen += 1
        self._recent.append(float(gain))
        if len(self._recent) > s.recent:
            del self._recent[0]
        if t_s - self._last_seen >= s.min_gap_s:
            self._spaced_seen += 1         # a candidate at least one gap after the last one
            self._last_seen = t_s

    def decide(self, gain: float, t_s: float, eligible: bool = True,
               x: np.ndarray | None = None) -> bool:
        """Decide one candidate. ``eligible`` False (the ripple did not follow a spindle
        detection within 1 s, see :func:`after_spindle`): refused, and not counted in the
        gains or the opportunity forecast -- the budget is spent only among eligible
        candidates. ``x``: the candidate's features (``CANDIDATE_NAMES`` order), which the
        opportunity model reads; required when ``settings.opportunity == "forecast"``."""
        if not eligible:
            return False
        s = self.s
        if s.opportunity == "forecast" and x is None:
            raise ValueError("BudgetAllocator: opportunity 'forecast' needs the "
                             "candidate's features (x)")
        self.observe(gain, t_s)
        if self.spent >= s.budget or t_s - self._last_fire < s.min_gap_s:
            return False
        if s.opportunity == "forecast":
            expected = self.opportunity.expected(x, t_s, self._spaced_seen, s.night_s)
        else:
            expected = self._spaced_seen / max(t_s, 60.0) * max(s.night_s - t_s, 0.0)
        if s.pace == "opportunity":
            # the share of the night's (expected) opportunities already past
            frac = self._spaced_seen / max(self._spaced_seen + expected, 1e-9)
        else:
            frac = max(t_s, 0.0) / s.night_s
        pace = s.budget * min(frac, 1.0)
        if self.spent >= pace + s.slack:
            return False                   # ahead of the even pace: wait
        left = s.budget - self.spent
        self.expected = expected
        if expected <= left * max(s.endgame, 1.0):
            q = 0.0                        # fewer candidates left than pulses: take all
        elif self.spent < pace - s.slack:
            q = s.behind_quantile      # behind: anything above that quantile
        elif self._n_seen < s.warmup:
            return False
        else:
            q = min(max(1.0 - left / expected, 0.5), 0.9)
        g = sorted(self._recent)
        self.threshold = g[int(q * (len(g) - 1))] if q > 0 else -math.inf
        if gain >= self.threshold:
            self.spent += 1
            self._fire_before = self._last_fire
            self._last_fire = t_s
            return True
        return False

    def refund(self) -> None:
        """The pulse last allowed was not sent (the safety governor refused it): it does
        not count against the budget, nor for the spacing of the next one."""
        if self.spent > 0:
            self.spent -= 1
            self._last_fire = self._fire_before


def after_spindle(x: np.ndarray) -> bool:
    """Whether a candidate (features in ``CANDIDATE_NAMES`` order) is a ripple detected
    within 1 s after a spindle detection: the only ones the allocator spends on (on
    training seeds the predicted gain alone spread pulses over every ripple and did
    worse than the one-line spindle rule; see docs/uplift.md)."""
    return bool(x[_SPINDLE_RECENT] > 0.5)


#: On the simulated clock the gate waits this long (wall seconds) at most for the uplift
#: worker's answer before calling it stalled.
SIM_UPLIFT_WAIT_S = 60.0


class UpliftGate:
    """The policy's gate for ``[forecaster] gate = "uplift_budget"``; the prediction runs
    off the loop thread.

    The policy hands it every chunk's detections (:meth:`see`); on the loop thread it
    computes the causal candidate features of each ripple
    (:class:`decoders.pulse_features.CandidateFeatures`, with the stage features of the
    forecaster worker's newest epoch). When the policy would propose a pulse on that
    ripple it posts the candidate (:meth:`post`) to an :class:`~controller.uplift_worker.
    UpliftWorker`, which predicts its recall gain on its own thread. The policy keeps the
    proposal pending and asks :meth:`poll` at every chunk: an answer that is there while
    the candidate is at most ``max_wait_s`` old (since its detection) is decided by the
    :class:`BudgetAllocator` at once; a candidate still unanswered (or answered too late)
    after ``max_wait_s`` is refused as ``uplift_late`` (counted in the summary and the
    recording, shown on the live view) and its gain, when it comes, only enters the
    allocator's history. So a loaded machine can make a pulse *not happen*, visibly, but
    never late: a decided pulse leaves at most ``max_wait_s`` (plus one chunk) after its
    ripple was detected, and the safety governor still reviews it.

    Answers come back in posting order (one worker, one queue), so for a given order of
    answers relative to chunks the decisions are the same. With ``synchronous`` (the
    simulated clock, ``--speed max``: there is no wall-clock deadline) :meth:`post` waits
    for the answer, so a replay decides exactly as a synchronous prediction would, at any
    load.

    While a candidate is pending, the policy's next proposals are refused as
    ``uplift_pending`` (one decision at a time: the allocator spaces its pulses by
    ``min_gap_s`` anyway). Only the policy calls :meth:`post`/:meth:`poll`; the live view
    reads :meth:`status`, which never spends budget.

    Parameters
    ----------
    model : UpliftModel
    settings : AllocatorSettings
    worker : ForecastWorker, optional
        Source of the newest epoch feature vector (stage features); without one they stay 0.
    max_wait_s : float
        Longest time from a ripple's detection to its decision, seconds (host clock).
    synchronous : bool
        Wait for each answer in :meth:`post` (simulated clock).
    """

    def __init__(self, model, settings: AllocatorSettings, worker=None, *,
                 max_wait_s: float = 0.02, synchronous: bool = False,
                 opportunity=None) -> None:
        self.model = model
        self.allocator = BudgetAllocator(settings, opportunity)
        self.worker = worker
        self.predictor = UpliftWorker(model)
        self.max_wait_s = float(max_wait_s)
        self.synchronous = bool(synchronous)
        self.features = CandidateFeatures()
        self.last_reason = ""
        self.last_gain = math.nan
        #: candidates refused because their prediction was not there within max_wait_s
        self.n_late = 0
        #: allowed pulses not sent: the safety governor refused them, or the policy found
        #: the ripple past ripple_max_age_s at the decision (their budget given back)
        self.n_refunded = 0
        self._t0: float | None = None
        self._cand: tuple[float, np.ndarray] | None = None
        self._pending: deque[float] = deque()    # posted, not yet decided (keys, in order)
        self._xs: dict[float, np.ndarray] = {}   # their features (the opportunity forecast)
        self._late: set[float] = set()          # refused as late, answer still to come
        self._epoch_seen = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the prediction thread (the loop calls this at start)."""
        self.predictor.start()

    def stop(self) -> None:
        self.predictor.stop()

    def check(self) -> None:
        """Re-raise the prediction thread's error in the loop thread, if any."""
        self.predictor.check()

    @property
    def failed(self) -> bool:
        return bool(getattr(self.worker, "failed", False)) or self.predictor.failed

    def describe(self) -> str:
        a = self.allocator
        refunded = (f"; {self.n_refunded} allowed but not sent (refused by the governor, "
                    f"or the ripple too old by then), budget given back"
                    if self.n_refunded else "")
        return (f"predicted recall gain >= budget threshold ({a.spent}/{a.s.budget} pulses "
                f"spent, threshold {a.threshold:.2e}; {self.n_late} decided too late"
                f"{refunded})")

    def latest(self):
        return self.worker.latest() if self.worker is not None else None

    # ------------------------------------------------------------------ loop thread
    def see(self, events, now_s: float) -> None:
        """One chunk's detections, in detection order."""
        if self._t0 is None:
            self._t0 = float(now_s)
            self.features.start(self._t0)
        vecs = getattr(self.worker, "_vectors", None)
        if vecs:
            fv = vecs[-1]
            if fv is not self._epoch_seen:
                self._epoch_seen = fv
                self.features.observe_epoch(fv["sws_index"], fv["rem_index"])
        self._cand = None      # the policy proposes on this chunk's first ripple only
        for ev in sorted(events, key=lambda e: e.detect_s):
            if ev.kind == "ripple":
                x = self.features.features(ev)
                if self._cand is None:
                    self._cand = (ev.detect_s, x)
            else:
                self.features.observe([ev])

    def status(self, now_s: float) -> str:
        """The gate's state for the live view (no decision is made)."""
        if self.failed:
            return "closed (forecaster_failed)"
        a = self.allocator
        late = f"; {self.n_late} uplift_late" if self.n_late else ""
        if a.spent >= a.s.budget:
            return f"closed (budget_spent{late})"
        return f"spending ({a.spent}/{a.s.budget}{late})"

    def post(self, t_s: float) -> float | None:
        """Post this chunk's candidate for prediction; returns its key (the ripple's
        detection time) or None with :attr:`last_reason` when there is nothing to post."""
        if self.failed:
            self.last_reason = "forecaster_failed"
            return None
        if self._cand is None:
            self.last_reason = "no_candidate"
            return None
        key, x = self._cand
        self._cand = None
        if self.allocator.s.after_spindle_only and not after_spindle(x):
            # the allocator spends only on ripples that follow a spindle: not predicted,
            # not counted in its history
            self.last_reason = "not_after_spindle"
            return None
        if self._pending:
            self.last_reason = "uplift_pending"
            return None
        self._pending.append(key)
        self._xs[key] = x
        self.predictor.post(key, x)
        if self.synchronous and not self.predictor.wait_answered(SIM_UPLIFT_WAIT_S):
            self.predictor.check()
            raise UpliftWorkerError(f"uplift worker did not answer within "
                                    f"{SIM_UPLIFT_WAIT_S:g} s")
        self.last_reason = ""
        return key

    def poll(self, now_s: float) -> list[tuple[float, bool, str]]:
        """Decisions that can be made now, in posting order: ``(key, allowed, reason)``.

        An answer for a candidate at most ``max_wait_s`` old is decided by the allocator;
        a candidate older than that is refused as ``uplift_late`` (its gain, when it comes,
        only enters the allocator's history).
        """
        out: list[tuple[float, bool, str]] = []
        t0 = self._t0 or 0.0
        a = self.allocator
        for key, gain in self.predictor.take():
            if key in self._late:
                self._late.discard(key)
                if gain == gain:
                    a.observe(gain, key - t0)
                continue
            if not self._pending or self._pending[0] != key:
                continue            # not ours (cannot happen: one queue, one order)
            self._pending.popleft()
            x = self._xs.pop(key, None)
            self.last_gain = gain
            if gain != gain:
                out.append((key, False, "uplift_nonfinite"))
            elif not self.synchronous and now_s - key > self.max_wait_s:
                self.n_late += 1
                a.observe(gain, key - t0)
                out.append((key, False, "uplift_late"))
            elif a.decide(gain, key - t0, x=x):
                out.append((key, True, ""))
            else:
                out.append((key, False, "budget_spent" if a.spent >= a.s.budget
                            else "low_predicted_gain"))
        while self._pending and not self.synchronous and now_s - self._pending[0] > \
                self.max_wait_s:
            key = self._pending.popleft()
            self._xs.pop(key, None)
            self._late.add(key)
            self.n_late += 1
            out.append((key, False, "uplift_late"))
        if self.failed:             # nothing pending survives a failed worker
            while self._pending:
                self._xs.pop(self._pending[0], None)
                out.append((self._pending.popleft(), False, "forecaster_failed"))
        return out

    def refund(self) -> None:
        """The safety governor refused the pulse this gate last allowed: give the
        budget back (the policy calls this). The allocator spends on pulses the governor
        approved; one the scheduler then cancels as late, or a device refuses, stays spent
        (and is counted where the run counts those)."""
        self.allocator.refund()
        self.n_refunded += 1

    def wait(self, timeout_s: float) -> bool:
        """Block the caller until every posted candidate is answered or ``timeout_s`` wall
        seconds passed (the loop, between chunks); True when answered."""
        return self.predictor.wait_answered(timeout_s)

    def allows(self, t_s: float) -> bool:
        """Post and decide at once, waiting for the answer (tests and notebooks; the
        policy uses :meth:`post` and :meth:`poll`)."""
        key = self.post(t_s)
        if key is None:
            return False
        if not self.synchronous:
            self.predictor.wait_answered(SIM_UPLIFT_WAIT_S)
        for k, ok, reason in self.poll(t_s):
            if k == key:
                self.last_reason = reason
                return ok
        self.last_reason = "uplift_late"
        return False
