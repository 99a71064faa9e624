"""How fast the simulator generates, and the signal-to-noise it generates at.

Prints, for 8 channels at 2 kHz (the defaults), the real-time ratio (simulated seconds per
wall-clock second, median of 3 runs, one process, one thread) at several chunk sizes; the
target is >= 200x at the stated chunk size. Then prints the default-setting band RMS
values and event amplitudes that the SNR figures in ``sim/settings.py`` quote.

Run: ``.venv/bin/python bench/sim.py`` (add ``--detectors`` to also score the project's
detectors, ``decoders.detectors.make_detectors`` with default settings, against the truth
of a 600-s default-schedule run read in 20-sample chunks).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import signal  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engramloop.core.chunk import EndOfStream  # noqa: E402
from engramloop.sim.generate import simulate  # noqa: E402
from engramloop.sim.settings import HypnogramSettings, SimSettings  # noqa: E402
from engramloop.sim.source import SimSource  # noqa: E402

TARGET = 200.0


def ratio(chunk: int, duration_s: float, seed: int = 0) -> tuple[float, float]:
    """(simulated s per CPU s of this process, simulated s per wall-clock s)."""
    src = SimSource(SimSettings(), seed=seed, chunk_samples=chunk, duration_s=duration_s)
    src.start()
    c0, w0 = time.process_time(), time.perf_counter()
    while True:
        try:
            src.read(0.0)
        except EndOfStream:
            break
    return (duration_s / (time.process_time() - c0),
            duration_s / (time.perf_counter() - w0))


def speed() -> None:
    s = SimSettings()
    print(f"simulator speed: {len(s.channels)} channels at {s.rate_hz:g} Hz, default "
          f"schedule {', '.join(s.hypnogram.schedule)}; median of 3 runs; one thread. "
          f"CPU = per second of this process's CPU time (one core, robust to other load); "
          f"wall = per wall-clock second (load average now {os.getloadavg()[0]:.1f})")
    for chunk, dur in ((2000, 600.0), (200, 300.0), (20, 120.0), (10, 120.0)):
        runs = [ratio(chunk, dur, seed=k) for k in range(3)]
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        flag = "  <- stated chunk size; target >= 200x" if chunk == 200 else ""
        print(f"  chunk {chunk:5d} samples ({chunk / s.rate_hz * 1e3:6.1f} ms): "
              f"{cpu:6.0f}x real time per CPU s, {wall:6.0f}x per wall s{flag}")


def band(x: np.ndarray, lo: float, hi: float, fs: float) -> np.ndarray:
    sos = signal.butter(4, [lo, hi], "bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, x, axis=0)


def snr() -> None:
    fs = 2000.0
    s = SimSettings(hypnogram=HypnogramSettings(schedule=("N3:300",)))
    x, t, tr = simulate(s, seed=1, duration_s=300.0)
    ch = list(s.channels)

    def outside(events: list, pad: float) -> np.ndarray:
        m = np.ones(len(t), bool)
        for e in events:
            m[max(0, int((e.onset_s - pad) * fs)):int((e.offset_s + pad) * fs)] = False
        return m

    rip = tr.events("ripple")
    rb = band(x[:, ch.index("CA1")], 150, 250, fs)
    base = rb[outside(rip, 0.05)].std()
    amps = np.array([e.meta["amplitude_v"] for e in rip])
    print("default SNR (300 s of N3, seed 1):")
    print(f"  ripples: {len(rip)} ({len(rip) / 300:.2f}/s); CA1 150-250 Hz background RMS "
          f"{base * 1e6:.1f} uV; peak envelope median {np.median(amps) * 1e6:.1f} uV -> "
          f"ratio {np.median(amps) / base:.1f} (5th percentile "
          f"{np.percentile(amps, 5) / base:.1f})")
    sp = tr.events("spindle")
    sb = band(x[:, ch.index("Cz")], 11, 16, fs)
    sbase = sb[outside(sp, 0.2)].std()
    samp = np.array([e.meta["amplitude_v"] for e in sp])
    print(f"  spindles: {len(sp)}; Cz 11-16 Hz background RMS {sbase * 1e6:.2f} uV; peak "
          f"envelope median {np.median(samp) * 1e6:.1f} uV -> ratio "
          f"{np.median(samp) / sbase:.1f}")
    so = tr.events("so")
    fz = x[:, ch.index("Fz")]
    tr_v = np.array([e.meta["trough_v"] for e in so])
    pk_v = np.array([e.meta["peak_v"] for e in so])
    sob = band(fz, 0.3, 1.5, fs)
    print(f"  slow oscillations: {len(so)} cycles; Fz median trough {np.median(tr_v) * 1e6:.0f} "
          f"uV, peak {np.median(pk_v) * 1e6:.0f} uV; 0.3-1.5 Hz background RMS outside SOs "
          f"{sob[outside(so, 0.5)].std() * 1e6:.1f} uV")


def detectors() -> None:
    from engramloop.analysis.scoring import score_kind
    from engramloop.decoders.detectors import make_detectors

    src = SimSource(SimSettings(), seed=5, chunk_samples=20, duration_s=600.0)
    src.start()
    dets = make_detectors(None, src.channels, missing="skip")
    evs = []
    while True:
        try:
            c = src.read(0.0)
        except EndOfStream:
            break
        for d in dets:
            evs.extend(d.process(c))
    src.stop()
    print("project detectors on 600 s of the default schedule (seed 5, 20-sample chunks):")
    for kind in ("ripple", "spindle", "so"):
        det = [e for e in evs if e.kind == kind]
        sc = score_kind(kind, det, src.truth.events(kind), 600.0)
        print(f"  {kind:8s} truth {sc.n_truth:4d} detected {sc.n_detected:4d} precision "
              f"{sc.precision:.2f} recall {sc.recall:.2f} FP/min {sc.fp_per_min:.2f} "
              f"onset latency median {sc.latency_onset_median_s * 1e3:.0f} ms")


if __name__ == "__main__":
    speed()
    snr()
    if "--detectors" in sys.argv[1:]:
        detectors()
