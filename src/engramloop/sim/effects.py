"""What a delivered pulse does to the simulated brain.

Each effect edits events whose waveform has not been delivered yet, so a pulse at time t
changes the signal only after t (within a few milliseconds for ripples, on the next cycle
for slow oscillations and spindles). Effects use their own random generator, so a pulse
never reshuffles the baseline plan: stim and sham runs with one seed share every
spontaneous event. A spontaneous event an effect blocks (a spindle inside the refractory
period of one a click induced, and its ripples) is listed in the truth as kind
"suppressed", never silently missing.

* auditory click (``modality="auditory"``) during an SO in N2/N3 (Ngo et al. 2013 Neuron
  78:545): benefit ``b = cos(phase - click_best_phase_deg)``. ``b > 0`` enlarges the next
  SO cycle by ``1 + click_gain*b`` (or evokes one if the train was ending) and, with
  probability ``click_spindle_prob*b``, induces or enlarges a spindle in its up-state;
  ``b < 0`` (down-state click) shrinks the next cycle and its spindles by
  ``1 + click_down_gain*b`` (at most 10 % by default) -- anti-phase clicks do not help and
  harm little (Ngo et al. 2013). Clicks outside an SO do nothing.
* electrical / optogenetic pulse during a ripple: "disrupt" silences it within
  ``cut_latency_s`` (Girardeau et al. 2009), "prolong" holds its envelope for
  ``prolong_s`` more (Fernandez-Ruiz et al. 2019). Outside a ripple: no effect.
* optogenetic pulse during a spindle (N2/N3) and outside a ripple: a short ripple
  (``induced_ripple_s``) nested in the spindle's next trough (Stark et al. 2014;
  Fernandez-Ruiz et al. 2019; Latchoumane et al. 2017); it replays like any ripple, so
  its worth follows the coupling (more in an SO up-state). An electrical pulse there does
  nothing (commissural pulses silence ripples, they do not make them).
* electrical / optogenetic pulse while theta runs (wake/REM): the memory model is told the
  theta phase of the pulse (potentiation at the peak, depression at the trough).
* electrical and optogenetic pulses add a stimulation artefact to the signal.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from engramloop.core.pulse import PulseSpec
from engramloop.sim.rhythms import (
    EFFECT,
    Ripple,
    SlowOsc,
    Spindle,
    StimArtefact,
    so_phase_time,
)
from engramloop.sim.truth import EventRecord

#: the simulator these functions act on (a :class:`sim.source.SimSource`, which imports this
#: module: named here, not imported, so the two do not import each other)
SimSource = Any

TARGETS = ("ripple", "so_upstate", "spindle", "theta_peak", "theta_trough")
RIPPLE_RAMP_S = 0.005      # envelope ramp to the prolonged plateau
RIPPLE_TAIL_S = 0.02       # fall-off after the prolonged plateau


def apply_pulse(src: SimSource, t: float, spec: PulseSpec, target: str) -> EventRecord:
    """Apply one delivered pulse at sim time ``t``; returns its "stim" truth record."""
    s = src.settings
    eff = s.effects
    truth = src.truth
    now = src._read_ptr / src.rate_hz            # first sample not yet delivered (sim s)
    phases = {g: truth.phase_at(g, t) for g in ("so", "spindle", "theta")}
    stage = src._stage_at(t)
    meta: dict = {"modality": spec.modality, "target": target, "amplitude": spec.amplitude,
                  "stage": stage, "effect": "none"}
    meta.update({f"{g}_phase_deg": (None if math.isnan(v) else v) for g, v in phases.items()})
    rec = truth.add(EventRecord("stim", "", t, t, t + spec.duration_s, meta))
    meta = rec.meta                               # the record holds its own copy
    # the pulse's own random stream, keyed by its time (microseconds): a pulse never
    # shifts another pulse's draws nor any spontaneous event's, and a pulse at the same
    # time draws the same in any night of the seed whatever other pulses it has (the
    # counterfactual twin nights rely on it)
    key = (EFFECT, int(round(t * 1e6)))
    rng = src._planner.streams.rng(*key)

    if spec.modality in ("electrical", "optogenetic"):
        _add_artefact(src, rec, t, spec)
        rip = _active(src, Ripple, t)
        if rip is not None:
            mode = (eff.electrical_ripple_mode if spec.modality == "electrical"
                    else eff.optogenetic_ripple_mode)
            t_cut = max(t, now)
            if mode == "disrupt":
                rip.rec.meta["original_offset_s"] = rip.rec.offset
                rip.rewrite_after(t_cut, np.array([t_cut + eff.cut_latency_s]), np.array([0.0]))
                rip.rec.meta["truncated"] = True
            else:
                # hold a plateau so the ripple ends prolong_s later than it would have
                level = max(float(rip.envelope(np.array([t_cut]))[0]), 0.8)
                t1 = t_cut + RIPPLE_RAMP_S
                t2 = max(t1, max(rip.rec.offset, t_cut) + eff.prolong_s - RIPPLE_TAIL_S)
                rip.rec.meta["original_offset_s"] = rip.rec.offset
                rip.rewrite_after(t_cut, np.array([t1, t2, t2 + RIPPLE_TAIL_S]),
                                  np.array([level, level, 0.0]))
                rip.rec.meta["prolonged_by_s"] = rip.rec.offset - rip.rec.meta[
                    "original_offset_s"]
            rip.rec.meta["duration_s"] = rip.rec.offset - rip.rec.onset
            meta["effect"] = f"ripple_{mode}"
            meta["ripple_eid"] = rip.rec.eid
            # where the ripple ends after this pulse (a later pulse on it may move it again)
            meta["ripple_offset_s"] = rip.rec.offset
            meta["ripple_duration_s"] = rip.rec.offset - rip.rec.onset
        elif spec.modality == "optogenetic" and stage in ("N2", "N3"):
            sp = _active(src, Spindle, t)
            if sp is not None:
                meta["effect"] = _spindle_ripple(src, sp, max(t, now), rng, key, meta)
        if not math.isnan(phases["theta"]) and stage in ("wake", "REM"):
            src._queue_memory(t, "theta", (phases["theta"], eff.theta_gain))
            meta["effect"] = meta["effect"] if rip is not None else "theta_plasticity"

    elif spec.modality == "auditory" and stage in ("N2", "N3"):
        cyc = _active(src, SlowOsc, t)
        if cyc is not None and not math.isnan(phases["so"]):
            b = math.cos(math.radians(phases["so"] - eff.click_best_phase_deg))
            meta["benefit"] = b
            meta["effect"] = _click(src, cyc, b, now, rng, key)
    truth.touch()
    return rec


def _active(src: SimSource, cls: type, t: float):
    """The event of class ``cls`` whose truth span contains sim time ``t``; when several
    do (a prolonged ripple running into the next one), the one that started last."""
    best = None
    for ev in src._events:
        if isinstance(ev, cls) and ev.rec.onset <= t < ev.rec.offset and (
                best is None or ev.rec.onset > best.rec.onset):
            best = ev
    return best


def _add_artefact(src: SimSource, rec: EventRecord, t: float, spec: PulseSpec) -> None:
    a = src.settings.artefacts
    lfp = src._geom.lfp
    onsets = [t + k * spec.train_interval_s for k in range(spec.train_count)]
    optical = spec.modality == "optogenetic"
    if optical:
        gains = np.where(lfp, 1.0, 0.0)
        amp = a.stim_artefact_v / 5.0
        tau = max(a.stim_artefact_s, 1e-4)
    else:
        gains = np.where(lfp, 1.0, 0.1)        # scalp sees a fraction of a depth pulse
        amp, tau = a.stim_artefact_v, a.stim_artefact_s
    end = onsets[-1] + max(spec.phase_width_s, 1.0 / src.rate_hz) * 2 + 8 * tau
    art = EventRecord("artefact", src._geom.ripple_channel, t, t, end,
                      {"type": "stim", "stim_eid": rec.eid})
    src.truth.add(art)
    src._add_event(StimArtefact(art, src.rate_hz, gains, amp, tau, onsets,
                                spec.phase_width_s if not optical else spec.duration_s,
                                optical))


def _spindle_ripple(src: SimSource, sp: Spindle, t0: float, rng: np.random.Generator,
                    key: tuple[int, ...], meta: dict) -> str:
    """A light pulse in CA1 during a spindle and outside a ripple: a short ripple nested
    in the spindle's next trough.

    Depolarising a few CA1 pyramidal cells induces ripple-like high-frequency
    oscillations (Stark et al. 2014 Neuron 83:467); induced ripples resemble short
    spontaneous ones and carry little content (Fernandez-Ruiz et al. 2019 Science
    364:1082: randomly induced ripples did not help memory, hence the short duration);
    nested in spindle troughs, induced events are as efficient as spontaneous ones and
    spindle-ripple coupling in an SO up-state is what consolidates (Latchoumane et al.
    2017 Neuron 95:424) -- the memory model's coupling gain does the rest, so the SO phase
    of the pulse decides how much it is worth.
    """
    eff = src.settings.effects
    d = eff.induced_ripple_s
    r = sp.rec
    period = 1.0 / sp.freq
    # troughs at peak + (k + 1/2) periods; the first whose ripple starts after t0 + 5 ms
    k = math.ceil((t0 + 0.005 + 0.5 * d - r.peak) / period - 0.5)
    t_tr = r.peak + (k + 0.5) * period
    if t_tr + 0.5 * d > r.offset:
        return "none"
    ev = src._planner.make_ripple(t_tr, spindle_eid=r.eid, rng=rng, key=key, induced=True,
                                  duration_s=d)
    if ev is not None:
        # the pulse's record names the ripple it made, as for one it prolonged
        meta["ripple_eid"] = ev.rec.eid
        meta["ripple_offset_s"] = ev.rec.offset
        meta["ripple_duration_s"] = ev.rec.offset - ev.rec.onset
    return "spindle_ripple_induced" if ev is not None else "none"


def _click(src: SimSource, cyc: SlowOsc, b: float, now: float,
           rng: np.random.Generator, key: tuple[int, ...]) -> str:
    """Closed-loop auditory stimulation of an SO (Ngo et al. 2013)."""
    eff, so = src.settings.effects, src.settings.so
    nxt = None
    for ev in src._events:
        if (isinstance(ev, SlowOsc) and ev is not cyc and ev.a >= src._read_ptr
                and cyc.rec.offset - 0.05 <= ev.rec.onset <= cyc.rec.offset + 0.3):
            nxt = ev
            break
    # in phase: the next cycle grows by up to click_gain; anti-phase: it shrinks a little
    factor = 1.0 + (eff.click_gain if b > 0 else eff.click_down_gain) * b
    if nxt is not None:
        nxt.scale *= factor
        nxt.rec.meta["trough_v"] *= factor
        nxt.rec.meta["peak_v"] *= factor
        nxt.rec.meta["click_factor"] = nxt.rec.meta.get("click_factor", 1.0) * factor
    elif b > 0:
        start = cyc.rec.offset
        clear = all(not (isinstance(ev, SlowOsc) and start <= ev.rec.onset
                         < start + 1.0 / so.freq_hz[0]) for ev in src._events)
        if not clear or start * src.rate_hz < src._read_ptr:
            return "none"
        nxt = src._planner.make_so(start, amp_factor=0.6 + eff.click_gain * b, evoked=True,
                                   couple=False, rng=rng)
    else:
        return "none"
    spindles = [ev for ev in src._events if isinstance(ev, Spindle)
                and ev.a >= src._read_ptr and nxt.rec.onset <= ev.rec.peak < nxt.rec.offset]
    if b > 0:
        if rng.random() < eff.click_spindle_prob * b:
            if spindles:
                for sp in spindles:
                    _scale_spindle(sp, 1.0 + eff.click_gain * b)
            else:
                ph = src.settings.spindle.so_phase_deg
                sp = src._planner.make_spindle(so_phase_time(nxt, ph),
                                               amp_factor=1.0 + eff.click_gain * b,
                                               coupled_to=nxt.rec.eid, induced=True, rng=rng,
                                               key=key)
                if sp is not None:
                    sp.rec.meta["click_factor"] = 1.0 + eff.click_gain * b
        return "so_enhanced"
    for sp in spindles:
        _scale_spindle(sp, factor)
    return "so_suppressed"


def _scale_spindle(sp: Spindle, f: float) -> None:
    """Enlarge (f > 1) or shrink a spindle a click acted on; ``click_factor`` in its truth
    record is what the memory model reads (a stronger spindle couples its ripples more
    strongly: Ngo et al. 2013 -- in-phase clicks enhanced phase-coupled spindle activity
    "and, consequently, the consolidation of declarative memory")."""
    sp.scale *= f
    sp.rec.meta["amplitude_v"] *= f
    sp.rec.meta["click_factor"] = sp.rec.meta.get("click_factor", 1.0) * f
