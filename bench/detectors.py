"""Detector accuracy on the simulator and per-chunk speed.

Accuracy: the simulator at its documented default SNR (``sim.settings`` module docstring,
measured by bench/sim.py: ripples ~62 uV median peak envelope over 8.7 uV RMS in
150-250 Hz, spindles ~23 uV over 2.2 uV RMS in 11-16 Hz, slow-oscillation troughs ~70 uV
over ~13 uV RMS in 0.3-1.5 Hz), the default 600 s hypnogram (N2, N3, N2, REM, wake),
several seeds, default ``[detectors]`` settings, 10-sample chunks at 2 kHz. Scored after
each detector's calibration with :mod:`analysis.scoring` (interval overlap, its
tolerance per kind). The ``ripple_laminar`` row adds a
stratum radiatum site to the probe (configs/sim-ripple-laminar.toml).

Speed: 8 channels x 10 samples at 2 kHz, all three detectors plus the ``[phase]``
estimator (ECHT, theta on CA1), median and p99 time per chunk.

Run: ``.venv/bin/python bench/detectors.py [--seeds 0 1 2] [--duration 600]``;
``--spindle-sweep`` and ``--ripple-sweep`` print the F1 / latency trade-offs instead;
``--spindle-confirm 0.4`` scores the spindle row with the optional confirmation on.
``--against OTHER_CHECKOUT`` times the speed section of both checkouts side by side in one
run (each in its own subprocess with its own code and built C extension, alternating, so a
change in the machine's load falls on both), for changes meant to be no slower.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# the code under test: this checkout's, or (--against, in a subprocess) another's
SRC = os.environ.get("ENGRAMLOOP_BENCH_SRC") or str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)

from engramloop.analysis.scoring import replay, score_kind, score_phase  # noqa: E402
from engramloop.controller.config import SHIPPED_DIR  # noqa: E402
from engramloop.core.chunk import Chunk  # noqa: E402
from engramloop.decoders.detectors import DetectorsSettings, make_detectors  # noqa: E402
from engramloop.decoders.phase import EchtPhase, PhaseSettings  # noqa: E402
from engramloop.decoders.ripple import RippleDetector, RippleSettings  # noqa: E402

TARGETS = {
    "ripple": "F1 >= 0.95 at <= 1 FP/min; median latency from onset <= 10 ms",
    "spindle": "F1 >= 0.85; median detection <= 300 ms after onset",
    "so": "trigger phase circular SD <= 35 deg, mean within +-15 deg, >= 85 % in up-phase",
}


SHIPPED = SHIPPED_DIR / "sim-ripple.toml"
LAMINAR = SHIPPED.with_name("sim-ripple-laminar.toml")


def shipped_ripple_settings() -> RippleSettings:
    """``[detectors.ripple]`` of configs/sim-ripple.toml (the config that ships)."""
    from engramloop.controller.config import load_config

    return load_config(SHIPPED).detectors.ripple


def laminar_config():
    """configs/sim-ripple-laminar.toml: the simulator's probe with a stratum radiatum site
    (``[sim]``) and the ripple detector with the sharp-wave assist on it."""
    from engramloop.controller.config import load_config

    return load_config(LAMINAR)


def laminar_sim(seed: int, duration_s: float):
    """The default simulator (hypnogram, SNR) with the laminar config's probe: its
    channels and radiatum site, nothing else of that config's ``[sim]``."""
    import dataclasses

    from engramloop.sim.generate import simulate
    from engramloop.sim.settings import SimSettings

    lam = laminar_config().sim
    s = dataclasses.replace(SimSettings(), channels=lam.channels,
                            radiatum_channels=lam.radiatum_channels)
    return simulate(s, seed=seed, duration_s=duration_s)


