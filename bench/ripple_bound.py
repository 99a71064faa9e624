"""How early can *any* causal detector find the simulator's ripples? (issue 4's latency target)

The ideal observer: it knows each ripple's exact waveform -- onset, carrier frequency and
phase, duration, amplitude, and the sharp wave under it (sim/rhythms.py, ``Ripple``) --
and only has to decide whether that waveform has started. With data up to tau seconds
after the onset its evidence is the matched-filter SNR in the background's coloured
Gaussian noise (Whalen, Detection of Signals in Noise, 1971, ch. 6):

    d'(tau)^2 = 4 * integral_0^inf |X_tau(f)|^2 * g' N(f)^-1 g df

with X_tau the Fourier transform of the waveform truncated at onset + tau (sharp-wave lead
included), g the ripple gains of the detection channels (CA1, CA1b) and N(f) the
background's one-sided cross-spectral density matrix, estimated (Welch) from the default
N3 simulation with every ripple source switched off. It fires when d' reaches z; holding
false positives to <= 1/min needs z ~ 3.59 (one-sided Gaussian tail 1/6000 over ~100
independent ripple-band samples per second; a real detector that does not know the
waveform needs more). The table gives, per ripple, when the *expected* evidence reaches z:
an approximate lower bound on any detector's latency at that false-positive level (the
noisy evidence can cross earlier by chance: for the median ripple at 10 ms after onset,
d' = 1.2, P(N(1.2, 1) > 3.59) is under 1 %).

Durations and amplitudes are drawn from ``[sim.ripple]`` (log-normal duration, median
50 ms, sigma 0.4, clipped to 20-150 ms; log-normal amplitude, median 60 uV, sigma 0.35;
carrier 150-250 Hz, random phase; sharp wave -150 uV, Gaussian, sigma max(15 ms, 0.3 x
duration), centred on the peak).

    .venv/bin/python bench/ripple_bound.py
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engramloop.sim.generate import simulate  # noqa: E402
from engramloop.sim.rhythms import Geometry  # noqa: E402
from engramloop.sim.settings import HypnogramSettings, SimSettings  # noqa: E402

CHANNELS = ("CA1", "CA1b")      # the detection channels of configs/sim-ripple.toml
NFFT = 4096                     # 2 s at 2 kHz: frequency resolution 0.49 Hz


def background_noise(seed: int, duration_s: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Rate (Hz), g' N(f)^-1 g on the rfft grid of NFFT (1/(V^2/Hz)) for CHANNELS with the
    simulator's ripple gains g, and the gains."""
    s = SimSettings(hypnogram=HypnogramSettings(schedule=(f"N3:{duration_s:g}",)))
    s = dataclasses.replace(s, ripple=dataclasses.replace(
        s.ripple, rate_n3_hz=0.0, rate_n2_hz=0.0, rate_wake_hz=0.0, spindle_coupling=0.0))
    x, _, truth = simulate(s, seed=seed, duration_s=duration_s)
    assert not [e for e in truth.events() if e.kind == "ripple"]
    fs = truth.rate_hz
    idx = [truth.channels.index(c) for c in CHANNELS]
    geo = Geometry(s)
    g = np.array([geo.ripple[list(s.channels).index(c)] for c in CHANNELS])
    k = len(idx)
    csd = np.empty((NFFT // 2 + 1, k, k), dtype=complex)
    for a in range(k):
        for b in range(k):
            _, csd[:, a, b] = signal.csd(x[:, idx[a]], x[:, idx[b]], fs=fs, nperseg=NFFT)
    q = np.einsum("i,fij,j->f", g, np.linalg.inv(csd[1:]), g).real   # skip DC
    return fs, np.concatenate([[0.0], q]), g


def dprime_curve(fs: float, q: np.ndarray, dur: float, amp: float, freq: float,
                 phase0: float, sw_v: float, taus: np.ndarray) -> np.ndarray:
    """d'(tau) of one ripple's waveform (carrier under a sin^2 envelope plus its sharp
    wave, as sim/rhythms.py renders it) truncated tau seconds after its onset."""
    sw_sigma = max(0.015, 0.3 * dur)
    lead = max(0.0, 3 * sw_sigma - dur / 2)         # the sharp wave starts before onset
    t = np.arange(int(round((lead + dur / 2 + 3 * sw_sigma) * fs))) / fs - lead  # 0 = onset
    env = np.where((t >= 0) & (t <= dur), np.sin(np.pi * np.clip(t, 0, dur) / dur) ** 2, 0.0)
    peak = dur / 2
    w = (amp * env * np.sin(2 * np.pi * freq * (t - peak) + phase0)
         + sw_v * np.exp(-0.5 * ((t - peak) / sw_sigma) ** 2))
    df = fs / NFFT
    out = np.empty(len(taus))
    for j, tau in enumerate(taus):
        xw = np.where(t <= tau, w, 0.0)
        spec = np.fft.rfft(xw, NFFT) / fs                # continuous-time transform, V*s
        out[j] = math.sqrt(4.0 * float(np.sum(np.abs(spec) ** 2 * q)) * df)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration", type=float, default=120.0, help="background seconds")
    ap.add_argument("--n", type=int, default=400, help="ripples drawn")
    args = ap.parse_args(argv)
    rp = SimSettings().ripple
    fs, q, g = background_noise(args.seed, args.duration)
    rng = np.random.default_rng(args.seed)
    taus = np.arange(0.0, 0.0605, 0.0005)
    print(f"# bench/ripple_bound.py: ideal observer on {' + '.join(CHANNELS)} (ripple gains "
          f"{', '.join(f'{v:.2f}' for v in g)}), coloured background noise from {args.duration:g} "
          f"s of ripple-free N3 (seed {args.seed}), {args.n} ripples from [sim.ripple]")
    draws = []
    for _ in range(args.n):
        dur = float(np.clip(rp.median_duration_s * math.exp(0.4 * rng.standard_normal()),
                            *rp.duration_s))
        amp = rp.amplitude_v * math.exp(rp.amplitude_sigma * rng.standard_normal())
        draws.append((dur, amp, float(rng.uniform(*rp.freq_hz)),
                      float(rng.uniform(0, 2 * math.pi))))
    for title, sw in (("the ripple oscillation alone", 0.0),
                      ("with the sharp wave the simulator draws under every ripple",
                       rp.sharp_wave_v)):
        med = dprime_curve(fs, q, rp.median_duration_s, rp.amplitude_v,
                           float(np.mean(rp.freq_hz)), 0.0, sw, np.array([0.01, 0.025]))
        print(f"\n## {title}\nmedian ripple (50 ms, 60 uV, 200 Hz): d' = {med[0]:.2f} at "
              f"10 ms after onset, {med[1]:.2f} at its peak (25 ms)\n")
        curves = np.array([dprime_curve(fs, q, *d, sw, taus) for d in draws])
        print("| threshold z | ideal-observer latency from onset, median | p10 | ripples "
              "reached by 10 ms |")
        print("|---|---|---|---|")
        for z in (2.0, 3.0, 3.5, 3.59, 4.0):
            hit = curves >= z
            lat = np.where(hit.any(axis=1), taus[np.argmax(hit, axis=1)], np.inf)
            print(f"| {z:.2f} | {np.median(lat) * 1e3:.1f} ms | "
                  f"{np.percentile(lat, 10) * 1e3:.1f} ms | {(lat <= 0.010).mean() * 100:.1f} % |")
    print("\nTarget (issue 4): median latency from onset <= 10 ms at F1 >= 0.95 and <= 1 FP/min "
          "(z ~ 3.59 or more).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
