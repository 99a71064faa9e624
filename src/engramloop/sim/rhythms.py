"""Transient events as lazily rendered additive waveforms, and the planner that schedules
them with physiological statistics and coupling.

Every waveform is a pure function of the absolute sample index, so any part of it can be
rendered (or re-rendered after a pulse changed the event) and comes out bit-identical.
Times are sim seconds (sample i is at i / rate_hz).
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from engramloop.sim.settings import SimSettings
from engramloop.sim.truth import EventRecord, Truth

_STD_NORMAL = NormalDist()

# Scalp topographies (relative gain per 10-20 electrode). Slow oscillations are largest
# frontally (Massimini et al. 2004 J Neurosci 24:6862); fast (12-16 Hz) spindles are
# centro-parietal (Schabus et al. 2007 PNAS 104:13164; Molle et al. 2011 Sleep 34:1411).
SO_TOPO = {"Fpz": 0.95, "Fp1": 0.9, "Fp2": 0.9, "Fz": 1.0, "F3": 0.95, "F4": 0.95,
           "Cz": 0.85, "C3": 0.8, "C4": 0.8, "Pz": 0.65, "P3": 0.6, "P4": 0.6,
           "Oz": 0.45, "O1": 0.45, "O2": 0.45}
SPINDLE_TOPO = {"Fz": 0.7, "F3": 0.65, "F4": 0.65, "Cz": 1.0, "C3": 0.9, "C4": 0.9,
                "Pz": 0.95, "P3": 0.85, "P4": 0.85, "Oz": 0.5, "O1": 0.5, "O2": 0.5}
# Eye-movement artefact by electrode row (first letter): the corneo-retinal dipole sits in
# front of the scalp, so frontopolar/frontal leads see most of it.
EYE_TOPO = {"F": 1.0, "A": 0.6, "C": 0.35, "T": 0.5, "P": 0.15, "O": 0.1}
# Cortical rhythms seen in the hippocampal LFP, relative to their scalp amplitude: the
# neocortical slow oscillation and spindles reach CA1 (Sirota et al. 2003 PNAS 100:2065;
# Isomura et al. 2006 Neuron 52:871).
LFP_SO_GAIN = 0.5
LFP_SPINDLE_GAIN = 0.3
# Ripples fall off quickly with distance from the pyramidal layer; extra LFP channels see
# them scaled by this factor each.
RIPPLE_FALLOFF = 0.7
ENV_KNOT_S = 0.002        # ripple envelope knot spacing (s): 10x the 5 ms ripple period


class Geometry:
    """Per-channel gains of each rhythm, derived once from the channel names."""

    def __init__(self, settings: SimSettings) -> None:
        names = settings.channels
        self.names = names
        self.lfp = np.array([settings.is_lfp(n) for n in names])
        n = len(names)
        self.so = np.array([LFP_SO_GAIN if self.lfp[i] else SO_TOPO.get(names[i], 0.75)
                            for i in range(n)])
        self.spindle = np.array([LFP_SPINDLE_GAIN if self.lfp[i]
                                 else SPINDLE_TOPO.get(names[i], 0.7) for i in range(n)])
        # stratum radiatum sites: the large sharp wave, a small ripple (Ripple renders them
        # with their own gains); the ripple falls off over the pyramidal-layer sites only
        self.radiatum = np.array([names[i] in settings.radiatum_channels for i in range(n)])
        self.ripple = np.zeros(n)
        k = 0
        for i in range(n):
            if self.lfp[i] and not self.radiatum[i]:
                self.ripple[i] = RIPPLE_FALLOFF ** k
                k += 1
        # eye movements: largest at the front of the head, small posteriorly
        self.eye = np.array([0.0 if self.lfp[i] else EYE_TOPO.get(names[i][:1], 0.2)
                             for i in range(n)])
        self.eye_channel = names[int(np.argmax(self.eye))]
        eeg = [i for i in range(n) if not self.lfp[i]]
        lfp = [i for i in range(n) if self.lfp[i]]
        self.so_channel = names[max(eeg, key=lambda i: self.so[i])] if eeg else names[0]
        self.spindle_channel = (names[max(eeg, key=lambda i: self.spindle[i])]
                                if eeg else names[0])
        pyr = [i for i in lfp if not self.radiatum[i]]
        self.ripple_channel = names[pyr[0]] if pyr else names[lfp[0]] if lfp else names[0]
        self.radiatum_cols = np.flatnonzero(self.radiatum)
        self.eeg_channels = [names[i] for i in eeg]
        self.lfp_channels = [names[i] for i in lfp]


class SimEvent:
    """Base of rendered events: support [a, b) in samples, an EventRecord, gains."""

    post = False            # True for events applied after summation (dropout, saturation)

    def __init__(self, rec: EventRecord, fs: float, gains: np.ndarray) -> None:
        self.rec, self.fs, self.gains = rec, fs, gains
        self.a = int(math.floor(self.start_s() * fs))
        self.b = int(math.ceil(self.end_s() * fs)) + 1

    def start_s(self) -> float:
        return self.rec.onset

    def end_s(self) -> float:
        return self.rec.offset

    def update_support(self) -> None:
        self.b = int(math.ceil(self.end_s() * self.fs)) + 1

    def wave(self, t: np.ndarray) -> np.ndarray:
        """Waveform (volts, before channel gains) at sim times ``t``; subclasses override
        it (the base event is silent)."""
        return np.zeros_like(t)

    def render(self, a: int, t: np.ndarray, out: np.ndarray) -> None:
        """Add this event into ``out`` (rows = samples a .. a+len(t))."""
        lo, hi = max(a, self.a), min(a + len(t), self.b)
        if lo >= hi:
            return
        w = self.wave(t[lo - a:hi - a])
        out[lo - a:hi - a] += w[:, None] * self.gains[None, :]


class Ripple(SimEvent):
    """Sharp-wave ripple: 150-250 Hz carrier under a knot envelope, on a sharp wave.

    The envelope is piecewise linear through knots every 2 ms so closed-loop effects can
    rewrite its future (truncation, prolongation) without touching the past. Stratum
    radiatum channels (``radiatum_cols``) get their own mix: ``radiatum_ripple`` times the
    oscillation plus a sharp wave of ``radiatum_sw`` volts with the same time course.
    """

    def __init__(self, rec: EventRecord, fs: float, gains: np.ndarray, freq: float,
                 amp: float, sw: float, phase0: float,
                 radiatum_cols: np.ndarray | None = None, radiatum_ripple: float = 0.0,
                 radiatum_sw: float = 0.0) -> None:
        self.freq, self.amp, self.sw, self.phase0 = freq, amp, sw, phase0
        self.radiatum_cols = radiatum_cols if radiatum_cols is not None else np.empty(0, int)
        self.radiatum_ripple, self.radiatum_sw = radiatum_ripple, radiatum_sw
        self.sw_sigma = max(0.015, 0.3 * (rec.offset - rec.onset))
        d = rec.offset - rec.onset
        n = max(3, int(math.ceil(d / ENV_KNOT_S)) + 1)
        self.kt = np.linspace(rec.onset, rec.offset, n)
        self.kv = np.sin(np.pi * (self.kt - rec.onset) / d) ** 2
        super().__init__(rec, fs, gains)

    def start_s(self) -> float:
        return min(self.rec.onset, self.rec.peak - 3 * self.sw_sigma)

    def end_s(self) -> float:
        return max(self.rec.offset, self.rec.peak + 3 * self.sw_sigma)

    def envelope(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.kt, self.kv, left=0.0, right=0.0)

    def _parts(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Envelope, carrier and sharp-wave shape at sim times ``t``."""
        car = np.sin(2 * math.pi * self.freq * (t - self.rec.peak) + self.phase0)
        x = (t - self.rec.peak) / self.sw_sigma
        return self.envelope(t), car, np.exp(-0.5 * x * x)

    def wave(self, t: np.ndarray) -> np.ndarray:
        env, car, sw = self._parts(t)
        return self.amp * env * car + self.sw * sw

    def render(self, a: int, t: np.ndarray, out: np.ndarray) -> None:
        if not self.radiatum_cols.size:
            super().render(a, t, out)
            return
        lo, hi = max(a, self.a), min(a + len(t), self.b)
        if lo >= hi:
            return
        # one evaluation of envelope, carrier and sharp wave for both kinds of site
        env, car, sw = self._parts(t[lo - a:hi - a])
        rows = out[lo - a:hi - a]
        rows += (self.amp * env * car + self.sw * sw)[:, None] * self.gains[None, :]
        rows[:, self.radiatum_cols] += (self.radiatum_ripple * self.amp * env * car
                                        + self.radiatum_sw * sw)[:, None]

    def rewrite_after(self, t_cut: float, knots_t: np.ndarray, knots_v: np.ndarray) -> None:
        """Keep the envelope up to ``t_cut`` and continue it with the given knots."""
        keep = self.kt < t_cut
        v_cut = float(self.envelope(np.array([t_cut]))[0])
        self.kt = np.concatenate([self.kt[keep], [t_cut], knots_t])
        self.kv = np.concatenate([self.kv[keep], [v_cut], knots_v])
        self.rec.offset = float(self.kt[-1])
        self.update_support()


