"""Forecaster inference latency on one core (target: p99 < 2 ms).

Loads the shipped checkpoint (or ``--checkpoint``), pins torch to one intra-op thread, and
times ``Forecaster.predict`` on a full window of feature vectors, as the worker calls it
once per epoch. Also times the epoch feature stage per chunk (it runs in the same worker
thread) and, for reference, the TorchScript export of the same network.

    .venv/bin/python bench/forecaster.py [--n 5000] [--checkpoint PATH]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engramloop.core.chunk import Chunk  # noqa: E402
from engramloop.decoders.features import EpochFeatures, FeatureSettings, FeatureVector  # noqa: E402
from engramloop.decoders.forecaster import Forecaster  # noqa: E402


def _stats(us: np.ndarray) -> str:
    return (f"median {np.median(us):7.1f} us   p99 {np.percentile(us, 99):7.1f} us   "
            f"max {us.max():8.1f} us")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="timed calls (default 5000)")
    ap.add_argument("--checkpoint", default="", help="checkpoint (default: shipped)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        pinned = "pinned to one core"
    except (AttributeError, OSError):
        pinned = "not pinned (no sched_setaffinity)"
    fc = Forecaster.load(args.checkpoint or None)
    ck = fc.checkpoint
    rng = np.random.default_rng(0)
    raw = ck.feature_mean + ck.feature_std * rng.standard_normal((fc.window,
                                                                   len(ck.feature_names)))
    vecs = [FeatureVector(30.0 * i, 30.0 * (i + 1), raw[i]) for i in range(fc.window)]
    for _ in range(200):
        fc.predict(vecs)
    t = np.empty(args.n)
    cpu = np.empty(args.n)
    for i in range(args.n):
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        fc.predict(vecs)
        t[i] = (time.perf_counter_ns() - t0) / 1e3
        cpu[i] = (time.thread_time_ns() - c0) / 1e3
    p99 = np.percentile(t, 99)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, 1 thread, {pinned}; model {ck.model_version}, "
          f"window {fc.window} epochs x {len(ck.feature_names)} features, GRU hidden "
          f"{ck.hidden}")
    print(f"Forecaster.predict      {_stats(t)}   (target p99 < 2000 us: "
          f"{'met' if p99 < 2000 else 'NOT met'})")
    print(f"  same, thread CPU time {_stats(cpu)}   (excludes time preempted by other "
          f"processes; 1-min load average {load:.1f} on {os.cpu_count()} cores)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = fc.export_torchscript(Path("/tmp") / f"engramloop_fc_{os.getpid()}.ts")
        ts = torch.jit.load(str(path))
    path.unlink()
    x = torch.from_numpy(fc.normalise(raw[None]))
    with torch.inference_mode():
        for _ in range(200):
            ts(x)
        t2 = np.empty(args.n)
        for i in range(args.n):
            t0 = time.perf_counter_ns()
            ts(x)
            t2[i] = (time.perf_counter_ns() - t0) / 1e3
    print(f"TorchScript forward     {_stats(t2)}   (network only)")

    # epoch features per chunk: 10-sample chunks of 8 channels at 2 kHz (the loop default)
    fs, n_ch, chunk = 2000.0, 8, 10
    names = ("CA1", "CA1b", "Fz", "C3", "Cz", "C4", "Pz", "Oz")
    stage = EpochFeatures(FeatureSettings())
    x = np.ascontiguousarray(20e-6 * rng.standard_normal((args.n * chunk + 2000, n_ch)))
    t3 = np.empty(args.n)
    for i in range(args.n + 200):
        a = i * chunk
        c = Chunk(x[a:a + chunk], np.arange(a, a + chunk) / fs, fs, names, arrival_s=0.0)
        t0 = time.perf_counter_ns()
        stage.process(c, ())
        if i >= 200:
            t3[i - 200] = (time.perf_counter_ns() - t0) / 1e3
    print(f"EpochFeatures per chunk {_stats(t3)}   (10 samples x 8 channels, 2 kHz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
