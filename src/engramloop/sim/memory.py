"""A small engram model: memories that fade unless sleep replay consolidates them.

State per memory ``i``
    ``encoding[i]`` how well it was encoded (its labile strength at t = 0): memories differ
                    (``encoding_spread``), and that is what makes some "at risk";
    ``labile[i]``   unconsolidated (early-LTP-like) strength, decays with ``decay_tau_s``;
    ``stable[i]``   consolidated (late-LTP-like) strength, does not decay, saturates at 1;
    ``tag``         a synaptic tag set at encoding and re-set by replay, lifetime
                    ``tag_tau_s`` (~40 min: Frey & Morris 1997 Nature 385:533 / 1998 TINS
                    21:181; CaMKII condensates as the tag, Hosokawa et al. 2021 Nat
                    Neurosci 24:1611);
    ``engram``      the set of units carrying the memory; without consolidation a fraction
                    ``drift_per_hour`` turns over each hour (representational drift, Ziv et
                    al. 2013 Nat Neurosci 16:264).

Plasticity-related products (PRPs) form a shared pool made by strong, coupled replay
events and decaying with ``prp_tau_s``. Capture (tag-and-capture): a replay of memory ``i``
moves labile strength into stable strength at a rate proportional to its tag, the PRP
pool, the replay quality and its headroom ``1 - strength[i]`` (normalised to 1 for a
memory at the mean encoding strength): weakly encoded memories gain more per replay and
near-perfect ones almost nothing (targeted memory reactivation helps items "as long as
initial recall was not highly accurate", Creery et al. 2015 Sleep 38:755; benefits are
largest for the weakest associations, Tambini et al. 2017 Sci Rep 7:15325). Replay
content is drawn by need, weaker memories more often (Schapiro et al. 2018 Nat Commun
9:3920; ``need_exponent``).

Replay quality depends on what the rhythms did: ripple duration (longer ripples carry
more content and improve memory: Fernandez-Ruiz et al. 2019 Science 364:1082; truncated
ripples impair it: Girardeau et al. 2009 Nat Neurosci 12:1222) and coupling (ripple in a
spindle trough during an SO up-state consolidates most: Latchoumane et al. 2017 Neuron
95:424; Maingret et al. 2016 Nat Neurosci 19:959). Theta-locked hippocampal pulses in wake
potentiate at the theta peak and depress at the trough (Huerta & Lisman 1995 Neuron
15:1053; Hyman et al. 2003 J Neurosci 23:11725).

Stimulation never touches this model directly: the simulator reports rhythm events (a
ripple with its duration and coupling, a pulse landing at a theta phase) and the model
reacts to those. Updates happen at event times only, so the result is independent of how
the signal was chunked.
"""
from __future__ import annotations

import copy as _copy
import math

import numpy as np

from engramloop.sim.settings import MemorySettings

# coupling multipliers for replay quality: ripple alone, + spindle, + spindle + SO up-state
COUPLING_GAIN = {0: 1.0, 1: 2.0, 2: 3.0}
# replay content saturates with ripple duration; 60 ms is a typical rodent ripple
DURATION_SCALE_S = 0.06
DRIFT_STEP_S = 60.0


