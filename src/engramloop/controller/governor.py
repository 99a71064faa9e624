"""The safety governor: the only way from a stimulation *intent* to an approved *Pulse*.

The governor sits strictly between the policy and the outputs. The policy proposes
:class:`Intent` objects; :meth:`Governor.review` applies every rule below, in order, and
returns a :class:`Decision` that is recorded whether approved or refused. Only an approved
decision carries a :class:`~drivers.pulse.Pulse`, and the scheduler refuses any pulse the
governor did not issue (:meth:`Governor.issued`), so no code path reaches an output without
passing here.

Rules (the ``rule`` string of a refusal):

``disarmed``         the governor starts disarmed and must be armed explicitly;
``calibrating``      detectors have not finished their baseline calibration;
``stale_data``       the newest sample is older than ``stale_factor`` chunk intervals;
``gap``              samples were lost (packet-counter jump or timestamp gap): pulses are
                     blocked for one refractory period after the gap;
``deadline``         the intent's deadline has already passed, or it is not after its
                     intended time;
``modality``         the pulse modality is not enabled in ``[safety] modalities``;
``waveform``         electrical pulses must be charge-balanced biphasic;
``charge``           charge per phase above ``max_charge_per_phase_uc``;
``charge_density``   charge density above ``max_charge_density_uc_cm2``;
``shannon``          Shannon's k above ``shannon_k_max`` (itself capped at 1.85);
``opto_power``       optogenetic peak or time-averaged light power above its cap;
``auditory_level``   click level above ``auditory_max_db_spl``;
``auditory_lockout`` an auditory train ended less than ``auditory_lockout_s`` ago;
``refractory``       less than ``refractory_s`` after the previous approved pulse (this also
                     refuses any intent scheduled *before* an already approved pulse, so
                     approved pulses are strictly ordered in time);
``rate``             a sliding window would hold more than its maximum number of pulses;
``session_cap``      the per-session pulse cap is reached.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from engramloop.core.pulse import Pulse, PulseSpec
from engramloop.core.schema import setting

#: Shannon (1992) fitted the boundary between damaging and non-damaging macro-electrode
#: stimulation in cat cortex (McCreery et al. 1990 data) as log10(D) = k - log10(Q) with
#: k = 1.85 (D: charge density uC/cm^2/phase, Q: charge uC/phase). A ceiling above it is an
#: error. R. V. Shannon, IEEE Trans. Biomed. Eng. 39(4):424-426, 1992.
SHANNON_K_LIMIT = 1.85

RULES = ("disarmed", "calibrating", "stale_data", "gap", "deadline", "modality", "waveform",
         "charge", "charge_density", "shannon", "opto_power", "auditory_level",
         "auditory_lockout", "refractory", "rate", "session_cap")


class SafetyError(RuntimeError):
    """Something tried to send a pulse the governor did not approve."""


@dataclass(frozen=True)
class SafetySettings:
    """``[safety]``: limits the governor enforces on every pulse."""

    arm_on_start: bool = setting(
        False, doc="arm the governor when the run starts (pulses still wait for detector "
                   "calibration); false means it stays disarmed until armed from the "
                   "dashboard")
    refractory_s: float = setting(
        0.2, gt=0, le=3600, unit="s",
        doc="minimum onset-to-onset interval between any two approved pulses")
    rate_window_s: tuple[float, ...] = setting(
        (1.0, 60.0), gt=0, le=86400, unit="s",
        doc="lengths of the sliding windows for the rate limit (pairs with rate_max_pulses)")
    rate_max_pulses: tuple[int, ...] = setting(
        (3, 60), ge=1, unit="pulses",
        doc="maximum approved pulses inside each sliding window of rate_window_s")
    max_pulses_per_session: int = setting(
        2000, ge=0, unit="pulses", doc="per-session cap on approved pulses")
    modalities: tuple[str, ...] = setting(
        ("ttl", "auditory", "electrical", "optogenetic"),
        doc="modalities that may be stimulated at all on this rig")
    calibration_s: float = setting(
        0.0, ge=0, le=3600, unit="s",
        doc="no pulses before this much data has been seen (on top of detector calibration)")
    stale_factor: float = setting(
        2.0, ge=1.0, le=100, unit="chunk intervals",
        doc="refuse pulses when the newest sample is older than this many chunk intervals")
    gap_tolerance_samples: float = setting(
        1.5, gt=1.0, le=1e6, unit="samples",
        doc="a timestamp step larger than this many sample periods between chunks is a gap; "
            "a gap blocks pulses for one refractory period")
    # --- electrical dose ---
    current_per_volt_ma: float = setting(
        1.0, gt=0, le=1000, unit="mA/V",
        doc="transconductance of the stimulus isolator driven by the stimulator output, used "
            "to turn PulseSpec.amplitude (V) into current")
    electrode_area_cm2: float = setting(
        0.01, gt=0, le=100, unit="cm^2", doc="geometric area of the stimulating electrode")
    max_charge_per_phase_uc: float = setting(
        1.0, gt=0, le=1000, unit="uC/phase", doc="maximum charge per phase")
    max_charge_density_uc_cm2: float = setting(
        30.0, gt=0, le=1000, unit="uC/cm^2/phase",
        doc="maximum charge density per phase (30 uC/cm^2 is the usual platinum limit, "
            "Merrill, Bikson & Jefferys 2005)")
    shannon_k_max: float = setting(
        1.5, gt=-10, le=SHANNON_K_LIMIT, unit="",
        doc="ceiling on Shannon's k = log10(Q) + log10(D); may not exceed 1.85")
    # --- optogenetic ---
    opto_max_power_mw: float = setting(
        20.0, gt=0, le=1000, unit="mW", doc="peak light power cap")
    opto_max_mean_power_mw: float = setting(
        1.0, gt=0, le=1000, unit="mW",
        doc="time-averaged light power cap over opto_window_s (heating)")
    opto_window_s: float = setting(
        10.0, gt=0, le=3600, unit="s", doc="averaging window of the optogenetic power cap")
    # --- auditory ---
    auditory_max_db_spl: float = setting(
        65.0, gt=0, le=100, unit="dB SPL", doc="maximum click level")
    auditory_lockout_s: float = setting(
        2.5, ge=0, le=3600, unit="s",
        doc="no auditory stimulus for this long after an auditory train ends (Ngo et al. "
            "2013 paused detection 2.5 s after each two-click sequence)")
    auditory_max_train_clicks: int = setting(
        2, ge=1, le=1000, unit="clicks",
        doc="clicks closer together than auditory_lockout_s form one train; a train this "
            "long ends and starts the lockout even if the policy did not say so")

    def validate(self) -> None:
        if len(self.rate_window_s) != len(self.rate_max_pulses):
            raise ValueError(
                f"rate_max_pulses: has {len(self.rate_max_pulses)} entries but rate_window_s "
                f"has {len(self.rate_window_s)}; give one maximum per window")
        allowed = {"ttl", "auditory", "electrical", "optogenetic"}
        for m in self.modalities:
            if m not in allowed:
                raise ValueError(f"modalities: unknown modality {m!r}; allowed: "
                                 f"{', '.join(sorted(allowed))}")
        if self.opto_max_mean_power_mw > self.opto_max_power_mw:
            raise ValueError(
                f"opto_max_mean_power_mw: {self.opto_max_mean_power_mw} mW exceeds the peak "
                f"cap opto_max_power_mw = {self.opto_max_power_mw} mW")
        # the charge cap and density cap must leave a dose Shannon allows, otherwise
        # the caps are inconsistent (the tighter rule silently decides everything)
        q_cap = min(self.max_charge_per_phase_uc,
                    self.max_charge_density_uc_cm2 * self.electrode_area_cm2)
        if q_cap <= 0:
            raise ValueError("max_charge_per_phase_uc: no charge is allowed at all")


@dataclass(frozen=True)
class Intent:
    """A stimulation the policy would like to deliver (not yet approved).

    Attributes
    ----------
    target : str
        "ripple", "so_upstate", "spindle", "theta_peak" or "theta_trough".
    spec : PulseSpec
    detect_s : float
        Host-clock time of the sample on which the triggering decision was made, seconds.
    intended_s : float
        When the pulse should leave the process, seconds (host clock).
    deadline_s : float
        Latest acceptable send time, seconds; must be after ``intended_s``.
    condition : str
        "stim", "sham" or "yoked-random".
    ends_train : bool
        For auditory stimuli: this click closes a train, so the auditory lockout starts
        after it.
    event_peak_s : float
        Peak time of the triggering event when known (for the record), seconds.
    """

    target: str
    spec: PulseSpec
    detect_s: float
    intended_s: float
    deadline_s: float
    condition: str = "stim"
    ends_train: bool = True
    event_peak_s: float = float("nan")


@dataclass(frozen=True)
class Decision:
    """The governor's verdict on one intent; recorded in stream ``engramloop.governor``."""

    t_s: float
    approved: bool
    rule: str
    intent: Intent
    pulse: Pulse | None = None
    detail: str = ""

    def to_dict(self) -> dict:
        i = self.intent
        return {"t_s": self.t_s, "approved": self.approved, "rule": self.rule,
                "target": i.target, "modality": i.spec.modality, "condition": i.condition,
                "detect_s": i.detect_s, "intended_s": i.intended_s,
                "deadline_s": i.deadline_s,
                "pulse_id": self.pulse.pulse_id if self.pulse is not None else -1,
                "detail": self.detail}


