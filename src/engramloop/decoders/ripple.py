"""Online sharp-wave ripple detector.

Band-pass (150-250 Hz by default) and moving-RMS envelope in one C call per chunk; the
threshold is ``median + threshold_sd * robust SD`` of the envelope from a running
baseline that excludes event samples (median/MAD, frozen while a channel is above its
exclusion level). An event fires when, for ``min_duration_s``, at least
``consensus_channels`` detection channels are above threshold, no reference channel (a
cortical or EMG channel) shows ripple-band power above its own veto level (broadband
artefacts such as chewing or movement appear on every channel, ripples do not), and,
optionally, the theta/delta power ratio on a gating channel is low (no ripples during
theta-dominated running or REM). Stimulation artefacts are blanked: the loop reports each
delivered pulse (:meth:`RippleDetector.blank`) and the samples it covers are neither
detected on nor let into the theta gate.

Nothing is passed over silently (``passed_over``, by reason): a candidate -- a run of the
envelope rule that reached ``min_duration_s`` after the last event's refractory time --
that ended without firing because the theta gate or the reference-channel veto held every
sample of it is counted under that gate (``theta_gate``, else ``reference_veto``), and each
stretch the detector blanked as an artefact of its own finding (beyond ``artefact_sd``)
is counted (``artefact_blank``); ``status_note`` is the live view's line while the latest
candidate was passed over or an artefact blank is on. The loop's stimulation blanks are
not counted here: they follow the pulses, which the run already counts, and a ripple under
one is not seen at all. (Sharp-wave-assist candidates are not counted.)

Sharp-wave assist (optional, ``sharp_wave_channel``): on a laminar probe a CA1 stratum
radiatum site carries the sharp wave of the SPW-R complex -- the CA3-driven sink, a large
negative deflection that rises with (and slightly ahead of) the ripple -- long before the
ripple-band envelope has integrated enough evidence. An event also fires when the
band-passed radiatum signal is beyond ``sharp_wave_sd`` robust SDs in the sharp wave's
polarity *and* a short-window ripple envelope on the detection channel is above
``sharp_wave_ripple_sd`` SDs (a sharp wave without any ripple-band power is not an SPW-R:
dentate spikes, movement, pops). Laminar-profile detectors find SPW-Rs earlier than
ripple power does for this reason (Navas-Olive et al. 2022, eLife 11:e77772).

Online ripple detection of this kind follows Kay et al. 2016 (envelope threshold on
band-passed LFP) and the closed-loop detectors of Girardeau et al. 2009 and Dutta et al.
2019 (adaptive thresholds, reference-channel veto against artefacts).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engramloop.core.chunk import Chunk
from engramloop.core.events import Event
from engramloop.core.schema import check_bands, setting
from engramloop.decoders._filters import RipplePlan, rearm_index, ripple_candidate
from engramloop.decoders.baseline import ChannelPicker, RobustBaseline, TimeRing, first_at_or_after
from engramloop.decoders.filters import BandEnvelope, MovingRms, SosFilter, butter_bandpass

__all__ = ["RippleSettings", "RippleDetector"]


@dataclass(frozen=True)
class RippleSettings:
    """``[detectors.ripple]``: sharp-wave ripple detection on hippocampal LFP."""

    enabled: bool = setting(True, doc="run the ripple detector")
    channels: tuple[str, ...] = setting(
        ("CA1",), doc="hippocampal LFP channels to detect on (names as the source gives them)")
    band_hz: tuple[float, float] = setting(
        (150.0, 250.0), gt=0, unit="Hz", doc="ripple band (Buzsaki 2015: 150-250 Hz in rodents)")
    filter_order: int = setting(2, ge=1, le=6, doc="Butterworth order per band edge")
    rms_window_s: float = setting(0.024, gt=0, le=0.1, unit="s",
                                  doc="moving-RMS envelope window (about half a ripple: "
                                      "averages the noise envelope down; see "
                                      "bench/detectors.py)")
    threshold_sd: float = setting(5.0, gt=0, unit="SD",
                                  doc="threshold above the baseline median, in robust SDs")
    min_duration_s: float = setting(0.004, ge=0, le=0.1, unit="s",
                                    doc="time above threshold before an event fires")
    refractory_s: float = setting(0.05, ge=0, unit="s",
                                  doc="dead time after an event (also waits for the envelope "
                                      "to fall below the re-arm level)")
    rearm_sd: float = setting(2.0, ge=0, unit="SD",
                              doc="after an event every detection channel's envelope must fall "
                                  "below median + rearm_sd SD before the next (hysteresis: one "
                                  "event per ripple)")
    consensus_channels: int = setting(1, ge=1, doc="detection channels that must be above "
                                                    "threshold together")
    pool_weights: tuple[float, ...] = setting(
        (), doc="if given (one weight per detection channel), detect on the weighted mean "
                "of the channels instead of each one: neighbouring pyramidal-layer sites "
                "carry the same ripple, their noise is partly independent, so the mean has "
                "a better SNR (weights ~ each site's ripple amplitude)")
    reference_channels: tuple[str, ...] = setting(
        (), doc="cortical/EMG channels whose ripple-band power vetoes an event (artefact "
                "rejection); empty disables the veto")
    veto_sd: float = setting(4.0, gt=0, unit="SD", doc="reference-channel veto level, in "
                                                       "robust SDs of its own envelope")
    theta_gate: bool = setting(True, doc="suppress detection while the theta/delta power "
                                         "ratio is high (running, REM): theta-nested "
                                         "gamma and spike bursts are the classic false "
                                         "positives there")
    theta_channel: str = setting("", doc="channel for the theta gate; empty means the first "
                                         "detection channel")
    theta_band_hz: tuple[float, float] = setting((6.0, 10.0), gt=0, unit="Hz", doc="theta band")
    delta_band_hz: tuple[float, float] = setting((1.0, 4.0), gt=0, unit="Hz", doc="delta band")
    theta_window_s: float = setting(
        3.0, gt=0, le=10, unit="s",
        doc="RMS window of the theta and delta power. Theta falls for a second or so while "
            "an animal runs (a movement, a short pause); with a 1 s window the ratio "
            "dipped to ~0.6 then and bursts fired: 8 false events in 2.5 min of rat CA1 "
            "theta LFP (shared/data rat_ca1_theta_1000hz.npy; 4 with 2 s, none with 3 or "
            "4 s: bench/real_eeg.py). On the simulator 3 s also keeps the brief rises of "
            "the ratio around NREM ripples from closing the gate")
    theta_delta_max: float = setting(1.0, gt=0, doc="gate closes above this theta/delta "
                                                    "power ratio")
    artefact_blank_s: float = setting(
        0.02, ge=0, le=1, unit="s",
        doc="stimulation artefact blanking: for each delivered pulse the loop reports, "
            "the theta gate (and the sharp-wave channel) hold their last clean value from "
            "the pulse's start to its end plus this long (a light or current step on the "
            "LFP otherwise rings through the theta and delta filters and closes the gate "
            "for a second or more), and nothing is detected until rms_window_s after that, "
            "when the envelope no longer holds the artefact")
    artefact_sd: float = setting(
        300.0, gt=0, unit="SD",
        doc="an envelope (or sharp wave) this many robust SDs above its median is an "
            "artefact -- amplifier saturation, a large movement or pop -- not a ripple "
            "(ripples reach tens of SDs): it is blanked like a stimulation artefact, from "
            "where it crosses this level to artefact_blank_s after it falls back, plus the "
            "envelope's window")
    sharp_wave_channel: str = setting(
        "", doc="CA1 stratum radiatum channel for the sharp-wave assist (empty: off): an "
                "event also fires when its sharp wave is beyond sharp_wave_sd while the "
                "ripple band shows at least sharp_wave_ripple_sd; needs one detection "
                "channel or pool_weights")
    sharp_wave_band_hz: tuple[float, float] = setting(
        (5.0, 40.0), gt=0, unit="Hz",
        doc="band-pass of the sharp-wave channel (first order per edge: a few ms of delay; "
            "a sharp wave lasts 40-100 ms, Buzsaki 2015)")
    sharp_wave_polarity: Literal["negative", "positive"] = setting(
        "negative", doc="sign of the sharp wave on that channel (negative in stratum "
                        "radiatum, positive above the pyramidal layer)")
    sharp_wave_sd: float = setting(5.0, gt=0, unit="SD",
                                   doc="sharp-wave threshold, in robust SDs of the band-passed "
                                       "sharp-wave channel")
    sharp_wave_ripple_sd: float = setting(
        0.5, unit="SD", doc="ripple-band confirmation of a sharp wave: the short-window "
                            "envelope of the detection channel must be above its baseline "
                            "median + this many robust SDs")
    sharp_wave_ripple_window_s: float = setting(
        0.004, gt=0, le=0.1, unit="s", doc="moving-RMS window of that confirmation envelope "
                                           "(short: it must rise within milliseconds)")
    calibration_s: float = setting(5.0, ge=0, unit="s", doc="no events until this long after "
                                                            "the first sample")
    baseline_s: float = setting(30.0, gt=0, unit="s", doc="history of the running baseline")
    baseline_step_s: float = setting(0.01, gt=0, unit="s", doc="baseline keeps one envelope "
                                                                "sample per step")
    baseline_update_s: float = setting(2.0, gt=0, unit="s", doc="baseline recomputed this "
                                                                "often")
    exclude_sd: float = setting(2.0, gt=0, unit="SD", doc="envelope samples above median + "
                                                          "exclude_sd SD stay out of the "
                                                          "baseline")

    def validate(self) -> None:
        check_bands(self, "band_hz", "theta_band_hz", "delta_band_hz", "sharp_wave_band_hz")
        if not self.channels:
            raise ValueError("channels: give at least one channel name")
        if self.sharp_wave_channel:
            if self.sharp_wave_channel in self.channels:
                raise ValueError(f"sharp_wave_channel: {self.sharp_wave_channel!r} is also a "
                                 f"detection channel; give the stratum radiatum site")
            if len(self.channels) > 1 and not self.pool_weights:
                raise ValueError("sharp_wave_channel: needs one detection channel or "
                                 "pool_weights (the confirmation envelope is one signal)")
        if self.consensus_channels > len(self.channels):
            raise ValueError(f"consensus_channels: {self.consensus_channels} > number of "
                             f"channels {len(self.channels)}")
        if self.pool_weights:
            if len(self.pool_weights) != len(self.channels):
                raise ValueError(f"pool_weights: {len(self.pool_weights)} weights for "
                                 f"{len(self.channels)} channels")
            if not sum(abs(w) for w in self.pool_weights) > 0:
                raise ValueError("pool_weights: all weights are zero")
            if self.consensus_channels != 1:
                raise ValueError("consensus_channels: must be 1 when pool_weights pools the "
                                 "channels into one")


#: ``pick_rms`` weights meaning "pick, do not pool"
_NO_WEIGHTS = np.empty(0)


def _since(blanked: np.ndarray) -> np.ndarray:
    """Per sample, how many samples since the last blanked one (0 on a blanked sample, a
    huge number before the first): a run longer than that began in a blank."""
    ar = np.arange(blanked.shape[0])
    last = np.where(blanked, ar, -1)
    np.maximum.accumulate(last, out=last)
    return np.where(last >= 0, ar - last, np.iinfo(np.int64).max)


def _first_true(mask: np.ndarray | None, start: int) -> int:
    """The first index at or after ``start`` where ``mask`` holds, -1 if none (or None)."""
    if mask is None:
        return -1
    hit = np.flatnonzero(mask[start:])
    return start + int(hit[0]) if hit.size else -1


def _sample_and_hold(out: np.ndarray, x: np.ndarray, blanked: np.ndarray | bool,
                     hold: float) -> float:
    """``out[:, 0]`` = ``x`` (n,) with every blanked sample replaced by the last clean one
    before it (``hold`` when none is in the block; ``blanked`` True: all of them). Returns
    the value to hold into the next block."""
    if blanked is True:
        out.fill(hold)
    else:
        n = x.shape[0]
        # index of the last clean sample at or before each sample (-1: none in the block)
        last = np.where(blanked, -1, np.arange(n))
        np.maximum.accumulate(last, out=last)
        out[:, 0] = np.where(last >= 0, x[np.maximum(last, 0)], hold)
    return float(out[-1, 0])


class RippleDetector:
    """Causal ripple detector: ``process(chunk) -> list[Event]``.

    Parameters
    ----------
    settings : RippleSettings

    Notes
    -----
    Emits ``Event(kind="ripple")`` with ``onset_s`` the first supra-threshold sample of the
    run, ``detect_s`` the sample where the rule was met, ``amplitude`` the envelope (volts),
    ``score`` the envelope in robust SDs above the median, ``threshold`` in volts. An event
    the sharp-wave rule fired names ``sharp_wave_channel`` as its ``channel`` and its onset
    is where the sharp wave crossed its threshold (amplitude, score and threshold are still
    the detection channel's envelope). Once, when calibration ends, emits
    ``Event(kind="calibration_done", channel="ripple")``.
    """

    KIND = "ripple"
    #: what :attr:`passed_over` counts, as the run summary words it after the count
    PASS_NOUN = ""
    PASS_REASONS = {
        "theta_gate": "candidate ripples passed over by the theta gate (theta/delta above "
                      "theta_delta_max)",
        "reference_veto": "candidate ripples passed over by the reference-channel veto "
                          "(veto_sd)",
        "artefact_blank": "artefact stretches blanked (envelope beyond artefact_sd SDs; "
                          "no ripple under them)",
    }

    def __init__(self, settings: RippleSettings | None = None) -> None:
        self.settings = settings or RippleSettings()
        s = self.settings
        self._picker = ChannelPicker(tuple(s.channels) + tuple(s.reference_channels),
                                     "detectors.ripple")
        self._n_in = len(s.channels)
        self._pool = None
        if s.pool_weights:
            w = np.asarray(s.pool_weights, dtype=np.float64)
            self._pool = np.ascontiguousarray(w / np.sum(np.abs(w)))
        self._nd = 1 if self._pool is not None else len(s.channels)
        self._fs = 0.0
        self._cap = 0
        #: artefact windows [start, end) in seconds and whether the loop reported them
        #: (blank(): True) or the detector found them itself (artefact_sd: False)
        self._blanks: list[tuple[float, float, bool]] = []
        #: restart() was called: the next chunk primes the filters
        self._restart = False
        self.passed_over = dict.fromkeys(self.PASS_REASONS, 0)
        self._hot = False            # this chunk had a run of min_duration_s (_tally)
        self._run_open = False       # a candidate run goes on at the end of the last chunk
        self._run_why = ""           # the gate that held a sample of it back ("": none)
        self._run_counted = True     # it fired, or began in the refractory time
        self._last_why = ""          # the latest candidate's gate if it was passed over
        self._rearm_after = -math.inf   # the last event's detect time + refractory_s
        self._t_last = -math.inf     # the last chunk's last timestamp

    # ----------------------------------------------------------------- setup
    def _setup(self, fs: float) -> None:
        s = self.settings
        k = self._nd + len(s.reference_channels)
        self._fs = fs
        if s.band_hz[1] >= fs / 2:
            raise ValueError(f"detectors.ripple.band_hz: {s.band_hz[1]} Hz is at or above "
                             f"Nyquist of a {fs} Hz source")
        win = max(1, int(round(s.rms_window_s * fs)))
        # an envelope sample holds the last `win` samples: after a blank it is clean only
        # once its window has left the artefact
        self._env_tail_s = win / fs
        self._band = BandEnvelope(butter_bandpass(*s.band_hz, fs, order=s.filter_order), k, win)
        self._base = RobustBaseline(k, fs, history_s=s.baseline_s, step_s=s.baseline_step_s,
                                    update_s=s.baseline_update_s, exclude_sd=s.exclude_sd)
        self._base_state = self._base.kernel_state()
        self._min_n = max(1, int(round(s.min_duration_s * fs)) + 1)
        # onsets up to 2 s before a chunk; _alloc adds the longest chunk seen
        self._times_history = int(fs * 2.0)
        self._times = TimeRing(self._times_history)
        self._theta = self._delta = None
        # one detection signal (a channel or the pooled one) and no veto: the common chunk's
        # scan needs no NumPy (_scan_simple)
        self._simple = (self._nd == 1 and s.consensus_channels == 1
                        and not s.reference_channels and not s.sharp_wave_channel)
        # theta gate: power ratio (theta/delta)^2 <= max  <=>  theta <= sqrt(max) * delta
        self._gate_k = math.sqrt(s.theta_delta_max)
        self._gate_col = -1
        self._cols_for: tuple[str, ...] | None = None
        self._weights = self._pool if self._pool is not None else _NO_WEIGHTS
        if s.theta_gate:
            name = s.theta_channel or s.channels[0]
            self._gate_name = name
            self._gate_channels: tuple[str, ...] | None = None
            gwin = max(1, int(round(s.theta_window_s * fs)))
            self._theta = BandEnvelope(butter_bandpass(*s.theta_band_hz, fs), 1, gwin)
            self._delta = BandEnvelope(butter_bandpass(*s.delta_band_hz, fs), 1, gwin)
        self._carry = np.zeros(self._nd + len(s.reference_channels), dtype=np.int64)
        self._hold = np.zeros(1)    # last clean sample of the gate channel (volts)
        self._sw_on = bool(s.sharp_wave_channel)
        if self._sw_on:
            if s.sharp_wave_band_hz[1] >= fs / 2:
                raise ValueError(f"detectors.ripple.sharp_wave_band_hz: {s.sharp_wave_band_hz[1]} "
                                 f"Hz is at or above Nyquist of a {fs} Hz source")
            # pick_rms with one weight picks the channel, signs it (the sharp wave comes out
            # positive) and band-passes it in one C call; its RMS (window 1) goes unused
            self._sw_filter = BandEnvelope(butter_bandpass(*s.sharp_wave_band_hz, fs, order=1),
                                           1, 1)
            self._sw_weight = np.array([-1.0 if s.sharp_wave_polarity == "negative" else 1.0])
            # the three baselines recompute at different samples (update_phase), so their
            # median/MAD updates never land on the same chunk
            self._sw_base = RobustBaseline(1, fs, history_s=s.baseline_s,
                                           step_s=s.baseline_step_s,
                                           update_s=s.baseline_update_s,
                                           exclude_sd=s.exclude_sd, update_phase=1 / 3)
            # the confirmation envelope: moving RMS of the detection channel's band-passed
            # signal (column 0 of the band filter's output), picked in the same C call
            self._fast = MovingRms(1, max(1, int(round(s.sharp_wave_ripple_window_s * fs))))
            self._col0 = np.zeros(1, dtype=np.int64)
            self._fast_base = RobustBaseline(1, fs, history_s=s.baseline_s,
                                             step_s=s.baseline_step_s,
                                             update_s=s.baseline_update_s,
                                             exclude_sd=s.exclude_sd, update_phase=2 / 3)
            self._sw_carry = np.zeros(1, dtype=np.int64)
            self._fast_carry = np.zeros(1, dtype=np.int64)
            self._sw_hold = 0.0     # last clean sample of the sharp-wave channel (volts)
        self._alloc(64)
        self._reset_state()

    def _alloc(self, n: int) -> None:
        k = self._nd + len(self.settings.reference_channels)
        self._cap = n
        self._views_n = -1
        self._plan = None            # the RipplePlan binds these buffers: built anew
        # a chunk of n samples must not overwrite the onsets before it (a 2 s block at
        # --speed max is as long as the 2 s history: onsets came out as the block's start,
        # or after the detection)
        self._times.grow(self._times_history + n)
        # the plan's work array: five (n, k) blocks (band-passed, envelope, median, SD,
        # threshold) then three (n, 1) (gate scratch, theta and delta envelopes), each
        # C-contiguous: one buffer for C instead of eight (~0.1 us each here)
        self._work = np.empty(n * (5 * k + 3))
        self._filt, self._env, self._med, self._sd, self._thr = (
            self._work[b * n * k:(b + 1) * n * k].reshape(n, k) for b in range(5))
        g0 = 5 * n * k
        self._gf, self._ge1, self._ge2 = (
            self._work[g0 + g * n:g0 + (g + 1) * n].reshape(n, 1) for g in range(3))
        self._tmp = np.empty((n, self._nd))
        self._hi = np.empty((n, self._nd), dtype=bool)
        self._runs = np.empty((n, k), dtype=np.int64)
        self._feat = np.empty((n, k))   # the envelope as the baseline sees it (_unblanked)
        self._gbuf = np.empty((n, 1))
        if self._sw_on:
            # sharp-wave channel (signed so the sharp wave is positive), its band-passed
            # signal, statistics, threshold and runs; the confirmation envelope and its stats
            self._swf, self._swrms = np.empty((n, 1)), np.empty((n, 1))
            self._swg = np.empty((n, 1))
            self._swmed, self._swsd = np.empty((n, 1)), np.empty((n, 1))
            self._swthr = np.empty((n, 1))
            self._swruns = np.empty((n, 1), dtype=np.int64)
            self._fcol, self._fenv = np.empty((n, 1)), np.empty((n, 1))
            self._fmed, self._fsd = np.empty((n, 1)), np.empty((n, 1))
            self._fthr = np.empty((n, 1))
            self._fruns = np.empty((n, 1), dtype=np.int64)

    def _reset_state(self) -> None:
        self._armed = True
        self._rearm_t = -np.inf
        self._t0 = np.nan
        self._calibrating = True
        self._carry.fill(0)
        if self._sw_on:
            self._sw_carry.fill(0)
            self._fast_carry.fill(0)

    def reset(self) -> None:
        """Forget all state; the next chunk starts a new calibration."""
        self._fs = 0.0
        self._blanks = []
        self._restart = False

    def restart(self) -> None:
        """Forget the signal but keep the calibration: after samples the detector must
        not see (non-finite, an electrode pop), the next chunk starts the band-pass,
        theta/delta and sharp-wave filters in steady state at its first sample, empties
        the envelope windows and runs, and re-arms; the baseline statistics and the
        calibration carry on, so detection resumes within the envelope's window."""
        self._restart = self._fs != 0.0
        self._blanks = []

    def _restart_from(self, samples: np.ndarray) -> None:
        """Prime every filter from the first row of ``samples`` (n, all channels)."""
        self._restart = False
        s = self.settings
        x0 = samples[0]
        cols = self._cols
        if self._pool is not None:
            pooled = float(self._pool @ x0[cols[:self._n_in]])
            first = np.concatenate([[pooled], x0[cols[self._n_in:]]])
        else:
            first = x0[cols]
        # filter states only: the RMS windows keep their (finite) samples from before
        # the pause, so the envelopes and the theta gate carry on instead of refilling
        SosFilter.reset(self._band, first)
        if s.theta_gate:
            g = np.array([x0[self._gate_col]])
            SosFilter.reset(self._theta, g)
            SosFilter.reset(self._delta, g)
            self._hold[0] = g[0]
        if self._sw_on:
            sw = np.array([self._sw_weight[0] * x0[self._sw_cols[0]]])
            SosFilter.reset(self._sw_filter, sw)
            self._sw_hold = float(sw[0])
            self._sw_carry.fill(0)
            self._fast_carry.fill(0)
        self._carry.fill(0)
        self._armed = True
        self._rearm_t = -np.inf

    def blank(self, start_s: float, stop_s: float) -> None:
        """Mark ``[start_s, stop_s + artefact_blank_s)`` (seconds, the chunks' time base) as
        stimulation artefact: the theta gate (and the sharp-wave channel) hold their last
        clean value through it, and no ripple is detected until the envelope's RMS window
        has left it too (``rms_window_s`` later; an envelope that still holds the artefact
        would fire right after the blank).

        Those samples (and that RMS window) also stay out of the running baseline: an
        envelope holding the artefact, or missing the samples under it, would otherwise
        shift the threshold for the next ``baseline_s`` (a 400 uV light step raised it by
        up to 1.3 % on the simulator, enough to delay or lose the weakest ripples).

        The loop calls this for every pulse a stimulator delivered; windows that end before
        data already processed are ignored, overlapping ones simply both apply.
        """
        self._add_blank(start_s, stop_s, True)

    def _add_blank(self, start_s: float, stop_s: float, reported: bool) -> None:
        end = float(stop_s) + self.settings.artefact_blank_s
        if not end > float(start_s):
            return
        if not reported and not any(not r and a <= start_s <= b for a, b, r in self._blanks):
            # a new artefact stretch (one that goes on into the next chunk extends the
            # window it began)
            self.passed_over["artefact_blank"] += 1
        if len(self._blanks) >= 64:       # bounded: the oldest window is long past
            self._blanks.pop(0)
        self._blanks.append((float(start_s), end, reported))

    def _blank_artefact(self, t: np.ndarray, art: np.ndarray) -> None:
        """Blank each stretch of this chunk where ``art`` (n, c) holds on any column, from
        its first to its last sample (:meth:`blank` adds ``artefact_blank_s``)."""
        a = art.any(axis=1)
        if not a.any():
            return
        edges = np.diff(a.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
        for i, j in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            self._add_blank(float(t[i]), float(t[j - 1]), False)

    def _blank_mask(self, t: np.ndarray, tail_s: float,
                    reported_only: bool = False) -> np.ndarray | bool | None:
        """Samples of this chunk inside a blanking window extended by ``tail_s`` seconds
        (``reported_only``: only the windows :meth:`blank` reported): None when none is,
        True when one window covers the whole chunk (most chunks of a window: no mask
        needed), else a boolean mask."""
        t_first, t_last = float(t[0]), float(t[-1])
        for a, b, reported in self._blanks:
            if a <= t_first and t_last < b + tail_s and (reported or not reported_only):
                return True
        mask = None
        for a, b, reported in self._blanks:
            if reported_only and not reported:
                continue
            if a <= t_last and b + tail_s > t_first:
                m = (t >= a) & (t < b + tail_s)
                mask = m if mask is None else (mask | m)
        return mask

    def _unblanked(self, feature: np.ndarray, t: np.ndarray, buf: np.ndarray) -> np.ndarray:
        """``feature`` (n, c) for a baseline: NaN (never kept, never above threshold) on the
        samples a reported stimulation window covers, up to the envelope window after it,
        in ``buf``; ``feature`` itself when there is none. Only reported windows: they are
        known before the chunk, so the baseline does not depend on chunking (an artefact
        the detector finds itself is far above the exclusion level anyway)."""
        if not self._blanks:
            return feature
        mask = self._blank_mask(t, self._env_tail_s, reported_only=True)
        if mask is None:
            return feature
        out = buf[:feature.shape[0], :feature.shape[1]]
        if mask is True:
            out.fill(np.nan)
        else:
            np.copyto(out, feature)
            out[mask] = np.nan
        return out

    @property
    def calibrating(self) -> bool:
        """True until the baseline exists and ``calibration_s`` has passed."""
        return self._fs == 0.0 or self._calibrating

    @property
    def threshold(self) -> np.ndarray:
        """Current threshold per detection channel (volts; NaN while calibrating)."""
        if self._fs == 0.0:
            return np.full(self._nd, np.nan)
        b = self._base
        return (b.median + self.settings.threshold_sd * b.sd)[:self._nd]

    @property
    def status_note(self) -> str:
        """The live view's line while the latest candidate was passed over by a gate or
        an artefact blank is on, else ""."""
        parts = []
        if self._last_why:
            gate = ("theta gate closed" if self._last_why == "theta_gate"
                    else "reference-channel veto")
            parts.append(f"{gate}: {self.passed_over[self._last_why]} candidates passed "
                         f"over in all")
        if self._blanks and self._fs and any(not r and b > self._t_last
                                             for _, b, r in self._blanks):
            parts.append(f"artefact blank ({self.passed_over['artefact_blank']} stretches "
                         f"in all)")
        return "ripple " + "; ".join(parts) if parts else ""

    # --------------------------------------------------------------- process
    def process(self, chunk: Chunk) -> list[Event]:
        """Detect ripples in one chunk; then count what the gates passed over
        (:meth:`_tally`, only on a chunk with a candidate run or after one).

        Parameters
        ----------
        chunk : Chunk
            Must contain every configured channel (volts or any consistent unit).

        Returns
        -------
        list of Event
            Ripples whose detection sample lies in this chunk, in time order.
        """
        self._hot = False
        events = self._detect(chunk)
        if self._hot or self._run_open:
            self._tally(chunk.timestamps, events)
        for e in events:
            if e.kind == self.KIND:
                self._rearm_after = e.detect_s + self.settings.refractory_s
        if chunk.n_samples:
            self._t_last = float(chunk.timestamps[-1])
        return events

    def _tally(self, t: np.ndarray, events: list[Event]) -> None:
        """Count the candidates (runs of the envelope rule of ``min_duration_s``, begun
        after the refractory time) that ended without firing because a gate held them."""
        s, nd, n = self.settings, self._nd, t.shape[0]
        if self._calibrating:
            return
        runs = self._runs[:n, :nd]
        if nd == 1:
            raw = (runs[:, 0] >= self._min_n).tolist()
        else:
            raw = (np.count_nonzero(runs >= self._min_n, axis=1)
                   >= s.consensus_channels).tolist()
        closed = vetoed = None
        if s.theta_gate:
            closed = (~(self._ge1[:n, 0] <= self._gate_k * self._ge2[:n, 0])).tolist()
        if s.reference_channels:
            env, med, sd = self._env[:n, nd:], self._med[:n, nd:], self._sd[:n, nd:]
            vetoed = (env > med + s.veto_sd * sd).any(axis=1).tolist()
        fired = {float(e.detect_s) for e in events if e.kind == self.KIND}
        tl = t.tolist()
        for i in range(n):
            if raw[i]:
                if not self._run_open:
                    self._run_open, self._run_why = True, ""
                    self._run_counted = tl[i] < self._rearm_after
                if tl[i] in fired:
                    self._run_counted, self._last_why = True, ""
                elif not self._run_why:
                    if closed is not None and closed[i]:
                        self._run_why = "theta_gate"
                    elif vetoed is not None and vetoed[i]:
                        self._run_why = "reference_veto"
            elif self._run_open:
                self._end_run()

    def _end_run(self) -> None:
        self._run_open = False
        if not self._run_counted and self._run_why:
            self.passed_over[self._run_why] += 1
            self._last_why = self._run_why

    def _detect(self, chunk: Chunk) -> list[Event]:
        """Detect ripples in one chunk.

        Parameters
        ----------
        chunk : Chunk
            Must contain every configured channel (volts or any consistent unit).

        Returns
        -------
        list of Event
            Ripples whose detection sample lies in this chunk, in time order.
        """
        n = chunk.n_samples
        if n == 0:
            return []
        if chunk.rate_hz != self._fs:
            self._setup(float(chunk.rate_hz))
        if n > self._cap:
            self._alloc(max(n, 2 * self._cap))
        s = self.settings
        # the C kernels read float64 seconds in one block; sources deliver that (no copy),
        # a Chunk built by hand may hold float32 or a strided view
        t = np.ascontiguousarray(chunk.timestamps, dtype=np.float64)
        first = self._base.index
        if first == 0:
            self._t0 = float(t[0])
        if chunk.channels is not self._cols_for and chunk.channels != self._cols_for:
            self._bind(chunk.channels)
        if s.theta_gate and (chunk.channels is not self._gate_channels
                             and chunk.channels != self._gate_channels):
            # (a source may hand over an equal, new tuple each chunk: no re-binding then,
            # which would rebuild the plan)
            self._bind_gate(chunk.channels)
        if self._restart:
            self._restart_from(chunk.samples)
        nd = self._nd
        filt, env, med, sd, thr, runs_all, gf, th, de = self._views(n)
        base = self._base
        gate = None
        if not self._blanks and not self._sw_on and base.claim_block(n):
            # the common chunk (no baseline update point, no blanking, no sharp-wave assist):
            # time ring, pick, band-pass and envelope, baseline, threshold runs, artefact
            # test and the theta gate in one C call
            times = self._times
            plan = self._plan if self._plan is not None else self._make_plan()
            longest, art = plan.run(chunk.samples, first, t, times.index)
            times.index += n
            if art:
                # an artefact (far above any threshold): blanked as a stimulation artefact
                # is; the gate was left for the blanked path below
                self._blank_artefact(t, env[:, :nd] > med[:, :nd] + s.artefact_sd * sd[:, :nd])
            elif self._simple and not self._calibrating:
                # one detection signal, no veto: the rest is the scan (C calls, no NumPy)
                self._hot = longest >= self._min_n
                return self._scan_simple(t, env, med, sd, thr, runs_all, th, de, first,
                                         longest)
            elif s.theta_gate:
                gate = (th, de)
        else:
            self._times.write(t)
            # one C call: pick the channels (with pool weights: their weighted mean in
            # column 0, reference channels after it), band-pass them and take the moving RMS
            self._band.pick_rms(chunk.samples, self._cols, self._weights, filt, env)
            # baseline statistics in force per sample, threshold = median + threshold_sd *
            # SD, and per channel the length of the run of samples above it ending at each
            # sample (NaN thresholds compare False): one C call without a baseline update
            longest = base.process_runs(self._unblanked(env, t, self._feat), med, sd,
                                        s.threshold_sd, self._carry, runs_all, thr)
            if longest > 0:
                # an artefact (far above any threshold, so only with a run) is blanked as a
                # stimulation artefact is
                self._blank_artefact(t, env[:, :nd] > med[:, :nd] + s.artefact_sd * sd[:, :nd])
        runs = runs_all[:, :nd]
        # blanking: the artefact's own samples (inputs held through them) and, for the
        # envelope rule, also the RMS window after them, whose envelope still holds them
        blanked = env_blanked = None
        if self._blanks:
            self._blanks = [w for w in self._blanks if w[1] + self._env_tail_s > float(t[0])]
            blanked = self._blank_mask(t, 0.0)
            env_blanked = self._blank_mask(t, self._env_tail_s)
        if s.theta_gate and gate is None:
            gate = self._theta_update(chunk, n, blanked)
        if env_blanked is True:
            # the whole chunk is artefact: every run starts again after it
            runs_all.fill(0)
            self._carry.fill(0)
            longest = 0
        elif env_blanked is not None:
            # a run that crosses a blanked sample starts again after it
            np.minimum(runs_all, _since(env_blanked)[:, None], out=runs_all)
            self._carry[:] = runs_all[n - 1]
            longest = int(runs_all.max())
        self._hot = longest >= self._min_n
        if longest < self._min_n:
            # no run reaches the minimum duration in this chunk: the envelope rule cannot fire
            cand = None
        elif nd == 1 and s.consensus_channels == 1:
            cand = runs[:, 0] >= self._min_n
        else:
            cand = np.count_nonzero(runs >= self._min_n, axis=1) >= s.consensus_channels
        swc = self._sharp_wave(chunk, t, blanked) if self._sw_on else None
        if cand is not None or swc is not None:
            ok = self._allowed(env, med, sd, gate, n)
            if ok is not None:
                if cand is not None:
                    cand &= ok
                if swc is not None:
                    swc &= ok
        events: list[Event] = []
        if self._calibrating:
            ev = self._check_calibration(t, first, med, sd)
            if ev is None:
                return events
            events.append(ev)
            if cand is not None:
                cand[:self._cal_local] = False
            if swc is not None:
                swc[:self._cal_local] = False
        if self._armed and (cand is None or not cand.any()) and (swc is None or not swc.any()):
            return events
        if not self._armed and t[-1] < self._rearm_t:
            return events        # still refractory for the whole chunk: nothing can change
        hi = None
        if nd > 1 or self._sw_on:
            # re-arm level (hysteresis): any detection channel above median + rearm_sd SD,
            # or the sharp wave still above its threshold
            rearm = self._tmp[:n]
            np.multiply(sd[:, :nd], s.rearm_sd, out=rearm)
            rearm += med[:, :nd]
            np.greater_equal(env[:, :nd], rearm, out=self._hi[:n])
            hi = self._hi[:n].any(axis=1)
            if self._sw_on:
                hi |= self._swruns[:n, 0] > 0
        self._scan(cand, swc, hi, t, env, med, sd, thr, runs, first, events)
        return events

    def _allowed(self, env: np.ndarray, med: np.ndarray, sd: np.ndarray,
                 gate: tuple[np.ndarray, np.ndarray] | None, n: int) -> np.ndarray | None:
        """Samples where neither the reference-channel veto nor the theta gate holds an
        event back (None: no such rule is configured)."""
        s, nd = self.settings, self._nd
        ok = None
        if s.reference_channels:
            ok = ~(env[:, nd:] > med[:, nd:] + s.veto_sd * sd[:, nd:]).any(axis=1)
        if gate is not None:
            th, de = gate
            # power ratio (theta/delta)^2 <= max  <=>  theta <= sqrt(max) * delta
            g = th[:, 0] <= math.sqrt(s.theta_delta_max) * de[:, 0]
            ok = g if ok is None else (ok & g)
        return ok

    def _sharp_wave(self, chunk: Chunk, t: np.ndarray,
                    blanked: np.ndarray | bool | None) -> np.ndarray | None:
        """The sharp-wave rule per sample (None when it holds nowhere in the chunk): the
        band-passed sharp-wave channel, signed so the sharp wave is positive, above
        ``sharp_wave_sd`` robust SDs, and the short-window ripple envelope of the detection
        channel above ``sharp_wave_ripple_sd``. Keeps both baselines and the sharp wave's
        run lengths (its onset) current every chunk."""
        s, n = self.settings, t.shape[0]
        f = self._swf[:n]
        col = int(self._sw_cols[0])
        if blanked is None:
            # the common case: pick, sign and band-pass the channel in one C call
            self._sw_filter.pick_rms(chunk.samples, self._sw_cols, self._sw_weight, f,
                                     self._swrms[:n])
            self._sw_hold = float(chunk.samples[n - 1, col])
        else:
            # a stimulation artefact rings through the 5-40 Hz filter for tens of ms, past
            # the blank: hold the channel's last clean value through it, as the theta gate
            # does, and sign it here
            g = self._swg[:n]
            self._sw_hold = _sample_and_hold(g, chunk.samples[:, col], blanked, self._sw_hold)
            g *= self._sw_weight[0]
            self._sw_filter.process_rms(g, f, self._swrms[:n])
        runs = self._swruns[:n]
        longest = self._sw_base.process_runs(f, self._swmed[:n], self._swsd[:n],
                                             s.sharp_wave_sd, self._sw_carry, runs,
                                             self._swthr[:n])
        # confirmation: runs of the short envelope above median + sharp_wave_ripple_sd SD
        fe = self._fenv[:n]
        self._fast.pick_rms(self._filt[:n], self._col0, _NO_WEIGHTS, self._fcol[:n], fe)
        fruns = self._fruns[:n]
        self._fast_base.process_runs(fe, self._fmed[:n], self._fsd[:n], s.sharp_wave_ripple_sd,
                                     self._fast_carry, fruns, self._fthr[:n])
        if blanked is True:
            runs.fill(0)
            self._sw_carry.fill(0)
            return None
        if longest == 0:
            return None
        # an artefact on the sharp-wave channel: blanked from the next chunk on (this one's
        # masks are made), and in this chunk nothing from its first sample on
        art = f[:, 0] > self._swmed[:n, 0] + s.artefact_sd * self._swsd[:n, 0]
        if art.any():
            self._blank_artefact(t, art[:, None])
            runs[int(np.argmax(art)):] = 0
            self._sw_carry[0] = 0
        if blanked is not None:
            np.minimum(runs[:, 0], _since(blanked), out=runs[:, 0])
            self._sw_carry[0] = runs[n - 1, 0]
        ok = runs[:, 0] > 0
        ok &= fruns[:, 0] > 0
        return ok if ok.any() else None

    def _bind(self, channels: tuple[str, ...]) -> None:
        """Column indices of the detection (and reference, sharp-wave) channels in
        ``channels``."""
        self._cols = np.ascontiguousarray(self._picker.bind(channels), dtype=np.int64)
        if self._sw_on:
            name = self.settings.sharp_wave_channel
            if name not in channels:
                raise ValueError(f"detectors.ripple.sharp_wave_channel: {name!r} not in the "
                                 f"source's channels {list(channels)}; set it to the "
                                 f"stratum radiatum channel's name or to \"\" (off)")
            self._sw_cols = np.array([channels.index(name)], dtype=np.int64)
        self._cols_for = channels
        self._plan = None            # the plan holds the columns

    def _bind_gate(self, channels: tuple[str, ...]) -> None:
        """Column of the theta-gate channel in ``channels``."""
        self._gate_channels = channels
        self._gate_col = channels.index(self._gate_name)
        self._gate_cols = np.array([self._gate_col], dtype=np.int64)
        self._plan = None            # the plan holds the column

    def _views(self, n: int) -> tuple[np.ndarray, ...]:
        """The work buffers' first ``n`` rows (filtered, envelope, median, SD, threshold,
        runs, gate scratch, theta and delta envelopes), kept for the last chunk size: a
        chunk stream has one size, and nine slices cost more than the C call they feed."""
        if n != self._views_n:
            self._views_n = n
            self._views_t = (self._filt[:n], self._env[:n], self._med[:n], self._sd[:n],
                             self._thr[:n], self._runs[:n], self._gf[:n], self._ge1[:n],
                             self._ge2[:n])
        return self._views_t

    def _make_plan(self) -> RipplePlan:
        """Bind the common chunk's C kernel to this setup's banks, columns and buffers
        (checked once; built again after a new rate, channel list or larger buffers)."""
        s = self.settings
        self._plan = RipplePlan(
            self._times.values, self._cols, self._weights, self._band, self._work,
            self._runs, *self._base.kernel_state(), s.threshold_sd, self._carry, self._nd,
            s.artefact_sd, self._gate_col if s.theta_gate else -1, self._theta, self._delta,
            self._hold)
        return self._plan

    def _theta_update(self, chunk: Chunk, n: int,
                      blanked: np.ndarray | bool | None) -> tuple[np.ndarray, np.ndarray]:
        """Theta and delta RMS of the gate channel, shape (n, 1) each; blanked samples are
        replaced by the last clean one (sample and hold)."""
        if chunk.channels is not self._gate_channels and chunk.channels != self._gate_channels:
            self._bind_gate(chunk.channels)
        th, de = self._ge1[:n], self._ge2[:n]
        if blanked is None:
            # each band picks the gate column itself (one C call each)
            self._theta.pick_rms(chunk.samples, self._gate_cols, _NO_WEIGHTS, self._gf[:n], th)
            self._delta.pick_rms(chunk.samples, self._gate_cols, _NO_WEIGHTS, self._gf[:n], de)
            self._hold[0] = chunk.samples[n - 1, self._gate_col]
            return th, de
        g = self._gbuf[:n]
        self._hold[0] = _sample_and_hold(g, chunk.samples[:, self._gate_col], blanked,
                                         float(self._hold[0]))
        gf = self._gf[:n]
        self._theta.process_rms(g, gf, th)       # C call (BandEnvelope.process_envelope
        self._delta.process_rms(g, gf, de)       # without the wrapper)
        return th, de

    def _check_calibration(self, t: np.ndarray, first: int, med: np.ndarray,
                           sd: np.ndarray) -> Event | None:
        b = self._base
        if not b.ready:
            return None
        t_end = self._t0 + self.settings.calibration_s
        j = first_at_or_after(t, t_end, max(0, b.ready_index - first))
        if j < 0:
            return None
        self._calibrating = False
        self._cal_local = j
        thr = med[j, 0] + self.settings.threshold_sd * sd[j, 0]
        return Event(kind="calibration_done", channel=self.KIND, onset_s=self._t0,
                     detect_s=float(t[j]), amplitude=float(med[j, 0]),
                     score=float(sd[j, 0]), threshold=float(thr))

    def _scan(self, cand: np.ndarray | None, swc: np.ndarray | None,
              any_above: np.ndarray | None, t: np.ndarray, env: np.ndarray, med: np.ndarray,
              sd: np.ndarray, thr: np.ndarray, runs: np.ndarray, first: int,
              events: list[Event]) -> None:
        """Re-arm (hysteresis) once refractory and no detection channel is above median +
        rearm_sd SD nor the sharp wave above its threshold (``any_above``; None = one
        detection channel and no sharp-wave assist: :meth:`_scan_one`), then fire on the
        first candidate of the envelope rule (``cand``) or the sharp-wave rule (``swc``).
        Plain Python over the chunk's few samples instead of a dozen NumPy calls."""
        s, nd = self.settings, self._nd
        if any_above is None:
            self._scan_one(lambda i: _first_true(cand, i), t, env, med, sd, thr, runs, first,
                           events)
            return
        c = cand.tolist() if cand is not None else None
        w = swc.tolist() if swc is not None else None
        tl = t.tolist()
        above = any_above.tolist()
        armed, rearm_t = self._armed, self._rearm_t
        for i in range(len(tl)):
            if not armed:
                if tl[i] >= rearm_t and not above[i]:
                    armed = True       # the re-arming sample itself cannot fire
                continue
            if c is not None and c[i]:
                # the strongest channel among those whose run is long enough
                sc = (env[i, :nd] - med[i, :nd]) / sd[i, :nd]
                sc = np.where(runs[i] >= self._min_n, sc, -np.inf)
                ch, run = int(np.argmax(sc)), int(runs[i].max())
                self._fire(ch, i, run, float(sc[ch]), env, thr, first, t, events)
            elif w is not None and w[i]:
                # the sharp wave fired it: onset where the sharp wave crossed its threshold
                score = float((env[i, 0] - med[i, 0]) / sd[i, 0])
                self._fire(0, i, int(self._swruns[i, 0]), score, env, thr, first, t, events,
                           channel=s.sharp_wave_channel)
            else:
                continue
            armed = False
            rearm_t = tl[i] + s.refractory_s
        self._armed, self._rearm_t = armed, rearm_t

    def _scan_simple(self, t: np.ndarray, env: np.ndarray, med: np.ndarray, sd: np.ndarray,
                     thr: np.ndarray, runs: np.ndarray, th: np.ndarray, de: np.ndarray,
                     first: int, longest: int) -> list[Event]:
        """:meth:`_scan_one` for the common chunk of a detector with one detection signal
        and no reference veto, after the plan's run: the re-arm point and the first
        candidate (run long enough, theta gate open) are each one C call, and a quiet chunk
        returns before any. Rare paths such as this one run cold -- their NumPy calls
        cost 10-30 us each on this VM instead of ~1 us -- so the chunk that fires (or
        re-arms) must not depend on them."""
        events: list[Event] = []
        armed = self._armed
        if armed:
            if longest < self._min_n:
                return events
        elif t[-1] < self._rearm_t:
            return events        # still refractory for the whole chunk
        s = self.settings
        gate_th, gate_de = (th, de) if s.theta_gate else (None, None)
        min_n, gate_k = self._min_n, self._gate_k
        self._scan_one(lambda i: ripple_candidate(runs, gate_th, gate_de, min_n, gate_k, i),
                       t, env, med, sd, thr, runs, first, events)
        return events

    def _scan_one(self, find: Callable[[int], int], t: np.ndarray, env: np.ndarray,
                  med: np.ndarray, sd: np.ndarray, thr: np.ndarray, runs: np.ndarray,
                  first: int, events: list[Event]) -> None:
        """:meth:`_scan` for one detection channel (or a pooled one): ``find(i)`` is the
        first candidate row at or after ``i`` (-1: none); the re-arm point is one C call
        (``rearm_index``), so the chunks that follow a ripple while its envelope stays up
        (~6 % of chunks in the ripple trial) cost no Python loop."""
        s = self.settings
        n = t.shape[0]
        armed, rearm_t = self._armed, self._rearm_t
        i = 0
        while i < n:
            if not armed:
                j = rearm_index(t, env, med, sd, s.rearm_sd, rearm_t, i)
                if j < 0:
                    break
                armed = True           # the re-arming sample itself cannot fire
                i = j + 1
                continue
            j = find(i)
            if j < 0:
                break
            score = float((env[j, 0] - med[j, 0]) / sd[j, 0])
            self._fire(0, j, int(runs[j, 0]), score, env, thr, first, t, events)
            armed = False
            rearm_t = float(t[j]) + s.refractory_s
            i = j + 1
        self._armed, self._rearm_t = armed, rearm_t

    def _fire(self, ch: int, i: int, run: int, score: float, env: np.ndarray,
              thr: np.ndarray, first: int, t: np.ndarray, events: list[Event],
              channel: str = "") -> None:
        """Append the ripple detected at row ``i`` on channel ``ch`` (its run of ``run``
        samples above threshold gives the onset, from the time ring when it began in an
        earlier chunk); ``channel`` names the sharp-wave channel when that rule fired."""
        onset_idx = first + i - run + 1
        onset_s = (float(t[onset_idx - first]) if onset_idx >= first
                   else self._times.at(onset_idx))
        events.append(Event(kind=self.KIND, channel=channel or self.settings.channels[ch],
                            onset_s=onset_s, detect_s=float(t[i]), amplitude=float(env[i, ch]),
                            score=score, threshold=float(thr[i, ch])))
