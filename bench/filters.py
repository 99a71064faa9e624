"""Our C SosFilter vs scipy.signal.sosfilt with carried zi, side by side in one run.

Prints, per block shape (channels x samples), the median time per call and per
sample·channel (and per sample·channel·section for ours), and the speed-up. Timing is
interleaved (ours, scipy, ours, ...) so machine noise hits both alike.

    .venv/bin/python bench/filters.py [--repeats 15]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import scipy
import scipy.signal as ss

from engramloop.decoders.filters import SosFilter, butter_bandpass

SHAPES = [(8, 1), (8, 10), (8, 30), (64, 30), (64, 1000)]  # (channels, samples)


def _time_per_call(fn, calls: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - t0) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    sos = butter_bandpass(150.0, 250.0, 2000.0, order=4)
    n_sec = sos.shape[0]
    print(f"# SOS band-pass 150-250 Hz at 2 kHz, {n_sec} sections; median of {args.repeats} "
          f"repeats; numpy {np.__version__}, scipy {scipy.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print("| block (ch x samples) | ours per call | scipy per call | speed-up "
          "| ours ns/(sample·ch) | ours ns/(sample·ch·section) | scipy ns/(sample·ch) |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n_ch, n in SHAPES:
        x = rng.standard_normal((n, n_ch))
        out = np.empty_like(x)
        ours = SosFilter(sos, n_ch)
        zi = np.zeros((n_sec, 2, n_ch))
        calls = max(10, 200_000 // (n * n_ch) + 10)
        scipy_calls = max(5, calls // 20)
        t_ours, t_scipy = [], []
        for _ in range(args.repeats):
            t_ours.append(_time_per_call(lambda: ours.process(x, out), calls))
            t_scipy.append(_time_per_call(lambda: ss.sosfilt(sos, x, axis=0, zi=zi), scipy_calls))
        mo, ms = float(np.median(t_ours)), float(np.median(t_scipy))
        per = n * n_ch
        print(f"| {n_ch} x {n} | {mo / 1000:.3f} us | {ms / 1000:.2f} us | {ms / mo:.0f}x "
              f"| {mo / per:.2f} | {mo / per / n_sec:.2f} | {ms / per:.2f} |")


if __name__ == "__main__":
    main()
