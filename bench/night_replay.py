"""Whole-night replay: time, x-real-time and peak memory of ``engramloop replay --speed max``
on 1-h and 8-h, 8-channel, 250 Hz EDF nights, beside YASA's offline detection of the same
events (issue 23).

The nights are real human sleep EEG: the four DREAMS excerpts in /work/shared/data
(C3-A1, expert-scored, 50-200 Hz) resampled to 250 Hz (scipy ``resample_poly``), each
channel a different excerpt at a different offset, tiled to the night's length with
independent white noise (2 uV rms) so no two channels or tiles are identical; written with
pyedflib's EdfWriter, one minute at a time, into a cache folder (made once, reused).

Per night, side by side:

- ``engramloop replay CONFIG NIGHT --speed max --quiet`` in a fresh process pinned to
  one core, spindle and slow-oscillation detectors on all 8 channels, sham policy, no
  recording: wall time, x-real-time (night length / wall time) and the process's peak
  RSS (GNU time's %M for that process alone);
- YASA 0.8 ``spindles_detect`` + ``sw_detect`` on the same 8 channels (arrays read with
  pyedflib beforehand; the reading time is printed apart), in this process.

Targets (issue 23): >= 2000x real time, peak RSS < 300 MB for both nights, no slower than
YASA. Medians of ``--repeats`` runs.

``--src A B ...`` replays with each checkout's ``src`` folder (its own code and built C
extension), the runs interleaved (A, B, A, B, ...) so the machine's load hits them alike:
before/after side by side in one run. Each src is byte-compiled first (``compileall``, as
``pip install`` does): under ``PYTHONDONTWRITEBYTECODE`` every replay would otherwise
compile ~120 modules again. Besides wall time the replay's CPU time (user + system, GNU
time's %U + %S) is printed: on a machine shared with other work the wall time counts the
waiting for a core, the CPU time much less so.

    /work/venv-deps/bin/python bench/night_replay.py [--hours 1 8] [--repeats 1]
        [--cache DIR] [--no-yasa] [--src SRC [SRC ...]]
"""
from __future__ import annotations

import argparse
import compileall
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ENGRAMLOOP_DATA", ROOT.parent / "shared" / "data"))
if not (DATA / "dreams_dev").is_dir():
    DATA = Path("/work/shared/data")
RATE = 250
CHANNELS = ("F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2")

CONFIG = """name = "bench-night-replay"
[source]
kind = "file"
chunk_samples = 10
[detectors.ripple]
enabled = false
[detectors.spindle]
channels = {chans}
[detectors.so]
channels = {chans}
[policy]
target = "spindle"
condition = "sham"
"""


