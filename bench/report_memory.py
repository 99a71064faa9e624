"""`engramloop report` and `engramloop score` of long recordings: wall time and peak RSS,
a short night and a long one side by side (target: peak RSS < 1 GB for 8 h x 8 ch x 2 kHz
whatever the night's length).

The recordings are synthetic, made fast rather than simulated (`engramloop sim` of 8 h at
2 kHz would take longer than this 2-core machine allows): noise (20 uV RMS, volts) on 8
channels, 13-Hz spindle bursts added to Cz/C3/C4 at the truth times, and the marker
streams a closed-loop night writes -- a hypnogram (90-min cycles) and spindle/SO truth in
engramloop.truth, detections in engramloop.events, SO up-state pulses (stim and sham
alternating) in engramloop.pulses, governor approvals -- all written through the
project's own writer (`controller.recorder.Recorder`, the signal declared float32 as the
simulator declares it), so the files have the writer's current layout (sample type,
which samples keep a stamp). They are cached under ``--cache`` keyed by the
writer's source, and reused.

Each command runs in a fresh process started by a small parent that reports the child's
``ru_maxrss`` (``resource.getrusage(RUSAGE_CHILDREN)``) and its wall time.

    .venv/bin/python bench/report_memory.py [--hours 1 8] [--channels 8] [--rate 2000]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CHANNELS = ("Fz", "Cz", "C3", "C4", "Pz", "O1", "O2", "Oz")
#: one 90-min sleep cycle (stage, minutes): the usual order of a night (AASM staging)
CYCLE = (("wake", 5), ("N1", 5), ("N2", 25), ("N3", 25), ("N2", 15), ("REM", 15))
CONFIG = """name = "bench-report"
[source]
kind = "file"
[detectors.spindle]
channels = ["Cz"]
[detectors.so]
channels = ["Cz"]
[policy]
target = "so_upstate"
"""

_MEASURE = ("import resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
            "dt = time.perf_counter() - t\n"
            "print(r.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def writer_key() -> str:
    """Hash of the writer's source: a changed writer makes new files."""
    h = hashlib.sha1()
    for rel in ("src/engramloop/recording/xdf.py", "src/engramloop/controller/recorder.py",
                "bench/report_memory.py"):
        h.update((ROOT / rel).read_bytes())
    return h.hexdigest()[:10]


