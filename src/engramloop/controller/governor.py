"""The safety governor: the only way from a stimulation *intent* to an approved *Pulse*.

The governor sits strictly between the policy and the outputs. The policy proposes
:class:`Intent` objects; :meth:`Governor.review` applies every rule below, in order, and
returns a :class:`Decision` that is recorded whether approved or refused. Only an approved
decision carries a :class:`~drivers.pulse.Pulse`, and the scheduler refuses any pulse the
governor did not issue (:meth:`Governor.issued`), so no code path reaches an output without
passing here.

Every rule below is applied to the waveform the device will play, not to the approval:
a train of N pulses is N pulses for the rate windows and the session cap, and every phase
of every pulse carries its charge (electrical) or light energy (optogenetic)
(:meth:`~core.pulse.PulseSpec.onsets_s`, :meth:`~core.pulse.PulseSpec.phases`). The rate,
charge-rate and light windows are sliding windows over pulse onsets: no half-open window
``(t - w, t]`` anywhere in time may hold more than the limit.

Rules (the ``rule`` string of a refusal):

``disarmed``         the governor starts disarmed and must be armed explicitly;
``device_fault``     an output's device refused a pulse (NACK), reported itself disarmed
                     (the stim box's watchdog) or stopped answering: nothing is approved
                     from that instant (:meth:`Governor.fault`, callable from the
                     scheduler's and the devices' threads); the loop records the fault
                     and ends the run;
``calibrating``      detectors have not finished their baseline calibration;
``stale_data``       the newest sample is older than ``stale_factor`` chunk intervals, or
                     the source itself reports it has no data (an LSL outlet gone);
``gap``              samples were lost (a device's packet-counter jump, or samples missing
                     by count against the nominal rate; jitter is not a gap): pulses are
                     blocked for one refractory period after the gap;
``artefact``         non-finite samples reached the loop: from the first until the
                     detectors have settled after the last (:mod:`controller.nonfinite`);
``deadline``         the intent's deadline has already passed, or it is not after its
                     intended time;
``modality``         the pulse modality is not enabled in ``[safety] modalities``;
``waveform``         the spec is not a waveform the rules can bound (NaN, negative or
                     non-finite levels or times, overlapping pulses in a train, an
                     unknown modality or shape); electrical pulses must be
                     charge-balanced biphasic;
``charge``           charge per phase above ``max_charge_per_phase_uc``;
``charge_density``   charge density above ``max_charge_density_uc_cm2``;
``shannon``          Shannon's k above ``shannon_k_max`` (itself capped at 1.85);
``charge_rate``      the charge of all electrical phases (both phases of a biphasic pulse,
                     each counted as |Q|) in any 1 s window above ``max_charge_per_s_uc``;
``opto_power``       optogenetic peak power, or light energy of every phase in any
                     ``opto_window_s`` window divided by the window (mean power), above its
                     cap;
``auditory_level``   click level above ``auditory_max_db_spl``;
``auditory_lockout`` an auditory train ended less than ``auditory_lockout_s`` ago;
``refractory``       less than ``refractory_s`` after the last pulse onset of the previous
                     approved train, or before that train has finished playing (this also
                     refuses any intent scheduled *before* an already approved pulse, so
                     approved trains are strictly ordered and never overlap);
``rate``             a sliding window would hold more than its maximum number of pulses
                     (every pulse of every train counted);
``session_cap``      the per-session cap on delivered pulses would be passed.

Floors config cannot lower (docs/safety.md gives the reason for each): ``refractory_s``
>= :data:`REFRACTORY_FLOOR_S`, at least one rate window of at least
:data:`RATE_WINDOW_FLOOR_S`, ``max_pulses_per_session`` <= :data:`SESSION_CAP_CEILING`,
``shannon_k_max`` <= :data:`SHANNON_K_LIMIT` and ``max_charge_per_s_uc`` at most
:data:`SHANNON_RATE_HZ` biphasic pulses per second at the Shannon-limit charge for the
electrode. :class:`Governor` checks them again when built, so no code path skips them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engramloop.core.pulse import Pulse, PulseSpec
from engramloop.core.sample_clock import SampleCounter
from engramloop.core.schema import setting

#: Shannon (1992) fitted the boundary between damaging and non-damaging macro-electrode
#: stimulation in cat cortex (McCreery et al. 1990 data) as log10(D) = k - log10(Q) with
#: k = 1.85 (D: charge density uC/cm^2/phase, Q: charge uC/phase). A ceiling above it is an
#: error. R. V. Shannon, IEEE Trans. Biomed. Eng. 39(4):424-426, 1992.
SHANNON_K_LIMIT = 1.85

#: The McCreery et al. (1990) data behind Shannon's boundary came from 7 h of continuous
#: stimulation at 50 pulses per second (IEEE Trans. Biomed. Eng. 37(10):996-1001). A charge
#: rate above 50 biphasic pulses per second at the boundary charge lies outside the data
#: the boundary was fitted to, so ``max_charge_per_s_uc`` may not exceed it.
SHANNON_RATE_HZ = 50.0

#: Floor of ``refractory_s``, seconds: above the stim box firmware's own device-wide
#: refractory (40 ms, REFRACTORY_US in stimbox.ino / PROTOCOL.md "Device limits") with
#: 10 ms for send-time jitter, so the device's limit stays a backstop that normal operation
#: never trips.
REFRACTORY_FLOOR_S = 0.05

#: At least one rate window must be this long, seconds: a window shorter than 1 s bounds
#: nothing the refractory period does not already bound, so without one the sustained
#: pulse rate would be limited only by the refractory period.
RATE_WINDOW_FLOOR_S = 1.0

#: Ceiling of ``max_pulses_per_session``, pulses: a session cap always exists. 10^6 is
#: about 11.6 pulses/s for 24 h, above any closed-loop protocol we know of (e.g. 3/s for
#: a whole night is ~86 400).
SESSION_CAP_CEILING = 1_000_000

#: Length of the sliding window of the charge-per-second rule, seconds.
CHARGE_WINDOW_S = 1.0

RULES = ("disarmed", "device_fault", "calibrating", "stale_data", "gap", "artefact",
         "deadline", "modality", "waveform", "charge", "charge_density", "shannon",
         "charge_rate", "opto_power", "auditory_level", "auditory_lockout", "refractory",
         "rate", "session_cap")


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
        0.2, ge=REFRACTORY_FLOOR_S, le=3600, unit="s",
        doc="minimum interval from the last pulse onset of an approved train (a single "
            "pulse is a train of one) to the first onset of the next; a train also never "
            "starts before the previous one has finished (floor 0.05 s, docs/safety.md)")
    rate_window_s: tuple[float, ...] = setting(
        (1.0, 60.0), gt=0, le=86400, unit="s",
        doc="lengths of the sliding windows for the rate limit (pairs with rate_max_pulses); "
            "at least one, and at least one of >= 1 s (docs/safety.md)")
    rate_max_pulses: tuple[int, ...] = setting(
        (3, 60), ge=1, le=SESSION_CAP_CEILING, unit="pulses",
        doc="maximum delivered pulses (every pulse of every train) inside each sliding "
            "window of rate_window_s")
    max_pulses_per_session: int = setting(
        2000, ge=0, le=SESSION_CAP_CEILING, unit="pulses",
        doc="per-session cap on delivered pulses (every pulse of every train)")
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
        doc="samples missing before a chunk (counted against the nominal rate over a "
            "dejittered clock) beyond this many sample periods, plus twice the source's "
            "recent timestamp jitter, are a gap; a gap blocks pulses for one refractory "
            "period")
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
    max_charge_per_s_uc: float = setting(
        10.0, gt=0, le=100000, unit="uC/s",
        doc="charge of every electrical phase (|Q| of both phases of each biphasic pulse) "
            "inside any 1 s window; may not exceed 50 biphasic pulses/s at the Shannon "
            "k = 1.85 charge for electrode_area_cm2 (docs/safety.md)")
    # --- optogenetic ---
    opto_max_power_mw: float = setting(
        20.0, gt=0, le=1000, unit="mW", doc="peak light power cap")
    opto_max_mean_power_mw: float = setting(
        1.0, gt=0, le=1000, unit="mW",
        doc="time-averaged light power cap over opto_window_s (heating): the light energy "
            "of every phase of every pulse inside any window, divided by the window")
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
        check_floors(self)
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


def shannon_charge_uc(area_cm2: float, k: float = SHANNON_K_LIMIT) -> float:
    """Charge per phase on Shannon's boundary for an electrode, microcoulombs.

    log10(Q) + log10(Q / A) = k, so Q = sqrt(10**k * A) (Q in uC, A in cm^2).
    """
    return math.sqrt(10.0 ** k * area_cm2)


def max_charge_rate_uc_s(area_cm2: float) -> float:
    """Ceiling of ``max_charge_per_s_uc``: :data:`SHANNON_RATE_HZ` biphasic pulses per
    second (two phases each) at the Shannon-boundary charge, uC/s."""
    return SHANNON_RATE_HZ * 2.0 * shannon_charge_uc(area_cm2)


def check_floors(st: SafetySettings) -> None:
    """Raise ``ValueError("<key>: ...")`` if ``st`` lowers a limit below its floor.

    The schema bounds already refuse most of these when a file is loaded; this also runs
    when a :class:`Governor` is built, so settings made in code cannot skip them.
    """
    if not st.refractory_s >= REFRACTORY_FLOOR_S:
        raise ValueError(f"refractory_s: {st.refractory_s} s is below the floor of "
                         f"{REFRACTORY_FLOOR_S} s (docs/safety.md)")
    if not st.rate_window_s:
        raise ValueError("rate_window_s: at least one rate window is required (e.g. [1.0, "
                         "60.0] with rate_max_pulses = [3, 60]; docs/safety.md)")
    if max(st.rate_window_s) < RATE_WINDOW_FLOOR_S:
        raise ValueError(f"rate_window_s: at least one window must be >= "
                         f"{RATE_WINDOW_FLOOR_S} s, got {list(st.rate_window_s)}")
    if not 0 <= st.max_pulses_per_session <= SESSION_CAP_CEILING:
        raise ValueError(f"max_pulses_per_session: must be in [0, {SESSION_CAP_CEILING}], "
                         f"got {st.max_pulses_per_session}")
    if not st.shannon_k_max <= SHANNON_K_LIMIT:
        raise ValueError(f"shannon_k_max: must be <= {SHANNON_K_LIMIT}, got "
                         f"{st.shannon_k_max}")
    ceiling = max_charge_rate_uc_s(st.electrode_area_cm2)
    if not st.max_charge_per_s_uc <= ceiling:
        raise ValueError(f"max_charge_per_s_uc: {st.max_charge_per_s_uc} uC/s exceeds "
                         f"{ceiling:.3g} uC/s, {SHANNON_RATE_HZ:g} biphasic pulses/s at the "
                         f"Shannon k = {SHANNON_K_LIMIT} charge for electrode_area_cm2 = "
                         f"{st.electrode_area_cm2}")


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
    """Optical energy of one optogenetic pulse or train (every phase of every pulse),
    millijoules (mW x s)."""
    return pulse_light_mj(spec) * spec.n_pulses


def pulse_light_mj(spec: PulseSpec) -> float:
    """Optical energy of one pulse of the train, every phase counted, mJ."""
    return sum(abs(level) * width for _, width, level in spec.phases())


def pulse_charge_uc(spec: PulseSpec, settings: SafetySettings) -> float:
    """Charge of one electrical pulse of the train, |Q| of every phase summed, uC."""
    return sum(abs(level) * settings.current_per_volt_ma * width * 1000.0
               for _, width, level in spec.phases())


def malformed(spec: PulseSpec) -> str:
    """Why ``spec`` is not a waveform the dose rules can bound ("" if it is one).

    The config schema already refuses all of these in ``[policy.pulse]``; the governor
    checks again because a spec built in code skips the schema, and every dose rule is a
    ``value > cap`` comparison that NaN, a negative width or a negative level would pass.
    """
    if spec.modality not in ("electrical", "auditory", "optogenetic", "ttl"):
        return f"unknown modality {spec.modality!r}"
    if spec.shape not in ("monophasic", "biphasic"):
        return f"unknown shape {spec.shape!r}"
    if not (isinstance(spec.channel, int) and spec.channel >= 1):
        return f"channel must be an integer >= 1, got {spec.channel!r}"
    for name in ("amplitude", "phase_width_s", "interphase_s", "train_interval_s"):
        v = getattr(spec, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            return f"{name} must be a finite number >= 0, got {v!r}"
    if not spec.phase_width_s > 0:
        return f"phase_width_s must be > 0, got {spec.phase_width_s!r}"
    n = spec.train_count
    if not (isinstance(n, int) and 1 <= n <= SESSION_CAP_CEILING):
        return f"train_count must be an integer in [1, {SESSION_CAP_CEILING}], got {n!r}"
    if n > 1 and not spec.train_interval_s >= spec.pulse_duration_s:
        return (f"train_interval_s {spec.train_interval_s!r} s is shorter than one pulse "
                f"({spec.pulse_duration_s:.6g} s): the pulses of the train would overlap")
    return ""


class PulseLog:
    """Onsets of the pulses approved trains will play, oldest first, with running sums of
    the charge (uC) and light (mJ) each carries, for the sliding-window rules.

    The buffers are preallocated, grow by doubling and are compacted in place, so logging
    a pulse allocates nothing and a review allocates only the candidate train's onsets.
    ``_cq[k]`` / ``_ce[k]`` hold the sums over buffer slots ``0 .. k-1``.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._t = np.empty(capacity)
        self._cq = np.zeros(capacity + 1)
        self._ce = np.zeros(capacity + 1)
        self._lo = self._hi = 0

    def __len__(self) -> int:
        return self._hi - self._lo

    def onsets(self) -> np.ndarray:
        """The logged onsets, seconds (a view)."""
        return self._t[self._lo:self._hi]

    def prune(self, t_min: float) -> None:
        """Forget onsets at or before ``t_min`` (seconds)."""
        self._lo += int(np.searchsorted(self.onsets(), t_min, side="right"))

    def append(self, onsets: np.ndarray, charge_uc: float, light_mj: float) -> None:
        """Log a train's onsets (seconds, after every logged one), each carrying
        ``charge_uc`` and ``light_mj``."""
        c = len(onsets)
        if self._hi + c > len(self._t):
            self._make_room(c)
        lo, hi = self._hi, self._hi + c
        self._t[lo:hi] = onsets
        steps = np.arange(1, c + 1)
        self._cq[lo + 1:hi + 1] = self._cq[lo] + charge_uc * steps
        self._ce[lo + 1:hi + 1] = self._ce[lo] + light_mj * steps
        self._hi = hi

    def _make_room(self, c: int) -> None:
        n = len(self)
        cap = len(self._t)
        if n + c > cap // 2:           # mostly live: grow
            cap = max(2 * cap, 2 * (n + c))
        t, cq, ce = np.empty(cap), np.zeros(cap + 1), np.zeros(cap + 1)
        t[:n] = self._t[self._lo:self._hi]
        cq[:n + 1] = self._cq[self._lo:self._hi + 1] - self._cq[self._lo]
        ce[:n + 1] = self._ce[self._lo:self._hi + 1] - self._ce[self._lo]
        self._t, self._cq, self._ce = t, cq, ce
        self._lo, self._hi = 0, n

    def window_max(self, new: np.ndarray, w: float, what: str = "count",
                   per_pulse: float = 1.0) -> float:
        """Largest total inside any window ``(t - w, t]`` holding one of the onsets ``new``
        of a candidate train (sorted, all after the logged ones).

        Parameters
        ----------
        new : ndarray, shape (n,), seconds
        w : float
            Window length, seconds.
        what : "count" | "charge" | "light"
            Count pulses, or sum the logged charge (uC) or light (mJ).
        per_pulse : float
            What each new pulse adds (1 for counting).

        Notes
        -----
        A window holding a new pulse can slide right until its right end meets its latest
        pulse, which is then a new one, without losing any pulse; so the windows ending at
        the new onsets are the only ones to check.
        """
        logged = self.onsets()
        first = np.searchsorted(logged, new - w, side="right")   # first logged one inside
        n_new = np.arange(1, len(new) + 1) - np.searchsorted(new, new - w, side="right")
        if what == "count":
            old = len(logged) - first
        else:
            cum = self._cq if what == "charge" else self._ce
            old = cum[self._hi] - cum[self._lo + first]
        return float(np.max(old + n_new * per_pulse))


