"""The stimulation policy: which event, which phase, which condition -> :class:`Intent`.

The policy only *proposes*: every intent goes through the safety governor, which alone
creates pulses. Targets (``[policy] target``):

``ripple``        fire at detection of a sharp-wave ripple (plus ``fire_delay_s``). Closed-
                  loop ripple stimulation was reported effective only within +-50 ms of
                  the ripple peak, so the deadline is short (scheduler budget).
``so_upstate``    slow-oscillation up-state. ``so_mode = "phase"`` fires one stimulus at
                  ``so_phase_deg`` of the predicted cycle; ``so_mode = "two_click"`` is
                  the Ngo et al. 2013 (Neuron 78:545) protocol: a click at the predicted
                  up-state, a second ``click_interval_s`` (1.075 s) later, then detection
                  pauses ``so_pause_s`` (2.5 s).
``spindle``       fire at spindle detection (plus ``fire_delay_s``).
``theta_peak``,   fire at the next theta peak (0 deg) / trough (180 deg) predicted by a
``theta_trough``  phase estimator, when its confidence is high enough.

Conditions (``[policy] condition``): ``stim`` (pulses sent), ``sham`` (every decision made,
reviewed and logged, nothing sent), ``yoked-random`` (the same decisions, hence the same
count, but each stimulus moved to a random time ``yoked_min_delay_s``..``yoked_max_delay_s``
after the decision, so timing is unrelated to the brain state).

Phase convention (project-wide): degrees, cosine phase, 0 = positive peak (SO up-state in
surface EEG polarity, theta peak), +-180 = trough, wrapped to (-180, 180].
"""
from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from engramloop.controller.governor import Governor, Intent, electrical_dose, light_energy_mj
from engramloop.core.events import Event
from engramloop.core.pulse import PulseSpec
from engramloop.core.schema import setting

#: Ngo et al. 2013: second click 1.075 s after the first (the SO period), then a 2.5 s pause.
NGO_CLICK_INTERVAL_S = 1.075
NGO_PAUSE_S = 2.5

TARGETS = ("ripple", "so_upstate", "spindle", "theta_peak", "theta_trough")


@dataclass(frozen=True)
class PulseSettings:
    """``[policy.pulse]``: the stimulus waveform (see drivers.pulse.PulseSpec)."""

    modality: Literal["electrical", "auditory", "optogenetic", "ttl"] = setting(
        "ttl", doc="what the stimulus is; dose rules in [safety] depend on it")
    shape: Literal["monophasic", "biphasic"] = setting(
        "monophasic", doc="pulse shape; electrical pulses must be biphasic (charge-balanced)")
    amplitude: float = setting(
        5.0, ge=0, unit="V | dB SPL | mW",
        doc="volts at the stimulator output (electrical/ttl), dB SPL (auditory), mW "
            "(optogenetic)")
    phase_width_s: float = setting(0.0001, gt=0, le=10, unit="s", doc="one phase's duration")
    interphase_s: float = setting(0.0, ge=0, le=0.01, unit="s",
                                  doc="gap between the phases of a biphasic pulse")
    train_count: int = setting(1, ge=1, le=1000, unit="pulses", doc="pulses per train")
    train_interval_s: float = setting(0.0, ge=0, le=10, unit="s",
                                      doc="onset-to-onset interval within a train")
    channel: int = setting(1, ge=1, le=16, doc="output channel on the stimulator (1-based)")

    def validate(self) -> None:
        one = self.phase_width_s * (2 if self.shape == "biphasic" else 1) + self.interphase_s
        if self.train_count > 1 and self.train_interval_s < one:
            raise ValueError(f"train_interval_s: {self.train_interval_s} s is shorter than one "
                             f"pulse ({one} s); pulses in a train would overlap")

    def spec(self) -> PulseSpec:
        return PulseSpec(self.modality, self.shape, self.amplitude, self.phase_width_s,
                         self.interphase_s, self.train_count, self.train_interval_s,
                         self.channel)