class Spindle(SimEvent):
    """Waxing-waning spindle: sin^2 envelope times a cosine carrier, phase 0 at the peak."""

    def __init__(self, rec: EventRecord, fs: float, gains: np.ndarray, freq: float,
                 amp: float) -> None:
        self.freq, self.amp, self.scale = freq, amp, 1.0
        super().__init__(rec, fs, gains)

    def wave(self, t: np.ndarray) -> np.ndarray:
        r = self.rec
        env = np.sin(np.pi * (t - r.onset) / (r.offset - r.onset)) ** 2
        return (self.amp * self.scale) * env * np.cos(2 * math.pi * self.freq * (t - r.peak))


class SlowOsc(SimEvent):
    """One slow-oscillation cycle: down state (negative) then up state (positive).

    Phase is piecewise linear through the cycle's landmarks (descending zero 90 deg, trough
    180, rising zero 270, peak 360); the wave is cos(phase) scaled by the trough depth in
    the negative half and by the peak height in the positive half.
    """

    KNOT_PH = np.radians([90.0, 180.0, 270.0, 360.0, 450.0])

    def __init__(self, rec: EventRecord, fs: float, gains: np.ndarray, trough: float,
                 peak: float) -> None:
        self.trough, self.peak, self.scale = trough, peak, 1.0
        super().__init__(rec, fs, gains)

    def knots(self) -> list[float]:
        r = self.rec
        return [r.onset, r.meta["trough_s"], r.meta["rise_s"], r.peak, r.offset]

    def wave(self, t: np.ndarray) -> np.ndarray:
        c = np.cos(np.interp(t, self.knots(), self.KNOT_PH))
        return self.scale * c * np.where(c < 0, self.trough, self.peak)


