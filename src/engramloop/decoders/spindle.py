"""Online sleep-spindle detector.

Online versions of the three rules of YASA's ``spindles_detect`` (Vallat & Walker 2021,
eLife 10:e70092; after Lacourse et al. 2019, J Neurosci Methods 316:3), with a low and a
high threshold on the absolute rule:

1. absolute: the sigma-band (11-16 Hz) amplitude is above ``median + threshold_sd * robust
   SD`` of its own running baseline (YASA: mean + 1.5 SD of the whole record). The amplitude
   is instantaneous -- ``sqrt((i^2 + q^2) / 2)`` of a quadrature pair made from the sigma
   signal ``xs`` (``q`` its first difference, ``i`` the midpoint of the same two samples,
   both scaled to the amplitude at the band centre), smoothed over ``envelope_window_s``
   -- not a moving RMS, whose window would add half its length of lag;
2. relative: sigma power / broadband (3-30 Hz) power is at least ``rel_power_min`` (YASA:
   0.2 of 1-30 Hz over 2 s windows; A7 takes 4.5-30 Hz), the broadband power a moving mean
   over ``window_s``;
3. shape: the moving correlation between the sigma-filtered and the broadband signal is at
   least ``corr_min`` (YASA: 0.65) -- a spindle dominates the signal's shape, a
   sigma-band bump under a slow wave or an artefact does not. Offline, YASA filters with
   zero phase; a causal band-pass shifts the phase of a spindle that is off the band
   centre, so we take the correlation with the best phase shift: with ``q`` as above,
   ``corr = sqrt(corr(xs, xb)^2 + corr(q, xb)^2)``.

Tuned on real EEG (issue 20): the defaults were chosen on the four DREAMS development
excerpts (C3-A1, two experts' scoring; bench/real_eeg.py prints the table and a
leave-one-excerpt-out check) from a small grid of the rules' thresholds -- no per-recording
constant. What matters there: the relative-power rule at the firing sample (sigma must
carry most of the 3-30 Hz power over ``window_s``: it rejects the sigma-band bumps of
ordinary background that experts do not mark; starting the broadband above the slow
waves keeps spindles riding on them, and moves detection earlier as the spindle waxes),
a 0.15 s minimum run (brief bursts), and thresholds from a 120 s robust baseline that keep
their highest value for ``baseline_hold_s`` (``RobustBaseline`` ``hold_s``), so a wake or
REM stretch, where the sigma amplitude falls, does not lower them at once. Every
threshold is relative to the recording's own statistics except the two ratios (relative
power, correlation), which are scale-free.

Duration works as in offline detectors that use two amplitude thresholds (Wamsley et al.
2012, Biol Psychiatry 71:154; Luna's SPINDLES, Purcell et al. 2017, Nat Commun 8:15930: a
core above 4.5x the mean wavelet amplitude within an extent above 2x): a *run* is a
stretch of samples with the amplitude above the low threshold ``median +
low_threshold_frac * threshold_sd * SD``; an event fires at the first sample of a run that
has lasted ``min_duration_s`` and at which the amplitude is above the high threshold and
the relative-power, shape and alpha rules hold. The low threshold is crossed early on a
spindle's waxing flank, so the minimum duration mostly elapses before the high crossing
instead of after it, while a brief noise peak that jumps over the high threshold is still
rejected. (A large broadband step -- an electrode pop -- rings in the sigma band at once;
the simulator-tuned settings' 0.03 s minimum duration and loose relative-power rule let
about half of such steps through; the 0.15 s minimum and the 0.75 relative-power floor
reject them on real EEG, tests/decoders/test_detect_spindle_real.py.) If the run goes on beyond
``max_duration_s`` the detector emits ``spindle_rejected`` for it. A fourth, online-only
rule vetoes while the alpha band (7-10 Hz) RMS exceeds ``alpha_ratio_max`` times the sigma
amplitude: wake alpha reaches into 11-12 Hz, a spindle carries little alpha.
(``spindle_rejected`` exists because online a fired event cannot be taken back, but the
recording and the scorer can drop it.)

Optional confirmation (``confirm_duration_s``, off by default): an event is released as
soon as the rules hold, and when its run ends before ``confirm_duration_s`` the detector
emits ``spindle_rejected`` for it at that sample. This does nothing to stimulation: a
pulse follows the release and has left by then; only the recording and the scorer drop
the rejected event. Experts mark spindles of >= 0.5 s (AASM manual, Iber et al. 2007), and
on the DREAMS excerpts the detections no expert marked are mostly short runs (median
0.32-0.55 s against 0.59-0.90 s for those expert 1 marked, ``bench/real_eeg.py --why``):
at 0.4 s the scored events on excerpt 3 fall from 3.4x to 2.0x expert 1's density, but the
released events -- what pulses follow -- stay at 3.4x, and the simulator's spindle F1
drops by 0.057 (``bench/detectors.py``). It is off so that ``score`` rates the detector
the stimulation follows; turn it on to score, offline, only spindles that lasted.
Waiting for a longer run before firing (``min_duration_s``) would change the pulses too,
at the cost of latency on every event.

Nothing is passed over silently: the C kernel counts, per channel, the candidate spindles
the alpha veto passed over (runs that met every other firing rule at some sample and never
all of them) and the artefact stretches it held, the detector (with the confirmation on)
the released spindles it took back (``passed_over``, by reason: the run summary's line), and
``status_note`` is the live view's line while a channel is held or its latest candidate
was vetoed -- a wake-alpha or artefact-ridden night without spindles is not a quiet night.

All windows are causal (trailing); the sigma signal is band-passed out of the broadband
one, so both are in phase at the spindle frequency. The moving correlation needs the moving
mean of a product; with ``mean(xy) = (mean((x+y)^2) - mean((x-y)^2)) / 4`` it comes from two
moving RMS envelopes, so every rule runs in the C filter bank.

Where the latency goes (measured on the simulator at its default SNR, bench/detectors.py,
with the simulator-tuned settings; on real EEG the 0.15 s minimum run adds to it): the sigma
band-pass delays the envelope by about 1/(pi * bandwidth) -- ~65 ms with one pole pair per
edge (``filter_order`` 1), ~100 ms with two -- and the rest is the time the waxing spindle
needs to rise above what the background reaches by chance (the high threshold). That delay
is not waste: for a spindle at the band centre whose envelope grows like t^2, the one-pole-
pair band-pass (an exponential memory of 1/(pi * 5 Hz) = 64 ms) reaches ~98 % of the
signal-to-noise ratio of the matched filter at 0.28 s after onset (the best exponential
memory, ~90 ms, gains under 2 %), and a spindle anywhere in 11-16 Hz needs the band's width
anyway: there is little to win from the filter (measured: order 2 is ~40 ms later at the
same F1, a 10-17 Hz band or an extra high-pass no better).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engramloop.core.chunk import Chunk
from engramloop.core.events import Event
from engramloop.core.schema import check_bands, setting
from engramloop.decoders._filters import SpindlePlan, spindle_runs
from engramloop.decoders.baseline import ChannelPicker, RobustBaseline, TimeRing, first_at_or_after
from engramloop.decoders.filters import BandEnvelope, MovingRms, SosFilter, butter_bandpass

__all__ = ["SpindleSettings", "SpindleDetector"]

#: Widths, in channels, of the per-chunk buffers that share the float64 work array of
#: ``SpindlePlan`` (decoders/_kernels/spindle.c, SPINDLE_WORK_ROWS), in its order: xb, eb, xs, es,
#: the quadrature sums and their moving RMS (4 each), amp, env, xa, ea, med, sd.
_WORK_WIDTHS = (1, 1, 1, 1, 4, 4, 1, 1, 1, 1, 1, 1)

#: the broadband's upper edge is capped at this fraction of Nyquist: a low-rate recording
#: (the DREAMS excerpt 3 is stored at 50 Hz) keeps a broadband reference that reaches above
#: the sigma band instead of failing on the 30 Hz default
BROAD_NYQUIST_FRAC = 0.9


@dataclass(frozen=True)
class SpindleSettings:
    """``[detectors.spindle]``: sleep spindles on scalp EEG."""

    enabled: bool = setting(True, doc="run the spindle detector")
    channels: tuple[str, ...] = setting(("Cz",), doc="EEG channels, each detected on "
                                                     "independently")
    sigma_band_hz: tuple[float, float] = setting((11.0, 16.0), gt=0, unit="Hz",
                                                 doc="spindle (sigma) band")
    broad_band_hz: tuple[float, float] = setting(
        (3.0, 30.0), gt=0, unit="Hz",
        doc="broadband for relative power and correlation (upper edge capped at 0.9 x "
            "Nyquist: 22.5 Hz at 50 Hz). Starts above the slow waves, as A7's relative power "
            "(Lacourse et al. 2019: 4.5-30 Hz), so a spindle riding on a slow oscillation "
            "still dominates it")
    filter_order: int = setting(1, ge=1, le=6,
                                doc="Butterworth order per band edge of the sigma and broadband "
                                    "filters (1: ~65 ms envelope delay; 2: ~100 ms, which on "
                                    "the simulator costs ~40 ms of detection latency for no "
                                    "gain in F1)")
    envelope_window_s: float = setting(0.015, ge=0, le=1, unit="s",
                                       doc="smoothing of the instantaneous sigma amplitude "
                                           "(evens out the ripple of the derivative-based "
                                           "quadrature off the band centre; 0 = none)")
    window_s: float = setting(0.1, gt=0, le=5, unit="s",
                              doc="window of the relative-power, correlation and alpha rules "
                                  "(YASA: 0.3 s centred; causal windows lag, so shorter)")
    threshold_sd: float = setting(4.0, ge=0, unit="SD",
                                  doc="high threshold: the sigma amplitude must exceed its "
                                      "baseline median by this many robust SDs for an event "
                                      "to fire (YASA: mean + 1.5 SD of a whole-record RMS, "
                                      "which includes the spindles)")
    low_threshold_frac: float = setting(0.4, ge=0, le=1,
                                        doc="low threshold, as a fraction of threshold_sd: a "
                                            "run (the candidate spindle, its onset and "
                                            "duration) is the stretch with the sigma amplitude "
                                            "above median + low_threshold_frac * threshold_sd "
                                            "SDs (a fraction, so tuning threshold_sd moves "
                                            "both; 1 = a single threshold)")
    rel_power_min: float = setting(0.75, ge=0, le=1,
                                   doc="minimum sigma/broadband power ratio at the firing "
                                       "sample (YASA: 0.2 of 1-30 Hz over 2 s windows; here "
                                       "over window_s of 3-30 Hz: on real EEG the rule that "
                                       "best separates what experts mark, see "
                                       "bench/real_eeg.py)")
    corr_min: float = setting(0.65, ge=-1, le=1, doc="minimum sigma-vs-broadband correlation "
                                                     "(YASA: 0.65, zero-phase)")
    alpha_band_hz: tuple[float, float] = setting((7.0, 10.0), gt=0, unit="Hz",
                                                 doc="band of the alpha veto (ends below the "
                                                     "sigma band so an 11 Hz spindle leaks "
                                                     "little into it)")
    alpha_filter_order: int = setting(3, ge=1, le=6,
                                      doc="Butterworth order per band edge of the alpha filter "
                                          "(steep, for the same reason)")
    alpha_ratio_max: float = setting(0.4, ge=0, doc="veto while the alpha RMS exceeds this "
                                                    "times the sigma amplitude (wake alpha "
                                                    "leaks into the sigma band; a spindle "
                                                    "has little alpha); 0 disables")
    min_duration_s: float = setting(0.15, ge=0, le=2, unit="s",
                                    doc="a run must have lasted this long before its event "
                                        "fires (rejects brief noise peaks; the run starts at "
                                        "the low threshold, so on a waxing spindle this time "
                                        "has mostly passed by the high crossing)")
    confirm_duration_s: float = setting(
        0.0, ge=0, le=2, unit="s",
        doc="optional, 0 = off (the default): a fired event whose run ends before it has "
            "lasted this long is reported as spindle_rejected when the run ends. It changes "
            "no pulse (a pulse follows the release and has left by then); only the recording "
            "and the scorer drop the rejected event, so score then rates fewer events than "
            "the stimulation followed. Experts mark spindles of >= 0.5 s (AASM scoring "
            "manual, Iber et al. 2007); 0.4 s brings the scored density on the DREAMS "
            "excerpts closest to expert 1's (bench/real_eeg.py --tradeoff)")
    max_duration_s: float = setting(2.5, gt=0, unit="s",
                                    doc="runs longer than this are reported as "
                                        "spindle_rejected")
    refractory_s: float = setting(0.5, ge=0, unit="s", doc="dead time after an event")
    artefact_sd: float = setting(
        200.0, gt=0, unit="SD",
        doc="a sigma amplitude this many robust SDs above its median is an artefact "
            "(amplifier saturation, a large pop or movement ringing through the band-pass), "
            "not a spindle: spindles on the simulator peak at a few tens of SDs")
    artefact_hold_s: float = setting(
        1.0, ge=0, unit="s",
        doc="after an artefact sample no spindle fires and no run starts for this long (the "
            "one-pole-pair sigma filter rings with a ~65 ms time constant: a saturation "
            "needs a few hundred ms to fall back under the thresholds)")
    calibration_s: float = setting(10.0, ge=0, unit="s",
                                   doc="no events until this long after the first sample")
    baseline_s: float = setting(120.0, gt=0, unit="s", doc="history of the running baseline")
    baseline_hold_s: float = setting(
        120.0, ge=0, unit="s",
        doc="the thresholds use the highest baseline median and SD of the last this many "
            "seconds, so a wake or REM stretch, where the sigma amplitude falls, does not "
            "lower them until it has lasted this long (plus half of baseline_s, for the "
            "running median to follow); 0 = the current baseline")
    baseline_step_s: float = setting(0.02, gt=0, unit="s", doc="baseline keeps one amplitude "
                                                               "sample per step")
    baseline_update_s: float = setting(2.0, gt=0, unit="s", doc="baseline recomputed this "
                                                                "often")
    baseline_min_fill: float = setting(0.05, gt=0, le=1, doc="fraction of the history "
                                                             "needed before the first "
                                                             "statistics")
    exclude_sd: float = setting(2.5, gt=0, unit="SD",
                                doc="amplitude samples above median + exclude_sd SD stay out "
                                    "of the baseline (spindles cross threshold_sd; a lower "
                                    "value also keeps out the background's own upper tail, "
                                    "so the baseline underestimates a rise such as wake "
                                    "alpha leaking into the band)")

    def validate(self) -> None:
        check_bands(self, "sigma_band_hz", "broad_band_hz", "alpha_band_hz")
        if not self.channels:
            raise ValueError("channels: give at least one channel name")
        if self.max_duration_s <= self.min_duration_s:
            raise ValueError("max_duration_s: must be greater than min_duration_s")
        if self.max_duration_s <= self.confirm_duration_s:
            raise ValueError("max_duration_s: must be greater than confirm_duration_s")


def broad_band_for(settings: SpindleSettings, fs: float) -> tuple[float, float]:
    """The broadband (Hz) used at sampling rate ``fs``: ``broad_band_hz`` with its upper
    edge capped at ``BROAD_NYQUIST_FRAC`` x Nyquist (a 50 Hz recording, Nyquist 25 Hz, gets
    3-22.5 Hz by default); a ValueError naming the setting when the capped band no longer reaches
    above the sigma band."""
    lo, hi = settings.broad_band_hz
    hi = min(hi, BROAD_NYQUIST_FRAC * fs / 2)
    if hi <= settings.sigma_band_hz[1] or lo >= hi:
        raise ValueError(f"detectors.spindle.broad_band_hz: a {fs:g} Hz source leaves "
                         f"{lo:g}-{hi:g} Hz, which does not reach above the sigma band "
                         f"{[float(f) for f in settings.sigma_band_hz]} Hz; lower "
                         "sigma_band_hz or record at a higher rate")
    return lo, hi


class SpindleDetector:
    """Causal spindle detector: ``process(chunk) -> list[Event]``.

    Emits ``Event(kind="spindle")`` (``onset_s`` = start of the run, where the sigma
    amplitude crossed the low threshold; ``amplitude`` = sigma amplitude, ``score`` = the
    amplitude in robust SDs above the baseline median, ``threshold`` = the high threshold,
    all at the firing sample), ``spindle_rejected`` (the same ``onset_s``) when a fired
    event's run outlasts ``max_duration_s`` or ends before ``confirm_duration_s``, and
    once ``calibration_done`` (with ``channel="spindle"``).
    """

    KIND = "spindle"
    #: what the gates passed over (the keys of :attr:`passed_over`), as the run summary
    #: words them after the count
    PASS_NOUN = ""
    PASS_REASONS = {
        "alpha_veto": "candidate spindles passed over by the alpha veto (alpha above "
                      "alpha_ratio_max x sigma; every other firing rule held)",
        "artefact_hold": "artefact stretches held (sigma amplitude beyond artefact_sd SDs; "
                         "no spindle for artefact_hold_s after each)",
        "unconfirmed": "released spindles taken back (their run ended before "
                       "confirm_duration_s: spindle_rejected; a pulse may have followed "
                       "each, the scorer drops them; counted only with the option on)",
    }
    #: runstate rows (decoders/_kernels/spindle.c: carry, hold, then T_FLAGS, T_ALPHA,
    #: T_ART, T_HELD) and the state bits of T_FLAGS the live view reads
    _ROW_FLAGS, _ROW_ALPHA, _ROW_ART, _ROW_HELD = 2, 3, 4, 5
    _F_LAST_VETOED, _F_HELD = 4, 8

    def __init__(self, settings: SpindleSettings | None = None) -> None:
        self.settings = settings or SpindleSettings()
        self._picker = ChannelPicker(tuple(self.settings.channels), "detectors.spindle")
        self._k = len(self.settings.channels)
        self._fs = 0.0
        self._cap = 0
        self._channels: tuple[str, ...] | None = None     # the channel list bound to
        self._cols = np.zeros(self._k, dtype=np.int64)    # columns picked from a chunk
        self._restart = False     # restart() was called: the next chunk primes the filters
        # counts of setups before the current one (a rate change starts a new runstate)
        self._passed_before = dict.fromkeys(self.PASS_REASONS, 0)
        self._held_before = 0
        self._runstate = np.zeros((6, self._k), dtype=np.int64)
        self._unconfirmed = 0     # released events their confirmation took back, all setups

    @property
    def passed_over(self) -> dict[str, int]:
        """What the gates passed over so far, by reason (summed over channels): the
        candidates the alpha veto passed over, the artefact stretches held and, with
        ``confirm_duration_s`` on, the released spindles the confirmation took back."""
        st = self._runstate
        out = {"alpha_veto": self._passed_before["alpha_veto"]
               + int(st[self._ROW_ALPHA].sum()),
               "artefact_hold": self._passed_before["artefact_hold"]
               + int(st[self._ROW_ART].sum())}
        if self.settings.confirm_duration_s > 0:
            out["unconfirmed"] = self._unconfirmed
        return out

    @property
    def held_s(self) -> float:
        """Seconds of signal held as artefact so far, summed over channels."""
        n = self._held_before + int(self._runstate[self._ROW_HELD].sum())
        return n / self._fs if self._fs else 0.0

    @property
    def status_note(self) -> str:
        """The live view's line while an artefact hold is on or the latest candidate was
        passed over by the alpha veto on some channel, else ""."""
        if self._fs == 0.0:
            return ""
        flags = self._runstate[self._ROW_FLAGS].tolist()
        names = self.settings.channels
        held = [c for c, f in zip(names, flags, strict=True) if f & self._F_HELD]
        vetoed = [c for c, f in zip(names, flags, strict=True) if f & self._F_LAST_VETOED]
        if not (held or vetoed):
            return ""
        n = self.passed_over
        parts = []
        if held:
            parts.append(f"artefact hold on {', '.join(held)} ({n['artefact_hold']} "
                         f"stretches, {self.held_s:.1f} s held in all)")
        if vetoed:
            parts.append(f"alpha veto passing over candidates on {', '.join(vetoed)} "
                         f"({n['alpha_veto']} passed over in all)")
        return "spindle " + "; ".join(parts)

    def _setup(self, fs: float) -> None:
        s = self.settings
        k = self._k
        self._fs = fs
        for name in ("sigma_band_hz", "alpha_band_hz"):
            if getattr(s, name)[1] >= fs / 2:
                raise ValueError(f"detectors.spindle.{name}: {getattr(s, name)[1]} Hz is at or "
                                 f"above Nyquist of a {fs} Hz source")
        broad = broad_band_for(s, fs)
        win = max(1, int(round(s.window_s * fs)))
        self._sigma = BandEnvelope(butter_bandpass(*s.sigma_band_hz, fs, s.filter_order), k, win)
        self._broad = BandEnvelope(butter_bandpass(*broad, fs, s.filter_order), k, win)
        self._pm = MovingRms(4 * k, win)
        self._env = MovingRms(k, max(1, int(round(s.envelope_window_s * fs))))
        self._alpha = (BandEnvelope(butter_bandpass(*s.alpha_band_hz, fs, s.alpha_filter_order),
                                    k, win) if s.alpha_ratio_max > 0 else None)
        # first difference -> quadrature (90 deg) at the sigma centre frequency (the
        # geometric mean of the band edges, where the band-pass has zero phase), in
        # radians per sample
        self._w0 = 2 * np.pi * np.sqrt(s.sigma_band_hz[0] * s.sigma_band_hz[1]) / fs
        self._xs_last = np.zeros(k)
        # carry (run length before the block), hold (artefact hold left, samples) and the
        # kernel's counts of what the gates passed over (flags, alpha-vetoed runs, artefact
        # stretches, held samples): one array, so the fused kernel takes one buffer for all
        # (the counts carry on across a new setup: they are the run's, not the rate's)
        self._passed_before = self.passed_over
        self._held_before += int(self._runstate[self._ROW_HELD].sum())
        self._runstate = np.zeros((6, k), dtype=np.int64)
        self._carry, self._hold = self._runstate[0], self._runstate[1:]
        self._base = RobustBaseline(k, fs, history_s=s.baseline_s, step_s=s.baseline_step_s,
                                    update_s=s.baseline_update_s, exclude_sd=s.exclude_sd,
                                    min_fill=s.baseline_min_fill, update_phase=0.33,
                                    hold_s=s.baseline_hold_s)
        self._min_n = max(1, int(round(s.min_duration_s * fs)) + 1)
        self._max_n = max(self._min_n + 1, int(round(s.max_duration_s * fs)) + 1)
        # a fired run shorter than this many samples is rejected when it ends (0: never)
        self._confirm_n = int(round(s.confirm_duration_s * fs))
        # onsets up to max_duration_s + 1 s before a chunk; _alloc adds the longest chunk
        self._times_history = int(fs * (s.max_duration_s + 1.0))
        self._times = TimeRing(self._times_history)
        self._armed = np.ones(k, dtype=bool)
        self._rearm_t = np.full(k, -np.inf)
        self._open = np.zeros(k, dtype=bool)     # fired, run still going
        self._open_onset = np.full(k, np.nan)
        self._open_onset_i = np.zeros(k, dtype=np.int64)   # sample index of that onset
        # _open.any(), _armed.all() and the earliest re-arm time of a disarmed channel as
        # Python scalars, kept by _flags: the quiet path (~90 % of chunks, and the ~100
        # chunks of refractory after each event) then does no NumPy operation
        self._any_open = False
        self._all_armed = True
        self._rearm_min = np.inf
        self._hold_n = int(round(s.artefact_hold_s * fs))
        self._calibrating = True
        self._t0 = np.nan
        self._alloc(64)

    def _alloc(self, n: int) -> None:
        """Per-chunk buffers for up to ``n`` samples: views of one float64 and one int64
        work array, which the fused kernel takes as two buffers instead of fourteen (each
        buffer it takes costs ~0.1 us)."""
        k = self._k
        self._cap = n
        # a chunk of n samples must not overwrite the onsets before it
        self._times.grow(self._times_history + n)
        self._work = np.empty((sum(_WORK_WIDTHS) * n, k))
        blocks = []
        row = 0
        for width in _WORK_WIDTHS:
            blocks.append(self._work[row:row + width * n].reshape(n, width * k))
            row += width * n
        (self._xb, self._eb, self._xs, self._es, self._sum, self._pmo, self._amp, self._e,
         self._xa, self._ea, self._med, self._sd) = blocks
        self._iwork = np.empty((2 * n, k), dtype=np.int64)
        self._runs, self._fire = self._iwork[:n], self._iwork[n:]
        self._pack()

    def _pack(self) -> None:
        """The SpindlePlan's arguments: all fixed between a setup, a buffer growth and a
        new channel list, so the plan is built then and the per-chunk call passes the chunk
        only."""
        s = self.settings
        # the rules' parameters (k_lo .. hold_n), as spindle_runs takes them too
        self._rules = (s.low_threshold_frac * s.threshold_sd, s.threshold_sd,
                       s.rel_power_min, s.corr_min, s.alpha_ratio_max, self._min_n,
                       self._max_n, s.artefact_sd, self._hold_n)
        self._args = (self._cols, self._broad, self._sigma, self._alpha, self._pm, self._env,
                      float(self._w0), self._xs_last, self._work, self._iwork, self._runstate,
                      *self._base.kernel_state(), *self._rules)
        # checked and bound once; the per-chunk call passes the chunk only
        self._plan = SpindlePlan(*self._args)

    def _bind(self, channels: tuple[str, ...]) -> None:
        """Pick the configured channels out of a chunk with this channel list."""
        if channels != self._channels:
            self._cols = self._picker.bind(channels).astype(np.int64)
            self._pack()
        self._channels = channels

    def reset(self) -> None:
        """Forget all state; the next chunk starts a new calibration."""
        self._fs = 0.0
        self._restart = False

    def restart(self) -> None:
        """Forget the signal but keep the calibration: after samples the detector must
        not see (non-finite, an electrode pop), the next chunk starts the sigma, broad
        and alpha band-passes in steady state at its first sample, empties the RMS
        windows, runs and open events, and re-arms every channel; the baseline
        statistics and the calibration carry on."""
        self._restart = self._fs != 0.0

    def _restart_from(self, samples: np.ndarray) -> None:
        self._restart = False
        x0 = samples[0, self._cols]
        # filter states only: the RMS windows keep their (finite) samples from before
        # the pause, so the amplitude and power ratios carry on instead of refilling
        for f in (self._sigma, self._broad, self._alpha):
            if f is not None:
                SosFilter.reset(f, x0)
        self._xs_last.fill(0.0)       # the sigma band-pass starts at 0 from steady state
        self._runstate[:self._ROW_FLAGS + 1].fill(0)   # the counts carry on
        self._armed.fill(True)
        self._rearm_t.fill(-np.inf)
        self._open.fill(False)
        self._open_onset.fill(np.nan)
        self._any_open = False
        self._all_armed = True
        self._rearm_min = np.inf

    @property
    def calibrating(self) -> bool:
        """True until the baseline exists and ``calibration_s`` has passed."""
        return self._fs == 0.0 or self._calibrating

    def process(self, chunk: Chunk) -> list[Event]:
        """Detect spindles in one chunk.

        Parameters
        ----------
        chunk : Chunk
            Must contain the configured channels (volts or any consistent unit).

        Returns
        -------
        list of Event
            In time order.
        """
        samples = chunk.samples
        n = samples.shape[0]
        if n == 0:
            return []
        if chunk.rate_hz != self._fs:
            self._setup(float(chunk.rate_hz))
        if n > self._cap:
            self._alloc(max(n, 2 * self._cap))
        if chunk.channels is not self._channels:
            self._bind(chunk.channels)
        if self._restart:
            self._restart_from(samples)
        t = chunk.timestamps
        base = self._base
        first = base.index
        if first == 0:
            self._t0 = float(t[0])
        self._times.write(t)
        if base.claim_block(n):
            # no baseline update point in this block (all but one chunk per
            # baseline_update_s): one C call runs every step of _steps below
            longest, n_fire = self._plan.run(samples, first, True)
        else:
            longest, n_fire = self._steps(samples, first, n)
        if longest == 0:
            return self._quiet(t, first)
        events: list[Event] = []
        start = 0
        if self._calibrating:
            start = self._end_calibration(t, first, events)
            if start < 0:
                return events
        if not (n_fire or self._any_open or not self._all_armed):
            return events
        runs, fire = self._runs[:n], self._fire[:n]
        env, med, sd = self._e[:n], self._med[:n], self._sd[:n]
        for ch in range(self._k):
            self._scan(ch, start, runs[:, ch], fire[:, ch], t, env, med, sd, first, events)
        self._flags()
        if self._k > 1:
            events.sort(key=lambda e: e.detect_s)
        return events

    def _steps(self, samples: np.ndarray, first: int, n: int) -> tuple[int, int]:
        """One chunk step by step, for a block with a baseline update point (the baseline's
        recomputation stays in Python); ``process`` otherwise runs the same steps in one C
        call, ``SpindlePlan.run``. Fills the work buffers' first
        ``n`` rows and returns (longest run, number of firing samples)."""
        # the filters (rules=False: nothing else): the configured columns are picked, and
        # sigma is filtered out of the broadband signal (not the raw one): at the sigma
        # centre the band-pass has zero phase, so a spindle is in phase in both signals and
        # the correlation is not spoilt by the two causal filters' different delays. Then
        # q = quadrature of xs (scaled first difference), the sums [xs+xb, xs-xb, q+xb,
        # q-xb] and their moving RMS pm, the instantaneous amplitude sqrt((i^2 + q^2) / 2),
        # i the in-phase midpoint, smoothed into env, and the alpha band's envelope ea
        # (keeps its state every chunk).
        self._plan.run(samples, first, False)
        env, med, sd = self._e[:n], self._med[:n], self._sd[:n]
        self._base.process(env, med, sd)
        # one C call evaluates every rule per sample (the NumPy twin is
        # tests/decoders/test_filters_detect.py):
        # - runs: length of the run of env above the low threshold
        #   med + low_threshold_frac * threshold_sd * sd
        # - fire: the run is >= min_duration_s long and, at this sample,
        #   - absolute: env above the high threshold med + threshold_sd * sd
        #   - relative power: env^2 >= rel * eb^2
        #   - correlation, phase-free: c_i = mean(xs*xb), c_q = mean(q*xb) with q the
        #     quadrature of xs; (c_i^2 + c_q^2) >= corr_min^2 * es^2 * eb^2 (each mean from
        #     (p^2 - m^2) / 4 of the moving RMS of the sum p and difference m)
        #   - alpha veto: ea <= alpha_ratio_max * env
        # (the kernel also holds artefacts: an amplitude beyond artefact_sd SDs and the
        # artefact_hold_s after it -- no run crosses them, nothing fires on them)
        return spindle_runs(env, self._eb[:n], self._es[:n], self._pmo[:n],
                            self._ea[:n] if self._alpha is not None else None, med, sd,
                            *self._rules, self._carry, self._hold, self._runs[:n],
                            self._fire[:n])

    def _calibration_event(self, t: np.ndarray, j: int) -> Event:
        med, sd = self._med, self._sd
        return Event(kind="calibration_done", channel=self.KIND, onset_s=self._t0,
                     detect_s=float(t[j]), amplitude=float(med[j, 0]), score=float(sd[j, 0]),
                     threshold=float(med[j, 0] + self.settings.threshold_sd * sd[j, 0]))

    def _quiet(self, t: np.ndarray, first: int) -> list[Event]:
        """Fast path for a chunk where no sample is above the low threshold: every run
        length is 0, so open events end and channels past their refractory re-arm."""
        events: list[Event] = []
        if self._calibrating and self._end_calibration(t, first, events) < 0:
            return events
        if self._any_open:
            # every open run ended at this chunk's first sample
            for ch in np.flatnonzero(self._open).tolist():
                self._confirm(ch, first, t, 0, events)
            self._open.fill(False)
            self._any_open = False
        if not self._all_armed and t[-1] >= self._rearm_min:
            self._armed |= self._rearm_t <= t[-1]
            self._flags()
        return events

    def _flags(self) -> None:
        """Refresh the Python mirrors of _open, _armed and _rearm_t (through lists: a
        NumPy reduction of a few values costs more than the Python one here)."""
        armed = self._armed.tolist()
        self._any_open = any(self._open.tolist())
        self._all_armed = all(armed)
        # a NaN re-arm time (a spindle fired at a NaN timestamp) never re-arms in a quiet
        # chunk (NaN <= t is False), so it must not hide the other channels' times either
        self._rearm_min = min((r for r, a in zip(self._rearm_t.tolist(), armed, strict=True)
                               if not a and r == r), default=np.inf)

    def _end_calibration(self, t: np.ndarray, first: int, events: list[Event]) -> int:
        """While calibrating: the row where calibration ends in this chunk, after appending
        its ``calibration_done`` event to ``events``; -1 (still calibrating) if none."""
        j = self._calibration_index(t, first)
        if j >= 0:
            self._calibrating = False
            events.append(self._calibration_event(t, j))
        return j

    def _calibration_index(self, t: np.ndarray, first: int) -> int:
        b = self._base
        if not b.ready:
            return -1
        return first_at_or_after(t, self._t0 + self.settings.calibration_s,
                                 max(0, b.ready_index - first))

    def _confirm(self, ch: int, first: int, t: np.ndarray, end: int,
                 events: list[Event]) -> None:
        """The open run of channel ``ch`` ended at row ``end`` of this chunk (its first
        sample below the low threshold, or held as artefact): a ``spindle_rejected`` event
        when the run lasted less than ``confirm_duration_s`` (``detect_s``,
        ``amplitude`` and ``threshold`` = that sample's time, sigma amplitude and low
        threshold)."""
        if first + end - int(self._open_onset_i[ch]) >= self._confirm_n:
            return
        self._unconfirmed += 1
        s = self.settings
        med, sd = float(self._med[end, ch]), float(self._sd[end, ch])
        events.append(Event(kind="spindle_rejected", channel=s.channels[ch],
                            onset_s=float(self._open_onset[ch]), detect_s=float(t[end]),
                            amplitude=float(self._e[end, ch]),
                            threshold=med + s.low_threshold_frac * s.threshold_sd * sd))

    def _scan(self, ch: int, i: int, runs: np.ndarray, fire: np.ndarray, t: np.ndarray,
              env: np.ndarray, med: np.ndarray, sd: np.ndarray, first: int,
              events: list[Event]) -> None:
        n = runs.shape[0]
        s = self.settings
        name = s.channels[ch]
        last = int(runs[n - 1])
        while i < n:
            # the run goes on unbroken from i to the end of the block when the run length
            # grows by one per sample: the common case while a spindle lasts, decided from
            # two numbers instead of a search (this path runs on ~10 % of chunks)
            r_i = int(runs[i])
            unbroken = r_i > 0 and last - r_i == n - 1 - i
            if self._open[ch]:
                # the fired run either ends (run length drops to 0) or reaches max duration
                if unbroken:
                    end = n
                    j = i + self._max_n - r_i
                    longs = (j,) if i <= j < n else ()
                else:
                    ends = np.flatnonzero(runs[i:] == 0)
                    end = i + int(ends[0]) if ends.size else n
                    longs = i + np.flatnonzero(runs[i:end] == self._max_n)
                if len(longs):
                    j = int(longs[0])
                    events.append(Event(kind="spindle_rejected", channel=name,
                                        onset_s=float(self._open_onset[ch]),
                                        detect_s=float(t[j]), amplitude=float(env[j, ch]),
                                        threshold=float(med[j, ch]
                                                        + s.threshold_sd * sd[j, ch])))
                    self._open[ch] = False
                if end == n:
                    return
                if self._open[ch]:
                    # the run ended at row end (not past max_duration_s)
                    self._confirm(ch, first, t, end, events)
                self._open[ch] = False
                i = end
                continue
            if not self._armed[ch]:
                if unbroken or t[n - 1] < self._rearm_t[ch]:
                    return
                ok = np.flatnonzero((runs[i:] == 0) & (t[i:] >= self._rearm_t[ch]))
                if ok.size == 0:
                    return
                self._armed[ch] = True
                i += int(ok[0])
                continue
            hit = np.flatnonzero(fire[i:])
            if hit.size == 0:
                return
            j = i + int(hit[0])
            onset_idx = first + j - int(runs[j]) + 1
            onset_s = (float(t[onset_idx - first]) if onset_idx >= first
                       else self._times.at(onset_idx))
            events.append(Event(kind=self.KIND, channel=name, onset_s=onset_s,
                                detect_s=float(t[j]), amplitude=float(env[j, ch]),
                                score=float((env[j, ch] - med[j, ch]) / sd[j, ch]),
                                threshold=float(med[j, ch] + s.threshold_sd * sd[j, ch])))
            self._armed[ch] = False
            self._rearm_t[ch] = float(t[j]) + s.refractory_s
            self._open[ch] = True
            self._open_onset[ch] = onset_s
            self._open_onset_i[ch] = onset_idx
            i = j + 1
