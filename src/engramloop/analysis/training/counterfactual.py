"""Simulated nights for the uplift model and the fair experiment, and exact counterfactuals.

What a pulse is worth is a counterfactual: recall at the end of the night if this ripple is
stimulated, minus recall if it is not. The simulator makes it exact and cheap:

* spontaneous events come from their own random streams, so a pulse never changes the
  plan of any other event; an optogenetic pulse during a ripple only prolongs *that*
  ripple (``sim/effects.py``; Fernandez-Ruiz et al. 2019);
* the engram model (``sim/memory.py``) changes only at the memory events the simulator
  hands it (a finished ripple with its duration and coupling; a pulse in theta).

So one night is simulated twice -- ``sham`` (no pulse) and ``all`` (a pulse on every
candidate the sham night detected, at the same times) -- and each night's memory events
are captured. The memory events of *any* subset of pulses are the sham events with the
stimulated ripples' replays swapped for their ``all``-night versions (plus any theta
events those pulses caused); the engram model is then re-run on that list
(:class:`EventLists`). One candidate's label re-runs only from the memory state just
before its pulse (snapshots), so ~700 labels of a 1200 s night cost seconds, while forking
the whole simulator per candidate costs a night each. The experiment compares the
re-run against real stimulated nights. A ripple that several candidates' pulses hit in the
pulsed night is re-run as it ended after the last *chosen* of them (each pulse's effect on
its ripple is recorded), which is exact when the chosen ones are its first pulses. Not
reproduced, and counted by :meth:`EventLists.inexact`: a later pulse on such a ripple
chosen without the earlier one (alone it may land outside the ripple). A pulse outside a
ripple that induced one in a spindle (``sim/effects.py``) has that ripple's replay swapped
in. Not handled and not counted: an induced ripple that blocks or is blocked by another
pulse's ripple in the pulsed night only.

Nights used by the experiment always contain N3 (:func:`experiment_spec`).
"""
from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engramloop.analysis.training.dataset import (
    night_detectors,
    night_spec,
    ripple_pulse_spec,
    sim_settings,
)
from engramloop.core.chunk import EndOfStream
from engramloop.decoders.features import EpochFeatures
from engramloop.decoders.pulse_features import CANDIDATE_NAMES, CandidateFeatures
from engramloop.sim.memory import Memory
from engramloop.sim.source import SimSource

#: every stimulated pulse fires this long after the detection it answers (the loop's
#: decision-to-tissue delay in the forecast experiments so far)
FIRE_DELAY_S = 0.002
#: 20 ms chunks at 1 kHz: a pulse reaches the simulated tissue when the chunk holding its
#: decision has been read, so with the dataset's 0.5 s chunks a "prolonged" ripple was held
#: up to half a second (the effect is applied from the end of the chunk)
CHUNK_SAMPLES = 20


def experiment_spec(seed: int, duration_s: float, rate_hz: float = 1000.0) -> Any:
    """A night that always contains N3: a fixed N2-N3-N2-REM-wake cycle whose segment
    lengths are drawn from the seed (N3 starts within 180 s and lasts 180-360 s).

    The LFP noise level cycles with the seed as in :func:`dataset.night_spec`.
    """
    rng = np.random.default_rng([int(seed), 0xE7])
    segs = (("N2", 60, 180), ("N3", 180, 360), ("N2", 60, 180), ("REM", 60, 180),
            ("wake", 20, 90))
    schedule = [f"{st}:{rng.uniform(lo, hi):.0f}" for st, lo, hi in segs]
    spec = night_spec(int(seed), duration_s, rate_hz=rate_hz)
    over = dict(spec.sim_overrides)
    over["hypnogram.mode"] = "fixed"
    over["hypnogram.schedule"] = schedule
    return dataclasses.replace(spec, sim_overrides=over, chunk_samples=CHUNK_SAMPLES)


