"""Replay speed at ``--speed max``: x-real-time for a 30-minute, 1-channel, 200 Hz EEG file.

The file is real human N2 sleep EEG (the YASA example in /work/shared/data, 15 s at
200 Hz, microvolts) tiled to 30 minutes and written as EDF with pyedflib, so the path
includes EDF parsing and the physical-to-volts conversion. Two figures:

1. the FileSource alone (load + every chunk handed out on a simulated clock);
2. the whole loop, ``engramloop replay CONFIG FILE --speed max`` in a fresh process
   (start-up, load, spindle detector, policy, governor, scheduler; pulses sham).

x-real-time = recording duration / wall time (median of ``--repeats`` runs).

    .venv/bin/python bench/replay.py [--minutes 30] [--chunk 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("ENGRAMLOOP_DATA", ROOT.parent / "shared" / "data"))
N2 = "data_N2_spindles_15sec_200Hz.txt"

CONFIG = """
name = "bench-replay"
[source]
kind = "file"
chunk_samples = {chunk}
[policy]
target = "spindle"
condition = "sham"
"""


def make_edf(path: Path, minutes: float) -> float:
    """Write the tiled EEG as EDF; returns its duration in seconds."""
    import pyedflib

    src = DATA / N2
    if src.is_file():
        x = np.loadtxt(src)
    else:  # fall back to a seeded 1/f-ish signal so the bench still runs
        print(f"# {src} not found: using synthetic EEG")
        rng = np.random.default_rng(0)
        x = np.cumsum(rng.normal(0, 1, 3000)) * 2.0
        x -= x.mean()
    rate = 200
    n = int(minutes * 60 * rate)
    sig = np.resize(x, n)
    lim = float(np.ceil(np.max(np.abs(sig)) * 1.1))  # EDF keeps 8 characters
    header = {"label": "Cz", "dimension": "uV", "sample_frequency": rate,
              "physical_max": lim, "physical_min": -lim, "digital_max": 32767,
              "digital_min": -32768, "transducer": "", "prefilter": ""}
    pyedflib.highlevel.write_edf(str(path), [np.ascontiguousarray(sig)], [header])
    return n / rate


def time_source(path: Path, chunk: int) -> tuple[float, int]:
    from engramloop.core.chunk import EndOfStream
    from engramloop.drivers.files import FileSource

    t0 = time.perf_counter()
    src = FileSource(path, speed="max", chunk_samples=chunk)
    src.start()
    n = 0
    while True:
        try:
            c = src.read(1.0)
        except EndOfStream:
            break
        n += c.n_samples
    return time.perf_counter() - t0, n


def time_loop(path: Path, cfg: Path) -> tuple[float, str]:
    exe = [sys.executable, "-m", "engramloop.cli", "replay", str(cfg), str(path),
           "--speed", "max", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(exe, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["?"]
        return float("nan"), f"failed (exit {proc.returncode}): {last[0]}"
    return wall, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--chunk", type=int, default=10, help="samples per chunk")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        edf = Path(tmp) / "n2_tiled.edf"
        dur = make_edf(edf, args.minutes)
        cfg = Path(tmp) / "bench.toml"
        cfg.write_text(CONFIG.format(chunk=args.chunk))
        print(f"# {args.minutes:g} min, 1 channel, 200 Hz EDF ({edf.stat().st_size / 1e6:.1f} MB)"
              f", chunks of {args.chunk} samples, median of {args.repeats}")
        walls = []
        for _ in range(args.repeats):
            wall, n = time_source(edf, args.chunk)
            walls.append(wall)
        w = statistics.median(walls)
        print(f"FileSource alone     : {w:7.3f} s wall  {dur / w:9.0f} x real time "
              f"({n} samples)")
        walls, err = [], ""
        for _ in range(args.repeats):
            wall, err = time_loop(edf, cfg)
            if err:
                break
            walls.append(wall)
        if err:
            print(f"engramloop replay    : {err}")
        else:
            w = statistics.median(walls)
            print(f"engramloop replay    : {w:7.3f} s wall  {dur / w:9.0f} x real time "
                  "(whole process: start-up, load, detectors, policy, governor)")


if __name__ == "__main__":
    main()
