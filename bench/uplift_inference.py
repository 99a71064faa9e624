"""Cost of the uplift gate (issue 21: inference off the loop thread; predict p99 < 2 ms;
loop p99 per chunk unchanged with the model on, side by side in one run).

The uplift gate computes each ripple's candidate features on the loop thread and posts
them to a prediction thread (``controller/uplift_worker.py``); the policy decides the
ripple at the first chunk after the answer, or refuses it as ``uplift_late`` after
``forecaster.uplift_max_wait_s``. This prints:

1. per candidate on one thread, unloaded by the loop: ``CandidateFeatures.features`` (the
   loop thread's share) and ``UpliftModel.predict`` (the worker's share), median / p99 /
   max in microseconds, over the candidates of a simulated night;
2. paced runs in real time (``--paced-s`` wall seconds per segment, ``--rounds`` segments
   per arm, arms alternating in one process) of the shipped forecast config (in N3) with the gate
   off (``p_below_median_high`` at threshold 0 and ``before_first = "allow"``: every
   ripple passes) and on (``uplift_budget`` with an unbounded budget and no spacing:
   every ripple whose answer is back in time passes): per arm the loop software time per
   chunk (``chunk_total``: chunk arrival -> decision done) median/p99, the detection ->
   pulse-sent delay of the pulses median/p99 (what the asynchronous decision adds), the
   worker's predict time median/p99, and the ``uplift_late`` refusals;
3. with ``--load N`` the paced runs are repeated with N busy processes running (started
   and ended by this script, by pid).

Figures depend on the machine and its load (printed).

    PYTHONPATH=src python bench/uplift_inference.py [--paced-s 30] [--rounds 2] [--load 8]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

BUSY = "import time\nt = time.time() + {s}\nwhile time.time() < t: pass\n"


def _pct(x, unit=1e6, name="us") -> str:
    x = np.asarray(x, float) * unit
    if not len(x):
        return "(none)"
    return (f"median {np.median(x):8.1f} {name}  p99 {np.percentile(x, 99):8.1f} {name}  "
            f"max {x.max():8.1f} {name}  (n={len(x)})")


def _per_candidate(model) -> None:
    from engramloop.analysis.training import counterfactual as cfx
    from engramloop.core.events import Event
    from engramloop.decoders.pulse_features import CandidateFeatures

    night = cfx.experiment_spec(3000, 300.0)
    cand_t = cfx.run_night(night).cand_t
    cf = CandidateFeatures()
    cf.start(0.0)
    feat, pred = [], []
    perf = time.perf_counter
    for t in cand_t:
        ev = Event("ripple", "CA1", t - 0.02, t, amplitude=50e-6, score=6.0)
        t0 = perf()
        x = cf.features(ev)
        t1 = perf()
        model.predict(x)
        t2 = perf()
        feat.append(t1 - t0)
        pred.append(t2 - t1)
    print(f"features (loop thread):  {_pct(feat)}")
    print(f"predict (one thread):    {_pct(pred)}")


def _paced(cfgs: dict, seconds: float, rounds: int) -> None:
    from engramloop.controller.build import build_loop

    acc = {k: {"chunk": [], "delay": [], "predict": [], "late": 0, "pulses": 0,
               "cand": 0} for k in cfgs}
    for _ in range(rounds):
        for name, cfg in cfgs.items():
            loop = build_loop(cfg, speed=1.0, duration_s=seconds)
            res = loop.run(seconds)
            a = acc[name]
            h = loop.stages["chunk_total"]
            a["chunk"].append((h.percentile(50), h.percentile(99), h.count))
            # one record per output: the sham output's "sham" and the send's "sent"
            sent = [(p, d) for p, d in res.deliveries if d.status in ("sent", "acked")]
            a["delay"] += [d.sent_s - p.detect_s for p, d in sent]
            a["pulses"] += len(sent)
            a["late"] += res.gate_refusals.get("uplift_late", 0)
            gate = loop.policy.gate
            if hasattr(gate, "predictor"):
                a["predict"] += list(gate.predictor.predict_s)
                a["cand"] += gate.predictor.n_posted
    for name, a in acc.items():
        med = np.median([r[0] for r in a["chunk"]]) * 1e6
        p99 = np.median([r[1] for r in a["chunk"]]) * 1e6
        print(f"  {name}")
        print(f"    loop chunk_total: median {med:7.1f} us  p99 {p99:8.1f} us (median over "
              f"{len(a['chunk'])} segments of ~{a['chunk'][0][2]} chunks)")
        print(f"    detection -> pulse sent: {_pct(a['delay'], 1e3, 'ms')}")
        if a["cand"]:
            print(f"    predict on the worker:   {_pct(a['predict'])}")
            print(f"    uplift_late: {a['late']} of {a['cand']} candidates posted; "
                  f"{a['pulses']} pulses")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paced-s", type=float, default=30.0,
                    help="wall seconds per paced segment (pulses start after ~10 s of calibration)")
    ap.add_argument("--rounds", type=int, default=2, help="segments per arm")
    ap.add_argument("--load", type=int, default=0,
                    help="also run the paced arms with this many busy processes")
    ap.add_argument("--model", default="", help="uplift JSON (default: the shipped one)")
    args = ap.parse_args()
    from engramloop.controller.config import SHIPPED_DIR, load_config
    from engramloop.decoders.uplift import UpliftModel, default_uplift_path

    model_path = args.model or str(default_uplift_path())
    model = UpliftModel.load(model_path)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    _per_candidate(model)
    base = load_config(SHIPPED_DIR / "sim-ripple-forecast.toml")
    # N3 from the start: about one ripple per second (N2 has half as many)
    base = dataclasses.replace(base, sim=dataclasses.replace(
        base.sim, hypnogram=dataclasses.replace(base.sim.hypnogram, schedule=("N3:3600",))))
    f = base.forecaster
    cfgs = {"gate off (p_below_median_high >= 0: every ripple)": dataclasses.replace(
                base, forecaster=dataclasses.replace(
                    f, p_below_median_threshold=0.0, before_first="allow")),
            "gate on (uplift_budget, unbounded budget)": dataclasses.replace(
                base, forecaster=dataclasses.replace(
                    f, gate="uplift_budget", uplift_model=model_path, budget_pulses=100000,
                    min_gap_s=0.0, night_s=args.paced_s))}
    print(f"paced, real time, {args.rounds} x {args.paced_s:g} s per arm, alternating; "
          f"load average {os.getloadavg()[0]:.2f}:")
    _paced(cfgs, args.paced_s, args.rounds)
    if args.load:
        total = 2 * args.rounds * (args.paced_s + 10.0) + 30.0
        procs = [subprocess.Popen([sys.executable, "-c", BUSY.format(s=total)])
                 for _ in range(args.load)]
        try:
            time.sleep(2.0)
            print(f"paced again with {args.load} busy processes (load average "
                  f"{os.getloadavg()[0]:.2f}):")
            _paced(cfgs, args.paced_s, args.rounds)
        finally:
            for p in procs:
                p.kill()
                p.wait()
        print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
