"""The pulse-budget allocator: spend a night's pulses where the predicted gain is highest.

Online and causal. For each candidate it is given the predicted recall gain of a pulse now
(:class:`decoders.uplift.UpliftModel`). It keeps the gains of the candidates seen so far
and forecasts how many more will come: candidates per second of the night so far times
the seconds left (the opportunity forecast). With ``k`` pulses left and ``m`` spaced
candidates expected, it fires when the gain is at or above the ``1 - k/m`` quantile of the
gains seen (so it expects to spend ``k``); when ``m <= k`` it fires on every spaced
candidate (the budget would otherwise go unspent). The safety governor still reviews every
pulse it proposes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["AllocatorSettings", "BudgetAllocator"]


@dataclass(frozen=True)
class AllocatorSettings:
    budget: int = 30            # pulses for the night
    night_s: float = 1200.0     # planned session length, seconds
    min_gap_s: float = 5.0      # spacing between pulses, seconds
    warmup: int = 20            # candidates seen before the quantile is trusted


class BudgetAllocator:
    """``decide(gain, t_s) -> bool``; pure state, no clocks (``t_s`` is the candidate's
    detection time, seconds from the session start)."""

    def __init__(self, settings: AllocatorSettings) -> None:
        self.s = settings
        self.reset()

    def reset(self) -> None:
        self._gains: list[float] = []
        self._last_fire = -math.inf
        self._last_seen = -math.inf
        self._spaced_seen = 0
        self.spent = 0
        self.threshold = math.inf

    def decide(self, gain: float, t_s: float) -> bool:
        s = self.s
        self._gains.append(float(gain))
        if t_s - self._last_seen >= s.min_gap_s:
            self._spaced_seen += 1         # a candidate at least one gap after the last one
            self._last_seen = t_s
        if self.spent >= s.budget or t_s - self._last_fire < s.min_gap_s:
            return False
        left = s.budget - self.spent
        elapsed = max(t_s, 60.0)      # a rate from under a minute is noise
        expected = self._spaced_seen / elapsed * max(s.night_s - t_s, 0.0)
        if expected <= left:
            self.threshold = -math.inf
        elif len(self._gains) < s.warmup:
            return False
        else:
            self.threshold = float(np.quantile(self._gains, 1.0 - left / expected))
        if gain >= self.threshold:
            self.spent += 1
            self._last_fire = t_s
            return True
        return False