@dataclass(frozen=True)
class _Train:
    """An approved train, as the device will play it (host-clock seconds)."""

    t0_s: float
    interval_s: float
    count: int
    charge_uc: float      # per pulse, every phase (electrical only, else 0)
    light_mj: float       # per pulse, every phase (optogenetic only, else 0)

    @property
    def last_onset_s(self) -> float:
        return self.t0_s + (self.count - 1) * self.interval_s

    def onsets(self) -> np.ndarray:
        return self.t0_s + np.arange(self.count) * self.interval_s


@dataclass
class _State:
    armed: bool = False
    calibrated: bool = False
    data_seen_s: float = 0.0
    last_sample_s: float = -math.inf
    chunk_interval_s: float = 0.0
    prev_last_s: float = math.nan
    gap_block_until_s: float = -math.inf
    artefact_until_s: float = -math.inf
    source_stale: bool = False
    data_late: bool = False
    last_intended_s: float = -math.inf   # last pulse onset of the last approved train
    last_end_s: float = -math.inf        # when the last approved train stops playing
    auditory_lock_until_s: float = -math.inf
    auditory_last_s: float = -math.inf
    auditory_train_clicks: int = 0
    n_approved: int = 0
    n_pulses: int = 0                    # delivered pulses: every pulse of every train
    next_id: int = 1
    log: PulseLog = field(default_factory=PulseLog)    # pulses within the longest window
    refusals: dict = field(default_factory=dict)


