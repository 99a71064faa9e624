"""Online slow-oscillation down-state detector with up-state prediction.

The EEG is band-passed (0.5-4 Hz by default) causally; when it falls below the negative
threshold a down state has begun, and its trough is the first sample at which the filtered
signal rises again. At that sample the detector emits ``Event(kind="so")`` with
``peak_s`` = trough time and ``predicted_s`` = the predicted time of the next up-state
peak, either

* ``"fixed"``: trough + ``fixed_delay_s`` (Ngo et al. 2013, Neuron 78:545: -80 uV
  threshold, first click at the up state predicted ~0.5 s after the negative peak), or
* ``"phase"``: trough time + ECHT ``time_to_phase(target_deg)`` computed from the raw
  channel at the trough sample (see :mod:`decoders.phase`).

The threshold is fixed (``threshold_v``, volts, negative) or adaptive: ``adaptive_sd``
robust SDs of the band-passed signal over the last ``baseline_s`` (the SD estimated as
1.4826 x median |x|), never shallower than ``min_threshold_v``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from controller.schema import setting
from decoders.baseline import MAD_TO_SD, ChannelPicker, RobustBaseline, TimeRing
from decoders.events import Event
from decoders.filters import SosFilter, butter_bandpass
from decoders.phase import EchtKernel
from drivers.chunk import Chunk

__all__ = ["SlowOscSettings", "SlowOscDetector"]


@dataclass(frozen=True)
class SlowOscSettings:
    """``[detectors.so]``: slow-oscillation down states and up-state prediction."""

    enabled: bool = setting(True, doc="run the slow-oscillation detector")
    channels: tuple[str, ...] = setting(("Fz",), doc="EEG channels (frontal: SOs are largest "
                                                     "there), each detected on independently")
    band_hz: tuple[float, float] = setting((0.5, 4.0), gt=0, unit="Hz",
                                           doc="band-pass for down-state detection")
    filter_order: int = setting(2, ge=1, le=4, doc="Butterworth order per band edge")
    threshold_mode: Literal["fixed", "adaptive"] = setting(
        "adaptive", doc="fixed threshold_v, or adaptive_sd robust SDs of the filtered signal")
    threshold_v: float = setting(-80e-6, lt=0, unit="V", doc="fixed down-state threshold "
                                                             "(Ngo et al. 2013: -80 uV)")
    adaptive_sd: float = setting(2.0, gt=0, unit="SD", doc="adaptive threshold depth in "
                                                           "robust SDs")
    min_threshold_v: float = setting(40e-6, ge=0, unit="V", doc="the adaptive threshold is "
                                                                "never shallower than this")
    predict: Literal["phase", "fixed"] = setting(
        "phase", doc="up-state prediction: ECHT phase, or trough + fixed_delay_s")
    fixed_delay_s: float = setting(0.5, gt=0, unit="s", doc="trough-to-up-state delay for "
                                                            "'fixed' (Ngo et al. 2013: ~0.5 s)")
    target_deg: float = setting(0.0, ge=-180, le=180, unit="deg",
                                doc="phase predicted_s aims at (0 = up-state peak)")
    phase_band_hz: tuple[float, float] = setting((0.5, 1.25), gt=0, unit="Hz",
                                                 doc="band of the ECHT phase estimate")
    phase_window_s: float = setting(4.0, gt=0, le=30, unit="s", doc="ECHT window")
    refractory_s: float = setting(0.4, ge=0, unit="s", doc="dead time after an event (also "
                                                           "waits for the signal to cross "
                                                           "zero upwards)")
    calibration_s: float = setting(5.0, ge=0, unit="s",
                                   doc="no events until this long after the first sample")
    baseline_s: float = setting(60.0, gt=0, unit="s", doc="history of the adaptive threshold")
    baseline_update_s: float = setting(1.0, gt=0, unit="s", doc="adaptive threshold "
                                                                "recomputed this often")

    def validate(self) -> None:
        for name in ("band_hz", "phase_band_hz"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name}: low edge {lo} must be below high edge {hi}")
        if not self.channels:
            raise ValueError("channels: give at least one channel name")
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

    def __init__(self, settings: SlowOscSettings | None = None) -> None:
        self.settings = settings or SlowOscSettings()
        self._picker = ChannelPicker(tuple(self.settings.channels), "detectors.so")
        self._k = len(self.settings.channels)
        self._fs = 0.0
        self._cap = 0

    def _setup(self, fs: float) -> None:
        s, k = self.settings, self._k
        self._fs = fs
        self._filt = SosFilter(butter_bandpass(*s.band_hz, fs, s.filter_order), k)
        self._base = RobustBaseline(k, fs, history_s=s.baseline_s, step_s=0.02,
                                    update_s=s.baseline_update_s, exclude_sd=math.inf,
                                    min_fill=0.05, absolute=True)
        self._echt = (EchtKernel(fs, s.phase_band_hz, s.phase_window_s, k)
                      if s.predict == "phase" else None)
        self._times = TimeRing(int(fs * 5.0))
        self._state = np.zeros(k, dtype=np.int8)   # 0 armed, 1 below threshold, 2 fired
        self._onset = np.full(k, np.nan)
        self._rearm_t = np.full(k, -np.inf)
        self._last = np.zeros(k)                   # last filtered sample (for the slope)
        self._last_t = np.nan
        self._first = True
        self._calibrating = True
        self._t0 = np.nan
        self._alloc(64)

    def _alloc(self, n: int) -> None:
        k = self._k
        self._cap = n
        self._y = np.empty((n, k))
        self._med = np.empty((n, k))
        self._sd = np.empty((n, k))
        self._thr = np.empty((n, k))

    def reset(self) -> None:
        """Forget all state; the next chunk starts a new calibration."""
        self._fs = 0.0

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
        n = chunk.n_samples
        if n == 0:
            return []
        if chunk.rate_hz != self._fs:
            self._setup(float(chunk.rate_hz))
        if n > self._cap:
            self._alloc(max(n, 2 * self._cap))
        s, k = self.settings, self._k
        t = chunk.timestamps
        x = self._picker.pick(chunk.samples, chunk.channels)
        first = self._base.index
        if self._first:
            self._first = False
            self._t0 = float(t[0])
            self._filt.reset(x[0])      # start in steady state: no step transient
            self._last[:] = 0.0
        self._times.write(t)
        y = self._filt.process(x, self._y[:n])
        thr = self._thr[:n]
        if s.threshold_mode == "adaptive":
            med, sd = self._med[:n], self._sd[:n]
            self._base.process(y, med, sd)
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
                lo = max(0, ready_index - first)
                ok = np.flatnonzero(t[lo:] >= self._t0 + s.calibration_s)
                j = lo + int(ok[0]) if ok.size else -1
            if j < 0:
                self._feed_echt(x, 0, n)
                self._last[:] = y[-1]
                self._last_t = float(t[-1])
                return events
            self._calibrating = False
            events.append(Event(kind="calibration_done", channel=self.KIND, onset_s=self._t0,
                                detect_s=float(t[j]), threshold=float(thr[j, 0])))
            start = j
            self._state[:] = 0
        found: list[tuple[int, int, float]] = []   # (sample, channel, onset_s)
        for ch in range(k):
            self._scan(ch, start, y[:, ch], thr[:, ch], t, found)
        if not found:
            self._feed_echt(x, 0, n)
        else:
            found.sort()
            fed = 0
            for j, ch, onset in found:
                self._feed_echt(x, fed, j + 1)
                fed = j + 1
                events.append(self._event(j, ch, onset, y, thr, t))
            self._feed_echt(x, fed, n)
        self._last[:] = y[-1]
        self._last_t = float(t[-1])
        return events

    def _feed_echt(self, x: np.ndarray, a: int, b: int) -> None:
        if self._echt is not None and b > a:
            self._echt.write(x[a:b])

    def _scan(self, ch: int, i: int, y: np.ndarray, thr: np.ndarray, t: np.ndarray,
              found: list) -> None:
        n = y.shape[0]
        while i < n:
            st = self._state[ch]
            if st == 0:
                hit = np.flatnonzero(y[i:] < thr[i:])
                if hit.size == 0:
                    return
                j = i + int(hit[0])
                self._onset[ch] = t[j]
                self._state[ch] = 1
                i = j
                continue
            if st == 1:
                # trough: first sample (from i) where y rises above the previous sample
                prev = y[i - 1] if i > 0 else self._last[ch]
                if y[i] > prev:
                    j = i
                else:
                    d = np.flatnonzero(y[i + 1:] > y[i:-1]) if i + 1 < n else np.zeros(0)
                    if d.size == 0:
                        return
                    j = i + 1 + int(d[0])
                found.append((j, ch, float(self._onset[ch])))
                self._state[ch] = 2
                self._rearm_t[ch] = float(t[j]) + self.settings.refractory_s
                i = j + 1
                continue
            # st == 2: re-arm after an upward zero crossing past the refractory time
            ok = np.flatnonzero((y[i:] > 0) & (t[i:] >= self._rearm_t[ch]))
            if ok.size == 0:
                return
            self._state[ch] = 0
            i += int(ok[0]) + 1

    def _event(self, j: int, ch: int, onset: float, y: np.ndarray, thr: np.ndarray,
               t: np.ndarray) -> Event:
        s = self.settings
        trough_v = float(y[j - 1, ch]) if j > 0 else float(self._last[ch])
        trough_t = float(t[j - 1]) if j > 0 else float(self._last_t)
        detect = float(t[j])
        if self._echt is not None:
            if self._echt.count >= self._echt.n:
                ph, f, _ = self._echt.analytic()
                d = (s.target_deg - float(ph[ch])) % 360.0
                predicted = detect + d / (360.0 * float(f[ch]))
            else:
                predicted = trough_t + s.fixed_delay_s
        else:
            predicted = trough_t + s.fixed_delay_s
        th = float(thr[j, ch])
        return Event(kind=self.KIND, channel=s.channels[ch], onset_s=onset, detect_s=detect,
                     peak_s=trough_t, amplitude=trough_v, score=trough_v / th, threshold=th,
                     predicted_s=predicted)
