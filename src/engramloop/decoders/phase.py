"""Online phase, frequency and amplitude of a band at the newest sample.

Two methods, both causal:

``EchtPhase``
    Endpoint-corrected Hilbert transform (Schreglmann et al. 2021, Nat Commun 12:363):
    the analytic signal of the last ``window_s`` seconds is computed in the frequency
    domain, one-sided, multiplied by the frequency response of a *causal* band-pass
    (2nd-order Butterworth per edge), and read at the last sample. Because the FFT, the
    one-sided weighting, the filter response and the inverse FFT are all linear, the value
    at the last sample is a fixed complex FIR kernel applied to the window:
    ``a[N-1] = sum_n x[n] g[N-1-n]`` with ``g = ifft(w * H)``. We precompute ``g`` once,
    so each estimate is one dot product over a ring buffer, bit-identical to running the
    FFT-based ECHT on that window.

``ArPhase``
    Autoregressive forward prediction (Chen et al. 2013; Zrenner et al. 2018, Brain Stim
    11:374): zero-phase band-pass of the window, drop the edge samples distorted by the
    filter, fit an AR model (Yule-Walker), predict across the dropped edge and beyond,
    and take the Hilbert phase at "now" inside the predicted stretch. Heavier; computed
    only when asked (``estimate()``).

Phase convention (project-wide): degrees, cosine phase, 0 = positive peak,
+-180 = trough, wrapped to (-180, 180].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from engramloop.core.angles import wrap_deg
from engramloop.core.chunk import Chunk
from engramloop.core.schema import check_bands, setting
from engramloop.decoders._filters import EchtPlan
from engramloop.decoders.filters import SosFilter, butter_lowpass

__all__ = ["PhaseSettings", "PhaseEstimate", "EchtKernel", "EchtPhase", "ArPhase",
           "make_phase_estimator"]


@dataclass(frozen=True)
class PhaseSettings:
    """``[phase]``: the online phase estimator the policy uses to time pulses (theta
    targets); the slow-oscillation detector has its own ECHT (``[detectors.so]``)."""

    method: Literal["echt", "ar"] = setting("echt", doc="endpoint-corrected Hilbert "
                                                        "('echt') or AR forward prediction "
                                                        "('ar')")
    channel: str = setting("CA1", doc="channel whose phase is tracked")
    band_hz: tuple[float, float] = setting(
        (6.0, 10.0), gt=0, unit="Hz",
        doc="band: theta 6-10 (the policy's theta targets), slow oscillation 0.5-1.25, "
            "spindle 11-16")
    window_s: float = setting(1.0, gt=0, le=60, unit="s",
                              doc="analysis window (about 6-8 cycles of the low edge; the AR "
                                  "method does better with 8 s for slow oscillations)")
    filter_order: int = setting(2, ge=1, le=4, doc="Butterworth order per band edge")
    max_rate_hz: float = setting(250.0, ge=0, unit="Hz",
                                 doc="ECHT works on the signal decimated to at most this rate "
                                     "(anti-alias low-pass, compensated); 0 = full rate")
    echt_compensate: bool = setting(True, doc="correct ECHT for the causal band-pass's phase "
                                              "at the estimated frequency")
    ar_order: int = setting(8, ge=2, le=200, doc="AR model order (method 'ar')")
    ar_rate_hz: float = setting(0.0, ge=0, unit="Hz",
                                doc="rate the AR model works at; 0 = 10x the high band edge")
    ar_edge_s: float = setting(0.0, ge=0, unit="s", doc="end of the filtered window dropped "
                                                        "and predicted instead; 0 = a "
                                                        "quarter period of the low edge")

    def validate(self) -> None:
        check_bands(self, "band_hz")
        lo = self.band_hz[0]
        if self.window_s * lo < 1.5:
            raise ValueError(f"window_s: {self.window_s} s holds fewer than 1.5 cycles of "
                             f"{lo} Hz; use at least {1.5 / lo:.2f} s")


class PhaseEstimate(NamedTuple):
    """The band's state at one sample (immutable; a named tuple: built every chunk, and a
    frozen dataclass took ~1 us of the ~4 us the phase stage costs per chunk).

    Attributes
    ----------
    t_s : float
        Host-clock time of the sample the estimate is for (seconds).
    phase_deg : float
        Cosine phase in degrees, (-180, 180]; NaN before the window has filled.
    frequency_hz : float
        Instantaneous frequency (Hz), clipped to the band.
    amplitude : float
        Band amplitude (envelope), same units as the input.
    confidence : float
        0-1: band amplitude relative to the whole window's variability
        (``amplitude / (sqrt(2) * std(window))``, 1 for a pure sinusoid in the band).
    """

    t_s: float
    phase_deg: float
    frequency_hz: float
    amplitude: float
    confidence: float

    def time_to_phase(self, target_deg: float) -> float:
        """Seconds from ``t_s`` until the phase next reaches ``target_deg``, in [0, period)."""
        if not (math.isfinite(self.phase_deg) and self.frequency_hz > 0):
            return float("nan")
        d = (target_deg - self.phase_deg) % 360.0
        return d / (360.0 * self.frequency_hz)

    def time_of_phase(self, target_deg: float) -> float:
        """Host-clock time at which the phase next reaches ``target_deg`` (seconds)."""
        return self.t_s + self.time_to_phase(target_deg)


_NAN_ESTIMATE = PhaseEstimate(float("nan"), float("nan"), float("nan"), float("nan"), 0.0)


class EchtKernel:
    """ECHT endpoint analytic signal over a ring buffer, for several channels.

    Parameters
    ----------
    fs_hz : float
        Sampling rate (Hz).
    band_hz : (float, float)
        Band edges (Hz).
    window_s : float
        Window length (seconds); ``N = round(window_s * fs_hz)`` samples.
    n_channels : int
    order : int
        Butterworth order per band edge of the causal filter whose response is applied
        (Schreglmann et al. 2021 use a 2nd-order band-pass).
    compensate : bool
        Remove the causal filter's own phase shift and gain at the estimated frequency.
        Plain ECHT is unbiased only at the band centre (where a Butterworth band-pass has
        zero phase); a 0.9 Hz slow oscillation in a 0.5-1.25 Hz band would read ~20 deg
        late. With ``compensate`` the phase is corrected by ``-arg H(f_est)``.
    pre : (sos, fs_hz), optional
        A filter the samples went through before reaching the kernel (the anti-alias
        low-pass of a decimating caller); its phase and gain are compensated too.
    """

    #: frequency is read from the phase advance over this many cycles of the band centre
    LAG_CYCLES = 0.25

    def __init__(self, fs_hz: float, band_hz: tuple[float, float], window_s: float,
                 n_channels: int, order: int = 2, compensate: bool = True,
                 pre: tuple[np.ndarray, float] | None = None) -> None:
        from scipy.signal import butter, sosfreqz

        self.fs = float(fs_hz)
        self.band = (float(band_hz[0]), float(band_hz[1]))
        if not 0 < self.band[0] < self.band[1] < self.fs / 2:
            raise ValueError(f"phase band {band_hz} Hz must lie between 0 and Nyquist "
                             f"({self.fs / 2} Hz)")
        n = max(16, int(round(window_s * self.fs)))
        self.n = n
        self.n_channels = int(n_channels)
        sos = butter(order, self.band, btype="bandpass", fs=self.fs, output="sos")
        _, h = sosfreqz(sos, worN=n, whole=True)
        w = np.zeros(n)
        w[0] = 1.0
        w[1:(n + 1) // 2] = 2.0
        if n % 2 == 0:
            w[n // 2] = 1.0
        g = np.fft.ifft(w * h)
        # analytic value at the last sample: sum_n x[n] g[N-1-n]
        k0 = np.ascontiguousarray(g[::-1])
        # and at ``lag`` samples earlier (for the frequency): sum_n x[n] g[(N-1-lag-n) % N]
        # a quarter cycle of the band centre: long enough to average out noise, short
        # enough that the advance stays below 180 deg at the high band edge
        f_c = math.sqrt(self.band[0] * self.band[1])
        self.lag = max(1, int(round(self.fs * self.LAG_CYCLES / f_c)))
        k1 = np.ascontiguousarray(np.roll(g[::-1], -self.lag))
        self._k = np.ascontiguousarray(np.stack([k0.real, k0.imag, k1.real, k1.imag]))
        # the single-channel path also reads the window mean from the same product
        self._k_mean = np.ascontiguousarray(np.vstack([self._k, np.full(n, 1.0 / n)]))
        self.compensate = bool(compensate)
        self._fgrid = np.linspace(self.band[0], self.band[1], 257)
        _, hg = sosfreqz(sos, worN=self._fgrid, fs=self.fs)
        if pre is not None:   # a filter applied before decimation (anti-alias low-pass)
            hg = hg * sosfreqz(pre[0], worN=self._fgrid, fs=pre[1])[1]
        ph = np.unwrap(np.angle(hg))
        # anchor: the band-pass alone has zero phase at its centre frequency
        ph -= 2 * np.pi * np.round(np.interp(f_c, self._fgrid, ph) / (2 * np.pi))
        self._hphase = ph
        self._hgain = np.abs(hg)
        self._ring = np.zeros((2 * n, self.n_channels))
        self._w = 0
        self.count = 0
        self._out = np.empty((4, self.n_channels))
        self._sum = np.empty(self.n_channels)
        self._sq = np.empty(self.n_channels)

    def reset(self) -> None:
        self._ring.fill(0.0)
        self._w = 0
        self.count = 0

    def write(self, x: np.ndarray) -> None:
        """Append samples, shape (n_samples, n_channels)."""
        n = x.shape[0]
        N = self.n
        if n >= N:
            self._ring[:N] = x[n - N:]
            self._ring[N:] = x[n - N:]
            self._w = 0
        else:
            w = self._w
            m = min(n, N - w)
            r = self._ring
            r[w:w + m] = x[:m]
            r[w + N:w + N + m] = x[:m]
            if m < n:
                r[:n - m] = x[m:]
                r[N:N + n - m] = x[m:]
            self._w = (w + n) % N
        self.count += n

    def window(self) -> np.ndarray:
        """The last N samples in time order, shape (N, n_channels) (a view)."""
        return self._ring[self._w:self._w + self.n]

    def analytic(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Phase (deg), frequency (Hz) and amplitude at the newest sample, per channel.

        Also returns nothing special before the window has filled: the caller checks
        ``count >= n``.
        """
        win = self.window()
        o = np.dot(self._k, win, out=self._out)
        a_re, a_im, b_re, b_im = o
        phase = np.degrees(np.arctan2(a_im, a_re))
        amp = np.hypot(a_re, a_im)
        # angle(a / b) = advance over ``lag`` samples
        dphi = np.arctan2(a_im * b_re - a_re * b_im, a_re * b_re + a_im * b_im)
        freq = dphi * self.fs / (2 * math.pi * self.lag)
        np.clip(freq, self.band[0], self.band[1], out=freq)
        if self.compensate:
            phase -= np.degrees(np.interp(freq, self._fgrid, self._hphase))
            amp /= np.interp(freq, self._fgrid, self._hgain)
        return phase, freq, amp

    def spread(self) -> np.ndarray:
        """Standard deviation of each channel over the window."""
        win = self.window()
        return win.std(axis=0)