class Pop(SimEvent):
    """Electrode pop: a step on one channel that decays back (tau in meta)."""

    def __init__(self, rec: EventRecord, fs: float, gains: np.ndarray, amp: float,
                 tau: float) -> None:
        self.amp, self.tau = amp, tau
        super().__init__(rec, fs, gains)

    def wave(self, t: np.ndarray) -> np.ndarray:
        return self.amp * np.exp(-(t - self.rec.onset) / self.tau)


class Bump(SimEvent):
    """A smooth monophasic deflection (raised cosine) over the event's span: eye movements."""

    def __init__(self, rec: EventRecord, fs: float, gains: np.ndarray, amp: float) -> None:
        self.amp = amp
        super().__init__(rec, fs, gains)

    def wave(self, t: np.ndarray) -> np.ndarray:
        r = self.rec
        x = np.clip((t - r.onset) / (r.offset - r.onset), 0.0, 1.0)
        return self.amp * np.sin(np.pi * x) ** 2


class Movement(SimEvent):
    """Movement burst: slow large swings plus broadband EMG, tapered (precomputed)."""

    def __init__(self, rec: EventRecord, fs: float, n_ch: int, amp: float,
                 rng: np.random.Generator, lfp: np.ndarray) -> None:
        super().__init__(rec, fs, np.ones(n_ch))
        n = self.b - self.a
        t = np.arange(n) / fs
        slow = np.zeros((n, n_ch))
        for _ in range(3):
            f = rng.uniform(0.5, 4.0)
            slow += np.sin(2 * math.pi * f * t[:, None] + rng.uniform(0, 2 * math.pi, n_ch))
        emg = rng.standard_normal((n, n_ch)) * np.where(lfp, 0.05, 0.3)
        taper = np.sin(np.pi * np.arange(n) / max(n - 1, 1)) ** 2
        self.data = amp * taper[:, None] * (slow / 3.0 + emg)

    def render(self, a: int, t: np.ndarray, out: np.ndarray) -> None:
        lo, hi = max(a, self.a), min(a + len(t), self.b)
        if lo < hi:
            out[lo - a:hi - a] += self.data[lo - self.a:hi - self.a]


class Dropout(SimEvent):
    """Flat line on one channel (lead off): the channel reads a constant 0 V."""

    post = True

    def __init__(self, rec: EventRecord, fs: float, channel: int) -> None:
        self.channel = channel
        super().__init__(rec, fs, np.zeros(0))

    def render(self, a: int, t: np.ndarray, out: np.ndarray) -> None:
        lo, hi = max(a, self.a), min(a + len(t), self.b)
        if lo < hi:
            out[lo - a:hi - a, self.channel] = 0.0


class StimArtefact(SimEvent):
    """Electrical (biphasic spike + exponential tail) or optical (photoelectric) artefact."""

    def __init__(self, rec: EventRecord, fs: float, gains: np.ndarray, amp: float,
                 tau: float, onsets: list[float], width: float, optical: bool) -> None:
        self.amp, self.tau, self.onsets, self.width, self.optical = amp, tau, onsets, width, optical
        super().__init__(rec, fs, gains)

    def wave(self, t: np.ndarray) -> np.ndarray:
        w = np.zeros_like(t)
        for t0 in self.onsets:
            x = t - t0
            if self.optical:
                # Becquerel (photoelectric) artefact: slow deflection while the light is on
                on = (x >= 0) & (x < self.width)
                w += np.where(on, 1 - np.exp(-x / self.tau), 0.0) * self.amp
                after = x >= self.width
                w += np.where(after, (1 - np.exp(-self.width / self.tau))
                              * np.exp(-(x - self.width) / self.tau), 0.0) * self.amp
            else:
                # at least one sample per phase so a 100-us pulse is visible at 2 kHz
                ph = max(self.width, 1.0 / self.fs)
                w += np.where((x >= 0) & (x < ph), self.amp, 0.0)
                w += np.where((x >= ph) & (x < 2 * ph), -self.amp, 0.0)
                tail = x >= 2 * ph
                w += np.where(tail, 0.3 * self.amp * np.exp(-(x - 2 * ph) / self.tau), 0.0)
        return w


