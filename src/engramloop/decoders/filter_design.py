"""Butterworth filter design and second-order-section arithmetic in NumPy alone.

scipy.signal takes 0.5-2 s to import (it pulls scipy.stats, scipy.interpolate and
scipy.optimize); a replay or a detector set-up needs three of its small formulas, written
here from the textbook so that nothing on a loop's path imports it:

- ``butter_sos``: the analog Butterworth prototype (poles equally spaced on the left
  unit half-circle, Butterworth 1930), frequency-transformed to low-, high- or band-pass,
  then mapped to the z-plane by the bilinear transform with pre-warped edges (Oppenheim &
  Schafer, *Discrete-Time Signal Processing*, 3rd ed., sections 7.2.2 and 7.4), and cut
  into second-order sections: poles nearest the unit circle in the last section, each pole
  pair with its nearest zeros, the gain in the first section -- the convention of
  ``scipy.signal.zpk2sos(pairing="nearest")``, so the coefficients agree with
  ``scipy.signal.butter(..., output="sos")`` to rounding (tests/decoders/test_filter_design.py);
- ``sos_response``: the complex frequency response of a cascade (``sosfreqz``);
- ``sos_steady_state``: each section's state for a unit step held forever, scaled by the
  DC gain of the sections before it (``sosfilt_zi``), so a filter can start without a step
  transient.

Pure functions of their arguments; no state, no I/O.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["butter_sos", "sos_response", "sos_steady_state"]

#: the bilinear transform's constant 2/T for a sampling interval T = 1/2 (edges given as a
#: fraction of Nyquist): any T gives the same digital filter, this one the same rounding as
#: scipy.signal's design functions
_K = 4.0


def _prototype_poles(order: int) -> np.ndarray:
    """Poles of the order-``order`` analog Butterworth low-pass with a 1 rad/s cut-off:
    exp(j*pi*(2m + order - 1) / (2*order)), m = 1..order, the left half of the unit
    circle (gain 1, no zeros)."""
    m = np.arange(-order + 1, order, 2)
    return -np.exp(1j * np.pi * m / (2 * order))


def _prewarp(f_hz: float, fs_hz: float) -> float:
    """The analog edge (rad/s at T = 1/2) the bilinear transform maps onto ``f_hz``."""
    return _K * math.tan(math.pi * (2.0 * f_hz / fs_hz) / 2.0)


def _analog_zpk(order: int, edges_hz: tuple[float, ...], btype: str,
                fs_hz: float) -> tuple[np.ndarray, np.ndarray, float]:
    p = _prototype_poles(order)
    if btype == "lowpass":
        w = _prewarp(edges_hz[0], fs_hz)
        return np.zeros(0), w * p, w ** order
    if btype == "highpass":
        w = _prewarp(edges_hz[0], fs_hz)
        # s -> w/s: the prototype's poles invert, its order zeros at infinity come to 0;
        # the gain stays 1 (the prototype's product of -poles is 1)
        return np.zeros(order), w / p, float(np.real(1.0 / np.prod(-p)))
    if btype == "bandpass":
        w1, w2 = _prewarp(edges_hz[0], fs_hz), _prewarp(edges_hz[1], fs_hz)
        bw, w0 = w2 - w1, math.sqrt(w1 * w2)
        # s -> (s^2 + w0^2) / (s bw): each low-pass pole splits into two band-pass poles,
        # and the order zeros at infinity bring order zeros to 0
        half = (p * bw / 2).astype(complex)
        root = np.sqrt(half ** 2 - w0 ** 2)
        return np.zeros(order), np.concatenate((half + root, half - root)), bw ** order
    raise ValueError(f"btype must be lowpass, highpass or bandpass, got {btype!r}")


def _bilinear(z: np.ndarray, p: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray, float]:
    """s = K (z - 1) / (z + 1): each analog root r goes to (K + r) / (K - r); the zeros at
    infinity (as many as poles exceed zeros) go to z = -1, Nyquist."""
    zd = np.append((_K + z) / (_K - z), -np.ones(len(p) - len(z)))
    pd = (_K + p) / (_K - p)
    kd = k * float(np.real(np.prod(_K - z) / np.prod(_K - p)))
    return zd, pd, kd


def _is_real(r: np.ndarray) -> np.ndarray:
    return np.abs(r.imag) <= 100 * np.finfo(float).eps * np.abs(r)


def _sections(z: np.ndarray, p: np.ndarray, k: float) -> np.ndarray:
    """Cut a digital zpk into second-order sections (see the module docstring)."""
    n = max(len(z), len(p))
    n += n % 2
    p = np.concatenate((p, np.zeros(n - len(p))))
    z = np.concatenate((z, np.zeros(n - len(z))))
    # one of each conjugate pair (the one above the real axis), then the real roots,
    # each group by real part (a stable order makes ties between equal roots harmless)
    def split(r: np.ndarray) -> list:
        real = _is_real(r)
        up = r[~real & (r.imag > 0)]
        if 2 * len(up) != int(np.count_nonzero(~real)):
            raise ValueError("complex roots must come in conjugate pairs")
        return ([complex(c) for c in up[np.argsort(up.real, kind="stable")]]
                + [float(x) for x in np.sort(r[real].real)])

    poles, zeros = split(p), split(z)
    if any(isinstance(r, complex) for r in zeros):
        raise ValueError("complex zeros are not needed by a Butterworth design")
    sos = np.zeros((n // 2, 6))
    for si in range(n // 2 - 1, -1, -1):
        # the pole nearest the unit circle (the "worst") goes last
        i = int(np.argmin([abs(1 - abs(r)) for r in poles]))
        p1 = poles.pop(i)
        n_zeros = 2
        if isinstance(p1, complex):
            p2 = p1.conjugate()
        else:
            reals = [j for j, r in enumerate(poles) if not isinstance(r, complex)]
            if reals:
                p2 = poles.pop(reals[int(np.argmin([abs(1 - abs(poles[j])) for j in reals]))])
            else:
                p2, n_zeros = 0.0, 1   # the last real pole alone: a first-order section
        pair = [zeros.pop(int(np.argmin([abs(r - p1) for r in zeros])))
                for _ in range(min(n_zeros, len(zeros)))]
        pair += [0.0] * (2 - len(pair))
        sos[si, :3] = np.real(np.poly(pair))
        sos[si, 3:] = np.real(np.poly([p1, p2]))
    sos[0, :3] *= k
    return sos


def butter_sos(order: int, edges_hz: tuple[float, ...], btype: str,
               fs_hz: float) -> np.ndarray:
    """A digital Butterworth filter as second-order sections.

    Parameters
    ----------
    order : int
        Order of the analog prototype (>= 1); a band-pass has twice as many poles.
    edges_hz : tuple of float
        The -3 dB edge (low/high-pass) or the two edges (band-pass), Hz, in (0, fs/2).
    btype : {"lowpass", "highpass", "bandpass"}
    fs_hz : float
        Sampling rate, Hz.

    Returns
    -------
    ndarray, shape (n_sections, 6), float64, C-contiguous
        Rows ``b0 b1 b2 a0 a1 a2`` with ``a0 == 1``.
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")
    z, p, k = _bilinear(*_analog_zpk(int(order), tuple(edges_hz), btype, float(fs_hz)))
    return np.ascontiguousarray(_sections(z, p, k))