def electrical_dose(spec: PulseSpec, settings: SafetySettings) -> tuple[float, float, float]:
    """Charge per phase, charge density and Shannon's k of an electrical pulse.

    Parameters
    ----------
    spec : PulseSpec
        ``amplitude`` in volts at the stimulator output, ``phase_width_s`` in seconds.
    settings : SafetySettings
        Gives the isolator transconductance (mA/V) and electrode area (cm^2).

    Returns
    -------
    q_uc : float
        Charge per phase, microcoulombs.
    d_uc_cm2 : float
        Charge density per phase, uC/cm^2.
    k : float
        Shannon's k = log10(Q) + log10(D) (-inf for zero charge).
    """
    current_ma = abs(spec.amplitude) * settings.current_per_volt_ma
    q_uc = current_ma * spec.phase_width_s * 1000.0  # mA * s = mC = 1000 uC
    d = q_uc / settings.electrode_area_cm2
    k = math.log10(q_uc) + math.log10(d) if q_uc > 0 else -math.inf
    return q_uc, d, k


def light_energy_mj(spec: PulseSpec) -> float:
    """Optical energy of one optogenetic pulse or train, millijoules (mW x s)."""
    return abs(spec.amplitude) * spec.phase_width_s * max(spec.train_count, 1)


@dataclass
class _State:
    armed: bool = False
    calibrated: bool = False
    data_seen_s: float = 0.0
    last_sample_s: float = -math.inf
    chunk_interval_s: float = 0.0
    prev_last_s: float = math.nan
    gap_block_until_s: float = -math.inf
    last_intended_s: float = -math.inf
    auditory_lock_until_s: float = -math.inf
    auditory_last_s: float = -math.inf
    auditory_train_clicks: int = 0
    n_approved: int = 0
    next_id: int = 1
    windows: list = field(default_factory=list)        # one deque of times per rate window
    opto: deque = field(default_factory=deque)         # (intended_s, energy_mj)
    refusals: dict = field(default_factory=dict)


