"""Online slow-oscillation down-state detector with up-state prediction.

The EEG is band-passed (0.2-1.5 Hz by default) causally; when it falls below the negative
threshold a down state has begun; its trough is the minimum before the signal comes back up
through the threshold. At that up-crossing the detector emits ``Event(kind="so")`` with
``peak_s`` = trough time and ``predicted_s`` = the predicted time of the next up-state
peak, either

* ``"fixed"``: trough + ``fixed_delay_s`` (Ngo et al. 2013, Neuron 78:545: -80 uV
  threshold, first click at the up state predicted ~0.5 s after the negative peak), or
* ``"echt"``: detection time + ECHT ``time_to_phase(target_deg)`` computed from the raw
  channel at the detection sample (see :mod:`decoders.phase`), or
* ``"halfwave"`` (default): this cycle's own frequency from its down half-wave. Near the
  trough the wave is ``-A cos(w (t - t_trough))``; it crosses the threshold ``-L`` at
  ``t_trough -+ arccos(L/A) / w``, so the midpoint of the down- and up-crossings is the
  trough and their distance gives ``w``. The phase is extrapolated from the trough
  (180 deg) at that frequency, after adding back the causal band-pass's phase shift at
  that frequency. This needs no history, so it follows slow oscillations whose period
  changes from cycle to cycle; the ECHT (a multi-cycle window) assumes the rhythm keeps
  its frequency.

Down states count only during slow-wave sleep (``sws_gate_ratio`` > 0, default 2.5): the
0.5-2 Hz / 4-30 Hz power ratio over the last 10 s must reach the setting. On the simulator
its 5th percentile in N3 is ~13 and its 95th percentile in REM and wake ~6-7, where eye
movements otherwise pass for down states (8 separates them there); the real N3 excerpt in
shared/data sits near 4. The default is low enough for that excerpt and high enough to drop
the lighter-sleep stretches of the DREAMS excerpts (C3-A1), whose dips are not followed by
a predictable up state: with ``predict_min_hz`` it takes the pooled trigger SD there from
43 to 38 deg (bench/real_eeg.py --so-loo prints the grid).

A prediction is released at a fire-time check (``confirm_rising``): the band-passed signal
must still be rising at ``predicted_s - confirm_lead_s`` (the up state has not already
peaked); the event is emitted at the check (``detect_s``), else with ``predicted_s`` NaN.
The check is made early enough for the pulse to leave at the predicted time whatever the
chunk length: at the end of the last chunk that ends before that due time, judged by the
chunk's own span (the next chunk would be handed over after it), and there the slope is
extrapolated to the due time by its change; when a chunk holds the due sample, at that
sample. On the DREAMS excerpts this holds back a few late outliers and takes the pooled
trigger SD from 38 to 34.5 deg in 20 ms chunks, 35.8 deg in 10-sample chunks (100-200 ms
on the 50-100 Hz excerpts, where the check extrapolates up to ~0.2 s); the pulses of a
real replay land at these predicted times (bench/so_fired.py; bench/real_eeg.py --so,
--so-loo).

Nothing is passed over silently: the detector counts, by reason, every down state the
gate, the artefact rule or the threshold rule drops and every event left without a
prediction (``passed_over``); the first down state the gate passes over after one it let
through is an ``so_gate_closed`` event, the first it lets through again ``so_gate_open``
(with the number passed over meanwhile), and ``status_note`` is the live view's line while
the gate is closed -- a night whose N3 never reaches the ratio is not a quiet night.

A trough too shallow for the half-wave rule (``threshold / depth > max_depth_ratio``) is
still reported, with ``predicted_s`` NaN, so the policy does not stimulate on a guess; so is
a down state too broad for it (half-wave frequency below ``predict_min_hz``): on real EEG
the up state after a broad down state comes at a scattered time, so the detector is
selective rather than earlier -- it aims only at slow waves whose timing it can predict
(the single-wave approach of Ngo et al. 2013, against the phase-locked loop of Santostasi
et al. 2016, J Neurosci Methods 259:101; Navarrete et al. 2022, NeuroImage 253:119055,
predict from the ongoing SO's morphology which waves respond to stimulation).

The threshold is adaptive by default: ``adaptive_sd`` robust SDs of this recording's
band-passed signal over the last ``baseline_s`` (the SD estimated as 1.4826 x median |x|),
the deepest such value of the last ``threshold_hold_s`` (the slow band is largest in
slow-wave sleep: a REM or wake stretch after it does not make the threshold shallower),
never shallower than ``min_threshold_v`` (a floor for a recording that starts awake); or
fixed (``threshold_v``, volts, negative).
A fixed -40 uV found 2 down states and no predictable one in the 30 s YASA N3 excerpt
(slow waves of 15-45 uV on the band-passed signal).

The half-wave rule assumes a sinusoid; real slow waves have a sharper down state than up
state, and on the DREAMS excerpts it aims ~25 deg before the up-state peak of an offline
zero-phase reference. With ``learn_phase`` the detector measures that itself, per
recording: ``learn_settle_s`` after each prediction it filters the buffered last
``learn_window_s`` forward and backward (``learn_band_hz``), reads the Hilbert phase at the
predicted time, converts the error to seconds at the wave's frequency, and adds the median
of the last ``learn_events`` errors to later predictions (``timing_correction_s``). Every
measurement is made on the window ending at the first sample at or after its due time, so
the events do not depend on chunking.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engramloop.core.chunk import Chunk
from engramloop.core.events import Event
from engramloop.core.schema import check_bands, setting
from engramloop.decoders._filters import SoPlan
from engramloop.decoders.baseline import MAD_TO_SD, ChannelPicker, RobustBaseline, first_at_or_after
from engramloop.decoders.filter_design import butter_sos, sos_response
from engramloop.decoders.filters import (
    BandEnvelope,
    SosFilter,
    ZeroPhase,
    analytic_signal,
    butter_bandpass,
)
from engramloop.decoders.phase import EchtKernel

__all__ = ["SlowOscSettings", "SlowOscDetector"]


@dataclass(frozen=True)
class SlowOscSettings:
    """``[detectors.so]``: slow-oscillation down states and up-state prediction."""

    enabled: bool = setting(True, doc="run the slow-oscillation detector")
    channels: tuple[str, ...] = setting(("Fz",), doc="EEG channels (frontal: SOs are largest "
                                                     "there), each detected on independently")
    band_hz: tuple[float, float] = setting((0.2, 1.5), gt=0, unit="Hz",
                                           doc="band-pass for down-state detection (narrow: "
                                               "the trough depth feeds the half-wave "
                                               "frequency)")
    filter_order: int = setting(2, ge=1, le=4, doc="Butterworth order per band edge")
    threshold_mode: Literal["fixed", "adaptive"] = setting(
        "adaptive", doc="adaptive: adaptive_sd robust SDs of this recording's filtered "
                        "signal over the last baseline_s, never shallower than "
                        "min_threshold_v (a wake or REM stretch, where the slow band is "
                        "small, cannot pull it below that floor); fixed: threshold_v")
    threshold_v: float = setting(-40e-6, lt=0, unit="V", doc="fixed down-state threshold on "
                                                             "the band-passed signal (Ngo et "
                                                             "al. 2013 used -80 uV on less "
                                                             "filtered EEG)")
    adaptive_sd: float = setting(0.9, gt=0, unit="SD", doc="adaptive threshold depth in "
                                                           "robust SDs (1.4826 x median |x|)")
    min_threshold_v: float = setting(
        30e-6, ge=0, unit="V", doc="the adaptive threshold is never shallower than this. "
                                   "On the DREAMS development excerpts (C3-A1) the robust "
                                   "SD of the 0.2-1.5 Hz signal is 3-23 uV per minute, on "
                                   "the YASA N3 excerpt 15 uV (bench/real_eeg.py)")
    predict: Literal["halfwave", "echt", "fixed"] = setting(
        "halfwave", doc="up-state prediction: from this cycle's down half-wave ('halfwave'), "
                        "from the ECHT phase and frequency ('echt'), or trough + "
                        "fixed_delay_s ('fixed')")
    max_depth_ratio: float = setting(
        0.75, gt=0, le=1, doc="'halfwave' predicts only when threshold / trough depth is at "
                             "most this (in a shallow wave arccos(L/A) is too sensitive to "
                             "noise); otherwise predicted_s is NaN and the policy skips it. "
                             "Trade-off on the simulator (bench/detectors.py, 3 x 600 s): "
                             "0.8 -> trigger phase SD 36 deg, 0.75 -> 35 deg with 11 % "
                             "fewer predictions, 0.6 -> 33 deg with half of them")
    predict_min_hz: float = setting(
        1.0, gt=0, unit="Hz",
        doc="'halfwave' predicts only when this cycle's half-wave frequency (from the width "
            "of its down state at the threshold) is at least this; otherwise predicted_s is "
            "NaN and the policy skips it. A broad down state is followed by an up state whose "
            "timing scatters: on the DREAMS development excerpts the trigger phase SD was "
            "71 deg in the lowest quarter of half-wave frequencies and 37 deg in the highest "
            "(bench/real_eeg.py --so); 1.0 Hz took the pooled SD from 52 to 42 deg and kept "
            "71 % of the triggers. 0.5: the old rule (the phase band's low edge)")
    fixed_delay_s: float = setting(0.5, gt=0, unit="s", doc="trough-to-up-state delay for "
                                                            "'fixed' (Ngo et al. 2013: ~0.5 s)")
    target_deg: float = setting(0.0, ge=-180, le=180, unit="deg",
                                doc="phase predicted_s aims at (0 = up-state peak)")
    phase_band_hz: tuple[float, float] = setting((0.5, 1.25), gt=0, unit="Hz",
                                                 doc="band of the ECHT phase estimate")
    phase_window_s: float = setting(4.0, gt=0, le=30, unit="s", doc="ECHT window")
    learn_phase: bool = setting(
        True, doc="learn this recording's own timing ('halfwave' and 'echt'): learn_settle_s "
                  "after each predicted up-state, the zero-phase phase of learn_band_hz "
                  "(forward-backward Butterworth + Hilbert over the buffered "
                  "learn_window_s) at the predicted time is measured and turned into a time "
                  "error at the wave's frequency; the median of the last learn_events errors "
                  "is added to later predictions. Real slow waves are not sinusoids, so the "
                  "half-wave rule alone aims ~25 deg early on real EEG (bench/real_eeg.py)")
    learn_band_hz: tuple[float, float] = setting(
        (0.5, 1.5), gt=0, unit="Hz", doc="band of the learned up-state (the slow-oscillation "
                                         "band of the offline analyses, e.g. Ngo et al. "
                                         "2013: 0.5-1.5 Hz)")
    learn_settle_s: float = setting(4.0, gt=0, le=30, unit="s",
                                    doc="signal after a predicted up-state before its phase "
                                        "is measured (the zero-phase filter's edge)")
    learn_window_s: float = setting(12.0, gt=0, le=60, unit="s",
                                    doc="window the learned phase is measured on")
    learn_events: int = setting(50, ge=1, doc="time errors per channel whose median is the "
                                              "correction (the last ones; 20 moved the "
                                              "trigger phase SD on the DREAMS excerpts by "
                                              "+0-3 deg against 50)")
    learn_min_events: int = setting(3, ge=1, doc="errors measured before a correction is "
                                                 "applied")
    confirm_rising: bool = setting(
        True, doc="fire-time check: an up state predicted from a down state is released "
                  "(the event emitted, detect_s = the check's sample) only if the "
                  "band-passed signal (band_hz) is still rising at predicted_s - "
                  "confirm_lead_s -- the up state has not already peaked; otherwise the "
                  "event is emitted with predicted_s NaN and counted as unconfirmed. The "
                  "check is made at the end of the last chunk that ends before that time "
                  "(judged by the chunk's span; the slope extrapolated by its change), so "
                  "the pulse leaves at the predicted time at any chunk length. On the "
                  "DREAMS development excerpts it took the pooled trigger SD from 38.4 to "
                  "34.5 deg in 20 ms chunks, 35.8 deg in 10-sample chunks "
                  "(bench/so_fired.py; bench/real_eeg.py --so-loo for the held-out "
                  "figures); false: emit at the down state's end, as before")
    confirm_lead_s: float = setting(
        0.03, ge=0, le=0.5, unit="s",
        doc="the fire-time check judges the signal this long before the predicted up "
            "state, and the last sample of the chunk that carries the event is at least "
            "this long before it (unless the up state is predicted inside the chunk "
            "that detected it, or the next chunk is longer than the last): a margin for "
            "the source's delivery and the loop's decoding (0 s: SD 34.9 deg on the "
            "DREAMS excerpts' pulses in 10-sample chunks, 33.9 in 20 ms chunks; 0.03 s: "
            "35.8 and 34.5 deg; bench/so_fired.py)")
    sws_gate_ratio: float = setting(
        2.5, ge=0, doc="slow-wave-sleep gate: a down state counts only while the 0.5-2 Hz / "
                       "4-30 Hz power ratio over the last sws_window_s is at least this (N3 "
                       "is slow-wave dominated; eye movements in REM and wake and the dips "
                       "of lighter sleep are not); 0 disables. The ratio depends on montage "
                       "and subject: 8 separates the simulator's N3 from its REM/wake, the "
                       "real N3 excerpt in shared/data sits near 4; 2.5 took the DREAMS "
                       "excerpts' pooled trigger SD from 43 to 38 deg and kept the N3 "
                       "excerpt's trigger (bench/real_eeg.py --so-loo)")
    sws_window_s: float = setting(10.0, gt=0, le=60, unit="s",
                                  doc="window of the slow-wave-sleep gate's power ratio")
    refractory_s: float = setting(0.4, ge=0, unit="s", doc="dead time after an event (also "
                                                           "waits for the signal to cross "
                                                           "zero upwards)")
    max_trough_v: float = setting(
        1e-3, gt=0, unit="V",
        doc="a down state deeper than this on the band-passed signal is an artefact -- "
            "amplifier saturation, movement -- not a slow oscillation, and fires no event "
            "(scalp slow waves are tens to a few hundred microvolts; the simulator's "
            "saturations reach a hundred millivolts)")
    calibration_s: float = setting(5.0, ge=0, unit="s",
                                   doc="no events until this long after the first sample")
    baseline_s: float = setting(60.0, gt=0, unit="s", doc="history of the adaptive threshold")
    baseline_update_s: float = setting(1.0, gt=0, unit="s", doc="adaptive threshold "
                                                                "recomputed this often")
    threshold_hold_s: float = setting(
        600.0, ge=0, le=7200, unit="s",
        doc="the adaptive threshold in force is the deepest computed in the last this many "
            "seconds: the slow band is largest in slow-wave sleep, so a REM or wake stretch "
            "shorter than this cannot make it shallower. On the simulator's default night "
            "(seed 0, Fz) the running value let 38 REM/wake dips through as down states, "
            "held 19 (the fixed -40 uV: 19); 0: the running value")

    def validate(self) -> None:
        check_bands(self, "band_hz", "phase_band_hz", "learn_band_hz")
        if self.learn_window_s <= self.learn_settle_s + 1.0 / self.learn_band_hz[0]:
            raise ValueError("learn_window_s: must be longer than learn_settle_s plus one "
                             "cycle of the low learn_band_hz edge")
        if not self.channels:
            raise ValueError("channels: give at least one channel name")
        if self.threshold_mode == "adaptive" and self.threshold_v != -40e-6:
            # threshold_v alone used to set the threshold; now it would be ignored
            raise ValueError(f"threshold_v: {self.threshold_v} applies only with "
                             f"threshold_mode = 'fixed' (the default is 'adaptive'); set "
                             f"threshold_mode = 'fixed' or remove threshold_v")
        if not self.predict_min_hz < 2.0 * self.phase_band_hz[1]:
            raise ValueError(f"predict_min_hz: {self.predict_min_hz} Hz leaves no half-wave "
                             f"frequency to predict from (the upper limit is twice the high "
                             f"phase_band_hz edge, {2.0 * self.phase_band_hz[1]:g} Hz); "
                             f"lower it")
        if self.phase_window_s * self.phase_band_hz[0] < 1.5:
            raise ValueError("phase_window_s: must hold at least 1.5 cycles of the low "
                             "phase band edge")


class SlowOscDetector:
    """Causal down-state detector: ``process(chunk) -> list[Event]``.

    Emits ``Event(kind="so")`` at the trough (``amplitude`` = trough value of the filtered
    signal, volts, negative; ``threshold`` = threshold in force; ``score`` = trough depth
    in threshold units; ``predicted_s`` = predicted up-state time), and once
    ``calibration_done`` (``channel="so"``).
    """

    KIND = "so"
    #: what :attr:`passed_over` counts, as the run summary words it before a reason
    PASS_NOUN = "down states"
    #: why a down state was passed over or left without a prediction (the keys of
    #: :attr:`passed_over`), as the run summary words them
    PASS_REASONS = {
        "sws_gate": "passed over outside slow-wave sleep (sws_gate_ratio gate closed)",
        "too_deep": "passed over as artefacts (deeper than max_trough_v)",
        "threshold_moved": "passed over as the adaptive threshold deepened under them",
        "too_broad": "reported without a prediction: too broad (below predict_min_hz)",
        "too_fast": "reported without a prediction: too narrow for the phase band",
        "too_shallow": "reported without a prediction: too shallow (max_depth_ratio)",
        "unconfirmed": "reported without a prediction: not rising at the fire-time check "
                       "(confirm_rising)",
    }

    def __init__(self, settings: SlowOscSettings | None = None) -> None:
        self.settings = settings or SlowOscSettings()
        self._picker = ChannelPicker(tuple(self.settings.channels), "detectors.so")
        self._k = len(self.settings.channels)
        self._fs = 0.0
        self._cap = 0
        self._calibrating = True
        self._first = True
        self._bound: tuple[str, ...] | None = None   # channel names cols was resolved for
        self._restart = False     # restart() was called: the next chunk primes the filters
        #: the consumer acts on the events every this many samples of a chunk (0: at the
        #: end of each chunk). A ``--speed max`` replay that decodes blocks of many
        #: chunks at once sets its chunk length here, so the fire-time checks are
        #: released where the chunk-by-chunk replay releases them (:meth:`_confirm_due`)
        self.act_every_samples = 0
        self._setup_counts()

    def _setup(self, fs: float) -> None:
        s, k = self.settings, self._k
        self._fs = fs
        self._filt = SosFilter(butter_bandpass(*s.band_hz, fs, s.filter_order), k)
        self._gate = None
        if s.sws_gate_ratio > 0:
            gw = max(1, int(round(s.sws_window_s * fs)))
            hi = min(30.0, 0.45 * fs)
            self._gate = (BandEnvelope(butter_bandpass(0.5, 2.0, fs), k, gw),
                          BandEnvelope(butter_bandpass(4.0, hi, fs), k, gw))
        self._base = RobustBaseline(k, fs, history_s=s.baseline_s, step_s=0.02,
                                    update_s=s.baseline_update_s, exclude_sd=math.inf,
                                    min_fill=0.05, absolute=True, update_phase=0.67)
        self._echt = (EchtKernel(fs, s.phase_band_hz, s.phase_window_s, k)
                      if s.predict == "echt" else None)
        # the band-pass's phase (rad) on a frequency grid, for the half-wave correction
        self._fgrid = np.linspace(0.05, min(s.band_hz[1], fs / 2 * 0.9), 512)
        h = sos_response(butter_bandpass(*s.band_hz, fs, s.filter_order), self._fgrid, fs)
        ph = np.unwrap(np.angle(h))
        # a Butterworth band-pass has zero phase at its centre frequency: anchor the
        # unwrapped curve there (a steep filter's phase near DC is a whole turn or more)
        f_c = math.sqrt(s.band_hz[0] * s.band_hz[1])
        ph -= 2 * np.pi * np.round(np.interp(f_c, self._fgrid, ph) / (2 * np.pi))
        self._hphase = ph
        self._setup_learning(fs)
        self._setup_counts()
        # the per-channel down-state machine, one row per channel, in one array so the C
        # block kernel updates it in place; the named columns are views of it
        self._chs = np.empty((k, 5))
        self._state = self._chs[:, 0]              # 0 armed, 1 below threshold, 2 fired
        self._onset = self._chs[:, 1]              # s
        self._min_v = self._chs[:, 2]              # running minimum in a down state, V
        self._min_t = self._chs[:, 3]              # its time, s
        self._rearm_t = self._chs[:, 4]            # s
        self._chs[:] = (0.0, np.nan, np.inf, np.nan, -np.inf)
        # the held statistic (the adaptive threshold's median |y|): the largest of the
        # values the baseline computed in the last threshold_hold_s, per channel; the C
        # block kernel reads it in place of the baseline's own median
        self._hold_n = int(round(s.threshold_hold_s * fs))
        self._held = np.full(k, np.nan)
        # the medians of the last threshold_hold_s: rows [a, b) of a buffer (a 600-s hold
        # at one update a second is 600 rows; one nanmax over them, not a stack of 600)
        self._mh_at = np.zeros(64, dtype=np.int64)     # sample index each is in force from
        self._mh_v = np.full((64, k), np.nan)
        self._mh_a = self._mh_b = 0
        self._first = True
        self._calibrating = True
        self._t0 = np.nan
        self._cal_end = np.nan       # s: calibration ends at the first sample this late
        self._alloc(64)

    def _setup_counts(self) -> None:
        """Nothing is passed over silently: every down state the gate, the artefact rule
        or the threshold rule drops, and every event left without a prediction, is
        counted by reason (:attr:`passed_over`); the gate's state per channel is the
        fate of that channel's latest down state (closed: passed over by the gate), with
        the number passed over since it closed."""
        self.passed_over = dict.fromkeys(self.PASS_REASONS, 0)
        self._gate_closed = [False] * self._k
        self._closed_n = [0] * self._k
        # events waiting for their fire-time check: (due_s, seq, ch, Event), and the
        # band-passed values of each channel's last two samples (rows: older, newer; the
        # samples before a check early in the next chunk)
        self._confirm: list = []
        self._yprev = np.zeros((2, self._k))

    @property
    def status_note(self) -> str:
        """The live view's line while the slow-wave-sleep gate is closed on some channel
        (its latest down state was passed over), else ""."""
        if self._fs == 0.0 or not any(self._gate_closed):
            return ""
        s = self.settings
        parts = [f"{c} ({n} since it closed)" for c, n, shut in
                 zip(s.channels, self._closed_n, self._gate_closed, strict=True) if shut]
        return (f"SO gate closed (slow-wave-sleep ratio below {s.sws_gate_ratio:g}) on "
                f"{', '.join(parts)}: {self.passed_over['sws_gate']} down states passed "
                f"over in all")

    def _gate_event(self, kind: str, j: int, ch: int, onset: float, trough_v: float,
                    t: np.ndarray, ratio: float, n: int) -> Event:
        """``so_gate_closed`` (at the first down state the gate passes over after one it
        let through, or from the start) or ``so_gate_open`` (at the first it lets through
        again; ``amplitude`` = the number passed over while it was closed); ``score`` =
        the gate's power ratio then, ``threshold`` = ``sws_gate_ratio``."""
        return Event(kind=kind, channel=self.settings.channels[ch], onset_s=onset,
                     detect_s=float(t[j]), peak_s=math.nan,
                     amplitude=float(n) if kind == "so_gate_open" else trough_v,
                     score=ratio, threshold=self.settings.sws_gate_ratio)

    def _setup_learning(self, fs: float) -> None:
        """The learned timing: a buffer of the picked input (the last learn_window_s, kept
        contiguous so a window is a view), the predictions waiting for their phase, and
        per channel the last time errors (s) and the correction in force (s, added to each
        prediction)."""
        s, k = self.settings, self._k
        self._learn = s.learn_phase and s.predict != "fixed"
        # (due_s, seq, ch, predicted_s, frequency_hz): predictions waiting to be measured
        self._pending: list = []
        self._seq = 0
        self._errors: list[list[float]] = [[] for _ in range(k)]   # s
        self.timing_correction_s = np.zeros(k)
        if not self._learn:
            return
        lo, hi = s.learn_band_hz
        if not hi < fs / 2:
            raise ValueError(f"detectors.so.learn_band_hz: {hi} Hz is not below Nyquist "
                             f"({fs / 2:g} Hz at {fs:g} Hz); lower it or set "
                             f"learn_phase = false")
        # the measurement runs on block means of q samples (~50 Hz: a boxcar with nulls at
        # 50 Hz and its harmonics before the 0.5-1.5 Hz band-pass), so a 12 s window costs
        # a few hundred samples of filtering on the loop thread, not 24000 at 2 kHz
        self._lq = max(1, int(fs // 50.0))
        self._lsos = butter_sos(2, (lo, hi), "bandpass", fs / self._lq)
        self._lzp = ZeroPhase(self._lsos)
        self._lwin = max(16, int(round(s.learn_window_s * fs)) // self._lq * self._lq)
        self._lmin = int(round((s.learn_settle_s + 1.0 / lo) * fs))
        self._lbuf = np.zeros((2 * self._lwin + 64, k))
        self._lt = np.zeros(2 * self._lwin + 64)
        self._l0 = 0        # absolute sample index of _lbuf[0]
        self._lhi = 0       # samples held: _lbuf[:_lhi]

    def _remember(self, x: np.ndarray, t: np.ndarray) -> None:
        """Append a block of the picked input (n, k) and its timestamps (n,) seconds."""
        n = x.shape[0]
        hi = self._lhi
        if hi + n > self._lt.shape[0]:
            keep = min(hi, self._lwin)
            if keep + n > self._lt.shape[0]:
                buf = np.zeros((2 * self._lwin + n, self._k))
                tb = np.zeros(2 * self._lwin + n)
                buf[:keep] = self._lbuf[hi - keep:hi]
                tb[:keep] = self._lt[hi - keep:hi]
                self._lbuf, self._lt = buf, tb
            else:   # overlapping slices: NumPy copies through a buffer when needed
                self._lbuf[:keep] = self._lbuf[hi - keep:hi]
                self._lt[:keep] = self._lt[hi - keep:hi]
            self._l0 += hi - keep
            hi = keep
        self._lbuf[hi:hi + n] = x
        self._lt[hi:hi + n] = t
        self._lhi = hi + n

    def _learn_until(self, t: np.ndarray, j: int, n: int) -> None:
        """Measure the predictions whose settle time has come by sample ``j`` of this
        chunk (``n`` samples, already remembered): each on the window ending at the first
        sample at or after its due time, so the result does not depend on chunking."""
        s = self.settings
        start = self._lhi - n           # buffer position of this chunk's first sample
        while self._pending and self._pending[0][0] <= t[j]:
            due, _, ch, pred, f = heapq.heappop(self._pending)
            jj = first_at_or_after(t, due, 0)
            end = start + jj + 1
            a = max(0, end - self._lwin)
            if end - a < self._lmin:
                continue                 # too little signal buffered to measure it
            a = end - (end - a) // self._lq * self._lq      # whole blocks, ending at `end`
            q, m = self._lq, (end - a) // self._lq
            win = self._lbuf[a:end, ch].reshape(m, q).mean(axis=1)
            tw = self._lt[a:end].reshape(m, q).mean(axis=1)  # each block's mean time
            an = analytic_signal(self._lzp(win - win.mean()))
            # the phase at the predicted time, interpolated between the two blocks around it
            i = min(max(int(np.searchsorted(tw, pred)), 1), m - 1)
            p0 = math.atan2(an[i - 1].imag, an[i - 1].real)
            step = math.atan2((an[i] * an[i - 1].conjugate()).imag,
                              (an[i] * an[i - 1].conjugate()).real)
            w = (pred - tw[i - 1]) / (tw[i] - tw[i - 1]) if tw[i] > tw[i - 1] else 0.0
            ph = p0 + min(max(w, 0.0), 1.0) * step
            if not math.isfinite(ph):
                continue                 # a non-finite sample in the window
            err = (ph - math.radians(s.target_deg) + math.pi) % (2 * math.pi) - math.pi
            hist = self._errors[ch]
            hist.append(-err / (2 * math.pi * f))   # early (err < 0): later next time
            if len(hist) > s.learn_events:
                del hist[0]
            if len(hist) >= s.learn_min_events:
                self.timing_correction_s[ch] = float(np.median(hist))

    def _alloc(self, n: int) -> None:
        s, k = self.settings, self._k
        self._cap = n
        # the block kernel's planes: picked input, band-passed, gate scratch, the two gate
        # envelopes, threshold (V); the Python path uses the same buffers
        self._work = np.empty((6, n, k))
        self._x, self._y, self._gf, self._gs, self._gh, self._thr = self._work
        self._med = np.empty((n, k))
        self._sd = np.empty((n, k))
        self._fixed = s.threshold_mode != "adaptive"
        self._plan = None            # the SoPlan binds these buffers: built anew

    def _make_plan(self) -> SoPlan:
        """Bind the common block's C kernel to this setup's banks, columns and buffers:
        the baseline's own arrays, updated in place like RobustBaseline.process does
        (checked once; built again after a new rate, channel list or larger buffers)."""
        s = self.settings
        g0, g1 = self._gate if self._gate is not None else (None, None)
        step, ring, pos, count, excl, median, _ = self._base.kernel_state()
        self._plan = SoPlan(
            self._cols, self._filt, g0, g1, self._work, self._chs,
            None if self._fixed else ring, pos, count, excl,
            self._held if self._hold_n else median, step,
            s.threshold_v, -s.adaptive_sd * MAD_TO_SD, -s.min_threshold_v, s.refractory_s)
        return self._plan

    def reset(self) -> None:
        """Forget all state; the next chunk starts a new calibration."""
        self._fs = 0.0
        self._restart = False

    def restart(self) -> None:
        """Forget the signal but keep the calibration: after samples the detector must
        not see (non-finite, an electrode pop), the next chunk starts the band-pass and
        the gate's filters in steady state at its first sample, empties the gate windows
        and the ECHT window, and puts every channel's down-state machine back to armed;
        the threshold statistics and the calibration carry on."""
        self._restart = self._fs != 0.0

    def _restart_from(self, x: np.ndarray) -> None:
        """Prime from the first row of the picked samples ``x`` (n, k)."""
        self._restart = False
        self._filt.reset(x[0])
        if self._gate is not None:
            for g in self._gate:       # filter state only: the gate's windows carry on
                SosFilter.reset(g, x[0])
        if self._echt is not None:
            self._echt.reset()
        self._chs[:] = (0.0, np.nan, np.inf, np.nan, -np.inf)
        # the samples of a fire-time check are gone: no pulse on them
        self.passed_over["unconfirmed"] += len(self._confirm)
        self._confirm.clear()

    @property
    def calibrating(self) -> bool:
        """True until the threshold exists and ``calibration_s`` has passed."""
        return self._fs == 0.0 or self._calibrating

    def process(self, chunk: Chunk) -> list[Event]:
        """Detect down states in one chunk.

        Parameters
        ----------
        chunk : Chunk
            Must contain the configured channels, volts.

        Returns
        -------
        list of Event
            In time order.
        """
        samples = chunk.samples
        n = samples.shape[0]
        # The common chunk -- same rate, channels and buffers, and (adaptive threshold) no
        # baseline update point inside it -- is one C call: pick, band-pass, gate
        # envelopes, baseline push, threshold and the down-state machine. Everything else
        # takes the Python path below; both give bit-identical results.
        if (0 < n <= self._cap and chunk.rate_hz == self._fs and not self._restart
                and (chunk.channels is self._bound or chunk.channels == self._bound)
                and (self._fixed or self._base.no_update_in(n))):
            base = self._base
            # the plan reads float64 seconds in one block; sources deliver that (no copy), a
            # Chunk built by hand may hold float32 or a strided view
            t = np.ascontiguousarray(chunk.timestamps, dtype=np.float64)
            plan = self._plan if self._plan is not None else self._make_plan()
            if not self._calibrating:
                found = plan.run(samples, base.index, t, True)
                base.index += n
                if self._learn:
                    self._remember(self._x[:n], t)
                if not found:
                    if self._echt is not None:
                        self._echt.write(self._x[:n])
                    if self._pending and self._pending[0][0] <= t[n - 1]:
                        self._learn_until(t, n - 1, n)
                    if not self._confirm:
                        return []
                    events = []
                    self._confirm_due(t, n, events)
                    return events
                events: list[Event] = []
                self._emit(found, self._x[:n], self._thr[:n], t, self._gs[:n], self._gh[:n],
                           events)
                if self._confirm:
                    self._confirm_due(t, n, events)
                return events
            # calibrating, in a chunk where it cannot end: no statistics yet (they change
            # only at update points), or no sample late enough (NaN is not)
            if not self._first and ((not self._fixed and not base.ready)
                                    or first_at_or_after(t, self._cal_end, 0) < 0):
                plan.run(samples, base.index, t, False)   # no down-state machine
                base.index += n
                if self._learn:
                    self._remember(self._x[:n], t)
                if self._echt is not None:
                    self._echt.write(self._x[:n])
                return []
        return self._process_python(chunk)

    def _process_python(self, chunk: Chunk) -> list[Event]:
        """:meth:`process` step by step in NumPy: the first chunks (set-up, calibration),
        baseline update points, a new channel list or a chunk longer than the buffers."""
        n = chunk.n_samples
        if n == 0:
            return []
        if chunk.rate_hz != self._fs:
            self._setup(float(chunk.rate_hz))
        if n > self._cap:
            self._alloc(max(n, 2 * self._cap))
        s = self.settings
        t = chunk.timestamps
        if chunk.channels is not self._bound and chunk.channels != self._bound:
            self._cols = self._picker.bind(chunk.channels)
            self._bound = chunk.channels
            self._plan = None        # the plan holds the columns
        x = self._picker.pick(chunk.samples, chunk.channels)
        if self._learn:
            self._remember(x, t)
        first = self._base.index
        if self._first:
            self._first = False
            self._t0 = float(t[0])
            self._cal_end = self._t0 + s.calibration_s
            self._filt.reset(x[0])      # start in steady state: no step transient
        elif self._restart:
            self._restart_from(x)
        y = self._filt.process(x, self._y[:n])
        g_slow = g_fast = None
        if self._gate is not None:       # both envelopes keep their state every chunk
            _, g_slow = self._gate[0].process_envelope(x, self._gf[:n], self._gs[:n])
            _, g_fast = self._gate[1].process_envelope(x, self._gf[:n], self._gh[:n])
        thr = self._thr[:n]
        if s.threshold_mode == "adaptive":
            med, sd = self._med[:n], self._sd[:n]
            self._base.process(y, med, sd)
            if self._hold_n:
                self._hold_medians(med, first)
            # robust SD of a zero-mean signal = 1.4826 * median |y|
            np.multiply(med, -s.adaptive_sd * MAD_TO_SD, out=thr)
            np.minimum(thr, -s.min_threshold_v, out=thr)
            ready_index = self._base.ready_index if self._base.ready else -1
        else:
            thr.fill(s.threshold_v)
            self._base.index += n
            ready_index = 0
        events: list[Event] = []
        start = 0
        if self._calibrating:
            j = -1
            if ready_index >= 0:
                j = first_at_or_after(t, self._cal_end, max(0, ready_index - first))
            if j < 0:
                self._feed_echt(x, 0, n)
                return events
            self._calibrating = False
            events.append(Event(kind="calibration_done", channel=self.KIND, onset_s=self._t0,
                                detect_s=float(t[j]), threshold=float(thr[j, 0])))
            start = j
            self._state[:] = 0
        # the down-state machine on the planes y and thr hold, in C as in the common
        # block: (sample, channel, onset_s, trough_v, trough_s) in (sample, channel) order
        plan = self._plan if self._plan is not None else self._make_plan()
        found = plan.scan(np.ascontiguousarray(t, dtype=np.float64), start, n)
        if not found:
            self._feed_echt(x, 0, n)
            if self._pending and self._pending[0][0] <= t[n - 1]:
                self._learn_until(t, n - 1, n)
        else:
            self._emit(found, x, thr, t, g_slow, g_fast, events)
        if self._confirm:
            self._confirm_due(t, n, events)
        return events

    def _confirm_due(self, t: np.ndarray, n: int, events: list[Event]) -> None:
        """Release the fire-time checks that cannot wait for another chunk (``t`` (n,) s;
        the band-passed signal in ``self._y[:n]``); the released events go into
        ``events`` in time order.

        A chunk's events reach the policy once the chunk is decoded, so an event held for
        the next chunk would reach it about one chunk span (this chunk's sample count at
        the source rate) after this chunk's last sample. An event is released at the end
        of the first chunk from its detection on whose last sample plus its span reaches
        its due time (``predicted_s - confirm_lead_s``): the policy has it at least
        ``confirm_lead_s`` before the predicted up state, and the scheduler fires the
        pulse at that time, whatever the chunk length. The check itself
        (:meth:`_rising`) is made at the first sample at or after the due time when the
        releasing chunk holds it, else at the chunk's last sample and extrapolated to the
        due time. With :attr:`act_every_samples` > 0 (a ``--speed max`` replay decoding
        blocks of many chunks at once) each piece of that many samples from the chunk's
        start counts as a chunk, so a block gives the chunk-by-chunk replay's events."""
        g = self.act_every_samples
        g = g if 0 < g < n else n
        rel, keep = [], []
        if g == n:
            # one piece (every live chunk): no arrays while an event waits, chunk after
            # chunk -- the time by which the next chunk is handed over
            ends = (n,)
            horizon = float(t[n - 1]) + n / self._fs
            t0 = float(t[0])
            for item in self._confirm:
                if item[0] <= horizon:
                    rel.append((0, 0 if item[3].detect_s >= t0 else -1, item))
                else:
                    keep.append(item)
        else:
            ends = np.arange(g, n + g, g)
            ends[-1] = n                          # each piece's end (exclusive)
            # the time by which the piece after each one is handed over
            horizon = t[ends - 1] + (ends - np.arange(0, n, g)) / self._fs
            for item in self._confirm:
                ev = item[3]
                k0 = -1                           # pending from an earlier chunk
                if ev.detect_s >= t[0]:           # detected in this chunk: from its piece
                    k0 = int(np.searchsorted(t, ev.detect_s, side="left")) // g
                hit = np.flatnonzero(horizon[max(k0, 0):] >= item[0])
                if hit.size:
                    rel.append((max(k0, 0) + int(hit[0]), k0, item))
                else:
                    keep.append(item)
        if rel:
            self._confirm = keep
            rel.sort(key=lambda r: (r[0], r[2][0], r[2][1]))
            out = []
            for k, k0, (due, _, ch, ev) in rel:
                a, b = k * g, int(ends[k])
                j = first_at_or_after(t, due, a) if due <= t[b - 1] else -1
                if not 0 <= j < b:
                    j = b - 1                     # due after this piece: its last sample
                if self._rising(t, j, ch, due, ev.detect_s, a if k == k0 else -2):
                    out.append(dataclasses.replace(ev, detect_s=float(t[j])))
                else:      # already falling: the up state came early; no pulse on a guess
                    self.passed_over["unconfirmed"] += 1
                    out.append(dataclasses.replace(ev, detect_s=float(t[j]),
                                                   predicted_s=math.nan))
            events.extend(out)
            if len(events) > len(out):
                events.sort(key=lambda e: e.detect_s)
        # the last two band-passed samples, for a check early in the next chunk
        if n >= 2:
            np.copyto(self._yprev, self._y[n - 2:n])
        else:
            self._yprev[0] = self._yprev[1]
            self._yprev[1] = self._y[0]

    def _rising(self, t: np.ndarray, j: int, ch: int, due: float, detect_s: float,
                lo: int) -> bool:
        """Is the band-passed signal of channel ``ch`` rising at ``due`` (s), judged at
        sample ``j`` of this chunk (at or before ``due``)? Its slope (per sample, from the
        sample before) plus the slope's change times the samples still to go until
        ``due`` -- the first two terms of the slope's Taylor series -- must be positive;
        at ``due`` itself that is the slope alone. ``lo``: the first sample the check may
        read (-2: the kept last two samples of the chunk before), the piece's first in
        the piece where the event was detected: a chunk-by-chunk run has kept no samples
        from before it, so a block must not read them either. At the detection sample
        itself the signal has just come up through the threshold: rising."""
        if t[j] == detect_s:
            return True
        y, prev = self._y, self._yprev
        y0 = float(y[j, ch])
        y1 = float(y[j - 1, ch] if j >= 1 else prev[1 + j, ch])
        d1 = y0 - y1
        if j - 2 < lo:
            return d1 > 0                 # no sample before: the slope alone
        y2 = float(y[j - 2, ch] if j >= 2 else prev[j, ch])
        ahead = max(0.0, (due - float(t[j])) * self._fs)
        return d1 + (d1 - (y1 - y2)) * ahead > 0

    def _hold_medians(self, med: np.ndarray, first: int) -> None:
        """Replace the medians in force (n, k; piecewise constant, changing only after
        the baseline's update points) by the largest of those computed in the last
        ``threshold_hold_s``, evaluated where each new value starts, so it is constant
        between update points (as the C block kernel needs) and independent of chunking.
        ``first``: absolute index of ``med[0]``.

        All of a block's update points at once: each new value (its first row; all-NaN
        ones -- no statistics yet -- stay as they are) joins the held rows, rows older
        than ``threshold_hold_s`` leave, and each value's window maximum is one range
        maximum over the rows, so a block costs a few NumPy calls, not one per update
        point. tests/decoders/test_so_hold.py checks it against the one-value-at-a-time
        rule at many chunkings."""
        n = med.shape[0]
        same = (med[1:] == med[:-1]) | (np.isnan(med[1:]) & np.isnan(med[:-1]))
        starts = np.concatenate(([0], np.flatnonzero(~same.all(axis=1)) + 1))
        # the candidates: each run's value where it starts, and the baseline's value after
        # a recomputation at the block's last sample, in force from the next one on (which
        # the C block kernel may process: held now)
        cv = np.concatenate((med[starts], self._base.median[None, :]))
        cat = np.concatenate((first + starts, [first + n])).astype(np.int64)
        valid = ~np.isnan(cv).all(axis=1)
        vi = np.flatnonzero(valid)
        held_rows = np.empty_like(cv)                      # held after each candidate
        a, b = self._mh_a, self._mh_b
        if vi.size:
            v = cv[vi]
            prev = np.concatenate((self._mh_v[b - 1:b] if b > a else np.full_like(v[:1], np.nan),
                                   v[:-1]))
            dup = ((v == prev) | (np.isnan(v) & np.isnan(prev))).all(axis=1)
            if b == a:
                dup[0] = False
            new = ~dup
            live = b - a
            at_all = np.concatenate((self._mh_at[a:b], cat[vi[new]]))
            v_all = np.concatenate((self._mh_v[a:b], v[new]))
            p = np.arange(live, at_all.size)               # the new rows
            # each new row's window starts at the first row newer than its hold time
            lo = np.minimum(np.searchsorted(at_all, at_all[p] - self._hold_n, side="right"),
                            p)
            lo = np.maximum.accumulate(lo) if lo.size else lo
            mx = _range_fmax(v_all, lo, p) if p.size else v_all[:0]
            # each candidate's held value: that of the latest new row at or before it
            last = np.cumsum(new) - 1                      # index into mx, -1: none yet
            hv = np.where((last >= 0)[:, None], mx[np.maximum(last, 0)] if mx.size
                          else self._held[None, :], self._held[None, :])
            held_rows[vi] = hv
            if p.size:
                keep = int(lo[-1])
                self._mh_at, self._mh_v = at_all[keep:].copy(), v_all[keep:].copy()
                self._mh_a, self._mh_b = 0, at_all.size - keep
                np.copyto(self._held, mx[-1])
        # the runs (not the last candidate: it is the next block's) take their held value
        r = valid[:-1]
        if r.any():
            lens = np.diff(np.concatenate((starts, [n])))
            rows = np.repeat(r, lens)
            med[rows] = np.repeat(held_rows[:-1][r], lens[r], axis=0)

    def _emit(self, found: list | tuple, x: np.ndarray, thr: np.ndarray, t: np.ndarray,
              g_slow: np.ndarray | None, g_fast: np.ndarray | None,
              events: list[Event]) -> None:
        """Append the events of the down states in ``found`` (sorted (sample, channel,
        onset_s, trough_v, trough_s) tuples) that pass the gate and the artefact rule,
        feeding the ECHT ring up to each one's sample first. ``x``, ``thr`` (V), ``g_slow``,
        ``g_fast`` (V, None without the gate): (n, k); ``t``: (n,) seconds."""
        s = self.settings
        n = x.shape[0]
        gated = self._gate is not None
        fed = 0
        for j, ch, onset, trough_v, trough_t in found:
            self._feed_echt(x, fed, j + 1)
            fed = j + 1
            if self._pending and self._pending[0][0] <= t[j]:
                self._learn_until(t, j, n)
            if (gated and not g_slow[j, ch] * g_slow[j, ch]
                    >= s.sws_gate_ratio * g_fast[j, ch] * g_fast[j, ch]):
                # not slow-wave sleep: not a slow oscillation -- counted, and the first
                # after an admitted one is an event (the gate closed)
                self.passed_over["sws_gate"] += 1
                self._closed_n[ch] += 1
                if not self._gate_closed[ch]:
                    self._gate_closed[ch] = True
                    events.append(self._gate_event("so_gate_closed", j, ch, onset, trough_v,
                                                   t, self._ratio(g_slow, g_fast, j, ch), 0))
                continue
            if trough_v < -s.max_trough_v:
                self.passed_over["too_deep"] += 1
                continue             # an artefact, not a slow oscillation
            if not trough_v <= thr[j, ch]:
                # the adaptive threshold deepened during the down state (an update point)
                # and the trough is not below the one in force when it ended
                self.passed_over["threshold_moved"] += 1
                continue
            if self._gate_closed[ch]:
                self._gate_closed[ch] = False
                events.append(self._gate_event("so_gate_open", j, ch, onset, trough_v, t,
                                               self._ratio(g_slow, g_fast, j, ch),
                                               self._closed_n[ch]))
                self._closed_n[ch] = 0
            ev = self._event(j, ch, onset, trough_v, trough_t, thr, t)
            if s.confirm_rising and math.isfinite(ev.predicted_s):
                # released at its fire-time check (_confirm_due), not now
                # after the detection sample, so the sample before the check is this
                # chunk's or, kept at its end, the last one
                due = max(ev.predicted_s - s.confirm_lead_s, math.nextafter(ev.detect_s,
                                                                           math.inf))
                self._confirm.append((due, self._seq, ch, ev))
                self._seq += 1
                continue
            events.append(ev)
        self._feed_echt(x, fed, n)
        if self._pending and self._pending[0][0] <= t[n - 1]:
            self._learn_until(t, n - 1, n)

    @staticmethod
    def _ratio(g_slow: np.ndarray | None, g_fast: np.ndarray | None, j: int,
               ch: int) -> float:
        """The gate's 0.5-2 Hz / 4-30 Hz power ratio at sample ``j`` of channel ``ch``."""
        if g_slow is None or g_fast is None:
            return math.nan
        den = float(g_fast[j, ch]) ** 2
        return float(g_slow[j, ch]) ** 2 / den if den > 0 else math.inf

    def _feed_echt(self, x: np.ndarray, a: int, b: int) -> None:
        if self._echt is not None and b > a:
            self._echt.write(x[a:b])

    def _event(self, j: int, ch: int, onset: float, trough_v: float, trough_t: float,
               thr: np.ndarray, t: np.ndarray) -> Event:
        s = self.settings
        detect = float(t[j])
        f = math.nan
        if s.predict == "halfwave":
            predicted, f = self._halfwave(ch, onset, detect, trough_v, float(thr[j, ch]))
        elif self._echt is not None:
            if self._echt.count >= self._echt.n and math.isfinite(trough_t):
                ph, fe, _ = self._echt.analytic()
                f = float(fe[ch])
                d = (s.target_deg - float(ph[ch])) % 360.0
                predicted = detect + d / (360.0 * f)
            else:
                predicted = trough_t + s.fixed_delay_s
        else:
            predicted = trough_t + s.fixed_delay_s
        if self._learn and math.isfinite(predicted) and f > 0:
            # measured later on this prediction as made (not as corrected), so the
            # correction is the median error of the rule itself, not a running integral
            heapq.heappush(self._pending, (predicted + s.learn_settle_s, self._seq, ch,
                                           predicted, f))
            self._seq += 1
            corr = float(self.timing_correction_s[ch])
            if corr:
                predicted += corr
                if predicted <= detect:      # learned later than this cycle allows
                    predicted += 1.0 / f
        th = float(thr[j, ch])
        return Event(kind=self.KIND, channel=s.channels[ch], onset_s=onset, detect_s=detect,
                     peak_s=trough_t, amplitude=trough_v, score=trough_v / th, threshold=th,
                     predicted_s=predicted)

    def _halfwave(self, ch: int, onset_t: float, detect_t: float, trough_v: float,
                  thr_v: float) -> tuple[float, float]:
        """Predicted time of ``target_deg`` from this cycle's down half-wave.

        Near the trough the wave is ``-A cos(w (t - t_trough))``; it crosses the threshold
        level ``-L`` at ``t_trough -+ arccos(L/A) / w``. So the midpoint of the down- and
        up-crossings is the trough and their distance gives ``w``; the band-pass shifts the
        wave by ``phi(f) / w``, which is added back. Returns (predicted time s, frequency
        Hz), both NaN when the wave is too shallow or not SO-shaped.
        """
        s = self.settings
        width = detect_t - onset_t
        ratio = thr_v / trough_v if trough_v < 0 else float("nan")
        if not (width > 0 and 0 < ratio <= s.max_depth_ratio):
            self.passed_over["too_shallow"] += 1
            return math.nan, math.nan
        w = 2.0 * math.acos(ratio) / width
        f = w / (2 * math.pi)
        if not s.predict_min_hz <= f <= 2.0 * s.phase_band_hz[1]:
            # not a predictable SO: no prediction. Broad down states (low f: slow dips,
            # movement, arousal on the DREAMS excerpts) are followed by up states whose
            # timing scatters; trigger on the predictable ones only
            self.passed_over["too_broad" if f < s.predict_min_hz else "too_fast"] += 1
            return math.nan, math.nan
        phi = float(np.interp(f, self._fgrid, self._hphase))
        true_trough = 0.5 * (onset_t + detect_t) + phi / w
        frac = ((s.target_deg - 180.0) % 360.0) / 360.0
        return true_trough + frac / f, f


def _range_fmax(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Row ``i`` of the result: the NaN-ignoring maximum (``np.fmax``, as ``np.nanmax``)
    of rows ``lo[i]`` to ``hi[i]`` inclusive of ``v`` (m, k); NaN where all are NaN. A
    sparse table: level ``j`` holds the maxima of ``2**j`` rows, and a range is the
    maximum of two overlapping power-of-two spans -- exact, as a maximum is."""
    length = hi - lo + 1
    top = int(length.max()).bit_length() - 1
    levels = [v]
    for j in range(1, top + 1):
        w = 1 << (j - 1)
        prev = levels[-1]
        levels.append(np.fmax(prev[:-w], prev[w:]))
    lv = _floor_log2(length)
    out = np.empty((lo.size, v.shape[1]))
    for j in np.unique(lv):
        sel = lv == j
        t = levels[j]
        out[sel] = np.fmax(t[lo[sel]], t[hi[sel] - (1 << int(j)) + 1])
    return out


def _floor_log2(x: np.ndarray) -> np.ndarray:
    """floor(log2(x)) of positive int64s, exactly (no float rounding)."""
    out = np.zeros(x.shape, dtype=np.int64)
    y = x.copy()
    for s in (32, 16, 8, 4, 2, 1):
        big = y >= (1 << s)
        out[big] += s
        y[big] >>= s
    return out