def accuracy(seeds: list[int], duration_s: float, chunk: int,
             settings: DetectorsSettings | None = None) -> dict:
    from engramloop.sim.generate import simulate

    pooled: dict = {"ripple": [], "spindle": [], "so": [], "so_phase": [], "ripple_pooled": []}
    for seed in seeds:
        x, t, truth = simulate(seed=seed, duration_s=duration_s)
        names = tuple(truth.channels)
        stages = make_detectors(settings or DetectorsSettings(), channels=names, missing="skip")
        ev = replay(stages, x, t, truth.rate_hz, names, chunk)
        cal = {e.channel: e.detect_s for e in ev if e.kind == "calibration_done"}
        rejected = {(e.channel, e.onset_s) for e in ev if e.kind == "spindle_rejected"}
        for kind in ("ripple", "spindle", "so"):
            start = cal[kind]
            det = [e for e in ev if e.kind == kind and (e.channel, e.onset_s) not in rejected]
            tr = [e for e in truth.events(kind) if e.onset_s >= start]
            sc = score_kind(kind, det, tr, t[-1] - start)
            pooled[kind].append(sc)
        # ripples again with the [detectors.ripple] section the shipped simulator config
        # uses (configs/sim-ripple.toml: the weighted mean of both CA1 sites; the second
        # site carries the ripple at 0.7 of the first: sim.rhythms.RIPPLE_FALLOFF)
        rp = RippleDetector(shipped_ripple_settings())
        evp = replay([rp], x, t, truth.rate_hz, names, chunk)
        start = next(e.detect_s for e in evp if e.kind == "calibration_done")
        tr = [e for e in truth.events("ripple") if e.onset_s >= start]
        pooled["ripple_pooled"].append(score_kind(
            "ripple", [e for e in evp if e.kind == "ripple"], tr, t[-1] - start))
        # and with the laminar probe: the same seed's plan (sim.rhythms draws the sharp
        # waves from their own stream), a radiatum site, the sharp-wave assist
        xl, tl, trl = laminar_sim(seed, duration_s)
        evl = replay([RippleDetector(laminar_config().detectors.ripple)], xl, tl, trl.rate_hz,
                     tuple(trl.channels), chunk)
        start = next(e.detect_s for e in evl if e.kind == "calibration_done")
        tr = [e for e in trl.events("ripple") if e.onset_s >= start]
        pooled.setdefault("ripple_laminar", []).append(score_kind(
            "ripple", [e for e in evl if e.kind == "ripple"], tr, tl[-1] - start))
        pred = np.array([e.predicted_s for e in ev if e.kind == "so"])
        pooled["so_phase"].append(truth.phase("so", pred[np.isfinite(pred)]))
        pooled.setdefault("so_no_prediction", []).append(int(np.sum(~np.isfinite(pred))))
    return pooled


def pool(scores: list) -> dict:
    tp = sum(s.true_positives for s in scores)
    fp = sum(s.false_positives for s in scores)
    fn = sum(s.false_negatives for s in scores)
    minutes = sum(s.duration_s for s in scores) / 60.0
    nd, nt = tp + fp, tp + fn
    return {"truth": nt, "detected": nd, "precision": tp / nd if nd else math.nan,
            "recall": tp / nt if nt else math.nan,
            "f1": 2 * tp / (nd + nt) if nd + nt else math.nan, "fp_per_min": fp / minutes,
            "lat_on_med_ms": 1e3 * float(np.median([s.latency_onset_median_s for s in scores])),
            "lat_on_p90_ms": 1e3 * float(np.median([s.latency_onset_p90_s for s in scores])),
            "lat_pk_med_ms": 1e3 * float(np.median([s.latency_peak_median_s for s in scores])),
            "lat_pk_p90_ms": 1e3 * float(np.median([s.latency_peak_p90_s for s in scores]))}


