"""How this machine runs a small fixed workload right after waking up (no engramloop code).

The closed loop sleeps ~5 ms between 10-sample chunks; on a shared virtual machine the
caches may be cold when it wakes. This prints the median / p99 / p99.9 time of the same
NumPy workload (50 in-place additions on an 10 x 8 block) run back to back, after 4.5 ms of
busy-waiting, and after 4.5 ms of sleep, side by side in one run. A ratio well above 1
means the loop's paced figures (bench/loop.py phase A) measure the machine waking up as
much as engramloop.

    .venv/bin/python bench/machine.py
"""
from __future__ import annotations

import os
import time

import numpy as np

PC = time.perf_counter


def _spin(d: float) -> None:
    end = PC() + d
    while PC() < end:
        pass


def measure(wait, n: int = 3000, warm: int = 500) -> np.ndarray:
    a = np.random.default_rng(0).random((10, 8))
    b = np.empty_like(a)
    out = np.empty(n)
    for i in range(n):
        wait()
        t0 = PC()
        for _ in range(50):
            np.add(a, a, out=b)
        out[i] = PC() - t0
    return out[warm:] * 1e6


def main() -> int:
    print(f"# bench/machine.py: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"| {'before each run':<22} | median_us | p99_us | p99.9_us | median / back-to-back |")
    print(f"|{'-' * 24}|-----------|--------|----------|-----------------------|")
    base = None
    for name, wait in (("nothing (back to back)", lambda: None),
                       ("4.5 ms busy-wait", lambda: _spin(0.0045)),
                       ("4.5 ms sleep", lambda: time.sleep(0.0045))):
        v = measure(wait)
        med = float(np.median(v))
        base = base or med
        print(f"| {name:<22} | {med:9.1f} | {np.percentile(v, 99):6.1f} | "
              f"{np.percentile(v, 99.9):8.1f} | {med / base:21.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
