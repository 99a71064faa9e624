"""Continuous background: aperiodic 1/f^a activity, amplifier noise, mains, and the theta
rhythm with nested gamma. Produced in fixed blocks (one second) with per-channel filter
state carried across blocks, so the background depends only on the seed, never on how the
stream is later cut into chunks.
"""
from __future__ import annotations

import bisect
import math

import numpy as np

from engramloop.decoders.filters import SosFilter, butter_bandpass
from engramloop.sim.settings import NoiseSettings, ThetaSettings
from engramloop.sim.truth import Truth, theta_warp


def pinking_sos(exponent: float, fs_hz: float, f_lo_hz: float = 0.2,
                f_hi_hz: float | None = None) -> np.ndarray:
    """SOS filter whose power response falls as 1/f^exponent between f_lo_hz and f_hi_hz.

    Alternating real poles and zeros, log-spaced, approximate a fractional slope: each
    pole-zero pair gives -20 dB/decade (amplitude) over the part of the spacing between
    them, so a zero placed ``r**(exponent/2)`` above each pole (pole ratio ``r``) averages
    to -10*exponent dB/decade in power (the classic "pinking filter" construction,
    e.g. Kasdin 1995 Proc. IEEE 83:802). Below f_lo_hz the spectrum is flat.

    Returns
    -------
    ndarray, shape (n_sections, 6)
    """
    # scipy.signal takes 0.5-2 s to import: only a simulator that starts pays it (as in
    # decoders.filters), not every command that imports the simulator's modules
    from scipy import signal

    f_hi = f_hi_hz if f_hi_hz is not None else 0.45 * fs_hz
    n = max(2, int(math.ceil(math.log10(f_hi / f_lo_hz) * 2)))  # two poles per decade
    poles_hz = np.geomspace(f_lo_hz, f_hi, n)
    r = poles_hz[1] / poles_hz[0]
    zeros_hz = poles_hz * r ** (exponent / 2.0)
    # prewarped bilinear transform keeps the corner frequencies where they were designed
    def warp(f: np.ndarray) -> np.ndarray:
        return 2 * fs_hz * np.tan(np.pi * np.minimum(f, 0.49 * fs_hz) / fs_hz)
    z, p, k = signal.bilinear_zpk(-warp(zeros_hz), -warp(poles_hz), 1.0, fs_hz)
    sos = signal.zpk2sos(z, p, k)
    # unit RMS output for unit-variance white input
    _, h = signal.sosfreqz(sos, worN=1 << 16)
    rms = math.sqrt(float(np.mean(np.abs(h) ** 2)))
    sos[0, :3] /= rms
    return np.ascontiguousarray(sos)