@dataclass
class NightRun:
    """One simulated night's candidates and outcome.

    Attributes
    ----------
    seed : int
    cand_t : ndarray, shape (n,)
        Detection time of each ripple candidate, sim seconds.
    cand_x : ndarray, shape (n, len(CANDIDATE_NAMES))
        Causal features at each detection (:class:`CandidateFeatures`).
    cand_coupled : ndarray of bool, shape (n,)
        Ground truth: the detection fell in a spindle during an SO up-state (the oracle).
    cand_stage : list of str
    recall : float
        End-of-night recall, mean over memories (``SimSource.recall_scores``).
    pulse_t : ndarray
        Times of the pulses delivered, sim seconds.
    pulse_eid : list of int
        Key (onset, microseconds) of the ripple each pulse landed in (-1: none).
    log : list
        Memory events as applied, ``(t, kind, args)`` (in-process only).
    src : SimSource
        The finished simulation (in-process only; for re-running the engram model).
    """

    seed: int
    cand_t: np.ndarray
    cand_x: np.ndarray
    cand_coupled: np.ndarray
    cand_stage: list
    recall: float
    pulse_t: np.ndarray
    pulse_eid: list
    log: list = field(default_factory=list, repr=False)
    src: Any = field(default=None, repr=False)
    decisions: int = 0
    #: per pulse: where its ripple ended right after it and its duration then (None: not
    #: in a ripple), and the
    #: effect the simulator applied (``sim.effects``)
    pulse_offset: list = field(default_factory=list)
    pulse_effect: list = field(default_factory=list)

    def light(self) -> NightRun:
        """A copy without the in-process objects (to send between processes)."""
        return NightRun(self.seed, self.cand_t, self.cand_x, self.cand_coupled,
                        self.cand_stage, self.recall, self.pulse_t, self.pulse_eid,
                        decisions=self.decisions, pulse_offset=self.pulse_offset,
                        pulse_effect=self.pulse_effect)


#: decide(features, detect_s, n_delivered) -> bool; called for every ripple candidate
Decide = Callable[[np.ndarray, float, int], bool]


def run_night(spec: Any, fire_s: Sequence[float] = (), decide: Decide | None = None,
              capture: bool = False, budget: int | None = None) -> NightRun:
    """Simulate one night with the project's detectors and the candidate feature stage.

    Parameters
    ----------
    spec : NightSpec
    fire_s : sequence of float
        Detection times (sim s) to answer with a pulse ``FIRE_DELAY_S`` later, delivered
        when the chunk holding that time has been read (a twin's decisions replayed).
    decide : callable, optional
        An online rule: called for each candidate, a pulse when it returns True.
    capture : bool
        Keep the memory event log and the source (in-process use).
    budget : int, optional
        With ``decide``: stop pulsing after this many pulses.
    """
    src = SimSource(sim_settings(spec), seed=spec.seed, chunk_samples=spec.chunk_samples,
                    duration_s=spec.duration_s)
    log: list = []
    if capture:
        src.memory = _LoggedMemory(src.memory, log)
        apply_one = src._apply_memory_event

        def _tagged(mem, t, kind, args, record):
            # which ripple a replay belongs to (the engram model is not told); keyed by
            # onset, which is the same in every twin night (truth ids are not: pulses add
            # records)
            if record:
                mem.current_eid = _ripple_key(args[0].rec) if kind == "replay" else None
            return apply_one(mem, t, kind, args, record)

        src._apply_memory_event = _tagged
    detectors = night_detectors(src.channels)
    epochs = EpochFeatures(spec.feature_settings)
    cf = CandidateFeatures()
    cf.start(0.0)
    pulse = ripple_pulse_spec("optogenetic")
    fire = sorted(float(t) for t in fire_s)
    i_fire = 0
    cand_t, cand_x, pulse_t = [], [], []
    n_dec = 0
    src.start()
    try:
        while True:
            try:
                chunk = src.read(1.0)
            except EndOfStream:
                break
            events = []
            for det in detectors:
                events.extend(det.process(chunk))
            events.sort(key=lambda e: e.detect_s)
            t_last = float(chunk.timestamps[-1])
            delivered = []
            for ev in events:
                if ev.kind != "ripple":
                    cf.observe([ev])
                    continue
                x = cf.features(ev)
                cand_t.append(ev.detect_s)
                cand_x.append(x)
                if decide is not None and (budget is None or len(pulse_t) < budget):
                    n_dec += 1
                    if decide(x, ev.detect_s, len(pulse_t)):
                        t = ev.detect_s + FIRE_DELAY_S
                        src.stimulate(t, pulse, "ripple")
                        pulse_t.append(t)
                        delivered.append(t)
                        cf.observe([], 1)
            while i_fire < len(fire) and fire[i_fire] <= t_last:
                t = fire[i_fire] + FIRE_DELAY_S
                src.stimulate(t, pulse, "ripple")
                pulse_t.append(t)
                delivered.append(t)
                cf.observe([], 1)
                i_fire += 1
            for fv in epochs.process(chunk, events, delivered):
                cf.observe_epoch(fv["sws_index"], fv["rem_index"])
    finally:
        src.stop()
    recall = float(np.mean(list(src.recall_scores().values())))
    tr = src.truth
    coupled = np.array([(not math.isnan(tr.phase_at("spindle", t)))
                        and abs(tr.phase_at("so", t)) < 90.0 for t in cand_t], dtype=bool)
    stages = [tr.stage_at(t) for t in cand_t]
    onsets = {r.eid: _ripple_key(r) for r in tr._by_kind.get("ripple", [])}
    eids = [onsets.get(int(p.meta.get("ripple_eid", -1)), -1) for p in src.pulses]
    return NightRun(int(spec.seed), np.asarray(cand_t, float),
                    np.asarray(cand_x, float).reshape(-1, len(CANDIDATE_NAMES)), coupled,
                    stages, recall, np.asarray(pulse_t, float), eids,
                    log if capture else [], src if capture else None, n_dec,
                    [(p.meta["ripple_offset_s"], p.meta["ripple_duration_s"])
                     if "ripple_offset_s" in p.meta else None for p in src.pulses],
                    [p.meta.get("effect", "none") for p in src.pulses])