@dataclass(frozen=True)
class PolicySettings:
    """``[policy]``: what triggers a stimulus and when it should land."""

    target: Literal["ripple", "so_upstate", "spindle", "theta_peak", "theta_trough"] = setting(
        "ripple", doc="what the stimulus is locked to")
    condition: Literal["stim", "sham", "yoked-random"] = setting(
        "stim", doc="stim: send pulses; sham: decide and log everything, send nothing; "
                    "yoked-random: same number of pulses at random times")
    fire_delay_s: float = setting(
        0.0, ge=0, le=1.0, unit="s",
        doc="ripple/spindle targets: delay from detection to the stimulus")
    ripple_max_age_s: float = setting(
        0.03, gt=0, le=1.0, unit="s",
        doc="ripple target: skip a detection whose onset lies more than this before the "
            "decision (a ripple peaks some 20-40 ms after it starts; a later stimulus would "
            "land outside +-50 ms of the peak)")
    so_mode: Literal["phase", "two_click"] = setting(
        "phase", doc="so_upstate: one stimulus at so_phase_deg, or the Ngo 2013 two-click "
                     "sequence")
    so_phase_deg: float = setting(
        0.0, gt=-180, le=180, unit="deg",
        doc="so_upstate target phase (0 = up-state peak, negative = rising slope before it)")
    so_period_s: float = setting(
        1.0, gt=0.4, le=4.0, unit="s",
        doc="assumed SO cycle length used to turn so_phase_deg into a time offset from the "
            "detector's predicted up-state (slow oscillations run at 0.5-1.25 Hz)")
    click_interval_s: float = setting(
        NGO_CLICK_INTERVAL_S, gt=0, le=5.0, unit="s",
        doc="two_click: second click this long after the first (Ngo et al. 2013: 1.075 s)")
    so_pause_s: float = setting(
        NGO_PAUSE_S, ge=0, le=60.0, unit="s",
        doc="two_click: no new sequence until this long after the second click (Ngo 2013: "
            "2.5 s)")
    max_lead_s: float = setting(
        1.5, gt=0, le=10.0, unit="s",
        doc="ignore predictions further ahead than this (stale or implausible phase "
            "forecasts)")
    theta_min_confidence: float = setting(
        0.5, ge=0, le=1, doc="theta targets: minimum phase-estimator confidence to fire")
    min_interval_s: float = setting(
        0.0, ge=0, le=3600, unit="s",
        doc="the policy proposes nothing sooner than this after its previous proposal "
            "(the governor's refractory period still applies on top)")
    yoked_min_delay_s: float = setting(
        0.5, ge=0, le=60, unit="s", doc="yoked-random: earliest random delay after a decision")
    yoked_max_delay_s: float = setting(
        3.0, ge=0, le=60, unit="s", doc="yoked-random: latest random delay after a decision")
    pulse: PulseSettings = field(default_factory=PulseSettings)

    def validate(self) -> None:
        if self.yoked_max_delay_s < self.yoked_min_delay_s:
            raise ValueError(f"yoked_max_delay_s: {self.yoked_max_delay_s} s is below "
                             f"yoked_min_delay_s = {self.yoked_min_delay_s} s")
        if self.target == "so_upstate" and self.pulse.modality == "auditory" and \
                self.so_mode == "two_click" and self.pulse.train_count > 1:
            raise ValueError("pulse: two_click sends single clicks; set pulse.train_count = 1")


def _detected_kind(target: str) -> str:
    return {"ripple": "ripple", "so_upstate": "so", "spindle": "spindle"}.get(target, "")