def speed(n_chunks: int = 6000, repeats: int = 3) -> dict:
    from engramloop.sim.generate import simulate

    x, t, truth = simulate(seed=7, duration_s=n_chunks * 10 / 2000.0 + 1.0)
    names = tuple(truth.channels)
    chunks = [Chunk(np.ascontiguousarray(x[i:i + 10]), t[i:i + 10], truth.rate_hz, names,
                    float(t[i])) for i in range(0, n_chunks * 10, 10)]
    best: dict = {}
    for _ in range(repeats):
        stages = make_detectors(DetectorsSettings(), channels=names, missing="skip")
        phase = EchtPhase(PhaseSettings())
        per = {type(s).__name__: np.empty(len(chunks)) for s in stages}
        per["EchtPhase"] = np.empty(len(chunks))
        total = np.empty(len(chunks))
        cpu = np.empty(len(chunks))
        gc.disable()
        try:
            for i, c in enumerate(chunks):
                c0 = time.thread_time_ns()
                t0 = time.perf_counter_ns()
                for s in stages:
                    a = time.perf_counter_ns()
                    s.process(c)
                    per[type(s).__name__][i] = time.perf_counter_ns() - a
                a = time.perf_counter_ns()
                phase.process(c)
                per["EchtPhase"][i] = time.perf_counter_ns() - a
                total[i] = time.perf_counter_ns() - t0
                cpu[i] = time.thread_time_ns() - c0
        finally:
            gc.enable()
        warm = slice(200, None)   # first chunks allocate and calibrate nothing yet
        res = {k: (float(np.median(v[warm])) / 1e3, float(np.percentile(v[warm], 99)) / 1e3)
               for k, v in per.items()}
        res["all"] = (float(np.median(total[warm])) / 1e3,
                      float(np.percentile(total[warm], 99)) / 1e3)
        # CPU time of this thread: what the stages cost without preemption by other
        # processes (a loaded 2-core machine inflates the wall-clock p99)
        res["all (thread CPU)"] = (float(np.median(cpu[warm])) / 1e3,
                                   float(np.percentile(cpu[warm], 99)) / 1e3)
        if not best or res["all"][1] < best["all"][1]:
            best = res
    return best


def speed_laminar(n_chunks: int = 6000, repeats: int = 3) -> dict:
    """Per-chunk time of the pooled ripple detector without and with the sharp-wave assist,
    side by side (alternating chunk by chunk) on the laminar probe's 9 x 10 chunks."""
    import dataclasses

    x, t, truth = laminar_sim(7, n_chunks * 10 / 2000.0 + 1.0)
    names = tuple(truth.channels)
    chunks = [Chunk(np.ascontiguousarray(x[i:i + 10]), t[i:i + 10], truth.rate_hz, names,
                    float(t[i])) for i in range(0, n_chunks * 10, 10)]
    lam = laminar_config().detectors.ripple
    kinds = {"pooled": dataclasses.replace(lam, sharp_wave_channel=""), "pooled + sharp wave": lam}
    best: dict = {}
    for _ in range(repeats):
        dets = {k: RippleDetector(v) for k, v in kinds.items()}
        per = {k: np.empty(len(chunks)) for k in kinds}
        gc.disable()
        try:
            for i, c in enumerate(chunks):
                for k, d in dets.items():
                    a = time.perf_counter_ns()
                    d.process(c)
                    per[k][i] = time.perf_counter_ns() - a
        finally:
            gc.enable()
        res = {k: (float(np.median(v[200:])) / 1e3, float(np.percentile(v[200:], 99)) / 1e3)
               for k, v in per.items()}
        if not best or res["pooled + sharp wave"][1] < best["pooled + sharp wave"][1]:
            best = res
    return best


def sweep(kind: str, factory, grid: list[dict], seeds: list[int], duration_s: float,
          chunk: int, simulate=None) -> list[dict]:
    """Pooled scores of ``factory(**params)`` detectors over a parameter grid on the
    simulator (after each detector's calibration; rejected spindles do not count);
    ``simulate(seed=, duration_s=)`` makes the signal (default: the default simulator)."""
    if simulate is None:
        from engramloop.sim.generate import simulate

    scores: list[list] = [[] for _ in grid]
    for seed in seeds:
        x, t, truth = simulate(seed=seed, duration_s=duration_s)
        names = tuple(truth.channels)
        for i, v in enumerate(grid):
            ev = replay([factory(**v)], x, t, truth.rate_hz, names, chunk)
            start = next(e.detect_s for e in ev if e.kind == "calibration_done")
            rej = {(e.channel, e.onset_s) for e in ev if e.kind == "spindle_rejected"}
            det = [e for e in ev if e.kind == kind and (e.channel, e.onset_s) not in rej]
            tr = [e for e in truth.events(kind) if e.onset_s >= start]
            scores[i].append(score_kind(kind, det, tr, t[-1] - start))
    return [pool(sc) for sc in scores]