# Random-stream classes (the second element of every key). Each spontaneous event draws
# from its own generator keyed by (seed, class, index), the processes that place events in
# time (gaps, train lengths) from one generator each, and every pulse's effect from one
# keyed by the pulse's index -- so a pulse that adds, blocks or edits an event never shifts
# any other event's draws, and a stim run and its sham twin share every spontaneous event.
SO_PROC, SO_EVENT = 1, 2
SP_PROC, SP_EVENT = 3, 4
RIP_PROC, RIP_EVENT = 5, 6
ART_PROC, ART_EVENT = 7, 8
SHARP_WAVE = 9
EFFECT = 10
REPLAY = 11
COUPLED_RIPPLE = 100       # ripple j of a spindle: the spindle's key + (100 + j,)


class Streams:
    """Independent random generators keyed by tuples of ints.

    ``rng(cls, i, ...)`` is ``default_rng([seed, 0x51AB, cls, i, ...])``: a function of
    the key alone, whatever else was drawn before it.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0x51AB, *(int(k) for k in key)])


def _overlaps(on: float, off: float, spans, gap: float):
    """The first span (on, off, eid, ...) closer than ``gap`` to [on, off), or None."""
    for sp in spans:
        if not (off + gap <= sp[0] or on >= sp[1] + gap):
            return sp
    return None


def lognormal(rng: np.random.Generator, median: float, sigma: float) -> float:
    return float(median * math.exp(sigma * rng.standard_normal())) if sigma > 0 else median


class Planner:
    """Schedules events ahead of rendering, in fixed one-second windows.

    Each event draws from its own random stream keyed by its class and index
    (:class:`Streams`), and each process that places events in time from one stream of
    its own, so the plan depends only on the seed, never on chunk sizes, and a pulse (see
    :mod:`sim.effects`) never shifts a spontaneous event. Where a pulse's event does block
    a spontaneous one (a click-induced spindle inside the refractory period of a later
    spontaneous spindle, an induced ripple overlapping a spontaneous one, the down state
    of a click-evoked slow oscillation thinning a spontaneous ripple), the blocked event is
    listed in the truth as kind "suppressed" (``meta["kind"]`` the event's kind,
    ``meta["by_eid"]`` the event that blocked it, ``meta["reason"]``): every spontaneous
    event of the sham twin is either in the stim run's truth at the same onset or listed
    there as suppressed.

    Blocking decisions are made twice: against the spontaneous events (exactly what the
    sham twin decides; suppressed ones count, as they exist in the twin) and against the
    events pulses caused.

    Parameters
    ----------
    settings : SimSettings
    geom : Geometry
    truth : Truth
    rng : numpy.random.Generator
    stage_at : callable(float) -> str
        Stage at a sim time (extends the hypnogram as needed).
    add_event : callable(SimEvent)
        Hands a new event to the renderer.
    sw_rng : numpy.random.Generator, optional
        Kept for callers of the older signature; unused (each ripple's radiatum sharp wave
        draws from its own keyed stream).
    streams : Streams, optional
        The keyed random streams; default: seeded from ``rng``'s seed sequence (without
        drawing from ``rng``).
    """

    WINDOW_S = 1.0

    def __init__(self, settings: SimSettings, geom: Geometry, truth: Truth,
                 rng: np.random.Generator, stage_at, add_event,
                 sw_rng: np.random.Generator | None = None,
                 streams: Streams | None = None) -> None:
        self.s, self.geom, self.truth, self.rng = settings, geom, truth, rng
        if streams is None:
            # derived from the generator's seed without drawing from it, so a caller that
            # passes only ``rng`` gets the same draws from it as before
            ss = getattr(rng.bit_generator, "seed_seq", None)
            streams = Streams(int(ss.generate_state(1, np.uint64)[0]) >> 2 if ss is not None
                              else int(rng.integers(2 ** 62)))
        self.streams = streams
        st = self.streams
        self._so_proc, self._sp_proc, self._rip_proc = (st.rng(SO_PROC), st.rng(SP_PROC),
                                                        st.rng(RIP_PROC))
        self._n_so = self._n_sp = self._n_rip = 0
        self.stage_at, self.add_event = stage_at, add_event
        self.fs = settings.rate_hz
        self.planned_until = 0.0
        self.so_next = 0.0
        self.so_train_left = 0
        self.so_train_f = 0.0       # frequency of the current N3 train's first cycle (Hz)
        self.sp_next = 0.0
        self.rip_next = 0.0
        self.art_next = {"movement": 0.0, "pop": 0.0, "dropout": 0.0, "saturation": 0.0,
                         "eye": 0.0}
        self._art_kinds = tuple(self.art_next)
        self._art_proc = {k: st.rng(ART_PROC, i) for i, k in enumerate(self._art_kinds)}
        self._n_art = dict.fromkeys(self._art_kinds, 0)
        # spans (on, off, eid, real) of spontaneous events -- exactly the sham twin's, with
        # suppressed ones (real False) -- and spans (on, off, eid) of events pulses caused
        self.spindle_spans: list[tuple[float, float, int, bool]] = []
        self.ripple_spans: list[tuple[float, float, int, bool]] = []
        self.stim_spindle_spans: list[tuple[float, float, int]] = []
        self.stim_ripple_spans: list[tuple[float, float, int]] = []
        self.n_ch = len(settings.channels)

    # ------------------------------------------------------------------ windows
    def plan_until(self, t_s: float) -> None:
        """Plan every event that starts before ``t_s`` (sim seconds)."""
        while self.planned_until < t_s:
            w0 = self.planned_until
            w1 = w0 + self.WINDOW_S
            self._plan_so(w1)
            self._plan_spindles(w1)
            self._plan_ripples(w1)
            self._plan_artefacts(w1)
            self.planned_until = w1

    # ------------------------------------------------------------------ slow oscillations
    def _next_key(self, cls: int) -> tuple[int, int]:
        attr = {SO_EVENT: "_n_so", SP_EVENT: "_n_sp", RIP_EVENT: "_n_rip"}[cls]
        k = getattr(self, attr)
        setattr(self, attr, k + 1)
        return (cls, k)

    def _plan_so(self, w1: float) -> None:
        so, rng = self.s.so, self._so_proc
        while self.so_next < w1:
            t = self.so_next
            stage = self.stage_at(t)
            if stage == "N3":
                if self.so_train_left <= 0:
                    self.so_train_left = int(rng.integers(so.train_cycles[0],
                                                          so.train_cycles[1] + 1))
                    self.so_train_f = 0.0        # the train's first cycle sets it
                key = self._next_key(SO_EVENT)
                cyc = self.make_so(t, train_freq_hz=self.so_train_f,
                                   rng=self.streams.rng(*key), key=key)
                if self.so_train_f == 0.0:
                    self.so_train_f = float(cyc.rec.meta["frequency_hz"])
                self.so_train_left -= 1
                self.so_next = cyc.rec.offset
                if self.so_train_left <= 0:
                    # gap between trains so trains fill n3_occupancy of N3 on average
                    mean_train = 0.5 * (so.train_cycles[0] + so.train_cycles[1]) / (
                        0.5 * (so.freq_hz[0] + so.freq_hz[1]))
                    occ = so.n3_occupancy
                    gap_mean = mean_train * (1 - occ) / occ if occ > 0 else 1e9
                    self.so_next += float(rng.exponential(gap_mean)) if gap_mean > 0 else 0.0
            elif stage == "N2" and so.rate_n2_hz > 0:
                self.so_train_left = 0
                # Poisson in steps of at most 1 s, so a long gap never skips a stage change
                gap = float(rng.exponential(1.0 / so.rate_n2_hz))
                if gap >= 1.0:
                    self.so_next = t + 1.0
                    continue
                key = self._next_key(SO_EVENT)
                cyc = (self.make_so(t + gap, rng=self.streams.rng(*key), key=key)
                       if self.stage_at(t + gap) == "N2" else None)
                self.so_next = cyc.rec.offset if cyc else t + gap
            else:
                self.so_train_left = 0
                self.so_next = t + 0.5

    def make_so(self, start: float, amp_factor: float = 1.0, *, evoked: bool = False,
                couple: bool = True, rng: np.random.Generator | None = None,
                train_freq_hz: float = 0.0, key: tuple[int, ...] = ()) -> SlowOsc:
        """Create one SO cycle starting (descending zero crossing) at ``start``.

        ``rng`` defaults to the plan's generator; the planner passes the cycle's own keyed
        stream and closed-loop effects the pulse's, so a pulse never shifts the baseline
        plan of a stim-vs-sham comparison. ``key`` names that stream (its coupled spindle
        and ripples derive theirs from it).
        ``train_freq_hz`` > 0: a later cycle of an N3 train; its frequency is that times
        a log-normal factor of sigma ``so.train_cycle_cv`` (clipped to ``so.freq_hz``).
        """
        so = self.s.so
        rng = rng if rng is not None else self.rng
        lo, hi = so.freq_hz
        # one uniform draw per cycle either way, so the random stream keeps its layout
        u = float(rng.uniform(lo, hi))
        if train_freq_hz > 0:
            z = _STD_NORMAL.inv_cdf(min(max((u - lo) / (hi - lo), 1e-9), 1 - 1e-9))
            f = min(max(train_freq_hz * math.exp(so.train_cycle_cv * z), lo), hi)
        else:
            f = u
        period = 1.0 / f
        down = so.down_fraction * period
        up = period - down
        k = lognormal(rng, 1.0, so.amplitude_sigma) * amp_factor
        rec = EventRecord("so", self.geom.so_channel, start, start + down + 0.5 * up,
                          start + period, {
                              "trough_s": start + 0.5 * down, "rise_s": start + down,
                              "frequency_hz": f, "trough_v": so.trough_v * k,
                              "peak_v": so.peak_v * k, "evoked": evoked,
                              "channels": self.geom.eeg_channels})
        self.truth.add(rec)
        ev = SlowOsc(rec, self.fs, self.geom.so, so.trough_v * k, so.peak_v * k)
        self.add_event(ev)
        if couple and rng.random() < self.s.spindle.so_coupling:
            ph = float(rng.normal(self.s.spindle.so_phase_deg, self.s.spindle.so_phase_sd_deg))
            self.make_spindle(so_phase_time(ev, ph), coupled_to=rec.eid, rng=rng, key=key,
                              induced=evoked)
        return ev

    # ------------------------------------------------------------------ spindles
    def _plan_spindles(self, w1: float) -> None:
        sp, rng = self.s.spindle, self._sp_proc
        while self.sp_next < w1:
            t = self.sp_next
            stage = self.stage_at(t)
            rate = sp.rate_n2_hz if stage == "N2" else sp.rate_n3_hz if stage == "N3" else 0.0
            if rate <= 0:
                self.sp_next = t + 0.5
                continue
            gap = float(rng.exponential(1.0 / rate))
            if gap < 1.0:
                self.sp_next = t + gap
                key = self._next_key(SP_EVENT)
                if self.stage_at(self.sp_next) == stage:
                    self.make_spindle(self.sp_next, rng=self.streams.rng(*key), key=key)
            else:
                self.sp_next = t + 1.0

    def spindle_free(self, on: float, off: float) -> bool:
        """Whether a spindle over [on, off) keeps the refractory gap to every spindle of
        this run."""
        ref = self.s.spindle.refractory_s
        return (_overlaps(on, off, [sp for sp in self.spindle_spans[-8:] if sp[3]], ref)
                is None and _overlaps(on, off, self.stim_spindle_spans[-8:], ref) is None)

    def make_spindle(self, peak: float, amp_factor: float = 1.0, coupled_to: int = -1,
                     induced: bool = False, rng: np.random.Generator | None = None,
                     key: tuple[int, ...] = ()) -> Spindle | None:
        """Create a spindle with its envelope peak at ``peak``; None if it would overlap
        (or, for a spontaneous one blocked by an event a pulse caused, listed in the truth
        as suppressed).

        ``induced``: caused by a pulse (absent from the sham twin); ``key``: the random
        stream ``rng`` came from (its coupled ripples derive theirs from it).
        """
        sp = self.s.spindle
        rng = rng if rng is not None else self.rng
        d = float(np.clip(lognormal(rng, 0.9, 0.35), *sp.duration_s))
        f = float(rng.uniform(*sp.freq_hz))
        on, off = peak - 0.5 * d, peak + 0.5 * d
        if self.stage_at(on) not in ("N2", "N3"):
            return None
        ref = sp.refractory_s
        blocker = None
        if induced:
            if not self.spindle_free(on, off):
                return None
        else:
            # what the sham twin decides: against spontaneous spindles only
            if _overlaps(on, off, self.spindle_spans[-8:], ref) is not None:
                return None
            blocker = _overlaps(on, off, self.stim_spindle_spans[-8:], ref)
        amp = lognormal(rng, sp.amplitude_v, sp.amplitude_sigma) * amp_factor
        meta = {"frequency_hz": f, "amplitude_v": amp, "duration_s": d,
                "so_coupled": coupled_to >= 0, "so_eid": coupled_to, "induced": induced,
                "channels": self.geom.eeg_channels}
        if blocker is not None:
            rec = self._suppress("spindle", self.geom.spindle_channel, on, peak, off, meta,
                                 blocker[2], "refractory period of a spindle a pulse induced")
            self.spindle_spans.append((on, off, rec.eid, False))
            self._couple_ripples(rec, f, rng, key, suppressed_by=rec.eid)
            return None
        rec = EventRecord("spindle", self.geom.spindle_channel, on, peak, off, meta)
        self.truth.add(rec)
        if induced:
            self.stim_spindle_spans.append((on, off, rec.eid))
        else:
            self.spindle_spans.append((on, off, rec.eid, True))
        ev = Spindle(rec, self.fs, self.geom.spindle, f, amp)
        self.add_event(ev)
        self._couple_ripples(rec, f, rng, key, induced=induced)
        return ev

    def _suppress(self, kind: str, channel: str, on: float, peak: float, off: float,
                  meta: dict, by_eid: int, reason: str) -> EventRecord:
        """List a spontaneous event a pulse blocked: kind "suppressed", same times."""
        m = dict(meta)
        m.update({"kind": kind, "by_eid": by_eid, "reason": reason})
        return self.truth.add(EventRecord("suppressed", channel, on, peak, off, m))

    def _couple_ripples(self, r: EventRecord, freq: float, rng: np.random.Generator,
                        key: tuple[int, ...], induced: bool = False,
                        suppressed_by: int = -1) -> None:
        """Put ripples into troughs of the spindle's strong middle (Staresina 2015).

        ``suppressed_by`` >= 0: the spindle was suppressed; its ripples are listed as
        suppressed too (they exist in the sham twin)."""
        p = self.s.ripple.spindle_coupling
        n_coupled = int(rng.random() < p) + int(rng.random() < 0.5 * p)
        if not n_coupled:
            return
        d = r.offset - r.onset
        period = 1.0 / freq
        # troughs at peak + (k + 1/2) periods, inside the middle half of the envelope
        ks = np.arange(-int(0.25 * d / period) - 1, int(0.25 * d / period) + 1)
        troughs = r.peak + (ks + 0.5) * period
        troughs = troughs[np.abs(troughs - r.peak) < 0.25 * d]
        if troughs.size == 0:
            return
        for j, t in enumerate(sorted(rng.choice(troughs, size=min(n_coupled, troughs.size),
                                                replace=False))):
            self.make_ripple(float(t), spindle_eid=r.eid, rng=rng,
                             key=(*key, COUPLED_RIPPLE + j), induced=induced,
                             suppressed_by=suppressed_by)

    # ------------------------------------------------------------------ ripples
    def _plan_ripples(self, w1: float) -> None:
        rp, rng = self.s.ripple, self._rip_proc
        while self.rip_next < w1:
            t = self.rip_next
            stage = self.stage_at(t)
            rate = {"N3": rp.rate_n3_hz, "N2": rp.rate_n2_hz,
                    "wake": rp.rate_wake_hz}.get(stage, 0.0)
            if rate <= 0:
                self.rip_next = t + 0.5
                continue
            # thinning: candidates at the peak rate rate*(1+m), accepted with the SO-phase
            # dependent fraction, so ripples gather in up-states (Battaglia et al. 2004)
            m = rp.so_modulation
            gap = float(rng.exponential(1.0 / (rate * (1.0 + m))))
            if gap < 1.0:
                self.rip_next = t + gap
                u = rng.random()
                key = self._next_key(RIP_EVENT)
                if self.stage_at(self.rip_next) != stage:
                    continue
                # accepted by the spontaneous slow oscillations (as in the sham twin) and
                # by every SO of this run (a click-evoked cycle moves ripples into its up
                # state and out of its down state); one uniform decides both
                cyc = self._so_record_at(self.rip_next)
                acc_run = u < self._ripple_gain(cyc, self.rip_next) / (1.0 + m)
                spont = cyc if cyc is None or not cyc.meta.get("evoked") else None
                acc_sham = u < self._ripple_gain(spont, self.rip_next) / (1.0 + m)
                if acc_sham:
                    self.make_ripple(self.rip_next, rng=self.streams.rng(*key), key=key,
                                     suppressed_by=-1 if acc_run else cyc.eid)
                elif acc_run:
                    self.make_ripple(self.rip_next, rng=self.streams.rng(*key), key=key,
                                     induced=True)
            else:
                self.rip_next = t + 1.0

    def _so_record_at(self, t: float) -> EventRecord | None:
        """The SO cycle (spontaneous or evoked) running at sim time ``t``, or None."""
        for r in reversed(self.truth._by_kind.get("so", [])[-64:]):
            if r.onset <= t < r.offset:
                return r
        return None

    def _ripple_gain(self, cyc: EventRecord | None, t: float) -> float:
        """Relative spontaneous ripple rate at ``t`` given the SO cycle running then."""
        if cyc is None:
            return 1.0
        k = (cyc.onset, cyc.meta["trough_s"], cyc.meta["rise_s"], cyc.peak, cyc.offset)
        ph = float(np.interp(t, k, [90.0, 180.0, 270.0, 360.0, 450.0]))
        return 1.0 + self.s.ripple.so_modulation * math.cos(math.radians(ph))

    def make_ripple(self, peak: float, spindle_eid: int = -1,
                    rng: np.random.Generator | None = None, key: tuple[int, ...] = (),
                    induced: bool = False, suppressed_by: int = -1,
                    duration_s: float | None = None) -> Ripple | None:
        """Create a ripple peaking at ``peak``; None if it would overlap another one (or,
        for a spontaneous one blocked by an event a pulse caused, listed in the truth as
        suppressed).

        ``key`` names the ripple's random stream (its replay content derives from it);
        ``induced``: caused by a pulse; ``suppressed_by`` >= 0: blocked by that event;
        ``duration_s``: this duration instead of a drawn one.
        """
        rp = self.s.ripple
        rng = rng if rng is not None else self.rng
        d = float(np.clip(lognormal(rng, rp.median_duration_s, 0.4), *rp.duration_s))
        d = d if duration_s is None else float(duration_s)
        f = float(rng.uniform(*rp.freq_hz))
        amp = lognormal(rng, rp.amplitude_v, rp.amplitude_sigma)
        ph0 = float(rng.uniform(0, 2 * math.pi))
        on, off = peak - 0.5 * d, peak + 0.5 * d
        # ripples do not overlap: keep 20 ms between them
        blocker = suppressed_by
        if induced:
            if (_overlaps(on, off, [r for r in self.ripple_spans[-8:] if r[3]], 0.02)
                    is not None
                    or _overlaps(on, off, self.stim_ripple_spans[-8:], 0.02) is not None):
                return None
        else:
            if _overlaps(on, off, self.ripple_spans[-8:], 0.02) is not None:
                return None
            if blocker < 0:
                hit = _overlaps(on, off, self.stim_ripple_spans[-8:], 0.02)
                blocker = hit[2] if hit is not None else -1
        meta = {"frequency_hz": f, "amplitude_v": amp, "duration_s": d,
                "spindle_eid": spindle_eid, "channels": self.geom.lfp_channels}
        if induced:
            meta["induced"] = True
        rad = self.geom.radiatum_cols
        sw_rad = 0.0
        if rad.size:
            # its own random stream (drawn only when the probe has a radiatum site), so
            # adding one leaves every other event of the plan as it was
            z_amp = (math.log(amp / rp.amplitude_v) / rp.amplitude_sigma
                     if rp.amplitude_sigma > 0 else 0.0)
            c = rp.sharp_wave_ripple_corr
            sw_rng = self.streams.rng(SHARP_WAVE, *key) if key else self.rng
            z = c * z_amp + math.sqrt(1.0 - c * c) * float(sw_rng.standard_normal())
            sw_rad = rp.radiatum_sharp_wave_v * math.exp(rp.radiatum_sharp_wave_sigma * z)
            meta["radiatum_sharp_wave_v"] = sw_rad
        if blocker >= 0:
            why = ("its spindle was suppressed" if suppressed_by >= 0
                   and self.truth._records[suppressed_by].kind == "suppressed"
                   else "down state of a click-evoked slow oscillation"
                   if suppressed_by >= 0 else "overlaps a ripple a pulse induced")
            rec = self._suppress("ripple", self.geom.ripple_channel, on, peak, off, meta,
                                 blocker, why)
            self.ripple_spans.append((on, off, rec.eid, False))
            return None
        rec = EventRecord("ripple", self.geom.ripple_channel, on, peak, off, meta)
        self.truth.add(rec)
        if induced:
            self.stim_ripple_spans.append((on, off, rec.eid))
        else:
            self.ripple_spans.append((on, off, rec.eid, True))
        ev = Ripple(rec, self.fs, self.geom.ripple * float(self.geom.lfp.any()), f, amp,
                    rp.sharp_wave_v, ph0, rad, rp.radiatum_ripple_gain, sw_rad)
        ev.key = key
        self.add_event(ev)
        return ev

    # ------------------------------------------------------------------ artefacts
    def _plan_artefacts(self, w1: float) -> None:
        a = self.s.artefacts
        rates = {"movement": a.movement_rate_hz, "pop": a.pop_rate_hz,
                 "dropout": a.dropout_rate_hz, "saturation": a.saturation_rate_hz,
                 "eye": 0.0}
        for kind, base in rates.items():
            rng = self._art_proc[kind]
            while self.art_next[kind] < w1:
                t = self.art_next[kind]
                stage = self.stage_at(t)
                rate = base * (10.0 if kind == "movement" and stage == "wake" else 1.0)
                if kind == "eye":
                    rate = {"REM": a.eye_rate_rem_hz, "wake": a.eye_rate_wake_hz}.get(stage, 0.0)
                if rate <= 0:
                    self.art_next[kind] = t + 1.0
                    continue
                gap = float(rng.exponential(1.0 / rate))
                if gap >= 1.0:
                    self.art_next[kind] = t + 1.0
                    continue
                t += gap
                self.art_next[kind] = t
                n = self._n_art[kind]
                self._n_art[kind] = n + 1
                self._make_artefact(kind, t, self.streams.rng(
                    ART_EVENT, self._art_kinds.index(kind), n))

    def _make_artefact(self, kind: str, t: float, rng: np.random.Generator) -> None:
        a, names = self.s.artefacts, self.geom.names
        if kind == "movement":
            d = float(rng.uniform(0.5, 3.0))
            rec = self.truth.add(EventRecord("artefact", names[0], t, t + 0.5 * d, t + d,
                                             {"type": "movement", "channels": list(names)}))
            self.add_event(Movement(rec, self.fs, self.n_ch, a.movement_v, rng, self.geom.lfp))
        elif kind == "eye":
            if self.stage_at(t) not in ("REM", "wake") or not self.geom.eye.any():
                return
            d = float(rng.uniform(0.15, 0.5))
            amp = a.eye_v * lognormal(rng, 1.0, 0.3) * float(rng.choice([-1.0, 1.0]))
            rec = self.truth.add(EventRecord("artefact", self.geom.eye_channel, t, t + 0.5 * d,
                                             t + d, {"type": "eye", "amplitude_v": amp}))
            self.add_event(Bump(rec, self.fs, self.geom.eye, amp))
        elif kind in ("pop", "saturation"):
            ch = int(rng.integers(self.n_ch))
            g = np.zeros(self.n_ch)
            g[ch] = 1.0
            sign = float(rng.choice([-1.0, 1.0]))
            if kind == "pop":
                tau = float(rng.uniform(0.1, 0.5))
                amp = a.pop_v * sign
            else:
                # twice the input range: the channel sits on the rail for tau*ln(2), then
                # recovers (the final clip in the renderer produces the flat top)
                tau = float(rng.uniform(0.5, 2.0))
                amp = 2.0 * a.clip_v * sign
            rec = self.truth.add(EventRecord("artefact", names[ch], t, t, t + 5 * tau,
                                             {"type": kind, "amplitude_v": amp,
                                              "decay_s": tau}))
            self.add_event(Pop(rec, self.fs, g, amp, tau))
        else:
            ch = int(rng.integers(self.n_ch))
            d = float(rng.uniform(0.1, 2.0))
            rec = self.truth.add(EventRecord("artefact", names[ch], t, t, t + d,
                                             {"type": "dropout"}))
            self.add_event(Dropout(rec, self.fs, ch))


def so_phase_time(ev: SlowOsc, phase_deg: float) -> float:
    """Time at which the SO cycle ``ev`` reaches cosine phase ``phase_deg``."""
    ph = float(phase_deg) % 360.0
    if ph < 90.0:
        ph += 360.0
    return float(np.interp(math.radians(ph), SlowOsc.KNOT_PH, ev.knots()))
