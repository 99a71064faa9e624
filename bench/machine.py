"""How this machine runs a small fixed workload right after waking up (no engramloop code).

The closed loop sleeps ~5 ms between 10-sample chunks; on a shared virtual machine the
caches may be cold when it wakes. This prints the median / p99 / p99.9 time of the same
NumPy workload (50 in-place additions on an 10 x 8 block) run back to back, after 4.5 ms of
busy-waiting, after 4.5 ms of sleep, and (where /dev/cpu_dma_latency is writable) after
4.5 ms of sleep with the CPU wake-up latency held at 0 us as the loop holds it with
``[scheduler] cpu_wakeup_latency_us = 0``, side by side in one run. A ratio well above 1
means the loop's paced figures (bench/loop.py phase A) measure the machine waking up as
much as engramloop.

    .venv/bin/python bench/machine.py
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engramloop.controller.cpu_latency import DEVICE, CpuLatencyRequest  # noqa: E402

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
    modes = [("nothing (back to back)", lambda: None, False),
             ("4.5 ms busy-wait", lambda: _spin(0.0045), False),
             ("4.5 ms sleep", lambda: time.sleep(0.0045), False)]
    if os.access(DEVICE, os.W_OK):
        modes.append(("4.5 ms sleep, PM QoS 0", lambda: time.sleep(0.0045), True))
    else:
        print(f"({DEVICE} not writable: no row with the CPU wake-up latency held)")
    for name, wait, hold in modes:
        req = CpuLatencyRequest(0) if hold else None
        if req is not None:
            req.hold()
        try:
            v = measure(wait)
        finally:
            if req is not None:
                req.release()
        med = float(np.median(v))
        base = base or med
        print(f"| {name:<22} | {med:9.1f} | {np.percentile(v, 99):6.1f} | "
              f"{np.percentile(v, 99.9):8.1f} | {med / base:21.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