def make_recording(path: Path, hours: float, n_ch: int, fs: float, seed: int = 0) -> None:
    from engramloop.controller.recorder import Recorder
    from engramloop.core.chunk import Chunk

    rng = np.random.default_rng(seed)
    chans = CHANNELS[:n_ch] if n_ch <= len(CHANNELS) else \
        tuple(f"E{i + 1}" for i in range(n_ch))
    t0 = 1000.0
    dur = hours * 3600.0
    # hypnogram and events (times in seconds from t0)
    stages, t = [], 0.0
    while t < dur:
        for st, minutes in CYCLE:
            if t >= dur:
                break
            stages.append((t, min(t + minutes * 60.0, dur), st))
            t += minutes * 60.0
    spindles, sos = [], []
    for on, off, st in stages:
        if st == "N2":
            spindles += list(np.sort(rng.uniform(on + 2, off - 2, int((off - on) / 12))))
        if st == "N3":
            sos += list(np.sort(rng.uniform(on + 2, off - 2, int((off - on) / 6))))
    spindles = np.array(spindles)
    sos = np.array(sos)
    chunk_s = 10.0
    n_chunk = int(chunk_s * fs)
    spindle_ch = [i for i, c in enumerate(chans) if c in ("Cz", "C3", "C4")] or [0]
    with Recorder(path, CONFIG, flush_interval_s=0.2) as rec:
        # the noise is drawn in float32: declared as the simulator declares its samples
        rec.add_signal_stream(channels=chans, rate_hz=fs, sample_format="float32")
        for st_on, st_off, st in stages:
            rec.write_marker("truth", t0 + st_on, {"kind": "stage", "stage": st,
                                                    "onset_s": t0 + st_on,
                                                    "offset_s": t0 + st_off})
        k = 0
        pid = 0
        while k * chunk_s < dur:
            a = k * chunk_s
            n = min(n_chunk, int(round((dur - a) * fs)))
            tt = a + np.arange(n) / fs
            x = rng.standard_normal((n, len(chans)), dtype=np.float32).astype(np.float64)
            x *= 20e-6
            for s in spindles[(spindles >= a - 1) & (spindles < a + chunk_s)]:
                w = np.abs(tt - s - 0.5) < 0.5
                burst = 40e-6 * np.sin(2 * np.pi * 13.0 * (tt[w] - s)) * \
                    np.hanning(w.sum() + 2)[1:-1]
                x[w[:, None] & np.isin(np.arange(len(chans)), spindle_ch)[None, :]] += \
                    np.repeat(burst, len(spindle_ch))
            while rec.queued_bytes > 32 << 20:
                time.sleep(0.01)            # let the writer keep up (back-pressure)
            rec.write_chunk(Chunk(np.ascontiguousarray(x), t0 + tt, fs, chans, t0 + tt[-1]))
            for s in spindles[(spindles >= a) & (spindles < a + chunk_s)]:
                rec.write_marker("truth", t0 + s, {"kind": "spindle", "channel": "Cz",
                                                    "onset_s": t0 + s, "peak_s": t0 + s + 0.5,
                                                    "offset_s": t0 + s + 1.0})
                if rng.random() < 0.8:
                    rec.write_marker("events", t0 + s + 0.6, {
                        "kind": "spindle", "channel": "Cz", "onset_s": t0 + s + 0.2,
                        "peak_s": t0 + s + 0.5, "detect_s": t0 + s + 0.6, "score": 3.0})
            for s in sos[(sos >= a) & (sos < a + chunk_s)]:
                rec.write_marker("truth", t0 + s, {"kind": "so", "channel": "Cz",
                                                    "onset_s": t0 + s, "peak_s": t0 + s + 0.6,
                                                    "offset_s": t0 + s + 1.2})
                rec.write_marker("events", t0 + s + 0.3, {
                    "kind": "so", "channel": "Cz", "onset_s": t0 + s, "detect_s": t0 + s + 0.3,
                    "peak_s": t0 + s + 0.6, "score": 2.0})
                pid += 1
                cond = "stim" if pid % 2 else "sham"
                fire = t0 + s + 0.6
                rec.write_marker("governor", t0 + s + 0.3, {"approved": True, "rule": ""})
                rec.write_marker("pulses", t0 + s + 0.3, {
                    "pulse_id": pid, "target": "so_upstate", "condition": cond,
                    "detect_s": t0 + s + 0.3, "intended_s": fire, "deadline_s": fire + 0.05})
                rec.write_marker("pulses", fire, {"pulse_id": pid, "status": "sent",
                                                  "sent_s": fire, "ack_s": fire + 0.002})
            k += 1


def measure(cmd: list[str]) -> tuple[int, float, float]:
    """(exit code, wall s, peak RSS MB) of ``cmd`` in a fresh process."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True,
                         text=True, check=True, env={**os.environ,
                                                      "PYTHONPATH": str(ROOT / "src")})
    code, wall, rss_kb = out.stdout.split()
    return int(code), float(wall), int(rss_kb) / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[1.0, 8.0])
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--cache", type=Path,
                    default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "engramloop-bench")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    key = writer_key()
    rows = []
    for hours in args.hours:
        path = args.cache / f"report-{hours:g}h-{args.channels}ch-{args.rate:g}Hz-{key}.xdf"
        if not path.is_file():
            t = time.perf_counter()
            tmp = path.with_suffix(".part")
            make_recording(tmp, hours, args.channels, args.rate)
            tmp.rename(path)
            print(f"# made {path.name} ({path.stat().st_size / 1e9:.2f} GB) in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
        with tempfile.TemporaryDirectory() as out:
            rc_r, t_r, rss_r = measure([sys.executable, "-m", "engramloop", "report",
                                        str(path), "--out", out, "--quiet"])
        rc_s, t_s, rss_s = measure([sys.executable, "-m", "engramloop", "score", str(path)])
        rows.append((hours, path.stat().st_size / 1e9, rc_r, t_r, rss_r, rc_s, t_s, rss_s))
        print(f"# {hours:g} h done", flush=True)
    print(f"{'night':>6} {'file GB':>8} | {'report s':>9} {'peak RSS MB':>12} {'exit':>5} | "
          f"{'score s':>8} {'peak RSS MB':>12} {'exit':>5}")
    for h, gb, rc_r, t_r, rss_r, rc_s, t_s, rss_s in rows:
        print(f"{h:>5g}h {gb:>8.2f} | {t_r:>9.1f} {rss_r:>12.0f} {rc_r:>5} | "
              f"{t_s:>8.1f} {rss_s:>12.0f} {rc_s:>5}")
    print(f"# {args.channels} channels at {args.rate:g} Hz; target: peak RSS < 1000 MB")


if __name__ == "__main__":
    main()