def print_sweep(title: str, grid: list[dict], rows: list[dict]) -> None:
    keys = list(grid[0])
    print(title)
    print("".join(f"{k:>16}" for k in keys) + f"{'F1':>7}{'prec':>7}{'recall':>7}"
          f"{'FP/min':>7}{'onset->detect ms':>18}{'peak->detect ms':>17}")
    for v, p in zip(grid, rows, strict=True):
        print("".join(f"{v[k]:>16g}" for k in keys)
              + f"{p['f1']:>7.3f}{p['precision']:>7.3f}{p['recall']:>7.3f}"
              f"{p['fp_per_min']:>7.2f}{p['lat_on_med_ms']:>18.1f}{p['lat_pk_med_ms']:>17.1f}")


def spindle_sweep(seeds: list[int], duration_s: float, chunk: int) -> None:
    """Spindle F1 against median latency from onset over the high threshold, the low one
    (``low_threshold_frac`` 1 = a single threshold) and the minimum duration counted from
    it, plus the sigma filter order at the defaults (the trade-off behind the 300 ms
    target: the high threshold sets when a waxing spindle is seen at all, the duration
    above the low one how many brief noise peaks pass)."""
    import dataclasses
    import itertools

    from engramloop.decoders.spindle import SpindleDetector, SpindleSettings

    d = SpindleSettings()
    grid = [dict(threshold_sd=th, low_threshold_frac=lo, min_duration_s=md, filter_order=1)
            for th, lo, md in itertools.product((4.5, 5.0, 5.5), (0.4, 1.0),
                                                (0.0, 0.03, 0.06, 0.15))]
    grid += [dict(threshold_sd=d.threshold_sd, low_threshold_frac=d.low_threshold_frac,
                  min_duration_s=d.min_duration_s, filter_order=2)]
    rows = sweep("spindle", lambda **v: SpindleDetector(dataclasses.replace(
        SpindleSettings(), **v)), grid, seeds, duration_s, chunk)
    print_sweep(f"== spindle trade-off: seeds {seeds}, {duration_s:g} s each (other settings "
                f"at their defaults)", grid, rows)


def ripple_sweep(seeds: list[int], duration_s: float, chunk: int) -> None:
    """Ripple F1 / false positives against latency from the true onset over envelope window,
    threshold and minimum duration, for the shipped pooled detector (the trade-off behind
    the 10 ms target: the simulator's ripple envelope is sin^2 over the whole ripple, so
    at half its duration it is at its peak and at a fifth of it only at 35 % of it)."""
    import dataclasses
    import itertools

    base = shipped_ripple_settings()
    grid = [dict(rms_window_s=w, threshold_sd=k, min_duration_s=md)
            for w, k, md in itertools.product((0.008, 0.012, 0.016, 0.024), (3.5, 4.0, 5.0),
                                              (0.002, 0.004))]
    rows = sweep("ripple", lambda **v: RippleDetector(dataclasses.replace(base, **v)), grid,
                 seeds, duration_s, chunk)
    print_sweep(f"== ripple trade-off (configs/sim-ripple.toml detector): seeds {seeds}, "
                f"{duration_s:g} s each", grid, rows)
    # the sharp-wave assist: threshold on the radiatum sharp wave against the ripple-band
    # confirmation level (-10: no confirmation)
    lam = laminar_config().detectors.ripple
    grid = [dict(sharp_wave_sd=k, sharp_wave_ripple_sd=c)
            for k, c in itertools.product((4.0, 5.0, 6.0), (-10.0, 0.0, 0.5, 1.0, 2.0))]
    rows = sweep("ripple", lambda **v: RippleDetector(dataclasses.replace(lam, **v)), grid,
                 seeds, duration_s, chunk, simulate=laminar_sim)
    print_sweep(f"== sharp-wave assist trade-off (configs/{LAMINAR.name} detector on its "
                f"probe): seeds {seeds}, {duration_s:g} s each", grid, rows)


