"""Per-epoch sleep features for the memory-decay forecaster, computed online.

One stateful stage, :class:`EpochFeatures`, turns the sample stream plus the detectors'
:class:`~decoders.events.Event` list (and the times of delivered pulses) into one
:class:`FeatureVector` per epoch. The same object runs offline (a whole night in one call)
and online (chunk by chunk in the loop) and gives identical vectors, because everything
is keyed to host-clock time, never to chunk boundaries:

* time is cut into *blocks* of ``hop_s`` aligned to multiples of ``hop_s`` on the host
  clock (block ``b`` covers ``[b * hop_s, (b + 1) * hop_s)``);
* an event belongs to the block that holds its ``detect_s`` (the moment the loop knew of
  it, so the feature is causal) and a pulse to the block that holds its time;
* when the first sample of a later block arrives, the finished block is sealed and a
  vector is emitted over the last ``epoch_s / hop_s`` blocks (a sliding update every
  ``hop_s`` when ``hop_s < epoch_s``). All block statistics are sums, so windows combine
  exactly.

Band powers come from the C filter bank (:class:`decoders.filters.SosFilter`, state kept
across chunks). Torch is never imported here: this module also holds :class:`Forecast`,
the record the forecaster hands to the policy, so the loop can use both without torch.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engramloop.core.events import Event
from engramloop.core.schema import setting
from engramloop.decoders.filters import SosFilter, butter_bandpass

__all__ = ["FeatureSettings", "FeatureVector", "EpochFeatures", "Forecast", "FEATURE_NAMES",
           "BAND_NAMES"]

#: EEG bands whose log power is a feature: delta 0.5-4 Hz (slow waves), theta 4-8 Hz,
#: sigma 11-16 Hz (spindles, AASM), beta 16-30 Hz (arousal). Hippocampal bands on the LFP
#: channel: theta 6-10 Hz (REM / wake theta, Buzsaki 2002) and ripple 150-250 Hz
#: (Buzsaki 2015).
BAND_NAMES: tuple[str, ...] = ("eeg_delta", "eeg_theta", "eeg_sigma", "eeg_beta",
                               "lfp_theta", "lfp_ripple")

#: Every feature, in vector order. Rates are per second of epoch, densities per minute,
#: amplitudes in microvolts, powers log10(V^2), phases as cos/sin of the circular mean
#: weighted by coupling strength (so the vector has no wrap-around). The last four are
#: session history: hours since the first sample, and cumulative counts (thousands) of
#: ripples, ripples inside spindles and pulses since then -- how much labile memory is
#: left depends on the whole night so far, not only on the last few epochs.
FEATURE_NAMES: tuple[str, ...] = (
    "ripple_rate_hz", "ripple_amp_uv", "ripple_score",
    "spindle_per_min", "spindle_amp_uv",
    "so_per_min", "so_amp_uv",
    "so_spindle_strength", "so_spindle_cos", "so_spindle_sin",
    "ripple_spindle_frac",
    "logp_eeg_delta", "logp_eeg_theta", "logp_eeg_sigma", "logp_eeg_beta",
    "logp_lfp_theta", "logp_lfp_ripple",
    "sws_index", "rem_index",
    "pulses", "coverage",
    "elapsed_h", "cum_ripples_k", "cum_coupled_k", "cum_pulses_k",
)

# block accumulator columns (sums; windows add them up)
_A = {name: i for i, name in enumerate((
    "n_ripple", "sum_ripple_amp", "sum_ripple_score", "n_spindle", "sum_spindle_amp",
    "n_so", "sum_so_amp", "n_coupled", "sum_cos", "sum_sin", "n_ripple_in_spindle",
    "n_pulses", "n_samples",
    *(f"pow_{b}" for b in BAND_NAMES)))}

# Bands in Hz (see BAND_NAMES).
_BAND_HZ = {"eeg_delta": (0.5, 4.0), "eeg_theta": (4.0, 8.0), "eeg_sigma": (11.0, 16.0),
            "eeg_beta": (16.0, 30.0), "lfp_theta": (6.0, 10.0), "lfp_ripple": (150.0, 250.0)}

#: A coupled spindle peaks within this time after the SO down-state it rides on; SO
#: cycles last 0.8-2 s (0.5-1.25 Hz), so 1.5 s covers the following up-state.
_COUPLING_WINDOW_S = 1.5
#: Nominal down-state-to-up-state time when an SO event carries no predicted up-state
#: (half a 1 Hz cycle).
_HALF_CYCLE_S = 0.5
#: A ripple counts as inside a spindle when its peak lies from 0.1 s before the spindle's
#: onset to 1.0 s after it (median spindle duration ~1 s; ripples nest in spindle troughs,
#: Sirota et al. 2003, Staresina et al. 2015).
_SPINDLE_SPAN_S = (-0.1, 1.0)


@dataclass(frozen=True)
class FeatureSettings:
    """``[forecaster.features]``: how epoch features are computed."""

    epoch_s: float = setting(30.0, gt=0, le=3600, unit="s",
                             doc="length of the window each feature vector summarises "
                                 "(30 s is the sleep-scoring epoch, AASM)")
    hop_s: float = setting(30.0, gt=0, le=3600, unit="s",
                           doc="a vector is emitted every hop_s (equal to epoch_s: "
                               "non-overlapping epochs; smaller: sliding update); "
                               "epoch_s must be a whole multiple of it")
    eeg_channel: str = setting("Cz", doc="scalp EEG channel for delta/theta/sigma/beta power")
    lfp_channel: str = setting("CA1", doc="hippocampal channel for theta and ripple-band "
                                          "power; empty to skip (features set to NaN-free 0)")

    def validate(self) -> None:
        ratio = self.epoch_s / self.hop_s
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(f"hop_s: epoch_s ({self.epoch_s}) must be a whole multiple of "
                             f"hop_s ({self.hop_s})")

    @property
    def n_blocks(self) -> int:
        """Blocks of ``hop_s`` per epoch."""
        return int(round(self.epoch_s / self.hop_s))


@dataclass(frozen=True)
class FeatureVector:
    """Features of one epoch.

    Attributes
    ----------
    t_start_s, t_end_s : float
        Host-clock span of the epoch, seconds (``t_end_s`` is when it became available).
    values : ndarray, shape (n_features,), float64
        In :data:`FEATURE_NAMES` order (units in their names).
    names : tuple of str
        The feature names.
    """

    t_start_s: float
    t_end_s: float
    values: np.ndarray
    names: tuple[str, ...] = FEATURE_NAMES

    def __getitem__(self, name: str) -> float:
        return float(self.values[self.names.index(name)])

    def to_dict(self) -> dict:
        """JSON-ready dict (for the recorder's ``forecasts`` stream)."""
        return {"t_start_s": self.t_start_s, "t_end_s": self.t_end_s,
                **{n: float(v) for n, v in zip(self.names, self.values, strict=True)}}

    @property
    def so_spindle_phase_deg(self) -> float:
        """Preferred SO phase of coupled spindles (cosine phase, degrees; NaN if none)."""
        c, s = self["so_spindle_cos"], self["so_spindle_sin"]
        return math.degrees(math.atan2(s, c)) if (c or s) else float("nan")


@dataclass(frozen=True)
class Forecast:
    """One forecast of memory change, issued at the end of an epoch.

    Attributes
    ----------
    time_s : float
        Host-clock time the forecast refers to (end of the last epoch it saw), seconds.
    horizon_s : float
        How far ahead it forecasts, seconds.
    p_below_median : float
        Calibrated probability that pooled memory strength falls by more than the
        checkpoint's ``decay_threshold`` within ``horizon_s`` without stimulation, i.e.
        P(below-median consolidation) (0-1). Recordings made before issue 21 call it
        ``p_decay`` (:func:`recording.schema.upgrade_forecast` reads both).
    delta_strength : float
        Forecast change of pooled memory strength over ``horizon_s`` (strength units, the
        simulator's 0-1 recall scale).
    model_version : str
        Version string of the checkpoint that made it.
    per_memory : tuple of float, optional
        Per-memory forecast changes when the model has per-memory heads (else empty).
    """

    time_s: float
    horizon_s: float
    p_below_median: float
    delta_strength: float
    model_version: str
    per_memory: tuple[float, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """JSON-ready dict (for the recorder's ``forecasts`` stream)."""
        d = asdict(self)
        d["per_memory"] = list(self.per_memory)
        return d


class EpochFeatures:
    """The per-epoch feature stage: ``process(chunk, events) -> list[FeatureVector]``.

    Parameters
    ----------
    settings : FeatureSettings

    Notes
    -----
    Filters are designed when the first chunk fixes the sampling rate and channel names.
    A chunk's samples are assigned to blocks by their own timestamps, so dropped samples
    only lower the ``coverage`` feature (fraction of the expected samples present). So do
    non-finite samples (NaN, +-Inf) in a channel the band filters read: their rows are
    missing samples, the filters restart at the next clean sample, and
    ``n_nonfinite_samples`` counts them (one NaN used to stay in the filter state and make
    every later band power NaN).
    """

    def __init__(self, settings: FeatureSettings | None = None) -> None:
        self.settings = settings or FeatureSettings()
        self.names = FEATURE_NAMES
        self._rate_hz = 0.0
        self._channels: tuple[str, ...] = ()
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all history (filters are rebuilt on the next chunk)."""
        self._filters: list[tuple[str, SosFilter, int]] = []
        self._rate_hz = 0.0
        self._channels = ()
        self._block: int | None = None          # index of the open block
        self._acc = np.zeros(len(_A))           # its accumulators
        self._ring: deque[np.ndarray] = deque(maxlen=self.settings.n_blocks)
        self._ring_ids: deque[int] = deque(maxlen=self.settings.n_blocks)
        self._pending: list[tuple[float, int, Any]] = []   # (time, order, Event | pulse)
        self._order = 0
        self._recent_so: deque[tuple[float, float]] = deque(maxlen=16)   # (trough, up)
        self._recent_ripples: deque[list] = deque(maxlen=64)  # [peak_s, counted]
        self._recent_spindles: deque[float] = deque(maxlen=16)  # onset_s
        self._buf = np.zeros((0, 1))
        self._col = np.zeros((0, 1))
        self._t_first: float | None = None
        self._cum = np.zeros(3)     # ripples, ripples in spindles, pulses (sealed blocks)
        self._cols: list[int] = []  # channel indices the band filters read
        #: the filters restart at the next sample (the last one seen was non-finite)
        self._reprime = False
        #: non-finite samples seen in the channels the band filters read (never filtered:
        #: their rows count as missing samples, see ``coverage``)
        self.n_nonfinite_samples = 0

    def _setup(self, rate_hz: float, channels: tuple[str, ...]) -> None:
        s = self.settings
        if s.eeg_channel not in channels:
            raise ValueError(f"forecaster.features.eeg_channel: {s.eeg_channel!r} not in the "
                             f"source's channels {list(channels)}")
        if s.lfp_channel and s.lfp_channel not in channels:
            raise ValueError(f"forecaster.features.lfp_channel: {s.lfp_channel!r} not in the "
                             f"source's channels {list(channels)} (set it to '' to skip)")
        self._filters = []
        nyq = rate_hz / 2
        for band in BAND_NAMES:
            lo, hi = _BAND_HZ[band]
            ch = s.eeg_channel if band.startswith("eeg") else s.lfp_channel
            if not ch or hi >= nyq:
                continue           # band not measurable here: its power stays 0 -> floor
            self._filters.append((band, SosFilter(butter_bandpass(lo, hi, rate_hz), 1),
                                  channels.index(ch)))
        self._rate_hz = float(rate_hz)
        self._channels = tuple(channels)
        self._cols = sorted({ci for _, _, ci in self._filters})

    # ------------------------------------------------------------------ main call
    def process(self, chunk: Any, events: Iterable[Event] = (),
                pulses: Iterable[float] = ()) -> list[FeatureVector]:
        """Add one chunk with the events detected in it; return finished epochs.

        Parameters
        ----------
        chunk : drivers.chunk.Chunk
            ``samples`` shape (n_samples, n_channels) volts, ``timestamps`` (n_samples,)
            host-clock seconds.
        events : iterable of Event
            Detections made while processing this chunk (any kinds; ``ripple``,
            ``spindle`` and ``so`` are used).
        pulses : iterable of float
            Host-clock times (s) of pulses delivered since the previous call.

        Returns
        -------
        list of FeatureVector
            One per block sealed by this chunk (usually zero or one).
        """
        if chunk.rate_hz != self._rate_hz or tuple(chunk.channels) != self._channels:
            if self._rate_hz:
                self.reset()
            self._setup(chunk.rate_hz, tuple(chunk.channels))
        for ev in events:
            self._pending.append((float(ev.detect_s), self._order, ev))
            self._order += 1
        for t in pulses:
            self._pending.append((float(t), self._order, None))
            self._order += 1
        self._pending.sort(key=lambda p: (p[0], p[1]))

        x = chunk.samples
        ts = chunk.timestamps
        n = x.shape[0]
        out: list[FeatureVector] = []
        if n == 0:
            return out
        nb = len(self._filters)
        if self._buf.shape[0] < n or self._buf.shape[1] != max(nb, 1):
            self._buf = np.empty((max(n, 2 * self._buf.shape[0]), max(nb, 1)))
            self._col = np.empty((self._buf.shape[0], 1))
        sq = self._buf[:n]
        col = self._col[:n]
        bad = self._nonfinite_rows(x) if nb else None
        if bad is None:
            for j, (_, filt, ci) in enumerate(self._filters):
                col[:, 0] = x[:, ci]
                if self._reprime:
                    filt.reset(col[0])
                filt.process(col, out=col)
                np.multiply(col[:, 0], col[:, 0], out=sq[:, j])
            self._reprime = False
        else:
            self._filter_around(x, bad, sq, col)

        if self._t_first is None:
            self._t_first = float(ts[0])
        hop = self.settings.hop_s
        blocks = np.floor(ts / hop).astype(np.int64)
        # segments of equal block id (timestamps are non-decreasing within a chunk)
        cuts = np.flatnonzero(np.diff(blocks)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [n]))
        pow0 = _A[f"pow_{BAND_NAMES[0]}"]
        band_cols = [pow0 + BAND_NAMES.index(b) for b, _, _ in self._filters]
        for a, b in zip(starts, ends, strict=True):
            bid = int(blocks[a])
            if self._block is None:
                self._block = bid
            elif bid > self._block:
                out.extend(self._seal_until(bid))
            self._acc[_A["n_samples"]] += b - a if bad is None else \
                b - a - int(np.count_nonzero(bad[a:b]))
            if nb:
                self._acc[band_cols] += sq[a:b, :nb].sum(axis=0)
        return out

    def _nonfinite_rows(self, x: np.ndarray) -> np.ndarray | None:
        """Rows holding a non-finite sample in a channel the band filters read; None when
        every such sample is finite (one sum, the common case)."""
        if math.isfinite(float(np.add.reduce(x, axis=None))):
            return None
        xs = x[:, self._cols]
        if np.isfinite(xs).all():
            return None      # only in channels the features do not read
        bad = ~np.isfinite(xs).all(axis=1)
        self.n_nonfinite_samples += int(xs.size - np.count_nonzero(np.isfinite(xs)))
        return bad

    def _filter_around(self, x: np.ndarray, bad: np.ndarray, sq: np.ndarray,
                       col: np.ndarray) -> None:
        """Band powers of a chunk with non-finite rows: they are missing samples (power 0,
        not counted in ``n_samples``, so ``coverage`` says so); each filter restarts in
        steady state at the first clean sample after them, so no NaN enters its state."""
        n = x.shape[0]
        edges = np.flatnonzero(np.diff(np.concatenate(([True], bad, [True])).astype(np.int8)))
        runs = list(zip(edges[::2], edges[1::2], strict=True))   # clean [a, b) stretches
        for j, (_, filt, ci) in enumerate(self._filters):
            col[:, 0] = x[:, ci]
            sq[:, j] = 0.0
            for a, b in runs:
                if a > 0 or self._reprime:
                    filt.reset(col[a])
                seg = col[a:b]
                filt.process(seg, out=seg)
                np.multiply(seg[:, 0], seg[:, 0], out=sq[a:b, j])
        self._reprime = bool(bad[n - 1])

    def _seal_until(self, new_block: int) -> list[FeatureVector]:
        """Seal the open block (and empty ones up to ``new_block``); emit vectors."""
        out = []
        while self._block is not None and self._block < new_block:
            self._ingest_events(self._block)
            self._cum += self._acc[[_A["n_ripple"], _A["n_ripple_in_spindle"], _A["n_pulses"]]]
            self._ring.append(self._acc.copy())
            self._ring_ids.append(self._block)
            out.append(self._vector())
            self._acc[:] = 0.0
            # a long gap: emit at most one epoch of empty blocks, then jump ahead
            if new_block - self._block > self.settings.n_blocks:
                self._block = new_block - self.settings.n_blocks
                self._ring.clear()
                self._ring_ids.clear()
            else:
                self._block += 1
        return out

    def _ingest_events(self, block: int) -> None:
        hop = self.settings.hop_s
        end_t = (block + 1) * hop
        k = 0
        for t, _, item in self._pending:
            if t >= end_t:
                break
            k += 1
            if item is None:
                self._acc[_A["n_pulses"]] += 1
            else:
                self._add_event(item)
        del self._pending[:k]

    def _add_event(self, ev: Event) -> None:
        acc = self._acc
        amp_uv = ev.amplitude * 1e6 if math.isfinite(ev.amplitude) else 0.0
        peak = ev.peak_s if math.isfinite(ev.peak_s) else ev.onset_s
        if ev.kind == "ripple":
            acc[_A["n_ripple"]] += 1
            acc[_A["sum_ripple_amp"]] += abs(amp_uv)
            acc[_A["sum_ripple_score"]] += ev.score if math.isfinite(ev.score) else 0.0
            rec = [peak, False]
            lo, hi = _SPINDLE_SPAN_S
            if any(on + lo <= peak <= on + hi for on in self._recent_spindles):
                rec[1] = True
                acc[_A["n_ripple_in_spindle"]] += 1
            self._recent_ripples.append(rec)
        elif ev.kind == "spindle":
            acc[_A["n_spindle"]] += 1
            acc[_A["sum_spindle_amp"]] += abs(amp_uv)
            self._recent_spindles.append(ev.onset_s)
            lo, hi = _SPINDLE_SPAN_S
            for rec in self._recent_ripples:   # ripples detected before the spindle was
                if not rec[1] and ev.onset_s + lo <= rec[0] <= ev.onset_s + hi:
                    rec[1] = True
                    acc[_A["n_ripple_in_spindle"]] += 1
            phase = self._so_phase(peak)
            if phase is not None:
                acc[_A["n_coupled"]] += 1
                acc[_A["sum_cos"]] += math.cos(phase)
                acc[_A["sum_sin"]] += math.sin(phase)
        elif ev.kind == "so":
            acc[_A["n_so"]] += 1
            acc[_A["sum_so_amp"]] += abs(amp_uv)
            trough = ev.peak_s if math.isfinite(ev.peak_s) else ev.onset_s
            up = ev.predicted_s if math.isfinite(ev.predicted_s) else trough + _HALF_CYCLE_S
            if up <= trough:
                up = trough + _HALF_CYCLE_S
            self._recent_so.append((trough, up))

    def _so_phase(self, t: float) -> float | None:
        """SO phase (radians, cosine convention) at ``t`` from the latest SO before it.

        Linear in time between the down-state trough (-pi) and the predicted up-state
        peak (0), continuing at the same speed to +pi; None if no SO in the window.
        """
        for trough, up in reversed(self._recent_so):
            if trough <= t <= trough + _COUPLING_WINDOW_S:
                half = up - trough
                ph = -math.pi + math.pi * (t - trough) / half
                return (ph + math.pi) % (2 * math.pi) - math.pi
        return None

    def _vector(self) -> FeatureVector:
        s = self.settings
        tot = np.sum(self._ring, axis=0)
        a = {k: tot[i] for k, i in _A.items()}
        epoch = s.epoch_s
        v = np.zeros(len(FEATURE_NAMES))
        f = dict.fromkeys(FEATURE_NAMES, 0.0)
        f["ripple_rate_hz"] = a["n_ripple"] / epoch
        f["ripple_amp_uv"] = a["sum_ripple_amp"] / a["n_ripple"] if a["n_ripple"] else 0.0
        f["ripple_score"] = a["sum_ripple_score"] / a["n_ripple"] if a["n_ripple"] else 0.0
        f["spindle_per_min"] = a["n_spindle"] * 60.0 / epoch
        f["spindle_amp_uv"] = a["sum_spindle_amp"] / a["n_spindle"] if a["n_spindle"] else 0.0
        f["so_per_min"] = a["n_so"] * 60.0 / epoch
        f["so_amp_uv"] = a["sum_so_amp"] / a["n_so"] if a["n_so"] else 0.0
        if a["n_coupled"]:
            # mean resultant vector of spindle SO-phases: its length is the coupling
            # strength (0-1), its angle the preferred phase
            c, sn = a["sum_cos"] / a["n_coupled"], a["sum_sin"] / a["n_coupled"]
            f["so_spindle_strength"] = math.hypot(c, sn)
            f["so_spindle_cos"], f["so_spindle_sin"] = c, sn
        f["ripple_spindle_frac"] = (a["n_ripple_in_spindle"] / a["n_ripple"]
                                    if a["n_ripple"] else 0.0)
        ns = max(a["n_samples"], 1.0)
        # log10 of mean band power (V^2); 1e-20 V^2 floor = (0.1 nV)^2 so an absent band
        # or a flat channel gives a finite value
        logp = {b: math.log10(a[f"pow_{b}"] / ns + 1e-20) for b in BAND_NAMES}
        for b in BAND_NAMES:
            f[f"logp_{b}"] = logp[b]
        # sleep-depth estimates from power ratios: slow-wave sleep raises delta over beta;
        # REM and active wake raise hippocampal theta over EEG delta.
        f["sws_index"] = logp["eeg_delta"] - logp["eeg_beta"]
        f["rem_index"] = logp["lfp_theta"] - logp["eeg_delta"] if self.settings.lfp_channel \
            else logp["eeg_theta"] - logp["eeg_delta"]
        f["pulses"] = a["n_pulses"]
        f["coverage"] = min(1.0, a["n_samples"] / (self._rate_hz * epoch))
        end = (self._ring_ids[-1] + 1) * s.hop_s
        f["elapsed_h"] = max(0.0, end - (self._t_first or 0.0)) / 3600.0
        f["cum_ripples_k"], f["cum_coupled_k"], f["cum_pulses_k"] = self._cum / 1000.0
        for i, name in enumerate(FEATURE_NAMES):
            v[i] = f[name]
        return FeatureVector(end - epoch, end, v)


def feature_matrix(vectors: Sequence[FeatureVector]) -> np.ndarray:
    """Stack vectors into an array, shape (n_epochs, n_features)."""
    if not vectors:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.stack([fv.values for fv in vectors])