class Policy:
    """Turns events (and phase estimates) into intents; one call per chunk.

    Parameters
    ----------
    settings : PolicySettings
    budget_s : float
        Scheduler budget: each intent's deadline is ``intended_s + budget_s`` seconds.
    seed : int
        Seed of the yoked-random timing.
    refractory_s : float
        The governor's refractory period, seconds: yoked-random stimuli are kept in
        decision order and at least this far apart, so moving them in time does not
        change how many the governor lets through.
    gate : object, optional
        A forecast gate (:class:`controller.forecast_worker.ForecastGate` or
        :class:`controller.allocator.UpliftGate`): each proposal goes ahead only if
        ``gate.allows(intended_s)``; refusals are counted by ``gate.last_reason`` in
        :attr:`gate_refusals`. A gate with ``see(events, now_s)`` is shown every chunk's
        detections first.

    Notes
    -----
    Theta targets need a phase estimate each step (``needs_phase`` is True): an object with
    ``confidence`` (0..1) and ``time_of_phase(target_deg) -> float`` (host-clock time of
    the next crossing of that phase, seconds, NaN when unknown), such as
    :class:`decoders.phase.PhaseEstimate`.

    Nothing is passed over silently: a detection of the target the policy drops by a rule
    of its own is counted by reason in :attr:`passed_over` (the loop puts it in the run
    summary and the recording, as the detectors' counts), and :attr:`status_note` is the
    live view's line while the latest such detection was dropped.
    """

    KIND = "policy"
    #: what :attr:`passed_over` counts, as the run summary words it after the count
    PASS_NOUN = ""
    PASS_REASONS = {
        "so_beyond_lead": "slow oscillations not stimulated: the target phase was predicted "
                          "more than max_lead_s ahead",
        "so_target_passed": "slow oscillations not stimulated: their detection reached the "
                            "policy more than a cycle after the target phase",
        "min_interval": "detections of the target not stimulated: within min_interval_s "
                        "of the previous stimulus",
        "so_pause": "slow oscillations not stimulated: within so_pause_s after a "
                    "two-click sequence",
    }

    def __init__(self, settings: PolicySettings, budget_s: float, seed: int = 0,
                 refractory_s: float = 0.0, gate: Any = None) -> None:
        self.settings = settings
        self.budget_s = float(budget_s)
        self.spec = settings.pulse.spec()
        self._kind = _detected_kind(settings.target)
        self._rng = np.random.default_rng(seed)
        self.needs_phase = settings.target.startswith("theta")
        self._refractory_s = float(refractory_s)
        self.gate = gate
        #: proposals waiting for an asynchronous gate's answer (the uplift gate), by key;
        #: None for a gate that answers at once
        self._waiting: dict[float, list[Intent]] | None = \
            {} if gate is not None and hasattr(gate, "poll") else None
        self.gate_refusals: dict[str, int] = {}
        #: proposals the forecast gate let through (with a gate only)
        self.gate_allowed = 0
        #: the first intents of the sequences the uplift gate allowed lately (to refund
        #: the budget of one the governor refuses)
        self._from_gate: deque[Intent] = deque(maxlen=8)
        #: the onsets of the pending ripple proposals, by key (ripple_max_age_s at the
        #: decision)
        self._onsets: dict[float, float] = {}
        #: ripple detections skipped as too late (``ripple_max_age_s``)
        self.n_too_late = 0
        self._last_yoked_s = -math.inf
        self._next_ok_s = -math.inf
        self._pause_until_s = -math.inf
        self.n_proposed = 0
        self.passed_over = dict.fromkeys(self.PASS_REASONS, 0)
        self._last_passed = ""       # the reason the latest target detection was dropped

    @property
    def status_note(self) -> str:
        """The live view's line while the latest detection of the target was dropped by
        a policy rule, else ""."""
        if not self._last_passed:
            return ""
        if self._last_passed == "so_target_passed":
            return (f"policy passing over slow oscillations (target phase passed before "
                    f"the detection reached it): {self.passed_over['so_target_passed']} "
                    f"in all")
        return (f"policy passing over slow oscillations (target predicted beyond "
                f"max_lead_s {self.settings.max_lead_s:g} s): "
                f"{self.passed_over[self._last_passed]} in all")

    def reset(self) -> None:
        self._next_ok_s = -math.inf
        self._pause_until_s = -math.inf
        self._last_yoked_s = -math.inf

    # ---------------------------------------------------------------- helpers
    def _intent(self, t_s: float, detect_s: float, now_s: float, ends: bool = True,
                peak_s: float = math.nan) -> Intent:
        t = max(t_s, now_s)
        return Intent(self.settings.target, self.spec, detect_s, t, t + self.budget_s,
                      self.settings.condition, ends, peak_s)

    def _yoke(self, intents: list[Intent], now_s: float) -> list[Intent]:
        if self.settings.condition != "yoked-random" or not intents:
            return intents
        s = self.settings
        t0 = now_s + float(self._rng.uniform(s.yoked_min_delay_s, s.yoked_max_delay_s))
        t0 = max(t0, self._last_yoked_s + self._refractory_s + 1e-6)
        shift = t0 - intents[0].intended_s
        self._last_yoked_s = intents[-1].intended_s + shift
        return [Intent(i.target, i.spec, i.detect_s, i.intended_s + shift,
                       i.deadline_s + shift, i.condition, i.ends_train, math.nan)
                for i in intents]

    # ------------------------------------------------------------------- step
    def step(self, events: list[Event], now_s: float, phase=None) -> list[Intent]:
        """Intents for this chunk (usually none).

        Parameters
        ----------
        events : list of Event
            This chunk's detections (any kinds; the policy picks its target's).
        now_s : float
            Current host-clock time, seconds (the newest sample's time in ``--speed max``
            runs).
        phase : PhaseEstimate, optional
            The theta phase estimate at this chunk's newest sample (theta targets only;
            without one a theta policy proposes nothing).

        Returns
        -------
        list of Intent
            A sequence to review in order: when the governor refuses one, the loop drops
            the rest (a lone second click of a two-click sequence is never sent).
        """
        s = self.settings
        out: list[Intent] = []
        see = getattr(self.gate, "see", None)
        if see is not None:
            see(events, now_s)      # the uplift gate keeps per-candidate features
        decided = self._resolve(now_s) if self._waiting is not None else []
        ev = next((e for e in events if e.kind == self._kind), None) if self._kind else None
        if ev is not None and s.target == "so_upstate" and not ev.predicted_s == ev.predicted_s:
            # a down state reported without a prediction must not hide a predicted up
            # state released in the same chunk (the SO detector releases at chunk ends)
            ev = next((e for e in events if e.kind == self._kind
                       and e.predicted_s == e.predicted_s), ev)
        if now_s < self._next_ok_s or now_s < self._pause_until_s:
            if ev is not None and (s.target != "so_upstate"
                                   or ev.predicted_s == ev.predicted_s):
                # a rule the user set, so no live-view state; but counted: a night of
                # detections that all fall in the refractory time is not a quiet night
                # (a down state without a prediction is the detector's count, not this)
                self.passed_over["so_pause" if now_s < self._pause_until_s
                                 else "min_interval"] += 1
            return decided
        if self._kind:
            if ev is None:
                return decided
            if s.target == "so_upstate":
                out = self._so(ev, now_s)
            elif s.target == "ripple" and now_s - ev.onset_s > s.ripple_max_age_s:
                # a late detection of a long ripple: the stimulus would land well after
                # the peak, outside the +-50 ms window where it is effective
                self.n_too_late += 1
                return decided
            else:
                out = [self._intent(ev.detect_s + s.fire_delay_s, ev.detect_s, now_s,
                                    peak_s=ev.peak_s)]
        else:
            if phase is None or not phase.confidence >= s.theta_min_confidence:
                return decided
            target_deg = 0.0 if s.target == "theta_peak" else 180.0
            t = float(phase.time_of_phase(target_deg))
            if not (t == t and now_s <= t <= now_s + s.max_lead_s):
                return decided
            out = [self._intent(t, now_s, now_s)]
        if not out:
            return decided
        gate = self.gate
        if self._waiting is not None:
            # the uplift gate predicts off the loop thread: the proposal waits for its
            # answer (decided by _resolve at this or a later chunk, or refused as late)
            if decided:     # a pulse was just let through: one sequence per chunk
                self._refused("uplift_pending")
                return decided
            key = gate.post(out[0].intended_s)
            if key is None:
                self._refused(getattr(gate, "last_reason", "") or "closed")
                return decided
            self._waiting[key] = out
            if s.target == "ripple":    # its age is checked again at the decision
                self._onsets[key] = ev.onset_s
            return decided + self._resolve(now_s)
        if gate is not None and not gate.allows(out[0].intended_s):
            # the gate refuses (P(below-median consolidation) on the wrong side of its
            # threshold): no stimulus; counted by reason, the sequence is dropped whole
            self._refused(getattr(gate, "last_reason", "") or "closed")
            return []
        if gate is not None:
            self.gate_allowed += 1
        return self._commit(out, now_s)

    @property
    def waiting(self) -> bool:
        """A proposal waits for the uplift gate's answer."""
        return bool(self._waiting)

    def resolve(self, now_s: float) -> list[Intent]:
        """Decide the proposals whose answers are back (between chunks: the loop calls this
        after finishing a chunk, so an answer that came while it recorded the chunk does
        not wait for the next one). Intents as from :meth:`step`."""
        return self._resolve(now_s) if self._waiting else []

    def _refused(self, reason: str) -> None:
        self.gate_refusals[reason] = self.gate_refusals.get(reason, 0) + 1

    def _resolve(self, now_s: float) -> list[Intent]:
        """The uplift gate's decisions that are ready, in posting order: refusals counted
        by reason, allowed proposals re-timed to leave no earlier than now (their
        deadline moves with them: the gate bounds the wait by its ``max_wait_s``)."""
        out: list[Intent] = []
        for key, ok, reason in self.gate.poll(now_s):
            intents = self._waiting.pop(key, None)
            if intents is None:
                continue
            onset = self._onsets.pop(key, math.nan)
            if not ok:
                self._refused(reason or "closed")
                continue
            self.gate_allowed += 1
            if now_s - onset > self.settings.ripple_max_age_s:
                # answered within the gate's wait, but the ripple is now older than
                # ripple_max_age_s (it passed that check when proposed): the stimulus
                # would land past the peak's window -- not sent, the budget given back
                self.n_too_late += 1
                self.gate.refund()
                continue
            shift = max(now_s - intents[0].intended_s, 0.0)
            if shift:
                intents = [dataclasses.replace(i, intended_s=i.intended_s + shift,
                                               deadline_s=i.deadline_s + shift)
                           for i in intents]
            committed = self._commit(intents, now_s)
            if committed:
                self._from_gate.append(committed[0])
            out += committed
        return out

    def governor_refused(self, intent: Intent) -> None:
        """The loop's word that the safety governor refused ``intent``: when the uplift
        gate had allowed it, the gate's budget is given back (a refused pulse is not a
        pulse spent)."""
        for i, mine in enumerate(self._from_gate):
            if mine is intent:
                del self._from_gate[i]
                self.gate.refund()
                return

    def _commit(self, out: list[Intent], now_s: float) -> list[Intent]:
        s = self.settings
        # gating follows the brain-locked decision times, so a yoked run makes the same
        # decisions as a locked one and only the stimulus times move
        if len(out) > 1:  # two-click: detection pauses after the second click (Ngo 2013)
            self._pause_until_s = out[-1].intended_s + s.so_pause_s
        self._next_ok_s = out[-1].intended_s + s.min_interval_s
        out = self._yoke(out, now_s)
        self.n_proposed += len(out)
        return out

    def _so(self, ev: Event, now_s: float) -> list[Intent]:
        s = self.settings
        up = ev.predicted_s
        if not (up == up):
            return []
        t = up + s.so_phase_deg / 360.0 * s.so_period_s
        if t < min(now_s, ev.detect_s) or (t < now_s and now_s > up + s.so_period_s / 4):
            # the target phase had passed when the detector decided: the next cycle's.
            # Passed only since (the chunk arrived after it, e.g. the detector's
            # fire-time check just before the up state): now -- while now is still in the
            # up phase (within a quarter cycle of its peak); a chunk handed over later
            # (a stalled source or loop) would put "now" on the falling slope
            t += s.so_period_s
            if t < now_s:
                # more than a cycle late: no phase to aim at (not fired "now", off phase)
                self.passed_over["so_target_passed"] += 1
                self._last_passed = "so_target_passed"
                return []
        if t > now_s + s.max_lead_s:
            # counted and shown: a night whose predictions all land beyond the lead is not
            # a night without slow oscillations
            self.passed_over["so_beyond_lead"] += 1
            self._last_passed = "so_beyond_lead"
            return []
        self._last_passed = ""
        if s.so_mode == "phase":
            return [self._intent(t, ev.detect_s, now_s)]
        first = self._intent(t, ev.detect_s, now_s, ends=False)
        second_t = first.intended_s + s.click_interval_s
        second = Intent(s.target, self.spec, ev.detect_s, second_t, second_t + self.budget_s,
                        s.condition, True, math.nan)
        return [first, second]