def _ripple_key(rec: Any) -> int:
    """A ripple's identity across twin nights: its onset in microseconds."""
    return int(round(rec.onset * 1e6))


class _LoggedMemory:
    """Wraps the simulator's engram model and records every update it is given.

    Made with the model's own class (a dynamic subclass), so every method and read-out is
    the simulator's; ``replay`` and ``theta_pulse`` calls on the *running* model (not on
    its projection copies) are appended to ``log`` as ``(t, method, args, kwargs, eid)``.
    """

    def __new__(cls, mem: Any, log: list):
        base = type(mem)

        class Logged(base):  # type: ignore[misc, valid-type]
            def replay(self, *a, **k):
                if self._log is not None:
                    self._log.append((float(a[0]), "replay", a, k, self.current_eid))
                return base.replay(self, *a, **k)

            def theta_pulse(self, *a, **k):
                if self._log is not None:
                    self._log.append((float(a[0]), "theta_pulse", a, k, None))
                return base.theta_pulse(self, *a, **k)

            def copy(self):
                new = base.copy(self)
                new._log = None
                return new

        mem.__class__ = Logged
        mem._log = log
        mem.current_eid = None
        return mem


def _offset_at(night: NightRun, k: int) -> tuple[float, float] | None:
    return night.pulse_offset[k] if k < len(night.pulse_offset) else None


def _ended_at(entry: tuple, end: tuple[float, float] | None) -> tuple:
    """A logged replay as it would have been had its ripple ended as ``end`` = (offset,
    duration) says (the simulator hands a ripple to the engram model when it ends, with
    its duration; the coupling is read at its peak, which a pulse does not move)."""
    t, name, args, kwargs, eid = entry
    if end is None or end[0] == t:
        return entry
    return (end[0], name, (end[0], end[1]) + tuple(args[2:]), kwargs, eid)


def _apply(mem: Any, entry: tuple) -> None:
    """Hand one recorded update to an engram model."""
    getattr(mem, entry[1])(*entry[2], **entry[3])


