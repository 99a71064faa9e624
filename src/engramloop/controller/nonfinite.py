"""Non-finite samples (NaN, +-Inf) caught where a chunk enters the decoders.

One NaN in an IIR filter's state stays there for good: before this guard, one bad sample
(an electrode pop, a disconnection, a driver glitch) ended detection for the rest of the
run in every detector and the phase estimator, without a word.

:class:`NonFiniteGuard` sits in the loop between the source and the decoding stages:

- a chunk whose samples are all finite costs one sum and one ``isfinite`` (the common
  case);
- otherwise the channels holding a non-finite sample are an *artefact*: each stage that
  reads one of them does not see the chunk (it keeps its state as of the last clean
  chunk; the clean part of a partly bad chunk is withheld too, at most one chunk);
  stages reading only other channels carry on;
- the first chunk in which a held stage's channels are clean again calls the stage's
  ``restart()`` (filters primed in steady state from that chunk's first sample, runs
  emptied, calibration kept) and then feeds it -- unless the stage missed at most
  ``SHORT_HOLE_S`` of its kind (its state is then closer to the signal than a primed
  one); for its settling time after that the stage's events are dropped (the band-pass
  settles after the jump);
- the loop asks the governor to inhibit from the first bad sample until the stages have
  settled after the last, and records each episode (start, end, channels, duration) in the
  recording's log stream and on the live view.

The raw recording keeps the samples as they came: the guard never changes a chunk.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engramloop.core.chunk import Chunk

#: Seconds after clean data returns during which a restarted stage's events are dropped
#: and the governor keeps inhibiting, by stage kind. The restarted filters start in
#: steady state at the first clean sample and the RMS windows keep their samples from
#: before the pause, so what is left is the band-pass's response to the jump between
#: the last sample before and the first after: a few cycles of its lowest band edge
#: plus the envelope window -- ripple 150 Hz, 24 ms window: 50 ms; spindle 11 Hz, 100 ms
#: window: 300 ms; slow oscillation 0.2 Hz, but trough detection needs the band-passed
#: signal to settle below threshold, 500 ms. Other stages (the phase estimator) 500 ms.
#: bench/nan_recovery.py measures detection coming back and false detections after.
SETTLE_S = {"ripple": 0.05, "spindle": 0.3, "so": 0.5}
DEFAULT_SETTLE_S = 0.5
#: A stage that missed at most this long (seconds, from the first withheld sample to the
#: first clean one), by kind, keeps its state instead of restarting: its filters' state
#: is that of the signal a moment ago, closer to the truth than a steady state primed
#: from one sample (which assumes the signal was constant). For the slow-oscillation
#: band-pass (0.2 Hz lower edge, a 5 s period) a state 2 s old still is: priming it from
#: one sample in the middle of a slow wave rang for seconds (bench/nan_recovery.py, 1 s
#: of NaN: latest lost SO 2.5 s after the return when primed, 1.5 s when kept).
#: The phase estimators always restart: a window with a hole in it gives a wrong phase,
#: while a restarted one gives none (NaN) until it has refilled from clean data.
SHORT_HOLE_S = {"so": 2.0, "EchtPhase": 0.0, "ArPhase": 0.0}
DEFAULT_SHORT_HOLE_S = 0.1

#: the settings attributes that name the channels a stage reads
_CHANNEL_FIELDS = ("channels", "reference_channels", "sharp_wave_channel", "theta_channel",
                   "channel")


def stage_channels(stage: Any) -> tuple[str, ...]:
    """The channel names a decoding stage reads (from its settings); empty means
    unknown (the stage is then taken to read every channel)."""
    st = getattr(stage, "settings", None)
    names: list[str] = []
    for f in _CHANNEL_FIELDS:
        v = getattr(st, f, None)
        if isinstance(v, str):
            if v:
                names.append(v)
        elif isinstance(v, (tuple, list)):
            names.extend(str(x) for x in v if x)
    return tuple(dict.fromkeys(names))


@dataclass
class Episode:
    """One stretch of non-finite samples. Times on the chunks' clock, seconds."""

    start_s: float
    channels: set = field(default_factory=set)
    last_bad_s: float = math.nan
    end_s: float = math.nan
    n_samples: int = 0

    def to_dict(self) -> dict:
        return {"start_s": self.start_s, "end_s": self.end_s,
                "duration_s": self.end_s - self.start_s,
                "channels": sorted(self.channels), "nonfinite_samples": self.n_samples}


