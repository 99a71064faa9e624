"""Signal helpers for the report: bands and channels, zero-phase filters and the Hilbert
phase on the few windows a figure needs, and running aggregates over the whole night (a
spectrogram built block by block), so no figure holds a whole channel.

Offline analysis here uses zero-phase filters (``scipy.signal.sosfiltfilt``) and the
Hilbert transform: right for a report (it sees the future) and exactly what the online
loop cannot do, so the report is an independent check of it. Each window is read with a
padding of several periods of the band's lowest frequency on both sides (and windows
that overlap are read and filtered together), so the filter's edge transients fall
outside what is plotted.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engramloop.analysis.report.recording import Recording, Signal


#: Band (Hz) and display window (s before, s after) used offline per event kind. Bands
#: follow the simulator's defaults and the usual detector bands: ripples 150-250 Hz
#: (Buzsaki 2015, Hippocampus 25:1073), spindles 11-16 Hz (AASM spindle range, as in
#: YASA), slow oscillations below 1.25 Hz (Molle et al. 2002 J Neurosci 22:10941 use
#: <1 Hz; 0.5-1.25 Hz keeps a usable filter length), theta 4-12 Hz.
BANDS_HZ = {"ripple": (150.0, 250.0), "spindle": (11.0, 16.0), "so": (0.5, 1.25),
            "theta": (4.0, 12.0)}


#: display window per rhythm: seconds before and after the lock time
WINDOWS_S = {"ripple": (0.15, 0.15), "spindle": (1.5, 1.5), "so": (1.5, 2.0),
             "theta": (0.5, 0.5)}


#: Stimulation target -> (rhythm whose phase matters, intended phase in degrees).
TARGET_PHASE = {"so_upstate": ("so", 0.0), "spindle": ("spindle", 0.0),
                "theta_peak": ("theta", 0.0), "theta_trough": ("theta", 180.0)}


#: Channel name prefixes marking hippocampal LFP (as in sim.settings.SimSettings).
LFP_PREFIXES = ("CA", "HPC", "LFP", "DG")


#: Scalp channels preferred for sleep rhythms, in order (central first: spindles and SOs
#: are large fronto-centrally).
EEG_PREFERENCE = ("Cz", "C3", "C4", "Fz", "FCz", "Pz", "EEG")


#: the one spelling of microvolts in figures and tables
UV = "\u00b5V"


def bandpass(x: np.ndarray, band: tuple[float, float], fs: float) -> np.ndarray | None:
    """Zero-phase band-pass (4th-order Butterworth run forwards and backwards); None if
    the band does not fit below Nyquist or the signal is too short."""
    from scipy.signal import butter, sosfiltfilt

    lo, hi = band
    if hi >= 0.45 * fs:
        return None
    sos = butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")
    if x.shape[0] <= 3 * (2 * sos.shape[0] + 1) * 4 or x.shape[0] < int(2 * fs / lo):
        return None
    return sosfiltfilt(sos, x, axis=0)


def phase_and_envelope(x: np.ndarray, band: tuple[float, float], fs: float
                      ) -> tuple[np.ndarray, np.ndarray] | None:
    """Cosine phase (degrees, 0 = peak) and amplitude envelope of ``x`` in ``band``."""
    from scipy.signal import hilbert

    y = bandpass(x, band, fs)
    if y is None:
        return None
    z = hilbert(y)
    return np.degrees(np.angle(z)), np.abs(z)


def is_lfp(name: str) -> bool:
    return name.upper().startswith(LFP_PREFIXES)


def pick_channel(rec: Recording, rhythm: str) -> tuple[Signal, int] | None:
    """The channel a rhythm is best looked at on.

    Uses ``[detectors.<kind>] channels`` from the recorded config when present, else the
    first hippocampal channel for ripples/theta and a central scalp channel for
    spindles/slow oscillations, else the first channel.
    """
    det = rec.config.get("detectors", {}) if isinstance(rec.config, dict) else {}
    sub = det.get(rhythm, {}) if isinstance(det, dict) else {}
    for name in (sub.get("channels", ()) if isinstance(sub, dict) else ()):
        hit = rec.find_channel(str(name))
        if hit:
            return hit
    names = [c for s in rec.signals for c in s.channels]
    if not names:
        return None
    if rhythm in ("ripple", "theta"):
        cands = [c for c in names if is_lfp(c)]
    else:
        eeg = [c for c in names if not is_lfp(c)]
        cands = sorted(eeg, key=lambda c: next((i for i, p in enumerate(EEG_PREFERENCE)
                                                 if c.startswith(p)), len(EEG_PREFERENCE)))
    return rec.find_channel((cands or names)[0])


def band_for(rec: Recording, rhythm: str, fs: float, *, phase: bool = False
              ) -> tuple[float, float]:
    """The band (Hz) the recorded config's detector used for ``rhythm`` (its
    ``phase_band_hz`` first when ``phase``), else :data:`BANDS_HZ`."""
    det = rec.config.get("detectors", {}) if isinstance(rec.config, dict) else {}
    sub = det.get(rhythm, {}) if isinstance(det, dict) else {}
    keys = ("phase_band_hz", "band_hz", "sigma_band_hz") if phase else \
        ("band_hz", "sigma_band_hz")
    for key in keys:
        band = sub.get(key) if isinstance(sub, dict) else None
        if isinstance(band, list) and len(band) == 2 and 0 < band[0] < band[1] < fs / 2:
            return float(band[0]), float(band[1])
    return BANDS_HZ.get(rhythm, (1.0, min(40.0, 0.4 * fs)))


def uv_scale(units: str) -> tuple[float, str]:
    """Factor and label to plot values stored in ``units`` as microvolts when possible."""
    u = units.strip().lower().replace("µ", "u").replace("μ", "u")
    if u in ("v", "volt", "volts", ""):
        return 1e6, UV
    if u in ("mv", "millivolt", "millivolts"):
        return 1e3, UV
    if u in ("uv", "microvolt", "microvolts"):
        return 1.0, UV
    return 1.0, units


def pad_s(band: tuple[float, float]) -> float:
    """Padding (s) read on each side of a window before filtering in ``band``: three
    periods of its lowest frequency, at least 1 s."""
    return max(3.0 / band[0], 1.0)


Transform = Callable[[np.ndarray], "np.ndarray | None"]


def locked(sig: Signal, ci: int, times: Sequence[float] | np.ndarray, n_before: int,
           n_after: int, transforms: dict[str, Transform], *, pad: float = 1.0,
           max_span_s: float = 30.0) -> tuple[np.ndarray, dict[str, np.ndarray | None]]:
    """Event-locked segments of channel ``ci``, read window by window.

    Each time ``t`` is locked to the first sample at or after it (index ``c``); the
    segment is samples ``c - n_before`` to ``c + n_after``. Windows padded by ``pad``
    seconds on each side are read (neighbours merged into one read of at most
    ``max_span_s``), each transform (a filter, an envelope; identity for the raw trace)
    runs on the padded window, and the segments are cut from its output. A time whose
    segment would reach the recording's first or last sample is left out.

    Returns
    -------
    kept : ndarray, shape (m,), seconds
        The times whose segment was cut.
    out : dict of str to ndarray, shape (m, n_before + n_after + 1)
        Per transform; None when it returned None (band above Nyquist, window too short).
    """
    times = np.sort(np.asarray(times, dtype=float))
    times = times[np.isfinite(times)]
    fs = sig.rate_hz
    width = n_before + n_after + 1
    if not fs > 0:                      # no rate: no sample-locked segment to cut
        return np.empty(0), {k: np.empty((0, width)) for k in transforms}
    # two samples more on each side: a window inside the recording always has the
    # samples its segment needs, one cut by the recording's edge only where the
    # recording lacks them (as if the whole channel were indexed)
    before, after = (n_before + 2) / fs + pad, (n_after + 2) / fs + pad
    spans: list[list[float]] = []
    for t in times:
        if spans and t - before <= spans[-1][1] and t + after - spans[-1][0] <= max_span_s:
            spans[-1][1] = t + after
            spans[-1][2].append(t)
        else:
            spans.append([t - before, t + after, [t]])
    kept: list[float] = []
    parts: dict[str, list[np.ndarray] | None] = {k: [] for k in transforms}
    offs = np.arange(-n_before, n_after + 1)
    for a, b, ts in spans:
        wt, wx = sig.window(ci, a, b)
        if wt.size == 0:
            continue
        c = np.searchsorted(wt, ts)
        ok = (c - n_before > 0) & (c + n_after < wt.size)
        if not ok.any():
            continue
        idx = c[ok][:, None] + offs[None, :]
        kept.extend(np.asarray(ts)[ok].tolist())
        for name, fn in transforms.items():
            got = parts[name]
            if got is None:
                continue
            y = fn(wx)
            if y is None:
                parts[name] = None
                continue
            got.append(y[idx])
    out = {k: (np.concatenate(v) if v else np.empty((0, width))) if v is not None else None
           for k, v in parts.items()}
    return np.asarray(kept), out


#: events whose windows are read and folded into the running sums at a time
LOCKED_BATCH = 50


def locked_moments(sig: Signal, ci: int, times: Sequence[float] | np.ndarray, n_before: int,
                   n_after: int, transforms: dict[str, Transform], *, pad: float = 1.0,
                   remove: dict[str, str] | None = None
                   ) -> tuple[int, dict[str, tuple[np.ndarray, np.ndarray] | None]]:
    """Mean and standard deviation of event-locked segments (as :func:`locked` cuts
    them), folded in batches of :data:`LOCKED_BATCH` events so a night's events are never
    all held.

    Parameters
    ----------
    remove : dict of str to str, optional
        Per transform, what to subtract from each segment first: ``"mean"`` (its own
        mean) or ``"baseline"`` (the mean of its ``n_before`` samples before the event).

    Returns
    -------
    n : int
        Segments averaged.
    out : dict of str to (mean, std), each shape (n_before + n_after + 1,)
        None for a transform that returned None.
    """
    times = np.sort(np.asarray(times, dtype=float))
    width = n_before + n_after + 1
    remove = remove or {}
    n = 0
    acc: dict[str, list[np.ndarray] | None] = {k: [np.zeros(width), np.zeros(width)]
                                               for k in transforms}
    for b0 in range(0, times.size, LOCKED_BATCH):
        _, got = locked(sig, ci, times[b0:b0 + LOCKED_BATCH], n_before, n_after, transforms,
                        pad=pad)
        m = 0
        for name, seg in got.items():
            if seg is None or acc[name] is None:
                acc[name] = None
                continue
            if remove.get(name) == "mean":
                seg = seg - seg.mean(axis=1, keepdims=True)
            elif remove.get(name) == "baseline" and n_before:
                seg = seg - seg[:, :n_before].mean(axis=1, keepdims=True)
            acc[name][0] += seg.sum(0)
            acc[name][1] += (seg ** 2).sum(0)
            m = seg.shape[0]
        n += m
    out: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for name, a in acc.items():
        if a is None or not n:
            out[name] = None if a is None else (np.full(width, np.nan), np.full(width, np.nan))
            continue
        mean = a[0] / n
        out[name] = (mean, np.sqrt(np.maximum(a[1] / n - mean ** 2, 0.0)))
    return n, out


class RunningSpectrogram:
    """A spectrogram accumulated block by block, equal to
    ``scipy.signal.spectrogram(x, fs, nperseg=nperseg, noverlap=nperseg // 2,
    scaling="density")`` on the whole signal (the default Tukey window, constant
    detrend), keeping only the rows in ``[fmin_hz, fmax_hz]``. Holds less than one
    segment of samples between calls.
    """

    def __init__(self, fs: float, nperseg: int, fmin_hz: float, fmax_hz: float) -> None:
        self.fs = float(fs)
        self.nperseg = int(nperseg)
        self.hop = self.nperseg - self.nperseg // 2
        self.band = (fmin_hz, fmax_hz)
        self._buf = np.empty(0)
        self._consumed = 0            # samples dropped from the front so far
        self._cols: list[np.ndarray] = []
        self._times: list[np.ndarray] = []
        self.f = np.empty(0)

    def add(self, x: np.ndarray) -> None:
        from scipy import signal as sps

        self._buf = np.concatenate((self._buf, np.asarray(x, dtype=float)))
        if self._buf.size < self.nperseg:
            return
        m = 1 + (self._buf.size - self.nperseg) // self.hop
        use = self.nperseg + (m - 1) * self.hop
        f, tt, sxx = sps.spectrogram(self._buf[:use], self.fs, nperseg=self.nperseg,
                                     noverlap=self.nperseg - self.hop, scaling="density")
        keep = (f >= self.band[0]) & (f <= self.band[1])
        self.f = f[keep]
        self._cols.append(sxx[keep])
        self._times.append(tt + self._consumed / self.fs)
        self._buf = self._buf[m * self.hop:]
        self._consumed += m * self.hop

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(f, t, sxx)``: Hz (nf,), segment centres in seconds from the first sample
        (nt,), power spectral density (nf, nt) in the input's units squared per Hz."""
        if not self._cols:
            return self.f, np.empty(0), np.empty((self.f.size, 0))
        return self.f, np.concatenate(self._times), np.concatenate(self._cols, axis=1)