def _excerpts() -> list[np.ndarray]:
    """The DREAMS excerpts at 250 Hz, microvolts."""
    import pyedflib
    from scipy.signal import resample_poly

    out = []
    for k in (1, 3, 5, 7):
        path = DATA / "dreams_dev" / f"excerpt{k}.edf"
        with pyedflib.EdfReader(str(path)) as r:
            x, fs = r.readSignal(0), int(r.getSampleFrequency(0))
        g = np.gcd(RATE, fs)
        out.append(resample_poly(x, RATE // g, fs // g))
    return out


def make_night(path: Path, hours: float) -> None:
    """Write the night, a minute of data records at a time."""
    import pyedflib

    ex = _excerpts()
    rng = np.random.default_rng(int(hours * 1000))
    n = int(hours * 3600 * RATE)
    starts = [int(rng.integers(0, e.size)) for e in ex for _ in range(2)]
    w = pyedflib.EdfWriter(str(path), len(CHANNELS), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        w.setSignalHeaders([{"label": c, "dimension": "uV", "sample_frequency": RATE,
                             "physical_max": 1000.0, "physical_min": -1000.0,
                             "digital_max": 32767, "digital_min": -32768,
                             "transducer": "", "prefilter": ""} for c in CHANNELS])
        step = 60 * RATE
        for i in range(0, n, step):
            m = min(step, n - i)
            rows = []
            for c in range(len(CHANNELS)):
                e = ex[c // 2]
                idx = (starts[c] + i + np.arange(m)) % e.size
                rows.append(np.clip(e[idx] + rng.normal(0, 2.0, m), -999, 999))
            w.writeSamples(rows)
    finally:
        w.close()


def night(cache: Path, hours: float) -> Path:
    path = cache / f"night_{hours:g}h_8ch_{RATE}hz.edf"
    if not path.is_file():
        print(f"# writing {path} (once) ...", flush=True)
        tmp = path.with_suffix(".part.edf")
        make_night(tmp, hours)
        tmp.rename(path)
    return path


def replay(path: Path, config: Path, src: Path) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one replay process pinned to one core.

    The peak is read by GNU time (``/usr/bin/time -f %M``), which starts the replay from
    its own small image: a child forked straight from this process would count this
    process's pages (YASA, MNE) in its ru_maxrss until it execs."""
    env = dict(os.environ, PYTHONPATH=str(src))
    cpu = str(min(os.sched_getaffinity(0)))
    cmd = ["taskset", "-c", cpu, sys.executable, "-m", "engramloop", "replay", str(config),
           str(path), "--speed", "max", "--quiet"]
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    if gnu_time:
        cmd = [gnu_time, "-f", "maxrss_kb=%M cpu_s=%U+%S"] + cmd
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"replay failed:\n{out.decode()}\n{err.decode()}")
    kb = [ln for ln in err.decode().splitlines() if ln.startswith("maxrss_kb=")]
    if kb:
        fields = dict(f.split("=") for f in kb[-1].split())
        rss_kb = int(fields["maxrss_kb"])
        cpu_s = sum(float(v) for v in fields["cpu_s"].split("+"))
    else:
        rss_kb, cpu_s = usage.ru_maxrss, math.nan
    return wall, cpu_s, rss_kb / 1024.0


def yasa_detect(path: Path) -> tuple[float, float, int, int]:
    """(read s, detect s, spindles, slow waves) for YASA on every channel."""
    import mne
    import pyedflib
    import yasa

    mne.set_log_level("ERROR")
    t0 = time.perf_counter()
    with pyedflib.EdfReader(str(path)) as r:
        x = np.array([r.readSignal(i) for i in range(r.signals_in_file)])
    t1 = time.perf_counter()
    sp = yasa.spindles_detect(x, sf=RATE, ch_names=list(CHANNELS), verbose=False)
    sw = yasa.sw_detect(x, sf=RATE, ch_names=list(CHANNELS), verbose=False)
    t2 = time.perf_counter()
    n_sp = 0 if sp is None else len(sp.summary())
    n_sw = 0 if sw is None else len(sw.summary())
    return t1 - t0, t2 - t1, n_sp, n_sw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[1.0, 8.0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cache", type=Path,
                    default=Path(tempfile.gettempdir()) / "engramloop-bench-nights")
    ap.add_argument("--no-yasa", action="store_true")
    ap.add_argument("--src", type=Path, nargs="+", default=[ROOT / "src"],
                    help="src folders of the checkouts to compare (interleaved runs)")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    config = args.cache / "night.toml"
    config.write_text(CONFIG.format(chans="[" + ", ".join(f'"{c}"' for c in CHANNELS)
                                    + "]"))
    srcs = [s.resolve() for s in args.src]
    for src in srcs:
        compileall.compile_dir(str(src / "engramloop"), quiet=1)
    load0 = os.getloadavg()[0]
    rows = []
    for h in args.hours:
        path = night(args.cache, h)
        runs: dict[Path, list] = {s: [] for s in srcs}
        for _ in range(args.repeats):
            for src in srcs:
                runs[src].append(replay(path, config, src))
        y = None if args.no_yasa else yasa_detect(path)
        for src in srcs:
            r = runs[src]
            rows.append((h, src, path.stat().st_size / 1e6,
                         statistics.median(x[0] for x in r),
                         statistics.median(x[1] for x in r), max(x[2] for x in r), y))
    print(f"\nreplay --speed max, spindle + SO on {len(CHANNELS)} channels at {RATE} Hz, "
          f"no recording, one core; median of {args.repeats}; load average "
          f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"{'night':>6} {'EDF MB':>7} {'replay s':>9} {'x real':>8} {'CPU s':>7} "
          f"{'x real CPU':>11} {'peak RSS MB':>12} {'YASA read s':>12} {'YASA detect s':>14} "
          f"{'ours/YASA':>10}  src")
    for h, src, mb, wall, cpu, rss, y in rows:
        ys = (f"{y[0]:>12.1f} {y[1]:>14.1f} {wall / y[1]:>10.2f}" if y
              else f"{'-':>12} {'-':>14} {'-':>10}")
        print(f"{h:>5g}h {mb:>7.0f} {wall:>9.1f} {h * 3600 / wall:>8.0f} {cpu:>7.1f} "
              f"{h * 3600 / cpu:>11.0f} {rss:>12.0f} {ys}  {src}")
    for h in args.hours:
        y = next(r[6] for r in rows if r[0] == h)
        if y:
            print(f"# YASA {h:g}h: {y[2]} spindles, {y[3]} slow waves")
    print("# targets: >= 2000x real time, peak RSS < 300 MB whatever the night's length, "
          "ours/YASA <= 1")


if __name__ == "__main__":
    main()
