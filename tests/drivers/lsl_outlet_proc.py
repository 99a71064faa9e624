"""A real pylsl outlet for the live-stream tests, run as its own process
(``python tests/drivers/lsl_outlet_proc.py MODE NAME SOURCE_ID [DROP_AT_S]``).

It publishes the YASA N3 excerpt (shared/data beside the checkout, 100 Hz, microvolts, channel "C3",
looped) the way outlets in the wild push:

``sample``     pylsl's own examples/SendData.py: every 10 ms, push_sample for each sample
               due by now, stamped by liblsl at the push (bursty, jittered stamps);
``chunk``      every 100 ms, push_chunk of each whole 10 samples due, stamped by liblsl;
``irregular``  bursts of a random number of samples at random 0-60 ms intervals, each
               stamped at its push (the rate is right on average only);
``drop``       as ``sample``, but at DROP_AT_S the outlet skips 0.5 s of samples: they
               are never sent (a real loss);
``norate``     as ``sample`` on a stream declaring nominal_srate 0 (irregular rate);
``nan``        as ``sample``, but the samples from DROP_AT_S for 1 s are NaN (a lead off).

Prints "up" once the outlet exists. Written for these tests; it copies no code.
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np
import pylsl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for shared_data
from shared_data import DATA as SHARED  # noqa: E402

DATA = str(SHARED / "data_N3_no-spindles_30sec_100Hz.txt")
RATE = 100.0


def main() -> None:
    mode, name, sid = sys.argv[1], sys.argv[2], sys.argv[3]
    drop_at = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
    x = np.loadtxt(DATA)
    info = pylsl.StreamInfo(name, "EEG", 1, 0.0 if mode == "norate" else RATE, "float32",
                            sid)
    ch = info.desc().append_child("channels").append_child("channel")
    ch.append_child_value("label", "C3")
    ch.append_child_value("unit", "microvolts")
    out = pylsl.StreamOutlet(info)
    print("up", flush=True)
    rng = random.Random(1)
    start = pylsl.local_clock()
    sent = 0          # samples due so far (sent or deliberately dropped)
    dropped = False
    while True:
        due = int(RATE * (pylsl.local_clock() - start)) - sent
        if mode == "drop" and not dropped and sent >= drop_at * RATE:
            dropped = True
            sent += int(0.5 * RATE)     # these samples are never pushed
            continue
        if mode == "chunk":
            while due >= 10:   # every whole chunk due (liblsl back-dates its samples)
                out.push_chunk([[float(x[(sent + i) % len(x)])] for i in range(10)])
                sent += 10
                due -= 10
            time.sleep(0.1)
            continue
        if mode == "irregular":
            due = min(due, rng.randint(1, 12))
        for _ in range(max(due, 0)):
            bad = mode == "nan" and drop_at * RATE <= sent < (drop_at + 1.0) * RATE
            out.push_sample([float("nan") if bad else float(x[sent % len(x)])])
            sent += 1
        time.sleep(rng.uniform(0.0, 0.06) if mode == "irregular" else 0.01)


if __name__ == "__main__":
    main()