class _Single:
    """Shared chunk handling for the single-channel estimators."""

    def __init__(self, settings: PhaseSettings | None) -> None:
        self.settings = settings or PhaseSettings()
        self._fs = 0.0
        self._col = -1
        self._channels: tuple[str, ...] | None = None
        self._t_last = float("nan")
        self._cache: PhaseEstimate | None = None
        self._col_buf = np.empty((0, 1))
        self._plan = None

    def _bind(self, chunk: Chunk) -> None:
        name = self.settings.channel
        if name not in chunk.channels:
            raise ValueError(f"phase.channel: {name!r} not in the source's channels "
                             f"{list(chunk.channels)}")
        self._col = chunk.channels.index(name)
        self._channels = chunk.channels
        self._plan = None            # (EchtPhase) the plan holds the column

    def _column(self, chunk: Chunk) -> np.ndarray:
        if chunk.channels is not self._channels and chunk.channels != self._channels:
            self._bind(chunk)
        n = chunk.n_samples
        if self._col_buf.shape[0] < n:
            self._col_buf = np.empty((max(n, 64), 1))
        out = self._col_buf[:n]
        out[:, 0] = chunk.samples[:, self._col]
        return out

    def time_to_phase(self, target_deg: float) -> float:
        """Seconds from the newest sample until the phase reaches ``target_deg``."""
        return self.estimate().time_to_phase(target_deg)

    def process(self, chunk: Chunk) -> PhaseEstimate:
        """Buffer one chunk and return the estimate at its newest sample."""
        self.update(chunk)
        return self.estimate()

    def update(self, chunk: Chunk) -> None:  # overridden
        raise AttributeError


