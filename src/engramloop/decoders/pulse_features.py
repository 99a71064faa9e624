"""Per-candidate features: what the loop knows about a ripple at the moment it could pulse.

One stateful stage, :class:`CandidateFeatures`. It sees every detection (ripples, spindles,
slow oscillations) and every delivered pulse, and for each ripple detection returns one
vector in :data:`CANDIDATE_NAMES` order. Everything is causal: only detections with
``detect_s`` at or before the ripple's ``detect_s`` count, and the epoch-level stage
features are those of the newest finished epoch (:class:`decoders.features.FeatureVector`).
No I/O, no clocks, no torch: the stage replays bit-identically and the loop can run it on
its own thread.

Features (units in the names):

* the ripple: detector score (baseline SDs), amplitude (uV), age at detection (ms);
* spindles: seconds since the last spindle detection (capped at ``RECENT_CAP_S``) and
  whether one came within ``spindle_window_s`` (1 s: the issue-21 rule; ripples nest in
  spindle troughs, Sirota et al. 2003 PNAS 100:2065, Staresina et al. 2015 Nat Neurosci
  18:1679);
* slow oscillation: cos/sin of the SO phase at the ripple, extrapolated from the SO
  detector's predicted up-state (0 deg = up-state; ``so_period_s`` 1 s), zero when the
  last down-state is older than ``so_valid_s``; and a flag for a recent down-state;
* stage (newest epoch): ``sws_index``, ``rem_index``;
* sequence state: hours since the first sample (a tag-age proxy: tags set at learning
  decay over ~40 min, Frey & Morris 1998), pulses delivered so far (hundreds; a
  plasticity-product proxy), and over the last ``recent_s`` (60 s): ripple rate, spindle
  and SO densities and the fraction of ripples that followed a spindle (coupling density).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from engramloop.core.events import Event

__all__ = ["CANDIDATE_NAMES", "CandidateSettings", "CandidateFeatures"]

CANDIDATE_NAMES: tuple[str, ...] = (
    "ripple_score", "ripple_amp_uv", "ripple_age_ms",
    "since_spindle_s", "spindle_recent",
    "so_cos", "so_sin", "so_recent",
    "sws_index", "rem_index",
    "elapsed_h", "pulses_so_far_h",
    "recent_ripple_hz", "recent_spindle_per_min", "recent_so_per_min", "recent_coupled_frac",
)

#: seconds-since features are capped here (a spindle 10 s ago is as good as none)
RECENT_CAP_S = 10.0


@dataclass(frozen=True)
class CandidateSettings:
    """How candidate features are computed (fixed: a checkpoint records them)."""

    spindle_window_s: float = 1.0   # "just after a spindle detection" (issue 21 rule)
    so_period_s: float = 1.0        # SO cycle used to extrapolate phase (0.5-1.25 Hz SOs)
    so_valid_s: float = 2.0         # an SO down-state older than this says nothing
    recent_s: float = 60.0          # window of the recent densities


class CandidateFeatures:
    """``observe(events, pulses)`` then ``features(ripple)`` per candidate.

    Parameters
    ----------
    settings : CandidateSettings, optional
    """

    def __init__(self, settings: CandidateSettings | None = None) -> None:
        self.settings = settings or CandidateSettings()
        self.names = CANDIDATE_NAMES
        self.reset()

    def reset(self) -> None:
        """Forget all history."""
        self._t0: float | None = None
        self._last_spindle = -math.inf
        self._last_so: tuple[float, float] = (-math.inf, math.nan)   # (detect, predicted up)
        self._ripples: deque[tuple[float, bool]] = deque()           # (detect_s, coupled)
        self._spindles: deque[float] = deque()
        self._sos: deque[float] = deque()
        self._stage = (0.0, 0.0)
        self.n_pulses = 0

    def observe_epoch(self, sws_index: float, rem_index: float) -> None:
        """The newest finished epoch's stage features (``FeatureVector``)."""
        self._stage = (float(sws_index), float(rem_index))

    def observe(self, events: list[Event], n_pulses: int = 0) -> None:
        """Take a chunk's non-ripple detections and pulses delivered since the last call.

        Ripples are entered by :meth:`features` (so a ripple's own vector never counts
        it). Call this before asking for the chunk's ripples' features only if the
        spindles/SOs precede them; :meth:`features` re-checks ``detect_s`` order.
        """
        for ev in events:
            if self._t0 is None:
                self._t0 = ev.detect_s
            if ev.kind == "spindle":
                self._last_spindle = max(self._last_spindle, ev.detect_s)
                self._spindles.append(ev.detect_s)
            elif ev.kind == "so":
                if ev.detect_s >= self._last_so[0]:
                    self._last_so = (ev.detect_s, ev.predicted_s)
                self._sos.append(ev.detect_s)
        self.n_pulses += int(n_pulses)

    def start(self, t0_s: float) -> None:
        """Set the session start (host clock, seconds) for ``elapsed_h``."""
        self._t0 = float(t0_s)

    def features(self, ev: Event) -> np.ndarray:
        """The vector of one ripple detection, shape (len(CANDIDATE_NAMES),); records it."""
        s = self.settings
        t = ev.detect_s
        if self._t0 is None:
            self._t0 = t
        horizon = t - s.recent_s
        for q in (self._ripples, self._spindles, self._sos):
            while q and (q[0][0] if isinstance(q[0], tuple) else q[0]) < horizon:
                q.popleft()
        since_sp = t - self._last_spindle if self._last_spindle <= t else RECENT_CAP_S
        since_sp = min(since_sp, RECENT_CAP_S)
        recent_sp = since_sp <= s.spindle_window_s
        so_t, so_up = self._last_so
        so_cos = so_sin = 0.0
        so_recent = 0.0
        if t - so_t <= s.so_valid_s and so_t <= t:
            so_recent = 1.0
            if so_up == so_up:
                ph = 2.0 * math.pi * (t - so_up) / s.so_period_s
                so_cos, so_sin = math.cos(ph), math.sin(ph)
        n_rip = len(self._ripples)
        coupled = sum(1 for _, c in self._ripples if c)
        win = max(min(s.recent_s, t - self._t0), 1.0)
        x = np.array([
            ev.score if ev.score == ev.score else 0.0,
            ev.amplitude * 1e6 if ev.amplitude == ev.amplitude else 0.0,
            (t - ev.onset_s) * 1e3,
            since_sp, float(recent_sp),
            so_cos, so_sin, so_recent,
            self._stage[0], self._stage[1],
            (t - self._t0) / 3600.0, self.n_pulses / 100.0,
            n_rip / win, 60.0 * len(self._spindles) / win, 60.0 * len(self._sos) / win,
            coupled / n_rip if n_rip else 0.0,
        ])
        self._ripples.append((t, bool(recent_sp)))
        return x