class NonFiniteGuard:
    """Screens chunks for non-finite samples before the decoding stages see them.

    Parameters
    ----------
    stages : sequence
        Decoding stages (``process(chunk)``; ``restart()`` or ``reset()``).
    settle_s : mapping of str to float, or float
        Seconds after clean data returns during which a restarted stage's events are
        dropped and the governor keeps inhibiting, by stage kind (``KIND``), or one for
        all.
    short_hole_s : mapping of str to float, or float
        A stage that missed at most this long keeps its state (no restart), seconds, by
        stage kind (default :data:`SHORT_HOLE_S`, else 0.1 s), or one for all.

    Attributes
    ----------
    episode : Episode or None
        The artefact in progress.
    started, ended : list of Episode
        Episodes that started / ended in the last :meth:`screen` (read and cleared by
        the loop).
    """

    def __init__(self, stages: Sequence, settle_s: Any = None,
                 short_hole_s: Any = None) -> None:
        self.stages = list(stages)
        table = SETTLE_S if settle_s is None else settle_s
        self.settle = [float(table) if isinstance(table, (int, float)) else
                       float(table.get(stage_kind(st), DEFAULT_SETTLE_S))
                       for st in self.stages]
        #: the longest settling time of any stage, seconds
        self.settle_s = max(self.settle, default=0.0)
        self._uses = [stage_channels(s) for s in self.stages]
        self._cols: list[np.ndarray] | None = None
        self._bound: tuple[str, ...] | None = None
        self.held = [False] * len(self.stages)
        #: first sample time each held stage did not see
        self.held_from = [math.nan] * len(self.stages)
        holes = SHORT_HOLE_S if short_hole_s is None else short_hole_s
        self.short_hole = [float(holes) if isinstance(holes, (int, float)) else
                           float(holes.get(stage_kind(st), DEFAULT_SHORT_HOLE_S))
                           for st in self.stages]
        self.n_restarts = 0
        self.settle_until = [-math.inf] * len(self.stages)
        self.episode: Episode | None = None
        self.started: list[Episode] = []
        self.ended: list[Episode] = []
        #: events dropped while settling, by stage kind
        self.dropped: dict[str, int] = {}
        self.n_episodes = 0
        self._busy = False     # an episode or a settling stage: the slow path runs

    def inhibit_until(self) -> float:
        """Until when (chunk clock, seconds) the governor must inhibit; -inf: no need."""
        ep = self.episode
        if ep is not None:
            return math.inf
        return max(self.settle_until, default=-math.inf)

    def _bind(self, channels: tuple[str, ...]) -> None:
        idx = {c: i for i, c in enumerate(channels)}
        every = np.arange(len(channels))
        self._cols = [np.array([idx[c] for c in u if c in idx], dtype=np.intp) if u
                      else every for u in self._uses]
        self._bound = channels

    @property
    def busy(self) -> bool:
        """An episode is open or a stage is settling: chunks take the slow path."""
        return self._busy

    def screen(self, chunk: Chunk) -> list[bool] | None:
        """Which stages may see ``chunk``: None when all of them (every sample finite and
        nothing settling), else one flag per stage. Restarts the stages whose channels
        came back clean; opens and closes episodes (``started``/``ended``)."""
        x = chunk.samples
        if not self._busy and math.isfinite(float(np.add.reduce(x, axis=None))):
            return None
        if chunk.channels is not self._bound and chunk.channels != self._bound:
            self._bind(chunk.channels)
        finite = np.isfinite(x)
        bad_cols = ~finite.all(axis=0)
        t = chunk.timestamps
        ep = self.episode
        if bad_cols.any():
            rows = np.flatnonzero(~finite.all(axis=1))
            if ep is None:
                ep = self.episode = Episode(start_s=float(t[rows[0]]))
                self.n_episodes += 1
                self.started.append(ep)
            ep.channels.update(c for c, b in zip(chunk.channels, bad_cols, strict=True) if b)
            ep.last_bad_s = float(t[rows[-1]])
            ep.n_samples += int(x.size - np.count_nonzero(finite))
        elif ep is not None:
            ep.end_s = float(t[0])       # the first clean sample
            self.ended.append(ep)
            self.episode = None
        feed = []
        t0 = float(t[0])
        for i, stage in enumerate(self.stages):
            cols = self._cols[i]
            if cols.size and bad_cols[cols].any():
                if not self.held[i]:
                    self.held[i] = True
                    self.held_from[i] = t0
                feed.append(False)
                continue
            if self.held[i]:
                self.held[i] = False
                hole = t0 - self.held_from[i]
                if hole > self.short_hole[i]:
                    restart = getattr(stage, "restart", None) or stage.reset
                    restart()
                    self.n_restarts += 1
                    self.settle_until[i] = t0 + self.settle[i]
                else:
                    # the state carries on across the hole: only the jump over it settles
                    self.settle_until[i] = t0 + min(hole, self.settle[i])
            feed.append(True)
        self._busy = (self.episode is not None or any(self.held)
                      or max(self.settle_until, default=-math.inf) > float(t[-1]))
        return feed

    def keep(self, i: int, events: list) -> list:
        """Stage ``i``'s events minus those inside its settling time."""
        until = self.settle_until[i]
        if not events or until == -math.inf:
            return events
        kept = [e for e in events if e.detect_s >= until or e.kind == "calibration_done"]
        if len(kept) != len(events):
            kind = stage_kind(self.stages[i])
            self.dropped[kind] = self.dropped.get(kind, 0) + len(events) - len(kept)
        return kept


def stage_kind(stage: Any) -> str:
    return getattr(stage, "KIND", "") or type(stage).__name__


__all__ = ["NonFiniteGuard", "Episode", "stage_channels", "SETTLE_S", "DEFAULT_SETTLE_S",
           "SHORT_HOLE_S", "DEFAULT_SHORT_HOLE_S"]
