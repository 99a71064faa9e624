"""Streaming filters on the C filter bank.

``SosFilter`` runs a cascade of second-order sections over time-major blocks
(n_samples, n_channels) and keeps per-channel state between calls, so a signal filtered
chunk by chunk equals the same signal filtered in one pass. ``BandEnvelope`` fuses the
band-pass with a moving RMS envelope in one C call per chunk; ``MovingRms`` is the
envelope alone. Butterworth design is NumPy arithmetic (``filter_design``: no scipy.signal
import, 0.5-2 s, on a loop's path); the notch still uses scipy.signal, loaded when called.
``zero_phase`` and ``analytic_signal`` are the offline forward-backward filter and Hilbert
transform of a short window (the SO detector's phase learning), on the same C bank.

Everything is validated once in the constructor; ``process`` only calls C. The C
extension is required: importing this module without it is an ImportError, never a slow
fallback.
"""
from __future__ import annotations

import numpy as np

from engramloop.decoders.filter_design import butter_sos, sos_steady_state

try:
    from engramloop.decoders._filters import FilterBank
except ImportError as exc:  # pragma: no cover - exercised by an install without a compiler
    raise ImportError(
        "engramloop's C filter bank (decoders._filters) is missing or broken: "
        f"{exc}. Reinstall with a C compiler present: `make install` or "
        "`pip install -e .`") from exc

__all__ = ["SosFilter", "BandEnvelope", "MovingRms", "butter_bandpass", "butter_lowpass",
           "butter_highpass", "notch", "check_sos", "zero_phase", "ZeroPhase",
           "analytic_signal"]


def check_sos(sos: object) -> np.ndarray:
    """Return ``sos`` as a C-contiguous float64 (n_sections, 6) array or raise.

    Raises
    ------
    TypeError
        If ``sos`` is not a real numeric array.
    ValueError
        If it has the wrong shape, non-finite values or a zero a0.
    """
    arr = np.asarray(sos)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"sos must be a real numeric array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"sos must have shape (n_sections, 6), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("sos must contain only finite coefficients")
    if np.any(arr[:, 3] == 0):
        raise ValueError("sos has a section with a0 == 0 (column 3)")
    return arr


def _check_n_channels(n_channels: object) -> int:
    if isinstance(n_channels, bool) or not isinstance(n_channels, (int, np.integer)):
        raise TypeError(f"n_channels must be an int, got {type(n_channels).__name__}")
    if n_channels < 1:
        raise ValueError(f"n_channels must be >= 1, got {n_channels}")
    return int(n_channels)