class EventLists:
    """Re-runs the engram model on the memory events of any subset of candidate pulses.

    Parameters
    ----------
    sham : NightRun
        The night without pulses (``capture=True``).
    pulsed : NightRun
        The same night with a pulse on every sham candidate (``run_night(spec,
        fire_s=sham.cand_t, capture=True)``).
    """

    def __init__(self, sham: NightRun, pulsed: NightRun) -> None:
        if len(pulsed.pulse_eid) != len(sham.cand_t):
            raise ValueError("pulsed night: expected one pulse per sham candidate, got "
                             f"{len(pulsed.pulse_eid)} for {len(sham.cand_t)}")
        # plain data only (picklable: a night's lists can be cached and re-used)
        self.memory_settings = sham.src.settings.memory
        self.seed = sham.src.seed
        self.t_end = float(sham.src.duration_s)
        self.base = sorted(sham.log, key=lambda e: e[0])
        self.times = [e[0] for e in self.base]
        self.index_of_eid = {e[4]: i for i, e in enumerate(self.base) if e[4] is not None}
        by_eid = {e[4]: e for e in pulsed.log if e[1] == "replay"}
        theta = {round(e[0], 9): e for e in pulsed.log if e[1] == "theta_pulse"}
        #: per candidate: (sham event index it replaces or None, replacement events); the
        #: replay is the ripple as it ended right after this candidate's pulse
        self.swap: list[tuple[int | None, list]] = []
        #: candidates whose pulses landed in one ripple of the pulsed night, in pulse order
        groups: dict[int, list[int]] = {}
        self.shared_ripples = 0
        for k, (eid, tp) in enumerate(zip(pulsed.pulse_eid, pulsed.pulse_t, strict=True)):
            new = []
            j = None
            if eid >= 0 and eid in by_eid:
                new.append(_ended_at(by_eid[eid], _offset_at(pulsed, k)))
                j = self.index_of_eid.get(eid)
                if eid in groups:
                    self.shared_ripples += 1
                groups.setdefault(eid, []).append(k)
            th = theta.get(round(float(tp), 9))
            if th is not None:
                new.append(th)
            self.swap.append((j, new))
        #: per candidate in a shared ripple: (that ripple's candidates, its position there)
        self.group: dict[int, tuple[list[int], int]] = {
            k: (g, i) for g in groups.values() if len(g) > 1 for i, k in enumerate(g)}
        #: candidates whose pulse induced a ripple in a spindle in the pulsed night (its
        #: replay is swapped in like a prolonged one's; the pulse's random stream is keyed
        #: by its time, so it is the same ripple in any night with that pulse)
        self.induced = {k for k, e in enumerate(pulsed.pulse_effect)
                        if e == "spindle_ripple_induced"}
        self._snap: list | None = None

    def inexact(self, chosen: Sequence[int]) -> int:
        """How many of the pulses ``chosen`` the re-run cannot reproduce exactly: a pulse
        whose ripple also took an earlier, unchosen candidate's pulse in the pulsed night
        (without that pulse it may land outside the ripple)."""
        cs = set(chosen)
        n = 0
        for k in cs:
            if k in self.group:
                g, i = self.group[k]
                n += any(b not in cs for b in g[:i])
        return n

    def _mem0(self):
        return Memory(self.memory_settings, self.seed)  # as SimSource makes it

    def _finish(self, mem) -> float:
        mem.advance_to(self.t_end)
        return float(np.mean(list(mem.recall_scores(self.t_end).values())))

    def _events(self, chosen: Sequence[int]) -> list:
        drop = set()
        add = []
        last: dict[int, int] = {}     # shared ripple -> its latest chosen candidate
        for k in chosen:
            j, new = self.swap[k]
            if j is not None:
                drop.add(j)
            if k in self.group:
                g, i = self.group[k]
                if g[0] not in last or self.group[last[g[0]]][1] < i:
                    last[g[0]] = k
                add.extend(new[1:])   # its theta event; the ripple's replay below
            else:
                add.extend(new)
        for k in last.values():
            # the ripple as it ended after the last chosen pulse on it (exact when the
            # chosen ones are its first pulses; otherwise counted by inexact())
            add.append(self.swap[k][1][0])
        ev = [e for i, e in enumerate(self.base) if i not in drop] + add
        ev.sort(key=lambda e: e[0])
        return ev

    def recall(self, chosen: Sequence[int] = ()) -> float:
        """End-of-night recall (mean over memories) with pulses on candidates ``chosen``."""
        mem = self._mem0()
        for e in self._events(chosen):
            _apply(mem, e)
        return self._finish(mem)

    def labels(self, base: Sequence[int] = ()) -> np.ndarray:
        """Each candidate's uplift: recall with it pulsed minus without, the other pulses
        being ``base`` (a candidate in ``base`` is toggled off for its "without").

        Re-runs the engram model from a snapshot taken just before the earliest event the
        pulse changes, so the cost per label is the rest of the night's memory events.
        """
        ev = self._events(base)
        times = [e[0] for e in ev]
        snaps = []
        mem = self._mem0()
        for e in ev:
            snaps.append(mem.copy())
            _apply(mem, e)
        r_base = self._finish(mem)
        base_set = set(base)
        out = np.zeros(len(self.swap))
        for k, (j, new) in enumerate(self.swap):
            if not new:
                continue            # outside any ripple and no ripple induced
            if k in base_set:
                alt = self._events([b for b in base if b != k])
            else:
                alt = None
            if alt is not None:
                out[k] = r_base - self._run_full(alt)
                continue
            # replace sham event j (if any) by the new events
            old = self.base[j] if j is not None else None
            t_min = min([e[0] for e in new] + ([old[0]] if old else []))
            i0 = bisect.bisect_left(times, t_min)
            rest = [e for e in ev[i0:] if e is not old] + new
            rest.sort(key=lambda e: e[0])
            m = snaps[i0].copy() if i0 < len(snaps) else mem.copy()
            for e in rest:
                _apply(m, e)
            out[k] = self._finish(m) - r_base
        return out

    def _run_full(self, ev: list) -> float:
        mem = self._mem0()
        for e in ev:
            _apply(mem, e)
        return self._finish(mem)


