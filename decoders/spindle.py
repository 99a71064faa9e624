"""Online sleep-spindle detector.

Online versions of the three rules of YASA's ``spindles_detect`` (Vallat & Walker 2021,
eLife 10:e70092; after Lacourse et al. 2019, J Neurosci Methods 316:3):

1. absolute: the sigma-band (11-16 Hz) moving RMS is above ``median + threshold_sd *
   robust SD`` of its own running baseline (YASA: mean + 1.5 SD of the whole record);
2. relative: sigma power / broadband (1-30 Hz) power in the same moving window is at least
   ``rel_power_min`` (YASA: 0.2);
3. shape: the moving correlation between the sigma-filtered and the broadband signal is at
   least ``corr_min`` (YASA: 0.65) -- a spindle dominates the signal's shape, a
   sigma-band bump under a slow wave or an artefact does not. Offline, YASA filters with
   zero phase; a causal band-pass shifts the phase of a spindle that is off the band
   centre, so we take the correlation with the best phase shift: with ``q`` the quadrature
   of the sigma signal (its derivative scaled at the band centre),
   ``corr = sqrt(corr(xs, xb)^2 + corr(q, xb)^2)``.

All windows are causal (trailing); the sigma signal is band-passed out of the broadband
one, so both are in phase at the spindle frequency. The moving correlation needs the moving
mean of a product; with ``mean(xy) = (mean((x+y)^2) - mean((x-y)^2)) / 4`` it comes from two moving
RMS envelopes, so every rule runs in the C filter bank. An event fires when all three
rules have held for ``min_duration_s``; if they go on holding beyond ``max_duration_s``
the detector emits ``spindle_rejected`` for it. A fourth, online-only rule vetoes
while the alpha band (7.5-10.5 Hz) RMS exceeds 0.6 x the sigma RMS: wake alpha reaches
into 11-12 Hz, a spindle carries little alpha. (``spindle_rejected`` exists because online
a fired event cannot be taken back, but the recording and the scorer can drop it.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.schema import check_bands, setting
from decoders._filters import quadrature_sums, spindle_runs
from decoders.baseline import ChannelPicker, RobustBaseline, TimeRing
from decoders.events import Event
from decoders.filters import BandEnvelope, MovingRms, butter_bandpass
from drivers.chunk import Chunk

__all__ = ["SpindleSettings", "SpindleDetector"]


@dataclass(frozen=True)
class SpindleSettings:
    """``[detectors.spindle]``: sleep spindles on scalp EEG."""

    enabled: bool = setting(True, doc="run the spindle detector")
    channels: tuple[str, ...] = setting(("Cz",), doc="EEG channels, each detected on "
                                                     "independently")
    sigma_band_hz: tuple[float, float] = setting((11.0, 16.0), gt=0, unit="Hz",
                                                 doc="spindle (sigma) band")
    broad_band_hz: tuple[float, float] = setting((1.0, 30.0), gt=0, unit="Hz",
                                                 doc="broadband for relative power and "
                                                     "correlation")
    filter_order: int = setting(2, ge=1, le=6, doc="Butterworth order per band edge")
    window_s: float = setting(0.15, gt=0, le=5, unit="s", doc="moving RMS/correlation window "
                                                              "(YASA: 0.3 s centred; causal "
                                                              "windows lag, so shorter)")
    threshold_sd: float = setting(3.0, ge=0, unit="SD", doc="sigma RMS above its baseline "
                                                            "median, in robust SDs (YASA: mean "
                                                            "+ 1.5 SD of the whole record, which "
                                                            "includes the spindles)")
    rel_power_min: float = setting(0.1, ge=0, le=1, doc="minimum sigma/broadband power ratio "
                                                         "(YASA: 0.2 over 2 s windows)")
    corr_min: float = setting(0.4, ge=-1, le=1, doc="minimum sigma-vs-broadband correlation "
                                                     "(YASA: 0.65, zero-phase)")
    alpha_band_hz: tuple[float, float] = setting((7.5, 10.5), gt=0, unit="Hz",
                                                 doc="band of the alpha veto")
    alpha_ratio_max: float = setting(0.6, ge=0, doc="veto while alpha RMS exceeds this times "
                                                    "the sigma RMS (wake alpha leaks into the "
                                                    "sigma band; a spindle has little alpha); "
                                                    "0 disables")
    min_duration_s: float = setting(0.15, ge=0, le=2, unit="s",
                                    doc="all rules must hold this long before an event fires")
    max_duration_s: float = setting(2.5, gt=0, unit="s",
                                    doc="longer runs are reported as spindle_rejected")
    refractory_s: float = setting(0.5, ge=0, unit="s", doc="dead time after an event")
    calibration_s: float = setting(10.0, ge=0, unit="s",
                                   doc="no events until this long after the first sample")
    baseline_s: float = setting(60.0, gt=0, unit="s", doc="history of the running baseline")
    baseline_step_s: float = setting(0.02, gt=0, unit="s", doc="baseline keeps one RMS sample "
                                                               "per step")
    baseline_update_s: float = setting(2.0, gt=0, unit="s", doc="baseline recomputed this "
                                                                "often")
    baseline_min_fill: float = setting(0.05, gt=0, le=1, doc="fraction of the history "
                                                             "needed before the first "
                                                             "statistics")
    exclude_sd: float = setting(1.5, gt=0, unit="SD", doc="RMS samples above median + "
                                                          "exclude_sd SD stay out of the "
                                                          "baseline")

    def validate(self) -> None:
        check_bands(self, "sigma_band_hz", "broad_band_hz", "alpha_band_hz")
        if not self.channels:
            raise ValueError("channels: give at least one channel name")
        if self.max_duration_s <= self.min_duration_s:
            raise ValueError("max_duration_s: must be greater than min_duration_s")


class SpindleDetector:
    """Causal spindle detector: ``process(chunk) -> list[Event]``.

    Emits ``Event(kind="spindle")`` (``amplitude`` = sigma RMS, ``score`` = RMS in robust
    SDs above the baseline median, ``threshold`` = the RMS threshold), ``spindle_rejected``
    when a fired event outlasts ``max_duration_s``, and once ``calibration_done`` (with
    ``channel="spindle"``).
    """

    KIND = "spindle"

    def __init__(self, settings: SpindleSettings | None = None) -> None:
        self.settings = settings or SpindleSettings()
        self._picker = ChannelPicker(tuple(self.settings.channels), "detectors.spindle")
        self._k = len(self.settings.channels)
        self._fs = 0.0
        self._cap = 0

    def _setup(self, fs: float) -> None:
        s = self.settings
        k = self._k
        self._fs = fs
        for name in ("sigma_band_hz", "broad_band_hz"):
            if getattr(s, name)[1] >= fs / 2:
                raise ValueError(f"detectors.spindle.{name}: {getattr(s, name)[1]} Hz is at or "
                                 f"above Nyquist of a {fs} Hz source")
        win = max(1, int(round(s.window_s * fs)))
        self._sigma = BandEnvelope(butter_bandpass(*s.sigma_band_hz, fs, s.filter_order), k, win)
        self._broad = BandEnvelope(butter_bandpass(*s.broad_band_hz, fs, s.filter_order), k, win)
        self._pm = MovingRms(4 * k, win)
        self._alpha = (BandEnvelope(butter_bandpass(*s.alpha_band_hz, fs, s.filter_order), k,
                                    win) if s.alpha_ratio_max > 0 else None)
        # derivative -> quadrature (90 deg) at the sigma centre frequency
        self._qgain = fs / (2 * np.pi * np.sqrt(s.sigma_band_hz[0] * s.sigma_band_hz[1]))
        self._xs_last = np.zeros(k)
        self._base = RobustBaseline(k, fs, history_s=s.baseline_s, step_s=s.baseline_step_s,
                                    update_s=s.baseline_update_s, exclude_sd=s.exclude_sd,
                                    min_fill=s.baseline_min_fill, update_phase=0.33)
        self._min_n = max(1, int(round(s.min_duration_s * fs)) + 1)
        self._max_n = max(self._min_n + 1, int(round(s.max_duration_s * fs)) + 1)
        self._times = TimeRing(int(fs * (s.max_duration_s + 1.0)))
        self._carry = np.zeros(k, dtype=np.int64)
        self._armed = np.ones(k, dtype=bool)
        self._rearm_t = np.full(k, -np.inf)
        self._open = np.zeros(k, dtype=bool)     # fired, run still going
        self._open_onset = np.full(k, np.nan)
        self._calibrating = True
        self._t0 = np.nan
        self._alloc(64)

    def _alloc(self, n: int) -> None:
        k = self._k
        self._cap = n
        self._xs, self._es = np.empty((n, k)), np.empty((n, k))
        self._xb, self._eb = np.empty((n, k)), np.empty((n, k))
        self._sum = np.empty((n, 4 * k))
        self._pmo = np.empty((n, 4 * k))
        self._xa, self._ea = np.empty((n, k)), np.empty((n, k))
        self._med, self._sd = np.empty((n, k)), np.empty((n, k))
        self._thr = np.empty((n, k))
        self._runs = np.empty((n, k), dtype=np.int64)

    def reset(self) -> None:
        """Forget all state; the next chunk starts a new calibration."""
        self._fs = 0.0

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
        n = chunk.n_samples
        if n == 0:
            return []
        if chunk.rate_hz != self._fs:
            self._setup(float(chunk.rate_hz))
        if n > self._cap:
            self._alloc(max(n, 2 * self._cap))
        s, k = self.settings, self._k
        t = chunk.timestamps
        first = self._base.index
        if first == 0:
            self._t0 = float(t[0])
        self._times.write(t)
        x = self._picker.pick(chunk.samples, chunk.channels)
        # sigma is filtered out of the broadband signal (not the raw one): at the sigma
        # centre the band-pass has zero phase, so a spindle is in phase in both signals
        # and the correlation is not spoilt by the two causal filters' different delays.
        xb, eb = self._broad.process_envelope(x, self._xb[:n], self._eb[:n])
        xs, es = self._sigma.process_envelope(xb, self._xs[:n], self._es[:n])
        # q = quadrature of xs (scaled first difference); sums [xs+xb, xs-xb, q+xb, q-xb]
        sm = quadrature_sums(xs, xb, self._xs_last, self._qgain, self._sum[:n])
        pm = self._pm.process(sm, self._pmo[:n])
        med, sd = self._med[:n], self._sd[:n]
        self._base.process(es, med, sd)
        thr = self._thr[:n]
        np.multiply(sd, s.threshold_sd, out=thr)
        thr += med
        ea = (self._alpha.process_envelope(xb, self._xa[:n], self._ea[:n])[1]
              if self._alpha is not None else None)     # keeps its state every chunk
        runs = self._runs[:n]
        # one C call evaluates every rule per sample and the run lengths (rules below; the
        # NumPy twin is tests/test_filters_detect.py):
        # - absolute: sigma RMS above threshold
        # - relative power: es^2 >= rel * eb^2
        # - correlation, phase-free: c_i = mean(xs*xb), c_q = mean(q*xb) with q the
        #   quadrature of xs; (c_i^2 + c_q^2) >= corr_min^2 * es^2 * eb^2 (each mean from
        #   (p^2 - m^2) / 4 of the moving RMS of the sum p and difference m)
        # - alpha veto: ea <= alpha_ratio_max * es
        longest = spindle_runs(es, eb, pm, ea, thr, s.rel_power_min, s.corr_min,
                               s.alpha_ratio_max, self._carry, runs)
        if longest == 0:
            return self._quiet(t, first, med, sd, thr)
        events: list[Event] = []
        start = 0
        if self._calibrating:
            j = self._calibration_index(t, first)
            if j < 0:
                return events
            self._calibrating = False
            events.append(Event(kind="calibration_done", channel=self.KIND, onset_s=self._t0,
                                detect_s=float(t[j]), amplitude=float(med[j, 0]),
                                score=float(sd[j, 0]), threshold=float(thr[j, 0])))
            start = j
        if (longest < self._min_n and not self._open.any() and self._armed.all()) or not (
                self._open.any() or (runs[start:] >= self._min_n).any()
                or not self._armed.all()):
            return events
        for ch in range(k):
            self._scan(ch, start, runs[:, ch], t, es, med, sd, thr, first, events)
        if k > 1:
            events.sort(key=lambda e: e.detect_s)
        return events

    def _quiet(self, t: np.ndarray, first: int, med: np.ndarray, sd: np.ndarray,
               thr: np.ndarray) -> list[Event]:
        """Fast path for a chunk where no sample passes the absolute rule: every run
        length is 0, so open events end and channels past their refractory re-arm."""
        self._carry.fill(0)
        events: list[Event] = []
        if self._calibrating:
            j = self._calibration_index(t, first)
            if j < 0:
                return events
            self._calibrating = False
            events.append(Event(kind="calibration_done", channel=self.KIND, onset_s=self._t0,
                                detect_s=float(t[j]), amplitude=float(med[j, 0]),
                                score=float(sd[j, 0]), threshold=float(thr[j, 0])))
        self._open.fill(False)
        if not self._armed.all():
            self._armed |= self._rearm_t <= t[-1]
        return events

    def _calibration_index(self, t: np.ndarray, first: int) -> int:
        b = self._base
        if not b.ready:
            return -1
        lo = max(0, b.ready_index - first)
        ok = np.flatnonzero(t[lo:] >= self._t0 + self.settings.calibration_s)
        return lo + int(ok[0]) if ok.size else -1

    def _scan(self, ch: int, i: int, runs: np.ndarray, t: np.ndarray, es: np.ndarray,
              med: np.ndarray, sd: np.ndarray, thr: np.ndarray, first: int,
              events: list[Event]) -> None:
        n = runs.shape[0]
        name = self.settings.channels[ch]
        while i < n:
            if self._open[ch]:
                # the fired run either ends (run length drops to 0) or reaches max duration
                ends = np.flatnonzero(runs[i:] == 0)
                end = i + int(ends[0]) if ends.size else n
                longs = np.flatnonzero(runs[i:end] == self._max_n)
                if longs.size:
                    j = i + int(longs[0])
                    events.append(Event(kind="spindle_rejected", channel=name,
                                        onset_s=float(self._open_onset[ch]),
                                        detect_s=float(t[j]), amplitude=float(es[j, ch]),
                                        threshold=float(thr[j, ch])))
                    self._open[ch] = False
                if end == n:
                    return
                self._open[ch] = False
                i = end
                continue
            if not self._armed[ch]:
                ok = np.flatnonzero((runs[i:] == 0) & (t[i:] >= self._rearm_t[ch]))
                if ok.size == 0:
                    return
                self._armed[ch] = True
                i += int(ok[0])
                continue
            hit = np.flatnonzero(runs[i:] >= self._min_n)
            if hit.size == 0:
                return
            j = i + int(hit[0])
            onset_idx = first + j - int(runs[j]) + 1
            onset_s = (float(t[onset_idx - first]) if onset_idx >= first
                       else self._times.at(onset_idx))
            events.append(Event(kind=self.KIND, channel=name, onset_s=onset_s,
                                detect_s=float(t[j]), amplitude=float(es[j, ch]),
                                score=float((es[j, ch] - med[j, ch]) / sd[j, ch]),
                                threshold=float(thr[j, ch])))
            self._armed[ch] = False
            self._rearm_t[ch] = float(t[j]) + self.settings.refractory_s
            self._open[ch] = True
            self._open_onset[ch] = onset_s
            i = j + 1