class SosFilter(FilterBank):
    """Second-order-section cascade with state kept across calls.

    Parameters
    ----------
    sos : array_like, shape (n_sections, 6)
        Second-order sections as returned by ``scipy.signal.butter(..., output="sos")``.
    n_channels : int
        Number of channels (columns) every block will have.

    Notes
    -----
    Transposed direct form II, the same recurrence as ``scipy.signal.sosfilt``; the state
    layout, ``(n_sections, 2, n_channels)``, is scipy's ``zi`` for ``axis=0``.
    """

    def __init__(self, sos: object, n_channels: int) -> None:
        self.sos = check_sos(sos)
        super().__init__(self.sos, _check_n_channels(n_channels), 0)
        self._state_buf = np.zeros((self.n_sections, 2, self.n_channels))

    def process(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Filter one block.

        Parameters
        ----------
        x : ndarray, shape (n_samples, n_channels), float64, C-contiguous
        out : ndarray, same shape, optional
            Where to write; may be ``x`` itself (in place). Allocated if omitted.

        Returns
        -------
        ndarray, shape (n_samples, n_channels)
            ``out``.
        """
        if out is None:
            out = np.empty_like(x)
        return FilterBank.process(self, x, out)

    @property
    def zi(self) -> np.ndarray:
        """A copy of the current state, shape (n_sections, 2, n_channels)."""
        self.get_state(self._state_buf)
        return self._state_buf.copy()

    @zi.setter
    def zi(self, value: np.ndarray) -> None:
        arr = np.ascontiguousarray(value, dtype=np.float64)
        if arr.shape != (self.n_sections, 2, self.n_channels):
            raise ValueError(f"zi must have shape {(self.n_sections, 2, self.n_channels)}, "
                             f"got {arr.shape}")
        self.set_state(arr)

    def reset(self, x0: np.ndarray | None = None) -> None:
        """Clear the state, or start in steady state for a constant input ``x0``.

        Parameters
        ----------
        x0 : ndarray, shape (n_channels,), optional
            First sample of each channel (volts). With it the first block has no step
            transient, like ``scipy.signal.sosfilt_zi(sos) * x0``.
        """
        if x0 is None:
            self.zi = np.zeros((self.n_sections, 2, self.n_channels))
            return
        x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
        if x0.shape != (self.n_channels,) or not np.all(np.isfinite(x0)):
            raise ValueError(f"x0 must be {self.n_channels} finite values, got {x0!r}")
        self.zi = sos_steady_state(self.sos)[:, :, None] * x0[None, None, :]


class BandEnvelope(SosFilter):
    """Band-pass then moving RMS envelope, one C call per chunk.

    Parameters
    ----------
    sos : array_like, shape (n_sections, 6)
    n_channels : int
    window : int
        RMS window in samples (>= 1). Before ``window`` samples have been seen the RMS is
        over the samples so far.
    """

    def __init__(self, sos: object, n_channels: int, window: int) -> None:
        self.sos = check_sos(sos)
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
            raise ValueError(f"window must be an int >= 1 samples, got {window!r}")
        FilterBank.__init__(self, self.sos, _check_n_channels(n_channels), int(window))
        self._state_buf = np.zeros((self.n_sections, 2, self.n_channels))

    def process_envelope(self, x: np.ndarray, filtered: np.ndarray | None = None,
                         envelope: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Filter ``x`` and compute its moving RMS.

        Parameters
        ----------
        x : ndarray, shape (n_samples, n_channels), float64, volts
        filtered, envelope : ndarray, same shape, optional
            Output buffers (``filtered`` may be ``x``); allocated if omitted.

        Returns
        -------
        (filtered, envelope) : ndarrays, shape (n_samples, n_channels), volts
        """
        if filtered is None:
            filtered = np.empty_like(x)
        if envelope is None:
            envelope = np.empty_like(x)
        self.process_rms(x, filtered, envelope)
        return filtered, envelope

    def reset(self, x0: np.ndarray | None = None) -> None:
        """Clear filter state (see :meth:`SosFilter.reset`) and the RMS window."""
        super().reset(x0)
        self.reset_envelope()


class MovingRms(BandEnvelope):
    """Moving RMS over ``window`` samples with no filtering (an empty cascade)."""

    def __init__(self, n_channels: int, window: int) -> None:
        super().__init__(np.zeros((0, 6)), n_channels, window)

    def process(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Moving RMS of ``x`` (n_samples, n_channels) into ``out``."""
        if out is None:
            out = np.empty_like(x)
        self.process_rms(x, x, out)
        return out


# ------------------------------------------------------------------ design helpers

def _check_freq(name: str, f_hz: float, fs_hz: float) -> float:
    f = float(f_hz)
    if not (0 < f < fs_hz / 2):
        raise ValueError(f"{name} must be between 0 and Nyquist ({fs_hz / 2} Hz), got {f_hz} Hz")
    return f


def _check_fs(fs_hz: float) -> float:
    fs = float(fs_hz)
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"fs_hz must be a positive sampling rate in Hz, got {fs_hz}")
    return fs


def butter_bandpass(low_hz: float, high_hz: float, fs_hz: float, order: int = 2) -> np.ndarray:
    """Butterworth band-pass as SOS; ``order`` per edge (2 gives 2 sections, 4 gives 4).

    The coefficients of ``scipy.signal.butter(order, (low_hz, high_hz), "bandpass",
    fs=fs_hz, output="sos")`` to rounding (:mod:`~engramloop.decoders.filter_design`)."""
    fs = _check_fs(fs_hz)
    lo, hi = _check_freq("low_hz", low_hz, fs), _check_freq("high_hz", high_hz, fs)
    if lo >= hi:
        raise ValueError(f"low_hz ({low_hz}) must be below high_hz ({high_hz})")
    return butter_sos(order, (lo, hi), "bandpass", fs)


def butter_lowpass(cutoff_hz: float, fs_hz: float, order: int = 4) -> np.ndarray:
    """Butterworth low-pass as SOS."""
    fs = _check_fs(fs_hz)
    return butter_sos(order, (_check_freq("cutoff_hz", cutoff_hz, fs),), "lowpass", fs)


def butter_highpass(cutoff_hz: float, fs_hz: float, order: int = 4) -> np.ndarray:
    """Butterworth high-pass as SOS."""
    fs = _check_fs(fs_hz)
    return butter_sos(order, (_check_freq("cutoff_hz", cutoff_hz, fs),), "highpass", fs)


def notch(freq_hz: float, fs_hz: float, quality: float = 30.0) -> np.ndarray:
    """Second-order IIR notch (e.g. 50 or 60 Hz line noise) as one SOS row."""
    from scipy.signal import iirnotch, tf2sos

    fs = _check_fs(fs_hz)
    if not quality > 0:
        raise ValueError(f"quality must be > 0, got {quality}")
    b, a = iirnotch(_check_freq("freq_hz", freq_hz, fs), quality, fs=fs)
    return np.ascontiguousarray(tf2sos(b, a))


# ------------------------------------------------------------------ offline, one window

class ZeroPhase:
    """Forward-backward filtering of short signals, as ``scipy.signal.sosfiltfilt(sos,
    x)`` with its defaults: an odd extension of 3 x (2 n_sections + 1) samples at each end
    (fewer when sections have b2 == a2 == 0), each pass started in steady state at its
    first sample. The design's steady state and the filter are made once, here.

    Parameters
    ----------
    sos : array_like, shape (n_sections, 6)
    """

    def __init__(self, sos: object) -> None:
        self.sos = check_sos(sos)
        n_taps = 2 * self.sos.shape[0] + 1 - min(
            int(np.count_nonzero(self.sos[:, 2] == 0)),
            int(np.count_nonzero(self.sos[:, 5] == 0)))
        self.edge = 3 * n_taps
        self._zi = sos_steady_state(self.sos)[:, :, None]
        self._filt = SosFilter(self.sos, 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x``, shape (n_samples,), longer than the extension; same shape out."""
        x = np.asarray(x, dtype=np.float64)
        edge = self.edge
        if x.ndim != 1 or x.shape[0] <= edge:
            raise ValueError(f"zero_phase needs a 1-D signal longer than {edge} samples, "
                             f"got shape {x.shape}")
        ext = np.concatenate((2 * x[0] - x[edge:0:-1], x, 2 * x[-1] - x[-2:-(edge + 2):-1]))
        f = self._filt
        f.zi = self._zi * ext[0]
        y = f.process(ext.reshape(-1, 1))
        f.zi = self._zi * y[-1, 0]
        y = f.process(np.ascontiguousarray(y[::-1]))
        return y[::-1, 0][edge:-edge]


def zero_phase(sos: object, x: np.ndarray) -> np.ndarray:
    """One forward-backward filtering (:class:`ZeroPhase`) of ``x``, shape (n_samples,)."""
    return ZeroPhase(sos)(x)


def analytic_signal(x: np.ndarray) -> np.ndarray:
    """x + j H{x}: the FFT of ``x`` with negative frequencies zeroed and positive ones
    doubled, transformed back (as ``scipy.signal.hilbert(x)``, to rounding).

    Parameters
    ----------
    x : ndarray, shape (n_samples,), real

    Returns
    -------
    ndarray, shape (n_samples,), complex
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if x.ndim != 1 or n < 1:
        raise ValueError(f"analytic_signal needs a non-empty 1-D signal, got shape {x.shape}")
    h = np.zeros(n)
    h[0] = 1.0
    if n % 2 == 0:
        h[n // 2] = 1.0
        h[1:n // 2] = 2.0
    else:
        h[1:(n + 1) // 2] = 2.0
    return np.fft.ifft(np.fft.fft(x) * h)