class Governor:
    """Reviews intents against :class:`SafetySettings`; starts disarmed.

    Single-threaded: only the loop thread calls it. The scheduler thread reads
    :attr:`armed` and calls :meth:`issued`, which only read immutable facts.

    Parameters
    ----------
    settings : SafetySettings
    """

    def __init__(self, settings: SafetySettings) -> None:
        self.settings = settings
        self._s = _State()
        self._s.windows = [deque() for _ in settings.rate_window_s]
        self._s.refusals = {r: 0 for r in RULES}
        self._issued: dict[int, Pulse] = {}

    # ------------------------------------------------------------------ state
    @property
    def armed(self) -> bool:
        return self._s.armed

    @property
    def n_approved(self) -> int:
        return self._s.n_approved

    @property
    def refusals(self) -> dict[str, int]:
        """Refusal counts by rule (every rule listed, zeros included)."""
        return dict(self._s.refusals)

    def arm(self) -> None:
        """Allow pulses (still subject to every other rule)."""
        self._s.armed = True

    def disarm(self) -> None:
        """Refuse every pulse from now on until armed again."""
        self._s.armed = False

    def set_calibrated(self, done: bool) -> None:
        """Tell the governor whether the detectors finished their baseline calibration."""
        self._s.calibrated = bool(done)

    def observe_chunk(self, first_s: float, last_s: float, n_samples: int, rate_hz: float,
                      gap_before: bool = False) -> bool:
        """Account for a chunk of data that reached the loop.

        Parameters
        ----------
        first_s, last_s : float
            Host-clock times of the chunk's first and newest sample, seconds.
        n_samples : int
        rate_hz : float
            Nominal sampling rate, Hz.
        gap_before : bool
            The source knows samples were lost before this chunk.

        Returns
        -------
        bool
            True when a gap was detected (pulses are now blocked for one refractory period).
        """
        s = self._s
        period = 1.0 / rate_hz
        gap = gap_before
        if not gap and s.prev_last_s == s.prev_last_s:  # not NaN: we have a previous chunk
            gap = (first_s - s.prev_last_s) > self.settings.gap_tolerance_samples * period
        if gap:
            s.gap_block_until_s = max(s.gap_block_until_s, last_s + self.settings.refractory_s)
        s.prev_last_s = last_s
        if last_s > s.last_sample_s:
            s.last_sample_s = last_s
        s.chunk_interval_s = n_samples * period
        s.data_seen_s += n_samples * period
        return gap

    def lockouts(self, now_s: float) -> tuple[str, ...]:
        """Human-readable lockouts in force at ``now_s`` (for the dashboard)."""
        s, st = self._s, self.settings
        out = []
        if not s.armed:
            out.append("disarmed")
        if not s.calibrated or s.data_seen_s < st.calibration_s:
            out.append("calibrating")
        if now_s < s.last_intended_s + st.refractory_s:
            out.append(f"refractory {s.last_intended_s + st.refractory_s - now_s:.1f} s")
        if now_s < s.gap_block_until_s:
            out.append(f"gap {s.gap_block_until_s - now_s:.1f} s")
        if now_s < s.auditory_lock_until_s:
            out.append(f"auditory {s.auditory_lock_until_s - now_s:.1f} s")
        if s.n_approved >= st.max_pulses_per_session:
            out.append("session cap")
        return tuple(out)

    def issued(self, pulse: Pulse) -> bool:
        """True only for the very Pulse object this governor approved."""
        return self._issued.get(pulse.pulse_id) is pulse

    def forget(self, pulse_id: int) -> None:
        """Drop bookkeeping of a pulse that was sent or cancelled (keeps memory bounded)."""
        self._issued.pop(pulse_id, None)

    # ----------------------------------------------------------------- review
    def review(self, intent: Intent, now_s: float) -> Decision:
        """Apply every rule to ``intent`` at host-clock time ``now_s`` (seconds).

        Returns
        -------
        Decision
            Approved with a fresh :class:`Pulse`, or refused naming the first rule broken.
        """
        rule, detail = self._check(intent, now_s)
        if rule:
            self._s.refusals[rule] += 1
            return Decision(now_s, False, rule, intent, None, detail)
        s = self._s
        pulse = Pulse(pulse_id=s.next_id, target=intent.target, spec=intent.spec,
                      detect_s=intent.detect_s, intended_s=intent.intended_s,
                      deadline_s=intent.deadline_s, condition=intent.condition)
        s.next_id += 1
        s.n_approved += 1
        s.last_intended_s = intent.intended_s
        t = intent.intended_s
        # approved times only increase (refractory rule), so pruning on approval is exact
        for dq, w in zip(s.windows, self.settings.rate_window_s, strict=True):
            dq.append(t)
            while dq[0] <= t - w:
                dq.popleft()
        spec = intent.spec
        if spec.modality == "optogenetic":
            s.opto.append((t, light_energy_mj(spec)))
        while s.opto and s.opto[0][0] <= t - self.settings.opto_window_s:
            s.opto.popleft()
        if spec.modality == "auditory":
            st = self.settings
            if t - s.auditory_last_s >= st.auditory_lockout_s:
                s.auditory_train_clicks = 0  # a new train starts
            s.auditory_train_clicks += max(spec.train_count, 1)
            s.auditory_last_s = t
            if (intent.ends_train or spec.train_count > 1
                    or s.auditory_train_clicks >= st.auditory_max_train_clicks):
                s.auditory_lock_until_s = t + spec.duration_s + st.auditory_lockout_s
                s.auditory_train_clicks = 0
        self._issued[pulse.pulse_id] = pulse
        return Decision(now_s, True, "approved", intent, pulse, "")

    def _check(self, it: Intent, now: float) -> tuple[str, str]:
        st, s = self.settings, self._s
        spec = it.spec
        if not s.armed:
            return "disarmed", "governor is disarmed"
        if not s.calibrated or s.data_seen_s < st.calibration_s:
            return "calibrating", f"{s.data_seen_s:.1f} s of data seen"
        age = now - s.last_sample_s
        if not age <= st.stale_factor * s.chunk_interval_s:
            return "stale_data", f"newest sample is {age * 1e3:.1f} ms old"
        if now < s.gap_block_until_s or it.intended_s < s.gap_block_until_s:
            return "gap", f"blocked until {s.gap_block_until_s:.3f} s after lost samples"
        if not (it.deadline_s >= now and it.deadline_s >= it.intended_s):
            return "deadline", (f"deadline {it.deadline_s:.4f} s already passed at "
                                f"{now:.4f} s or before intended {it.intended_s:.4f} s")
        if spec.modality not in st.modalities:
            return "modality", f"{spec.modality} is not in [safety] modalities"
        if spec.modality == "electrical":
            if spec.shape != "biphasic":
                return "waveform", "electrical pulses must be charge-balanced biphasic"
            q, d, k = electrical_dose(spec, st)
            if q > st.max_charge_per_phase_uc:
                return "charge", f"{q:.3g} uC/phase > {st.max_charge_per_phase_uc} uC"
            if d > st.max_charge_density_uc_cm2:
                return "charge_density", (f"{d:.3g} uC/cm^2 > "
                                          f"{st.max_charge_density_uc_cm2} uC/cm^2")
            if k > st.shannon_k_max:
                return "shannon", f"k = {k:.3f} > {st.shannon_k_max}"
        if spec.modality == "optogenetic":
            if spec.amplitude > st.opto_max_power_mw:
                return "opto_power", f"{spec.amplitude} mW > peak cap {st.opto_max_power_mw}"
            lo = it.intended_s - st.opto_window_s
            energy = sum(e for t, e in s.opto if t > lo) + light_energy_mj(spec)
            mean = energy / st.opto_window_s
            if mean > st.opto_max_mean_power_mw:
                return "opto_power", (f"mean {mean:.3g} mW over {st.opto_window_s} s > "
                                      f"{st.opto_max_mean_power_mw} mW")
        if spec.modality == "auditory":
            if spec.amplitude > st.auditory_max_db_spl:
                return "auditory_level", f"{spec.amplitude} dB > {st.auditory_max_db_spl} dB"
            if it.intended_s < s.auditory_lock_until_s:
                return "auditory_lockout", f"locked until {s.auditory_lock_until_s:.3f} s"
        if it.intended_s - s.last_intended_s < st.refractory_s:
            return "refractory", (f"{(it.intended_s - s.last_intended_s) * 1e3:.1f} ms after "
                                  f"the previous pulse < {st.refractory_s * 1e3:.0f} ms")
        for dq, w, n in zip(s.windows, st.rate_window_s, st.rate_max_pulses, strict=True):
            lo = it.intended_s - w
            count = sum(1 for t in dq if t > lo)
            if count >= n:
                return "rate", f"{count} pulses in the {w} s before it (max {n})"
        if s.n_approved >= st.max_pulses_per_session:
            return "session_cap", f"{s.n_approved} pulses (cap {st.max_pulses_per_session})"
        return "", ""


__all__ = ["SafetySettings", "Governor", "Intent", "Decision", "SafetyError", "RULES",
           "SHANNON_K_LIMIT", "electrical_dose", "light_energy_mj"]