def sos_response(sos: np.ndarray, freqs_hz: np.ndarray, fs_hz: float) -> np.ndarray:
    """The cascade's complex frequency response H(exp(j 2 pi f / fs)).

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6)
    freqs_hz : ndarray, shape (n_freqs,), Hz
    fs_hz : float

    Returns
    -------
    ndarray, shape (n_freqs,), complex
    """
    zm1 = np.exp(-1j * (2 * np.pi * np.asarray(freqs_hz, dtype=float) / float(fs_hz)))
    h = np.ones(zm1.shape, dtype=complex)
    for b0, b1, b2, a0, a1, a2 in np.asarray(sos, dtype=float):
        # Horner in z^-1, highest power first
        num = (b2 + zm1 * 0) * zm1 + b1
        num = num * zm1 + b0
        den = (a2 + zm1 * 0) * zm1 + a1
        den = den * zm1 + a0
        h *= num / den
    return h


def sos_steady_state(sos: np.ndarray) -> np.ndarray:
    """Each section's transposed-direct-form-II state after a unit step held forever.

    A section y = b0 x + s0, s0' = b1 x - a1 y + s1, s1' = b2 x - a2 y (a0 = 1) at rest
    under x = 1 has s = A s + B with A = [[-a1, 1], [-a2, 0]] and B = (b1 - a1 b0,
    b2 - a2 b0): s solves (I - A) s = B. The input of each section is the DC gain
    sum(b) / sum(a) of those before it, so its state scales by that.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6), ``a0 != 0``

    Returns
    -------
    ndarray, shape (n_sections, 2)
        Multiply by a first sample (per channel) to start without a step transient.
    """
    sos = np.asarray(sos, dtype=float)
    zi = np.empty((sos.shape[0], 2))
    scale = 1.0
    for i, row in enumerate(sos):
        b, a = row[:3], row[3:]
        if a[0] != 1.0:
            b, a = b / a[0], a / a[0]
        i_minus_a = np.array([[1.0 + a[1], -1.0], [a[2], 1.0]])
        zi[i] = scale * np.linalg.solve(i_minus_a, b[1:] - a[1:] * b[0])
        scale *= b.sum() / a.sum()
    return zi
