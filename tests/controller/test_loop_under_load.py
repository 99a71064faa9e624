"""The real-time stim-box run with both cores saturated by other processes: the driver's
heartbeat (own thread, SCHED_FIFO where allowed) must keep the device's 100 ms watchdog
fed, or the device disarms itself, which is now a fault that fails the run."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import test_loop

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

BURN = "while True: pass"


def test_real_time_stim_box_run_with_every_core_saturated():
    n = max(2, os.cpu_count() or 2)
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(n)]
    try:
        test_loop.test_real_time_through_the_emulated_stim_box()
    finally:
        for b in burners:
            b.kill()
        for b in burners:
            b.wait(10)
