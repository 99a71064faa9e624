"""Cost of the uplift gate on the loop thread (issue 21: predict p99 < 2 ms, loop p99 per
chunk unchanged with the model on).

The uplift gate computes each ripple's candidate features and runs the uplift MLP in NumPy
synchronously on the loop thread (a per-ripple decision must be made within milliseconds
of detection, so a worker-thread round trip would not help). This prints:

1. per-candidate cost: ``CandidateFeatures.features`` + ``UpliftModel.predict`` on the
   candidates of a simulated night, median / p99 / max in microseconds;
2. the loop's software time per chunk (``chunk_total``: chunk arrival -> decision done)
   for the shipped forecast config with ``gate = "p_below_median_high"`` (model off) and
   ``gate = "uplift_budget"`` (model on), run alternately in one process (``--rounds``
   segments each, unpaced), median and p99 over all chunks of each.

Figures depend on the machine and its load (printed).

    PYTHONPATH=src python bench/uplift_inference.py [--duration 60] [--rounds 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402


def _pct(x) -> str:
    x = np.asarray(x) * 1e6
    return (f"median {np.median(x):7.1f} us  p99 {np.percentile(x, 99):7.1f} us  "
            f"max {x.max():8.1f} us  (n={len(x)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="simulated s per segment")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="", help="uplift JSON (default: the shipped one)")
    args = ap.parse_args()
    from engramloop.analysis.training import counterfactual as cfx
    from engramloop.analysis.training.experiment import default_uplift_path
    from engramloop.controller.build import build_loop
    from engramloop.controller.config import SHIPPED_DIR, load_config
    from engramloop.core.events import Event
    from engramloop.decoders.pulse_features import CandidateFeatures
    from engramloop.decoders.uplift import UpliftModel

    model_path = args.model or str(default_uplift_path())
    model = UpliftModel.load(model_path)
    night = cfx.run_night(cfx.experiment_spec(3000, 300.0))
    cf = CandidateFeatures()
    cf.start(0.0)
    costs = []
    for t in night.cand_t:
        ev = Event("ripple", "CA1", t - 0.02, t, amplitude=50e-6, score=6.0)
        t0 = time.perf_counter()
        model.predict(cf.features(ev))
        costs.append(time.perf_counter() - t0)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"per candidate (features + predict): {_pct(costs)}")
    base = load_config(SHIPPED_DIR / "sim-ripple-forecast.toml")
    cfgs = {"model off (p_below_median_high)": base,
            "model on (uplift_budget)": dataclasses.replace(base, forecaster=dataclasses.replace(
                base.forecaster, gate="uplift_budget", uplift_model=model_path,
                budget_pulses=1000, night_s=args.duration * args.rounds))}
    times: dict[str, list] = {k: [] for k in cfgs}
    for _ in range(args.rounds):
        for name, cfg in cfgs.items():
            loop = build_loop(cfg, speed="max", duration_s=args.duration)
            loop.run(args.duration)
            h = loop.stages["chunk_total"]
            times[name].append((h.percentile(50), h.percentile(99), h.count))
    for name, rows in times.items():
        med = np.median([r[0] for r in rows]) * 1e6
        p99 = np.median([r[1] for r in rows]) * 1e6
        print(f"loop chunk_total, {name:<32}: median {med:6.1f} us  p99 {p99:6.1f} us "
              f"(median over {len(rows)} segments of {rows[0][2]} chunks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
