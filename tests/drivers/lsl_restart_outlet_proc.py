"""A real pylsl outlet that a test kills and starts again with other properties
(``python tests/drivers/lsl_restart_outlet_proc.py NAME SOURCE_ID RATE_HZ N_CHANNELS [REAL_HZ
[JUMP_S]]``).

Pushes a 1 Hz + 13 Hz sine in microvolts sample by sample every 10 ms (like pylsl's
examples/SendData.py) on channels labelled Cz, C4, C3, Fz (the first N_CHANNELS);
SOURCE_ID "-" means none; REAL_HZ (default RATE_HZ) is the rate it really pushes at
while declaring RATE_HZ; JUMP_S (default 0) is added to the stamps of every sample
after the first 3 s (an outlet clock that jumps; the samples are stamped explicitly).
Prints "up" once the outlet exists. Written for these tests.
"""
from __future__ import annotations

import math
import sys
import time

import pylsl


def main() -> None:
    name, sid, rate, nch = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    real = float(sys.argv[5]) if len(sys.argv) > 5 else rate
    jump = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    info = pylsl.StreamInfo(name, "EEG", nch, rate, "float32", "" if sid == "-" else sid)
    chs = info.desc().append_child("channels")
    for label in ("Cz", "C4", "C3", "Fz")[:nch]:
        c = chs.append_child("channel")
        c.append_child_value("label", label)
        c.append_child_value("unit", "microvolts")
    out = pylsl.StreamOutlet(info)
    print("up", flush=True)
    t0 = pylsl.local_clock()
    sent = 0
    while True:
        due = int(real * (pylsl.local_clock() - t0)) - sent
        for _ in range(max(due, 0)):
            t = sent / real
            v = 20 * math.sin(2 * math.pi * t) + 5 * math.sin(2 * math.pi * 13 * t)
            if jump:
                out.push_sample([v] * nch, t0 + t + (jump if t > 3.0 else 0.0))
            else:
                out.push_sample([v] * nch)
            sent += 1
        time.sleep(0.01)


if __name__ == "__main__":
    main()