class Memory:
    """The engram model.

    Parameters
    ----------
    settings : MemorySettings
    seed : int
        Seeds replay selection and drift; same seed and same event sequence give identical
        results.
    """

    def __init__(self, settings: MemorySettings, seed: int = 0) -> None:
        self.s = settings
        self.seed = int(seed)
        n = settings.n_memories
        self.names = [f"m{i}" for i in range(n)]
        # stratified draw of encoding strengths: evenly spaced quantiles of
        # initial_strength x U(1 - spread, 1 + spread), in a random order per seed
        sp = settings.encoding_spread
        ranks = np.random.default_rng([self.seed, 14]).permutation(n)
        self.encoding = np.clip(settings.initial_strength * (
            1.0 - sp + 2.0 * sp * (ranks + 0.5) / n), 1e-3, 1.0)
        self.labile = self.encoding.copy()
        self.stable = np.zeros(n)
        self.tag_val = np.ones(n)          # tags set at encoding (t = 0)
        self.tag_t = np.zeros(n)
        self.prp = 0.0
        self.t = 0.0
        self._drift_step = 0
        rng = np.random.default_rng([self.seed, 11])
        k = max(1, settings.n_units // 10)      # sparse engrams: ~10 % of units
        self.original = [np.sort(rng.choice(settings.n_units, k, replace=False))
                         for _ in range(n)]
        self.engram = [o.copy() for o in self.original]
        self._rng = np.random.default_rng([self.seed, 12])
        self.replays = np.zeros(n, dtype=int)

    def copy(self) -> Memory:
        """An independent copy, for projections ("recall if the session ended now").

        Equal to ``copy.deepcopy(self)`` in every later result, at a fraction of its cost:
        the settings and the original engrams never change and are shared, and drift
        replaces an engram's array rather than editing it, so the list is copied, not the
        arrays.
        """
        new = _copy.copy(self)
        for name in ("labile", "stable", "tag_val", "tag_t", "replays"):   # (encoding: fixed)
            setattr(new, name, getattr(self, name).copy())
        new.engram = list(self.engram)
        new._rng = _copy.deepcopy(self._rng)
        return new

    # ---------------------------------------------------------------- time
    def tag(self, t: float) -> np.ndarray:
        """Tag strength of each memory at sim time ``t`` (0..1)."""
        return self.tag_val * np.exp(-(t - self.tag_t) / self.s.tag_tau_s)

    def advance_to(self, t: float) -> None:
        """Decay labile strength and PRPs, and apply engram drift, up to sim time ``t``."""
        if t <= self.t:
            return
        while (self._drift_step + 1) * DRIFT_STEP_S <= t:
            step_t = (self._drift_step + 1) * DRIFT_STEP_S
            self._decay(step_t)
            self._drift(self._drift_step)
            self._drift_step += 1
        self._decay(t)

    def _decay(self, t: float) -> None:
        dt = t - self.t
        if dt <= 0:
            return
        self.labile *= math.exp(-dt / self.s.decay_tau_s)
        self.prp *= math.exp(-dt / self.s.prp_tau_s)
        self.t = t

    def _drift(self, step: int) -> None:
        """Replace a fraction of each engram's units with random others (drift)."""
        rng = np.random.default_rng([self.seed, 13, step])
        p = self.s.drift_per_hour * DRIFT_STEP_S / 3600.0
        for i, units in enumerate(self.engram):
            p_i = p * (1.0 - self.stable[i])        # consolidation stabilises the engram
            out = rng.random(units.size) < p_i
            if out.any():
                pool = np.setdiff1d(np.arange(self.s.n_units), units)
                units = units.copy()
                units[out] = rng.choice(pool, int(out.sum()), replace=False)
                self.engram[i] = np.sort(units)

    # ---------------------------------------------------------------- events
    def replay(self, t: float, duration_s: float, coupling: int, truncated: bool = False,
               key: tuple[int, ...] | None = None, boost: float = 1.0) -> int:
        """A ripple ended at sim time ``t``: replay one memory and consolidate it.

        Parameters
        ----------
        t : float
            Sim seconds.
        duration_s : float
            Ripple duration actually produced (after any truncation/prolongation), seconds.
        coupling : int
            0 = ripple alone, 1 = in a spindle, 2 = in a spindle during an SO up-state.
        truncated : bool
            Whether a pulse cut the ripple short.
        key : tuple of int, optional
            The ripple's identity (its random-stream key in the simulator): which memory
            it replays is drawn from a stream keyed by it, so the same ripple in a stim run
            and its sham twin draws the same uniform number (the memory picked can still
            differ when the two runs' memory states differ). None: the model's own
            sequential stream.
        boost : float
            Scales the coupling bonus (``COUPLING_GAIN - 1``): the simulator passes the
            factor by which a click enlarged the ripple's spindle (up to 1.4); 1 = as
            generated.

        Returns
        -------
        int
            Index of the replayed memory.
        """
        self.advance_to(t)
        tag = self.tag(t)
        w = self.need(t)
        u = (float(np.random.default_rng([self.seed, 12, *key]).random()) if key
             else float(self._rng.random()))
        cdf = np.cumsum(w)
        i = min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), w.size - 1)
        q = 1.0 - math.exp(-max(duration_s, 0.0) / DURATION_SCALE_S)
        gain = 1.0 + (COUPLING_GAIN.get(int(coupling), 1.0) - 1.0) * max(boost, 0.0)
        if coupling > 0:
            self.prp = min(1.0, self.prp + 0.1 * q * (gain - 1.0))
        d_stable = self.s.replay_gain * gain * q * tag[i] * (0.3 + 0.7 * self.prp) * \
            self.headroom()[i]
        if truncated:
            d_stable = 0.0    # an interrupted replay captures nothing (Girardeau et al. 2009)
        d_stable = min(d_stable, self.labile[i])
        self.labile[i] -= d_stable
        self.stable[i] += d_stable
        if truncated:
            # an interrupted replay leaves the trace labile and slightly weakened
            # (Girardeau et al. 2009: ripple disruption impairs consolidation)
            self.labile[i] *= 1.0 - 0.5 * self.s.replay_gain
        # reactivation re-tags the replayed synapses
        cur = tag[i]
        self.tag_val[i], self.tag_t[i] = max(cur, 0.5 * q + 0.5 * cur), t
        self.replays[i] += 1
        return i

    def headroom(self) -> np.ndarray:
        """How much a replay can still add to each memory: ``1 - strength``, normalised
        to 1 at the mean encoding strength (so ``replay_gain`` keeps its meaning)."""
        room = np.clip(1.0 - self.labile - self.stable, 0.0, 1.0)
        return room / max(1.0 - self.s.initial_strength, 0.05)

    def need(self, t: float | None = None) -> np.ndarray:
        """Replay priority of each memory now, normalised to sum 1: weaker memories
        (``1 - strength``) and tagged ones first (``need_exponent``; Schapiro et al. 2018).
        Also the model's answer to "which memories are at risk"."""
        tag = self.tag(self.t if t is None else t)
        room = np.clip(1.0 - self.labile - self.stable, 0.02, 1.0)
        w = room ** self.s.need_exponent * (0.5 + tag)
        return w / w.sum()

    def theta_pulse(self, t: float, phase_deg: float, gain: float) -> None:
        """A hippocampal pulse at theta phase ``phase_deg`` (wake/REM): potentiation near
        the peak, depression near the trough, on memories that are still tagged."""
        self.advance_to(t)
        tag = self.tag(t)
        self.labile = np.clip(self.labile + gain * math.cos(math.radians(phase_deg)) * tag,
                              0.0, 1.0)

    # ---------------------------------------------------------------- read-out
    def strengths(self, t: float | None = None) -> dict[str, float]:
        """Total strength (labile + stable) per memory, projected to sim time ``t``."""
        lab = self.labile if t is None or t <= self.t else \
            self.labile * math.exp(-(t - self.t) / self.s.decay_tau_s)
        return {n: float(min(1.0, lab[i] + self.stable[i])) for i, n in enumerate(self.names)}

    def overlap(self) -> np.ndarray:
        """Fraction of each memory's original units still in its engram."""
        return np.array([np.intersect1d(o, e).size / o.size
                         for o, e in zip(self.original, self.engram, strict=True)])

    def recall_scores(self, t: float | None = None,
                      delay_s: float | None = None) -> dict[str, float]:
        """Recall per memory in [0, 1]: strength at test time times engram overlap.

        Parameters
        ----------
        t : float, optional
            Sim seconds of the end of the session (default: the last event time).
        delay_s : float, optional
            Test delay after ``t`` (default ``settings.test_delay_s``); unconsolidated
            strength decays over it. Engram drift is applied only up to the last event.
        """
        t_end = self.t if t is None else max(t, self.t)
        st = self.strengths(t_end + (self.s.test_delay_s if delay_s is None else delay_s))
        ov = self.overlap()
        return {n: float(st[n] * ov[i]) for i, n in enumerate(self.names)}

    def summary(self) -> dict:
        """JSON-ready state: strengths, recall, replay counts."""
        return {"t_s": self.t, "encoding": self.encoding.tolist(),
                "labile": self.labile.tolist(), "stable": self.stable.tolist(),
                "need": self.need().tolist(),
                "recall": self.recall_scores(), "replays": self.replays.tolist(),
                "overlap": self.overlap().tolist(), "prp": self.prp}
