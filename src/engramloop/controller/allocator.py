"""The pulse-budget allocator: spend a night's pulses where the predicted gain is highest.

Online and causal. For each candidate it is given the predicted recall gain of a pulse now
(:class:`decoders.uplift.UpliftModel`) and decides on it with what it has seen so far
(:class:`BudgetAllocator`). The safety governor still reviews every pulse it proposes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engramloop.decoders.pulse_features import CandidateFeatures

__all__ = ["AllocatorSettings", "BudgetAllocator"]


@dataclass(frozen=True)
class AllocatorSettings:
    budget: int = 30            # pulses for the night
    night_s: float = 1200.0     # planned session length, seconds
    min_gap_s: float = 5.0      # spacing between pulses, seconds
    warmup: int = 20            # candidates seen before the quantile is trusted
    recent: int = 100           # the threshold is a quantile of this many recent gains
    slack: float = 3.0          # pulses ahead of / behind the even pace before it acts


class BudgetAllocator:
    """``decide(gain, t_s) -> bool``; pure state, no clocks (``t_s`` is the candidate's
    detection time, seconds from the session start).

    Paced: the budget is meant to be spent evenly over ``night_s`` (pulses interact: the
    engram saturates, so bunching them wastes some; in the fixed experiment an unpaced
    version spent half its budget in the first 200 s and did worse than even spacing).
    More than ``slack`` pulses ahead of the pace it waits; more than ``slack`` behind it
    takes any candidate above the median of the recent gains; otherwise it takes a
    candidate at or above the ``1 - k/m`` quantile of the recent gains (``k`` pulses left,
    ``m`` spaced candidates expected in the rest of the night from the rate so far --
    the opportunity forecast), kept between the median and the 90th percentile.
    """

    def __init__(self, settings: AllocatorSettings) -> None:
        self.s = settings
        self.reset()

    def reset(self) -> None:
        self._recent: list[float] = []
        self._last_fire = -math.inf
        self._last_seen = -math.inf
        self._spaced_seen = 0
        self._n_seen = 0
        self.spent = 0
        self.threshold = math.inf

    def decide(self, gain: float, t_s: float) -> bool:
        s = self.s
        self._n_seen += 1
        self._recent.append(float(gain))
        if len(self._recent) > s.recent:
            del self._recent[0]
        if t_s - self._last_seen >= s.min_gap_s:
            self._spaced_seen += 1         # a candidate at least one gap after the last one
            self._last_seen = t_s
        if self.spent >= s.budget or t_s - self._last_fire < s.min_gap_s:
            return False
        pace = s.budget * min(max(t_s, 0.0) / s.night_s, 1.0)
        if self.spent >= pace + s.slack:
            return False                   # ahead of the even pace: wait
        left = s.budget - self.spent
        expected = self._spaced_seen / max(t_s, 60.0) * max(s.night_s - t_s, 0.0)
        if expected <= left:
            q = 0.0                        # fewer candidates left than pulses: take all
        elif self.spent < pace - s.slack:
            q = 0.5                        # behind: anything above the recent median
        elif self._n_seen < s.warmup:
            return False
        else:
            q = min(max(1.0 - left / expected, 0.5), 0.9)
        g = sorted(self._recent)
        self.threshold = g[int(q * (len(g) - 1))] if q > 0 else -math.inf
        if gain >= self.threshold:
            self.spent += 1
            self._last_fire = t_s
            return True
        return False


class UpliftGate:
    """The policy's gate for ``[forecaster] gate = "uplift_budget"``.

    The policy hands it every chunk's detections (:meth:`see`); it computes the causal
    candidate features of each ripple (:class:`decoders.pulse_features.CandidateFeatures`,
    with the stage features of the forecaster worker's newest epoch) and, when the policy
    proposes a pulse on that ripple, predicts its recall gain
    (:class:`decoders.uplift.UpliftModel`, NumPy, microseconds: synchronous on the loop
    thread, see ``bench/uplift_inference.py``) and lets the :class:`BudgetAllocator` decide.
    Only the policy calls :meth:`allows` (once per proposal); the live view reads
    :meth:`status`, which never spends budget.

    Parameters
    ----------
    model : UpliftModel
    settings : AllocatorSettings
    worker : ForecastWorker, optional
        Source of the newest epoch feature vector (stage features); without one they stay 0.
    """

    def __init__(self, model, settings: AllocatorSettings, worker=None) -> None:
        self.model = model
        self.allocator = BudgetAllocator(settings)
        self.worker = worker
        self.features = CandidateFeatures()
        self.last_reason = ""
        self.last_gain = math.nan
        self._t0: float | None = None
        self._cand: tuple[float, np.ndarray] | None = None
        self._decided: tuple[float, bool] | None = None
        self._epoch_seen = None

    @property
    def failed(self) -> bool:
        return bool(getattr(self.worker, "failed", False))

    def describe(self) -> str:
        a = self.allocator
        return (f"predicted recall gain >= budget threshold ({a.spent}/{a.s.budget} pulses "
                f"spent, threshold {a.threshold:.2e})")

    def latest(self):
        return self.worker.latest() if self.worker is not None else None

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
        if a.spent >= a.s.budget:
            return "closed (budget_spent)"
        return f"spending ({a.spent}/{a.s.budget})"

    def allows(self, t_s: float) -> bool:
        """Decide the proposal on this chunk's ripple (called by the policy only)."""
        if self.failed:
            self.last_reason = "forecaster_failed"
            return False
        if self._cand is not None and (self._decided is None
                                       or self._decided[0] != self._cand[0]):
            t_det, x = self._cand
            self.last_gain = self.model.predict(x)
            ok = self.allocator.decide(self.last_gain, t_det - (self._t0 or 0.0))
            self._decided = (t_det, ok)
            self._cand = None
        if self._decided is None:
            self.last_reason = "no_candidate"
            return False
        ok = self._decided[1]
        self.last_reason = "" if ok else (
            "budget_spent" if self.allocator.spent >= self.allocator.s.budget
            else "low_predicted_gain")
        return ok