# ================================================================ selection rules

def spaced_first(t: np.ndarray, eligible: np.ndarray, n: int, gap_s: float) -> list[int]:
    """The first ``n`` eligible candidates at least ``gap_s`` apart (front-loaded)."""
    out: list[int] = []
    last = -math.inf
    for i in np.flatnonzero(eligible):
        if t[i] - last >= gap_s:
            out.append(int(i))
            last = t[i]
            if len(out) == n:
                break
    return out


def spaced_spread(t: np.ndarray, eligible: np.ndarray, n: int, gap_s: float) -> list[int]:
    """``n`` eligible candidates spread evenly over the night: of all eligible candidates
    at least ``gap_s`` apart, every (M / n)-th (all M if there are fewer than ``n``)."""
    pool = spaced_first(t, eligible, len(t), gap_s)
    if len(pool) <= n:
        return pool
    idx = np.unique(np.round(np.linspace(0, len(pool) - 1, n)).astype(int))
    return [pool[i] for i in idx]


def spaced_best(t: np.ndarray, score: np.ndarray, n: int, gap_s: float,
                eligible: np.ndarray | None = None) -> list[int]:
    """The ``n`` highest-scoring candidates, greedily, none within ``gap_s`` of another."""
    order = np.argsort(-score, kind="stable")
    taken: list[float] = []
    out: list[int] = []
    for i in order:
        if eligible is not None and not eligible[i]:
            continue
        k = bisect.bisect_left(taken, t[i])
        if (k > 0 and t[i] - taken[k - 1] < gap_s) or (k < len(taken) and
                                                        taken[k] - t[i] < gap_s):
            continue
        taken.insert(k, float(t[i]))
        out.append(int(i))
        if len(out) == n:
            break
    return sorted(out, key=lambda i: t[i])