class Background:
    """Generates the background block by block.

    Parameters
    ----------
    noise : NoiseSettings
    theta : ThetaSettings
    rate_hz : float
    lfp_mask : ndarray of bool, shape (n_channels,)
        True for hippocampal channels.
    truth : Truth
        Receives the theta generator knots; its stage segments gate theta.
    rng : numpy.random.Generator
    block_samples : int
    """

    def __init__(self, noise: NoiseSettings, theta: ThetaSettings, rate_hz: float,
                 lfp_mask: np.ndarray, truth: Truth, rng: np.random.Generator,
                 block_samples: int) -> None:
        from scipy import signal  # deferred, see pinking_sos

        self.noise, self.theta = noise, theta
        self.fs = float(rate_hz)
        self.lfp = np.asarray(lfp_mask, dtype=bool)
        self.eeg = ~self.lfp
        self.n_ch = self.lfp.size
        self.truth = truth
        self.rng = rng
        self.block = int(block_samples)
        self.next_index = 0
        # aperiodic: one filter over n_ch independent columns plus one shared column per group
        self._pink = SosFilter(pinking_sos(noise.aperiodic_exponent, self.fs), self.n_ch + 2)
        # start the filters in their stationary state by running a few seconds of warm-up
        warm = int(min(20.0, 4.0 / 0.2) * self.fs)
        self._pink.process(np.ascontiguousarray(rng.standard_normal((warm, self.n_ch + 2))))
        # ongoing spindle-band activity on EEG channels (not events: no truth entry)
        self._sigma = SosFilter(butter_bandpass(10.0, 16.0, self.fs, order=2), self.n_ch)
        sig_sos = butter_bandpass(10.0, 16.0, self.fs, order=2)
        _, h = signal.sosfreqz(sig_sos, worN=1 << 14)
        self._sigma_gain = np.where(self.lfp, 0.0, noise.eeg_sigma_v) / math.sqrt(
            float(np.mean(np.abs(h) ** 2)))
        self._sigma.process(np.ascontiguousarray(rng.standard_normal((int(self.fs), self.n_ch))))
        # wake alpha (8-12 Hz), posterior-dominant (Berger 1929; Niedermeyer 1997)
        names = getattr(truth, "channels", ())
        post = np.array([0.4 if n.startswith("F") else 1.0 if n.startswith(("O", "P"))
                         else 0.6 for n in names]) if len(names) == self.n_ch else \
            np.ones(self.n_ch)
        al_sos = butter_bandpass(8.0, 12.0, self.fs, order=2)
        _, h = signal.sosfreqz(al_sos, worN=1 << 14)
        self._alpha = SosFilter(al_sos, 1)
        self._alpha_gain = np.where(self.lfp, 0.0, noise.alpha_v * post) / math.sqrt(
            float(np.mean(np.abs(h) ** 2)))
        self._alpha.process(np.ascontiguousarray(rng.standard_normal((int(self.fs), 1))))
        # nested gamma: band-limited noise, amplitude-modulated by theta phase below
        g_sos = butter_bandpass(theta.gamma_hz[0], theta.gamma_hz[1], self.fs, order=2)
        _, h = signal.sosfreqz(g_sos, worN=1 << 14)
        self._gamma = SosFilter(g_sos, 1)
        self._gamma_norm = 1.0 / math.sqrt(float(np.mean(np.abs(h) ** 2)))
        self._gamma.process(np.ascontiguousarray(rng.standard_normal((int(self.fs), 1))))
        rho = noise.channel_correlation
        self._w_shared, self._w_own = math.sqrt(rho), math.sqrt(1.0 - rho)
        self._ap_gain = np.where(self.lfp, noise.lfp_aperiodic_v, noise.eeg_aperiodic_v)
        dens = np.where(self.lfp, noise.lfp_white_v_per_rthz, noise.eeg_white_v_per_rthz)
        self._white_gain = dens * math.sqrt(self.fs / 2.0)
        self._line_phase = rng.uniform(-0.3, 0.3, self.n_ch)
        self._line_cos = (noise.line_v * np.cos(self._line_phase))[None, :]
        self._line_sin = (noise.line_v * np.sin(self._line_phase))[None, :]
        self._theta_gain = np.where(self.lfp, theta.lfp_v, theta.eeg_v)
        self._gamma_gain = np.where(self.lfp, theta.gamma_v, 0.0)
        truth.theta_asym = theta.asymmetry
        truth.add_theta_knot(0.0, float(np.clip(rng.normal(np.mean(theta.freq_hz), 0.4),
                                                *theta.freq_hz)), 0.0)

    def _extend_theta(self, until_s: float) -> None:
        """Add theta knots (one per second, frequency random walk) to cover ``until_s``."""
        tr, (flo, fhi) = self.truth, self.theta.freq_hz
        while tr.theta_knots[-1, 0] < until_s + 1.0:
            t0, f0, p0 = (float(v) for v in tr.theta_knots[-1])
            # slow mean-reverting wander around the middle of the range (theta frequency
            # tracks running speed: Slawinska & Kasicki 1998): an Ornstein-Uhlenbeck step
            # per second, stationary SD ~0.7 Hz; reflected into the configured range
            mid = 0.5 * (flo + fhi)
            f1 = f0 + 0.3 * (mid - f0) + float(self.rng.normal(0.0, 0.5))
            if f1 < flo:
                f1 = 2 * flo - f1
            if f1 > fhi:
                f1 = 2 * fhi - f1
            f1 = min(max(f1, flo), fhi)
            tr.add_theta_knot(t0 + 1.0, f1, p0 + 2 * math.pi * 0.5 * (f0 + f1) * 1.0)

    def theta_activity(self, t: np.ndarray,
                       stages: tuple[str, ...] = ("wake", "REM")) -> np.ndarray:
        """Amplitude factor in [0, 1]: on in ``stages`` with 2-s ramps at the edges."""
        tr = self.truth
        act = np.zeros_like(t)
        lo, hi = float(t[0]), float(t[-1])
        first = max(0, bisect.bisect_right(tr.seg_start, lo) - 1)
        for st, a, b in zip(tr.seg_stage[first:], tr.seg_start[first:], tr.seg_end[first:],
                            strict=True):
            if a > hi:
                break
            if st not in stages or b < lo:
                continue
            ramp = min(2.0, 0.25 * (b - a))
            act += np.interp(t, [a, a + ramp, b - ramp, b], [0.0, 1.0, 1.0, 0.0],
                             left=0.0, right=0.0)
        return np.minimum(act, 1.0)

    def next_block(self) -> np.ndarray:
        """The next block of background, shape (block_samples, n_channels), volts."""
        n, rng = self.block, self.rng
        i0 = self.next_index
        self.next_index += n
        t = np.arange(i0, i0 + n, dtype=np.float64) / self.fs
        white = rng.standard_normal((n, self.n_ch + 2))
        ap = self._pink.process(white)
        out = np.empty((n, self.n_ch))
        shared = np.where(self.lfp, 0, 1)       # column n_ch = LFP shared, n_ch+1 = EEG shared
        out[:] = (self._w_own * ap[:, :self.n_ch]
                  + self._w_shared * ap[:, self.n_ch + shared]) * self._ap_gain
        out += rng.standard_normal((n, self.n_ch)) * self._white_gain
        if self.noise.eeg_sigma_v > 0:
            sig = self._sigma.process(np.ascontiguousarray(rng.standard_normal((n, self.n_ch))))
            out += sig * self._sigma_gain
        if self.noise.line_v > 0:
            # sin(ph + p_c) = sin(ph) cos(p_c) + cos(ph) sin(p_c): 2 n trig calls, not n*c
            ph = 2 * math.pi * self.noise.line_hz * t
            out += np.sin(ph)[:, None] * self._line_cos + np.cos(ph)[:, None] * self._line_sin
        if self.noise.alpha_v > 0:
            al = self._alpha.process(np.ascontiguousarray(rng.standard_normal((n, 1))))
            wake = self.theta_activity(t, ("wake",))
            if wake.any():
                out += (al[:, 0] * wake)[:, None] * self._alpha_gain[None, :]
        self._extend_theta(t[-1])
        act = self.theta_activity(t)
        gnoise = self._gamma.process(np.ascontiguousarray(rng.standard_normal((n, 1))))[:, 0]
        if act.any():
            g = self.truth.theta_generator_phase(t)
            w = theta_warp(g, self.theta.asymmetry)
            th = act * np.cos(w)
            out += th[:, None] * self._theta_gain[None, :]
            if self.theta.gamma_v > 0:
                mod = 0.5 * (1.0 + np.cos(w - math.radians(self.theta.gamma_phase_deg)))
                gam = act * mod * gnoise * self._gamma_norm
                out += gam[:, None] * self._gamma_gain[None, :]
            self._add_spikes(out, act, w)
        return out

    def _add_spikes(self, out: np.ndarray, act: np.ndarray, w: np.ndarray) -> None:
        """Extracellular unit spikes on LFP channels, theta-trough locked."""
        nz = self.noise
        if nz.lfp_spike_v <= 0 or nz.lfp_spike_rate_hz <= 0 or not self.lfp.any():
            return
        n, rng, fs = out.shape[0], self.rng, self.fs
        half = int(math.ceil(0.002 * fs))            # +-2 ms template support
        k = int(rng.poisson(nz.lfp_spike_rate_hz * 2.0 * n / fs))
        pos = rng.uniform(half, n - half - 1, k)
        # heavy-tailed amplitudes: a few nearby units give rare, large transients
        amp = nz.lfp_spike_v * np.exp(0.7 * rng.standard_normal(k))
        i = pos.astype(np.int64)
        # thinning: rate follows theta activity and peaks at the trough (w = +-pi)
        keep = rng.random(k) < act[i] * 0.5 * (1.0 - np.cos(w[i]))
        if not keep.any():
            return
        pos, amp = pos[keep], amp[keep]
        # complex-spike bursts: 2-5 spikes 3-6 ms apart, each smaller than the last
        burst = rng.random(pos.size) < nz.lfp_burst_prob
        nb = rng.integers(2, 6, pos.size)
        isi = rng.uniform(0.003, 0.006, pos.size) * fs
        extra_pos, extra_amp = [], []
        for m in range(1, 5):
            sel = burst & (nb > m)
            extra_pos.append(pos[sel] + m * isi[sel])
            extra_amp.append(amp[sel] * 0.8 ** m)
        pos = np.concatenate([pos] + extra_pos)
        amp = np.concatenate([amp] + extra_amp)
        inside = pos < n - half - 1
        pos, amp = pos[inside], amp[inside]
        i = pos.astype(np.int64)
        j = i[:, None] + np.arange(-half, half + 1)[None, :]
        tau = (j - pos[:, None]) / fs
        # fast negative trough then a slower positive rebound (~1.5 ms wide in all)
        shape = (-np.exp(-0.5 * (tau / 0.0004) ** 2)
                 + 0.35 * np.exp(-0.5 * ((tau - 0.0006) / 0.0004) ** 2))
        col = np.zeros(n)
        np.add.at(col, j.ravel(), (shape * amp[:, None]).ravel())
        out += col[:, None] * np.where(self.lfp, 1.0, 0.0)[None, :]