class Governor:
    """Reviews intents against :class:`SafetySettings`; starts disarmed.

    Single-threaded: only the loop thread calls it. The scheduler thread reads
    :attr:`armed` and calls :meth:`issued`, which only read immutable facts.

    Parameters
    ----------
    settings : SafetySettings

    Raises
    ------
    ValueError
        ``"<key>: ..."`` if the settings lower a limit below its floor (:func:`check_floors`).
    """

    def __init__(self, settings: SafetySettings) -> None:
        check_floors(settings)
        if len(settings.rate_window_s) != len(settings.rate_max_pulses):
            raise ValueError("rate_max_pulses: give one maximum per rate_window_s window")
        self.settings = settings
        self._horizon_s = max((*settings.rate_window_s, CHARGE_WINDOW_S,
                               settings.opto_window_s))
        self._s = _State()
        self._s.refusals = {r: 0 for r in RULES}
        self._issued: dict[int, Pulse] = {}
        self._counter: SampleCounter | None = None
        #: samples found missing before the last observed chunk (0: none)
        self.last_missing = 0
        #: output name -> why it faulted; written from any thread (one dict store)
        self._faults: dict[str, str] = {}

    # ------------------------------------------------------------------ state
    @property
    def armed(self) -> bool:
        return self._s.armed

    @property
    def n_approved(self) -> int:
        """Approved intents (a train is one)."""
        return self._s.n_approved

    @property
    def n_pulses(self) -> int:
        """Pulses the approved trains make the devices play (every pulse of every train)."""
        return self._s.n_pulses

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

    def fault(self, output: str, reason: str) -> bool:
        """Mark ``output``'s device as faulted: every later intent is refused (rule
        ``device_fault``) until :meth:`clear_fault`. Safe from any thread (one dict store;
        the first reason given for an output is kept).

        Returns
        -------
        bool
            True if this is a new fault for ``output``.
        """
        if output in self._faults:
            return False
        self._faults.setdefault(output, reason)
        return True

    def clear_fault(self, output: str) -> None:
        """Forget ``output``'s fault (only after the device proved healthy again)."""
        self._faults.pop(output, None)

    @property
    def faults(self) -> dict[str, str]:
        """Faulted outputs and why (a copy)."""
        return dict(self._faults)

    @property
    def faulted(self) -> bool:
        """Some output is faulted: nothing may be approved or fired."""
        return bool(self._faults)

    def set_calibrated(self, done: bool) -> None:
        """Tell the governor whether the detectors finished their baseline calibration."""
        self._s.calibrated = bool(done)

    def set_artefact_until(self, until_s: float) -> None:
        """Refuse pulses (rule ``artefact``) until host time ``until_s`` (inf: until told
        otherwise; -inf: no artefact)."""
        self._s.artefact_until_s = float(until_s)

    def set_source_stale(self, stale: bool) -> None:
        """The source reports it has no data (stale or lost): refuse pulses (rule
        ``stale_data``) until it reports data again."""
        self._s.source_stale = bool(stale)

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

        Notes
        -----
        A gap is *missing samples*, counted against the nominal rate over a dejittered
        clock (:class:`core.sample_clock.SampleCounter`), or ``gap_before`` from a source
        that knows (a device's sample counter): a source that stamps samples when they
        are pushed (pylsl's SendData) jitters by milliseconds without losing any.
        An irregular stream (``rate_hz`` 0 or NaN) has no count to check: only
        ``gap_before`` marks gaps, and the chunk interval (for the stale-data rule) is
        the time between the newest samples of consecutive chunks.
        """
        s = self._s
        regular = rate_hz == rate_hz and rate_hz > 0
        counter = self._counter
        if counter is None or counter.rate_hz != (rate_hz if regular else 0.0):
            counter = self._counter = SampleCounter(
                rate_hz if regular else 0.0, self.settings.gap_tolerance_samples)
        # the source knowing of a loss makes late samples a loss at once
        self.last_missing = counter.observe(first_s, last_s, n_samples, gap_before)
        gap = gap_before or self.last_missing > 0
        # late samples, loss not yet confirmed (or a stall catching up): hold pulses
        s.data_late = counter.suspect
        if gap:
            s.gap_block_until_s = max(s.gap_block_until_s, last_s + self.settings.refractory_s)
        if regular:
            s.chunk_interval_s = n_samples / rate_hz
            s.data_seen_s += n_samples / rate_hz
        elif s.prev_last_s == s.prev_last_s and last_s > s.prev_last_s:
            s.chunk_interval_s = last_s - s.prev_last_s
            s.data_seen_s += last_s - s.prev_last_s
        s.prev_last_s = last_s
        if last_s > s.last_sample_s:
            s.last_sample_s = last_s
        return gap

    def lockouts(self, now_s: float) -> tuple[str, ...]:
        """Human-readable lockouts in force at ``now_s`` (for the dashboard)."""
        s, st = self._s, self.settings
        out = []
        if not s.armed:
            out.append("disarmed")
        out.extend(f"fault: {name}" for name in list(self._faults))
        if not s.calibrated or s.data_seen_s < st.calibration_s:
            out.append("calibrating")
        if now_s < s.last_intended_s + st.refractory_s:
            out.append(f"refractory {s.last_intended_s + st.refractory_s - now_s:.1f} s")
        if now_s < s.gap_block_until_s:
            out.append(f"gap {s.gap_block_until_s - now_s:.1f} s")
        if now_s < s.artefact_until_s:
            out.append("artefact" if s.artefact_until_s == math.inf else
                       f"artefact {s.artefact_until_s - now_s:.1f} s")
        if s.source_stale:
            out.append("source stale")
        if now_s < s.auditory_lock_until_s:
            out.append(f"auditory {s.auditory_lock_until_s - now_s:.1f} s")
        if s.n_pulses >= st.max_pulses_per_session:
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
        spec = intent.spec
        t = intent.intended_s
        train = self._train(intent)
        s.n_pulses += train.count
        s.last_intended_s = train.last_onset_s
        s.last_end_s = t + spec.duration_s
        # approved trains only move forward in time (refractory rule), so pruning on
        # approval is exact: a pulse that left the longest window never counts again
        s.log.prune(t - self._horizon_s)
        s.log.append(train.onsets(), train.charge_uc, train.light_mj)
        if spec.modality == "auditory":
            st = self.settings
            if t - s.auditory_last_s >= st.auditory_lockout_s:
                s.auditory_train_clicks = 0  # a new train starts
            s.auditory_train_clicks += spec.n_pulses
            s.auditory_last_s = train.last_onset_s
            if (intent.ends_train or spec.train_count > 1
                    or s.auditory_train_clicks >= st.auditory_max_train_clicks):
                s.auditory_lock_until_s = t + spec.duration_s + st.auditory_lockout_s
                s.auditory_train_clicks = 0
        self._issued[pulse.pulse_id] = pulse
        return Decision(now_s, True, "approved", intent, pulse, "")

    def _train(self, it: Intent) -> _Train:
        """The train the device will play for an intent: every pulse, every phase."""
        spec = it.spec
        charge = pulse_charge_uc(spec, self.settings) if spec.modality == "electrical" else 0.0
        light = pulse_light_mj(spec) if spec.modality == "optogenetic" else 0.0
        return _Train(it.intended_s, spec.train_interval_s, spec.n_pulses, charge, light)

    def _check(self, it: Intent, now: float) -> tuple[str, str]:
        st, s = self.settings, self._s
        spec = it.spec
        if not s.armed:
            return "disarmed", "governor is disarmed"
        if self._faults:
            name, why = next(iter(self._faults.items()))
            return "device_fault", f"{name}: {why}"
        if not s.calibrated or s.data_seen_s < st.calibration_s:
            return "calibrating", f"{s.data_seen_s:.1f} s of data seen"
        age = now - s.last_sample_s
        if not age <= st.stale_factor * s.chunk_interval_s:
            return "stale_data", f"newest sample is {age * 1e3:.1f} ms old"
        if s.source_stale:
            return "stale_data", "the source reports no data"
        if s.data_late:
            return "stale_data", ("samples arrive later than the source's jitter: lost "
                                  "samples or a stalled source, not known yet")
        if now < s.gap_block_until_s or it.intended_s < s.gap_block_until_s:
            return "gap", f"blocked until {s.gap_block_until_s:.3f} s after lost samples"
        if now < s.artefact_until_s or it.intended_s < s.artefact_until_s:
            return "artefact", ("non-finite samples: blocked until the detectors settle"
                                if s.artefact_until_s == math.inf else
                                f"blocked until {s.artefact_until_s:.3f} s after non-finite "
                                "samples")
        if not (it.deadline_s >= now and it.deadline_s >= it.intended_s):
            return "deadline", (f"deadline {it.deadline_s:.4f} s already passed at "
                                f"{now:.4f} s or before intended {it.intended_s:.4f} s")
        bad = malformed(spec)
        if bad:
            return "waveform", bad
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
        if spec.modality == "optogenetic" and spec.amplitude > st.opto_max_power_mw:
            return "opto_power", f"{spec.amplitude} mW > peak cap {st.opto_max_power_mw}"
        if spec.modality == "auditory":
            if spec.amplitude > st.auditory_max_db_spl:
                return "auditory_level", f"{spec.amplitude} dB > {st.auditory_max_db_spl} dB"
            if it.intended_s < s.auditory_lock_until_s:
                return "auditory_lockout", f"locked until {s.auditory_lock_until_s:.3f} s"
        if it.intended_s - s.last_intended_s < st.refractory_s:
            return "refractory", (f"{(it.intended_s - s.last_intended_s) * 1e3:.1f} ms after "
                                  f"the previous pulse < {st.refractory_s * 1e3:.0f} ms")
        if it.intended_s < s.last_end_s:
            return "refractory", (f"the previous train plays until {s.last_end_s:.4f} s, "
                                  f"after {it.intended_s:.4f} s")
        new = self._train(it)
        # every pulse still inside the longest window, then the new train's, at their onsets
        onsets = new.onsets()
        for w, n in zip(st.rate_window_s, st.rate_max_pulses, strict=True):
            count = s.log.window_max(onsets, w)
            if count > n:
                return "rate", (f"{count:.0f} pulses would fall inside {w} s (max {n}; "
                                f"this train plays {new.count})")
        if spec.modality == "electrical":
            per_s = s.log.window_max(onsets, CHARGE_WINDOW_S, "charge", new.charge_uc)
            if per_s > st.max_charge_per_s_uc * (1 + 1e-12):
                return "charge_rate", (f"{per_s:.3g} uC would be delivered within "
                                       f"{CHARGE_WINDOW_S:g} s > {st.max_charge_per_s_uc} uC/s")
        if spec.modality == "optogenetic":
            mean = s.log.window_max(onsets, st.opto_window_s, "light",
                                    new.light_mj) / st.opto_window_s
            if mean > st.opto_max_mean_power_mw * (1 + 1e-12):
                return "opto_power", (f"mean {mean:.3g} mW over {st.opto_window_s} s > "
                                      f"{st.opto_max_mean_power_mw} mW")
        if s.n_pulses + new.count > st.max_pulses_per_session:
            return "session_cap", (f"{s.n_pulses} + {new.count} pulses > cap "
                                   f"{st.max_pulses_per_session}")
        return "", ""


__all__ = ["SafetySettings", "Governor", "Intent", "Decision", "SafetyError", "RULES",
           "SHANNON_K_LIMIT", "SHANNON_RATE_HZ", "REFRACTORY_FLOOR_S", "RATE_WINDOW_FLOOR_S",
           "SESSION_CAP_CEILING", "CHARGE_WINDOW_S", "electrical_dose", "light_energy_mj",
           "pulse_light_mj", "pulse_charge_uc", "shannon_charge_uc", "max_charge_rate_uc_s",
           "check_floors", "PulseLog", "malformed"]
