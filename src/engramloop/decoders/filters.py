"""Streaming filters on the C filter bank.

``SosFilter`` runs a cascade of second-order sections over time-major blocks
(n_samples, n_channels) and keeps per-channel state between calls, so a signal filtered
chunk by chunk equals the same signal filtered in one pass. ``BandEnvelope`` fuses the
band-pass with a moving RMS envelope in one C call per chunk; ``MovingRms`` is the
envelope alone. Filter design (Butterworth, notch) uses scipy and returns SOS arrays.

Everything is validated once in the constructor; ``process`` only calls C. The C
extension is required: importing this module without it is an ImportError, never a slow
fallback.
"""
from __future__ import annotations

import numpy as np

try:
    from engramloop.decoders._filters import FilterBank
except ImportError as exc:  # pragma: no cover - exercised by an install without a compiler
    raise ImportError(
        "engramloop's C filter bank (decoders._filters) is missing or broken: "
        f"{exc}. Reinstall with a C compiler present: `make install` or "
        "`pip install -e .`") from exc

__all__ = ["SosFilter", "BandEnvelope", "MovingRms", "butter_bandpass", "butter_lowpass",
           "butter_highpass", "notch", "check_sos"]


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
        from scipy.signal import sosfilt_zi

        x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
        if x0.shape != (self.n_channels,) or not np.all(np.isfinite(x0)):
            raise ValueError(f"x0 must be {self.n_channels} finite values, got {x0!r}")
        self.zi = sosfilt_zi(self.sos)[:, :, None] * x0[None, None, :]


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
    """Butterworth band-pass as SOS; ``order`` per edge (2 gives 2 sections, 4 gives 4)."""
    from scipy.signal import butter

    fs = _check_fs(fs_hz)
    lo, hi = _check_freq("low_hz", low_hz, fs), _check_freq("high_hz", high_hz, fs)
    if lo >= hi:
        raise ValueError(f"low_hz ({low_hz}) must be below high_hz ({high_hz})")
    return np.ascontiguousarray(butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos"))


def butter_lowpass(cutoff_hz: float, fs_hz: float, order: int = 4) -> np.ndarray:
    """Butterworth low-pass as SOS."""
    from scipy.signal import butter

    fs = _check_fs(fs_hz)
    return np.ascontiguousarray(
        butter(order, _check_freq("cutoff_hz", cutoff_hz, fs), btype="lowpass", fs=fs,
               output="sos"))


def butter_highpass(cutoff_hz: float, fs_hz: float, order: int = 4) -> np.ndarray:
    """Butterworth high-pass as SOS."""
    from scipy.signal import butter

    fs = _check_fs(fs_hz)
    return np.ascontiguousarray(
        butter(order, _check_freq("cutoff_hz", cutoff_hz, fs), btype="highpass", fs=fs,
               output="sos"))


def notch(freq_hz: float, fs_hz: float, quality: float = 30.0) -> np.ndarray:
    """Second-order IIR notch (e.g. 50 or 60 Hz line noise) as one SOS row."""
    from scipy.signal import iirnotch, tf2sos

    fs = _check_fs(fs_hz)
    if not quality > 0:
        raise ValueError(f"quality must be > 0, got {quality}")
    b, a = iirnotch(_check_freq("freq_hz", freq_hz, fs), quality, fs=fs)
    return np.ascontiguousarray(tf2sos(b, a))