def speed_against(other: Path, rounds: int) -> None:
    """The speed section of this checkout and of ``other``, ``rounds`` subprocesses each,
    alternating which goes first; prints each stage's median over the rounds of its
    per-run median and p99 (microseconds per chunk), side by side."""
    srcs = {"before": str(Path(other).resolve() / "src"), "after": SRC}
    runs: dict[str, list[dict]] = {k: [] for k in srcs}
    for r in range(rounds):
        for label in (("before", "after") if r % 2 == 0 else ("after", "before")):
            env = dict(os.environ, ENGRAMLOOP_BENCH_SRC=srcs[label])
            out = subprocess.run([sys.executable, __file__, "--speed-json"], env=env,
                                 check=True, capture_output=True, text=True).stdout
            res = json.loads(out.splitlines()[-1])
            if Path(res.pop("_module")).resolve().parents[1] != Path(srcs[label]).resolve():
                raise SystemExit(f"{label}: the subprocess imported engramloop from "
                                 f"{res['_module']}, not {srcs[label]}")
            runs[label].append(res)
    print(f"== speed side by side: 8 channels x 10 samples at 2 kHz, per chunk "
          f"(microseconds), median over {rounds} alternating runs of each checkout; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"   before = {srcs['before']}")
    print(f"   after  = {srcs['after']}")
    print(f"  {'stage':<18}{'median before':>15}{'after':>8}{'ratio':>7}"
          f"{'p99 before':>13}{'after':>8}{'ratio':>7}")
    for stage in runs["after"][0]:
        b = np.median([r[stage] for r in runs["before"]], axis=0)
        a = np.median([r[stage] for r in runs["after"]], axis=0)
        print(f"  {stage:<18}{b[0]:>15.1f}{a[0]:>8.1f}{a[0] / b[0]:>7.2f}"
              f"{b[1]:>13.1f}{a[1]:>8.1f}{a[1] / b[1]:>7.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds per seed")
    ap.add_argument("--chunk", type=int, default=10, help="samples per chunk")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--so-gate", type=float, default=None, metavar="RATIO",
                    help="run with [detectors.so] sws_gate_ratio = RATIO (default: off)")
    ap.add_argument("--so-predict", choices=("halfwave", "echt", "fixed"), default=None,
                    help="run with [detectors.so] predict = this (default: the shipped one)")
    ap.add_argument("--spindle-confirm", type=float, default=None, metavar="S",
                    help="run with [detectors.spindle] confirm_duration_s = S (default: off; "
                         "the spindle row then scores the confirmed events)")
    ap.add_argument("--ripple-sweep", action="store_true",
                    help="only print the ripple F1 / latency trade-off table")
    ap.add_argument("--spindle-sweep", action="store_true",
                    help="only print the spindle F1 / latency trade-off table")
    ap.add_argument("--against", type=Path, default=None, metavar="OTHER_CHECKOUT",
                    help="only the speed section, this checkout and OTHER side by side")
    ap.add_argument("--rounds", type=int, default=5,
                    help="with --against: subprocess runs per checkout (alternating)")
    ap.add_argument("--speed-json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.speed_json:            # one run of speed() for --against, as one JSON line
        import engramloop

        print(json.dumps(dict(speed(repeats=1), _module=engramloop.__file__)))
        return 0
    if args.against is not None:
        speed_against(args.against, args.rounds)
        return 0
    if args.ripple_sweep:
        ripple_sweep(args.seeds, args.duration, args.chunk)
        return 0
    if args.spindle_sweep:
        spindle_sweep(args.seeds, args.duration, args.chunk)
        return 0
    if not args.no_accuracy:
        ds = DetectorsSettings()
        if args.so_predict is not None:
            import dataclasses

            ds = dataclasses.replace(ds, so=dataclasses.replace(ds.so,
                                                                predict=args.so_predict))
            print(f"([detectors.so] predict = {args.so_predict!r})")
        if args.so_gate is not None:
            import dataclasses

            ds = dataclasses.replace(ds, so=dataclasses.replace(ds.so,
                                                                sws_gate_ratio=args.so_gate))
            print(f"(slow-wave-sleep gate on: sws_gate_ratio = {args.so_gate})")
        if args.spindle_confirm is not None:
            import dataclasses

            ds = dataclasses.replace(ds, spindle=dataclasses.replace(
                ds.spindle, confirm_duration_s=args.spindle_confirm))
            print(f"([detectors.spindle] confirm_duration_s = {args.spindle_confirm:g}: "
                  "released spindles a spindle_rejected took back are not scored)")
        res = accuracy(args.seeds, args.duration, args.chunk, ds)
        print(f"== accuracy on the simulator: seeds {args.seeds}, {args.duration:g} s each, "
              f"default SNR, chunks of {args.chunk} samples at 2 kHz")
        print(f"{'detector':<14}{'truth':>6}{'det':>6}{'prec':>7}{'recall':>7}{'F1':>7}"
              f"{'FP/min':>7}{'onset->detect ms med/p90':>26}{'peak->detect ms med/p90':>25}")
        for kind in ("ripple", "ripple_pooled", "ripple_laminar", "spindle", "so"):
            p = pool(res[kind])
            print(f"{kind:<14}{p['truth']:>6}{p['detected']:>6}{p['precision']:>7.3f}"
                  f"{p['recall']:>7.3f}{p['f1']:>7.3f}{p['fp_per_min']:>7.2f}"
                  f"{p['lat_on_med_ms']:>15.1f} / {p['lat_on_p90_ms']:<8.1f}"
                  f"{p['lat_pk_med_ms']:>14.1f} / {p['lat_pk_p90_ms']:<8.1f}")
        ph = score_phase(np.concatenate(res["so_phase"]), 0.0)
        print(f"SO up-state triggers (predicted_s): n={ph.n} (+{sum(res['so_no_prediction'])} "
              f"shallow waves without a prediction), true phase mean "
              f"{ph.mean_phase_deg:+.1f} deg, circular SD {ph.sd_phase_deg:.1f} deg, "
              f"in up-phase {100 * ph.fraction_in_target_half:.1f} %")
        r = shipped_ripple_settings()
        lam = laminar_config().detectors.ripple
        print(f"ripple: defaults (channels = {list(RippleSettings().channels)}); "
              f"ripple_pooled: as shipped in configs/{SHIPPED.name} (channels = "
              f"{list(r.channels)}, pool_weights = {list(r.pool_weights)}); "
              f"ripple_laminar: configs/{LAMINAR.name} on the same seeds with a stratum "
              f"radiatum site (sharp_wave_channel = {lam.sharp_wave_channel!r}, "
              f"sharp_wave_sd = {lam.sharp_wave_sd:g}, sharp_wave_ripple_sd = "
              f"{lam.sharp_wave_ripple_sd:g})")
        print("targets (issue 4):")
        for k, v in TARGETS.items():
            print(f"  {k}: {v}")
    sp = speed()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"== speed: 8 channels x 10 samples at 2 kHz, per chunk (microseconds); "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    for k, (med, p99) in sp.items():
        print(f"  {k:<18} median {med:7.1f}   p99 {p99:7.1f}")
    print("  target: all three detectors + one phase estimator, p99 < 100 us")
    print(f"== speed: ripple detector of configs/{LAMINAR.name}, 9 channels x 10 samples, "
          f"per chunk (microseconds), with and without the sharp-wave assist side by side")
    for k, (med, p99) in speed_laminar().items():
        print(f"  {k:<20} median {med:7.1f}   p99 {p99:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