class EchtPhase(_Single):
    """ECHT phase of one channel (see the module docstring).

    ``update(chunk)`` buffers and ``estimate()`` reads the window, one C call each;
    ``process(chunk)`` does both and returns the :class:`PhaseEstimate` at the newest sample.
    """

    def update(self, chunk: Chunk) -> None:
        """Buffer one chunk: anti-alias filter, decimation and ring write are one C call
        (``EchtPlan.push``); nothing is estimated."""
        n = chunk.n_samples
        if n == 0:
            return
        if chunk.rate_hz != self._fs:
            self._setup(float(chunk.rate_hz))
        if chunk.channels is not self._channels and chunk.channels != self._channels:
            self._bind(chunk)
        st = self._st
        if self._aa is not None and self._fresh:
            self._aa.reset(chunk.samples[0, self._col:self._col + 1])  # steady state: no
            self._fresh = False                                       # step transient
        plan = self._plan if self._plan is not None else self._make_plan()
        j = plan.push(chunk.samples)
        if j >= 0:
            self._t_last = float(chunk.timestamps[j])
            self._cache = None
            if not self._full and st[2] >= self._n:
                self._full = True

    def _setup(self, fs: float) -> None:
        s = self.settings
        self._fs = fs
        rate = max(s.max_rate_hz, 5.0 * s.band_hz[1]) if s.max_rate_hz > 0 else fs
        self._q = max(1, int(fs // rate))
        pre = None
        self._aa = None
        if self._q > 1:
            sos = butter_lowpass(0.4 * fs / self._q, fs, order=4)
            self._aa = SosFilter(sos, 1)
            pre = (sos, fs)
        self._kernel = EchtKernel(fs / self._q, s.band_hz, s.window_s, 1, s.filter_order,
                                  s.echt_compensate, pre)
        # the kernel's doubled ring, written by EchtPlan.push; state = [samples seen (for the
        # decimation phase), write position, values written]
        self._n = self._kernel.n
        self._ring = np.zeros(2 * self._n)
        self._st = np.zeros(3, dtype=np.int64)
        self._full = False
        self._fresh = True
        self._cache = None
        self._plan = None

    def _make_plan(self) -> EchtPlan:
        """Bind the C kernel to this setup's column, anti-alias bank, ring and kernel
        (checked once; built again after a new rate or channel list)."""
        k = self._kernel
        comp = (k._hphase, k._hgain) if k.compensate else (None, None)
        self._plan = EchtPlan(self._col, self._aa, self._q, self._st, self._ring, k._k_mean,
                              k.fs, k.lag, k.band[0], k.band[1], *comp)
        return self._plan

    def estimate(self) -> PhaseEstimate:
        """The estimate at the newest buffered sample (NaN phase until the window is full)."""
        if self._cache is not None:
            return self._cache
        if self._fs == 0.0 or not self._full:
            return _NAN_ESTIMATE
        plan = self._plan if self._plan is not None else self._make_plan()
        ph, f, a, conf = plan.estimate()
        self._cache = PhaseEstimate(self._t_last, ph, f, a, conf)
        return self._cache

    def reset(self) -> None:
        """Forget the buffer."""
        self._fs = 0.0
        self._cache = None

    def restart(self) -> None:
        """After samples the estimator must not see (non-finite): start the window
        afresh from the next chunk (NaN phase until it is full again)."""
        self.reset()


class ArPhase(_Single):
    """AR forward-prediction phase of one channel (Zrenner et al. 2018 style).

    The window is band-passed forward and backward (zero phase), the last ``ar_edge_s``
    seconds (distorted by the filter's edge) are dropped, an AR model fitted by Yule-Walker
    on the decimated remainder predicts across the dropped edge and one period beyond, and
    the Hilbert phase is read at the newest sample inside the predicted stretch.
    """

    def update(self, chunk: Chunk) -> None:
        """Buffer one chunk (nothing is computed)."""
        if chunk.n_samples == 0:
            return
        if chunk.rate_hz != self._fs:
            from scipy.signal import butter

            s = self.settings
            self._fs = float(chunk.rate_hz)
            lo, hi = s.band_hz
            rate = s.ar_rate_hz or 10.0 * hi
            self._q = max(1, int(self._fs // rate))
            self._fd = self._fs / self._q
            n = max(16, int(round(s.window_s * self._fs)))
            self._ring = np.zeros(2 * n)
            self._n = n
            self._w = 0
            self._count = 0
            self._sos = butter(s.filter_order, (lo, hi), btype="bandpass", fs=self._fs,
                               output="sos")
            edge_s = s.ar_edge_s or 0.25 / lo
            self._edge = max(1, int(round(edge_s * self._fd)))
            self._future = int(round(self._fd / lo))
        x = self._column(chunk)[:, 0]
        n, N = x.shape[0], self._n
        if n >= N:
            self._ring[:N] = x[n - N:]
            self._ring[N:] = x[n - N:]
            self._w = 0
        else:
            w = self._w
            m = min(n, N - w)
            self._ring[w:w + m] = x[:m]
            self._ring[w + N:w + N + m] = x[:m]
            if m < n:
                self._ring[:n - m] = x[m:]
                self._ring[N:N + n - m] = x[m:]
            self._w = (w + n) % N
        self._count += n
        self._t_last = float(chunk.timestamps[-1])
        self._cache = None

    def estimate(self) -> PhaseEstimate:
        """Fit, predict and read the phase at the newest buffered sample (a few ms)."""
        if self._cache is not None:
            return self._cache
        if self._fs == 0.0 or self._count < self._n:
            return _NAN_ESTIMATE
        from scipy.linalg import solve_toeplitz
        from scipy.signal import hilbert, sosfiltfilt

        s = self.settings
        win = self._ring[self._w:self._w + self._n]
        sd = float(win.std())
        y = sosfiltfilt(self._sos, win - win.mean())
        # decimate so that the newest sample is kept exactly
        yd = y[::-1][::self._q][::-1]
        kept = yd[:-self._edge]
        p = min(s.ar_order, kept.size // 3)
        # Yule-Walker: the autocorrelation method always gives a stable model, so the
        # prediction cannot blow up (a least-squares fit can, on short noisy windows)
        r = np.correlate(kept, kept, mode="full")[kept.size - 1:kept.size + p] / kept.size
        if r[0] <= 0:
            return _NAN_ESTIMATE
        a = solve_toeplitz(r[:p], r[1:p + 1])
        total = self._edge + self._future
        ext = np.empty(kept.size + total)
        ext[:kept.size] = kept
        coef = a[::-1]
        for i in range(kept.size, ext.size):
            ext[i] = np.dot(coef, ext[i - p:i])
        an = hilbert(ext)
        now = kept.size + self._edge - 1
        phase = math.degrees(math.atan2(an[now].imag, an[now].real))
        d = an[now] * np.conj(an[now - 1])
        freq = math.atan2(d.imag, d.real) * self._fd / (2 * math.pi)
        freq = min(max(freq, s.band_hz[0]), s.band_hz[1])
        amp = float(abs(an[now]))
        conf = min(1.0, amp / (math.sqrt(2) * sd)) if sd > 0 else 0.0
        self._cache = PhaseEstimate(self._t_last, float(wrap_deg(phase)), freq, amp, conf)
        return self._cache

    def reset(self) -> None:
        """Forget the buffer."""
        self._fs = 0.0
        self._cache = None

    def restart(self) -> None:
        """After samples the estimator must not see (non-finite): start the window
        afresh from the next chunk (NaN phase until it is full again)."""
        self.reset()


def make_phase_estimator(settings: PhaseSettings) -> EchtPhase | ArPhase:
    """The estimator ``settings.method`` names."""
    return EchtPhase(settings) if settings.method == "echt" else ArPhase(settings)
