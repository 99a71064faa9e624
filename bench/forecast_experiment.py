"""Does forecast gating matter? Gated vs ungated ripple-locked stimulation vs sham.

For each seed, the same simulated night (same spontaneous events: the simulator draws
stimulation effects from their own random stream) is run three times:

* ``sham``: detectors run, nothing is delivered;
* ``ungated``: an optogenetic pulse (which prolongs the ripple, Fernandez-Ruiz et al.
  2019) on every detected ripple, at least ``--min-gap-s`` apart, until the night's
  budget of ``--budget`` pulses is spent;
* ``gated``: the same, but only while :class:`controller.forecast_worker.ForecastGate`
  allows it -- the shipped forecaster (or ``--checkpoint``) says the decay probability
  is at or above ``--threshold``;
* ``antigated`` (optional control, ``--conditions``): only while the gate would be
  CLOSED -- if it does as well as ``gated``, the forecast is not targeting anything.

Both stimulated conditions have the same budget and gap. The outcome is end-of-night
recall (mean over memories, ``SimSource.recall_scores()``). The script prints each
condition's mean with a 95 % t confidence interval over seeds, the paired differences
(same seeds) with their 95 % CIs, and the pulses actually delivered.

The forecasts are computed synchronously at each epoch boundary with the same stages the
worker thread runs (``EpochFeatures`` then ``Forecaster.predict``), so the run is
reproducible; in the loop the worker adds a few milliseconds of lag per 30 s epoch.

    .venv/bin/python bench/forecast_experiment.py [--seeds 20] [--duration-s 1800]
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

CONDITIONS = ("sham", "ungated", "gated", "antigated")


class _Latest:
    """The newest forecast, updated inline (stands in for the worker thread's slot)."""

    failed = False

    def __init__(self) -> None:
        self.fc = None

    def latest(self):
        return self.fc


def run_night(job: tuple) -> dict:
    """One (seed, condition) night; returns the outcome and counts."""
    seed, condition, args = job
    import torch

    from engramloop.analysis import training as ft
    from engramloop.controller.forecast_worker import ForecasterSettings, ForecastGate
    from engramloop.core.chunk import EndOfStream
    from engramloop.decoders.features import EpochFeatures
    from engramloop.decoders.forecaster import Forecaster
    from engramloop.sim.source import SimSource

    torch.set_num_threads(1)
    spec = ft.night_spec(seed, args["duration_s"], rate_hz=args["rate_hz"])
    src = SimSource(ft.sim_settings(spec), seed=seed, chunk_samples=spec.chunk_samples,
                    duration_s=spec.duration_s)
    detectors = ft.night_detectors(src.channels)
    fs = spec.feature_settings
    stage = EpochFeatures(fs)
    fc = Forecaster.load(args["checkpoint"] or None, epoch_s=fs.epoch_s, hop_s=fs.hop_s)
    latest = _Latest()
    gate = ForecastGate(latest, ForecasterSettings(gate_threshold=args["threshold"],
                                                   features=fs))
    pulse = ft.ripple_pulse_spec("optogenetic")
    vecs: list = []
    n_pulses = n_ripples = n_refused = 0
    last = -math.inf
    p_hist = []
    src.start()
    try:
        while True:
            try:
                chunk = src.read(1.0)
            except EndOfStream:
                break
            events = []
            for det in detectors:
                events.extend(det.process(chunk))
            delivered = []
            for ev in events:
                if ev.kind != "ripple":
                    continue
                n_ripples += 1
                if condition == "sham" or n_pulses >= args["budget"]:
                    continue
                if ev.detect_s - last < args["min_gap_s"]:
                    continue
                t_fire = ev.detect_s + 0.002
                if condition == "gated" and not gate.allows(t_fire):
                    n_refused += 1
                    continue
                if condition == "antigated" and (latest.fc is None or gate.allows(t_fire)):
                    n_refused += 1
                    continue
                src.stimulate(t_fire, pulse, "ripple")
                delivered.append(t_fire)
                last = ev.detect_s
                n_pulses += 1
            for fv in stage.process(chunk, events, delivered):
                vecs.append(fv)
                latest.fc = fc.predict(vecs[-fc.window:])
                p_hist.append(latest.fc.p_decay)
                del vecs[:-fc.window]
    finally:
        src.stop()
    recall = src.recall_scores()
    return {"seed": seed, "condition": condition, "recall": float(np.mean(list(
        recall.values()))), "pulses": n_pulses, "ripples": n_ripples,
        "gate_refusals": n_refused, "gate_open_fraction": float(np.mean(
            np.asarray(p_hist) >= args["threshold"])) if p_hist else float("nan")}


def _ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t confidence interval."""
    from scipy import stats

    x = np.asarray(x, float)
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - h, m + h


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="nights per condition (>= 20)")
    ap.add_argument("--seed-start", type=int, default=3000,
                    help="first seed (default 3000: disjoint from training/test seeds)")
    ap.add_argument("--duration-s", type=float, default=1800.0)
    ap.add_argument("--rate-hz", type=float, default=1000.0)
    ap.add_argument("--budget", type=int, default=60, help="pulses per night (both "
                                                           "stimulated conditions)")
    ap.add_argument("--min-gap-s", type=float, default=5.0)
    ap.add_argument("--threshold", type=float, default=0.5, help="gate threshold on p_decay")
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="write per-night results here")
    ap.add_argument("--conditions", default="sham,ungated,gated",
                    help="comma-separated subset of sham, ungated, gated, antigated "
                         "(sham and one more are required)")
    args = ap.parse_args()
    params = {k: getattr(args, k) for k in ("duration_s", "rate_hz", "budget", "min_gap_s",
                                            "threshold", "checkpoint")}
    conds = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    if any(c not in CONDITIONS for c in conds) or "sham" not in conds or len(conds) < 2:
        ap.error(f"--conditions: use sham plus some of {', '.join(CONDITIONS[1:])}")
    jobs = [(s, c, params) for s in range(args.seed_start, args.seed_start + args.seeds)
            for c in conds]
    t0 = time.monotonic()
    rows = []
    with mp.get_context("spawn").Pool(max(1, args.workers)) as pool:
        for i, r in enumerate(pool.imap_unordered(run_night, jobs), start=1):
            rows.append(r)
            print(f"[{i}/{len(jobs)}] seed {r['seed']} {r['condition']:<8} recall "
                  f"{r['recall']:.4f} pulses {r['pulses']} ({time.monotonic() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    by = {c: {r["seed"]: r for r in rows if r["condition"] == c} for c in conds}
    seeds = sorted(by["sham"])
    rec = {c: np.array([by[c][s]["recall"] for s in seeds]) for c in conds}
    print(f"Forecast-gated vs ungated ripple-locked optogenetic stimulation vs sham: "
          f"{len(seeds)} seeds, {args.duration_s:g} s nights, budget {args.budget} pulses, "
          f"min gap {args.min_gap_s:g} s, gate p_decay >= {args.threshold}")
    print(f"{'condition':<10} {'end-of-night recall (95% CI)':<34} {'pulses (mean)':>14}")
    for c in conds:
        m, lo, hi = _ci(rec[c])
        pulses = np.mean([by[c][s]["pulses"] for s in seeds])
        print(f"{c:<10} {m:.4f} [{lo:.4f}, {hi:.4f}]{'':<10} {pulses:14.1f}")
    print("paired differences (same seeds):")
    pairs = [(a, b) for a, b in (("gated", "ungated"), ("gated", "antigated"),
                                 ("antigated", "ungated"), ("gated", "sham"),
                                 ("ungated", "sham"), ("antigated", "sham"))
             if a in conds and b in conds]
    for a, b in pairs:
        m, lo, hi = _ci(rec[a] - rec[b])
        wins = int(np.sum(rec[a] > rec[b]))
        print(f"  {a} - {b:<8} {m:+.4f} [{lo:+.4f}, {hi:+.4f}]   {a} higher in {wins}/"
              f"{len(seeds)} seeds")
    if "gated" in conds:
        gof = np.nanmean([by["gated"][s]["gate_open_fraction"] for s in seeds])
        print(f"gate open in {100 * gof:.0f} % of epochs (gated condition)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