def check_against_safety(policy: PolicySettings, safety) -> None:
    """Reject combinations of ``[policy]`` and ``[safety]`` that can never stimulate.

    Raises
    ------
    ValueError
        ``"policy.<key>: <why>"`` for a stimulus the governor would refuse every time.
    """
    p = policy.pulse
    spec = p.spec()
    if p.modality not in safety.modalities:
        raise ValueError(f"policy.pulse.modality: {p.modality!r} is not enabled in "
                         f"safety.modalities {list(safety.modalities)}")
    if p.modality == "electrical":
        if p.shape != "biphasic":
            raise ValueError("policy.pulse.shape: electrical pulses must be charge-balanced "
                             "biphasic (safety rule)")
        q, d, k = electrical_dose(spec, safety)
        for ok, what in ((q <= safety.max_charge_per_phase_uc,
                          f"{q:.3g} uC/phase > safety.max_charge_per_phase_uc"),
                         (d <= safety.max_charge_density_uc_cm2,
                          f"{d:.3g} uC/cm^2 > safety.max_charge_density_uc_cm2"),
                         (k <= safety.shannon_k_max,
                          f"Shannon k {k:.3f} > safety.shannon_k_max")):
            if not ok:
                raise ValueError(f"policy.pulse.amplitude: every pulse would be refused: {what}")
    if p.modality == "optogenetic":
        if p.amplitude > safety.opto_max_power_mw:
            raise ValueError(f"policy.pulse.amplitude: {p.amplitude} mW > "
                             f"safety.opto_max_power_mw = {safety.opto_max_power_mw} mW")
        if light_energy_mj(spec) / safety.opto_window_s > safety.opto_max_mean_power_mw:
            raise ValueError("policy.pulse: one pulse alone exceeds "
                             "safety.opto_max_mean_power_mw over safety.opto_window_s")
    if p.modality == "auditory" and p.amplitude > safety.auditory_max_db_spl:
        raise ValueError(f"policy.pulse.amplitude: {p.amplitude} dB SPL > "
                         f"safety.auditory_max_db_spl = {safety.auditory_max_db_spl}")
    if policy.target == "so_upstate" and policy.so_mode == "two_click":
        if policy.click_interval_s < safety.refractory_s:
            raise ValueError(f"policy.click_interval_s: {policy.click_interval_s} s is shorter "
                             f"than safety.refractory_s = {safety.refractory_s} s, so every "
                             "second click would be refused")
        if p.modality == "auditory" and safety.auditory_max_train_clicks < 2 and \
                safety.auditory_lockout_s > policy.click_interval_s:
            raise ValueError("policy.so_mode: two_click needs safety.auditory_max_train_clicks "
                             ">= 2 (the lockout would refuse every second click)")
    if safety.max_pulses_per_session == 0 and policy.condition != "sham":
        raise ValueError("policy.condition: safety.max_pulses_per_session = 0 allows no "
                         "pulse; use condition = \"sham\" for a run without stimulation")
    if safety.max_pulses_per_session > 0:
        _check_one_train(spec, safety)


