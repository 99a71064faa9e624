"""Cost of one governor review now that it counts every pulse of every train (issue 19).

A review builds the onsets of every train still inside the longest window (rate, 1 s
charge, optical) and checks each window with a cumulative sum; this prints the median and
p99 of ``Governor.review`` in microseconds for single pulses and for trains, with the
windows as full as the limits allow (steady state: an intent every refractory period).

    /work/venv-deps/bin/python bench/governor_review.py            # ~2 s
    /work/venv-deps/bin/python bench/governor_review.py --n 20000

Figures depend on the machine and its load (printed next to them).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from engramloop.controller.governor import Governor, Intent, SafetySettings
from engramloop.core.pulse import PulseSpec

RATE_HZ = 1000.0


def run(spec: PulseSpec, safety: SafetySettings, n: int) -> np.ndarray:
    g = Governor(safety)
    g.arm()
    g.set_calibrated(True)
    t, last = 10.0, 10.0
    g.observe_chunk(t - 1.0 + 1 / RATE_HZ, t, int(RATE_HZ), RATE_HZ)
    step = max(safety.refractory_s, spec.duration_s) + 0.001
    out = np.empty(n)
    for i in range(n):
        t += step
        k = int(round((t - last) * RATE_HZ))
        g.observe_chunk(last + 1 / RATE_HZ, last + k / RATE_HZ, k, RATE_HZ)
        last += k / RATE_HZ
        it = Intent("ripple", spec, last, last, last + 0.002)
        t0 = time.perf_counter()
        g.review(it, last)
        out[i] = time.perf_counter() - t0
    return out * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="reviews per case")
    args = ap.parse_args()
    elec = PulseSpec(modality="electrical", shape="biphasic", amplitude=1.0,
                     phase_width_s=100e-6)
    cases = [
        ("single pulse, default limits", elec, SafetySettings()),
        ("single pulse, 60 s window of 3000", elec,
         SafetySettings(refractory_s=0.05, rate_window_s=(1.0, 60.0),
                        rate_max_pulses=(20, 3000), max_pulses_per_session=1_000_000)),
        ("train of 20 at 100 Hz, 60 s window of 3000", PulseSpec(
            modality="electrical", shape="biphasic", amplitude=0.2, phase_width_s=100e-6,
            train_count=20, train_interval_s=0.01),
         SafetySettings(refractory_s=0.05, rate_window_s=(1.0, 60.0),
                        rate_max_pulses=(100, 3000), max_pulses_per_session=1_000_000)),
    ]
    print(f"# Governor.review, {args.n} reviews per case; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'case':46s} {'median us':>10s} {'p99 us':>10s}")
    for name, spec, s in cases:
        us = run(spec, s, args.n)
        print(f"{name:46s} {np.median(us):10.1f} {np.percentile(us, 99):10.1f}")


if __name__ == "__main__":
    main()