#: which key to change when a single stimulus breaks a governor rule (start-up check)
_RULE_KEYS = {"rate": "safety.rate_max_pulses", "charge_rate": "safety.max_charge_per_s_uc",
              "opto_power": "safety.opto_max_mean_power_mw",
              "session_cap": "safety.max_pulses_per_session"}


def _check_one_train(spec: PulseSpec, safety) -> None:
    """A stimulus the real governor refuses even as the first of a session, counted as the
    device plays it (every pulse of the train), can never be delivered: refuse at start."""
    import dataclasses

    g = Governor(dataclasses.replace(safety, calibration_s=0.0))
    g.arm()
    g.set_calibrated(True)
    g.observe_chunk(0.0, 1.0, 1000, 1000.0)
    d = g.review(Intent("start-up check", spec, 1.0, 1.0, 2.0), 1.0)
    if not d.approved:
        key = _RULE_KEYS.get(d.rule, "policy.pulse")
        raise ValueError(f"policy.pulse: every stimulus would be refused ({d.rule}: "
                         f"{d.detail}); change the pulse train or {key}")


__all__ = ["check_against_safety", "PolicySettings", "PulseSettings", "Policy", "TARGETS",
           "NGO_CLICK_INTERVAL_S",
           "NGO_PAUSE_S"]
