"""Do two checkouts' detectors give the same events? (For changes meant to be pure speed.)

Runs the default ``[detectors]`` (ripple, spindle, slow oscillation), the laminar ripple
config (configs/sim-ripple-laminar.toml) and two ECHT phase estimators (theta at 250 Hz
after decimation; slow oscillation at the full rate) over the simulator, at chunk sizes 1,
10 and 64, in this checkout and in OTHER (each with its own code and built C extension, in
a subprocess), and compares: every event field must be identical; a phase estimate may
differ by 1e-9 deg and 1e-12 relative (sums added in another order).

With ``--recordings``, also real recordings (EDF, XDF, npz, ...; read block by block with
the product's reader, so an 8-h night fits): the spindle and slow-oscillation detectors at
their defaults on every channel of each (what bench/night_replay.py's config runs), fed in
chunks of ``--rec-chunks`` samples.

    .venv/bin/python bench/same_events.py /path/to/other/checkout [--seconds 300] [--seeds 0 1]
        [--recordings A.edf B.edf ...] [--rec-chunks 10 1000]

Prints IDENTICAL or the first differences; exits 1 on a difference.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = (1, 10, 64)


def dump(root: str, out: str, seconds: float, seeds: list[int],
         recordings: list[str] = (), rec_chunks: list[int] = ()) -> None:
    """Run in a subprocess with ``root`` first on sys.path: events and sampled phase
    estimates as repr strings, keyed by seed, config and chunk size."""
    import dataclasses

    # a checkout of this layout keeps its packages in src/; an older one at its root
    sys.path.insert(0, root)
    sys.path.insert(0, str(Path(root) / "src"))
    import importlib

    import numpy as np

    new_layout = (Path(root) / "src" / "engramloop").is_dir()

    def load(new: str, old: str):   # before the src/engramloop layout: top-level packages
        return importlib.import_module(new if new_layout else old)

    load_config = load("engramloop.controller.config", "controller.config").load_config
    Chunk = load("engramloop.core.chunk", "drivers.chunk").Chunk
    det = load("engramloop.decoders.detectors", "decoders.detectors")
    DetectorsSettings, make_detectors = det.DetectorsSettings, det.make_detectors
    ph = load("engramloop.decoders.phase", "decoders.phase")
    EchtPhase, PhaseSettings = ph.EchtPhase, ph.PhaseSettings
    RippleDetector = load("engramloop.decoders.ripple", "decoders.ripple").RippleDetector
    simulate = load("engramloop.sim.generate", "sim.generate").simulate
    SimSettings = load("engramloop.sim.settings", "sim.settings").SimSettings

    configs = Path(root) / "src" / "engramloop" / "configs"  # older trees: <root>/configs
    lam = load_config((configs if configs.is_dir() else Path(root) / "configs")
                      / "sim-ripple-laminar.toml")
    fields = ("onset_s", "detect_s", "peak_s", "amplitude", "score", "threshold",
              "predicted_s")
    result = {}
    for seed in seeds:
        for laminar in (False, True):
            s = (dataclasses.replace(SimSettings(), channels=lam.sim.channels,
                                     radiatum_channels=lam.sim.radiatum_channels)
                 if laminar else SimSettings())
            x, t, truth = simulate(s, seed=seed, duration_s=seconds)
            names = tuple(truth.channels)
            for cs in CHUNKS:
                if laminar:
                    stages, phases = [RippleDetector(lam.detectors.ripple)], []
                else:
                    stages = list(make_detectors(DetectorsSettings(), channels=names))
                    phases = [EchtPhase(PhaseSettings()),
                              EchtPhase(PhaseSettings(channel="Fz", band_hz=(0.5, 1.25),
                                                      window_s=2.0, max_rate_hz=0.0))]
                evs: list[list] = [[] for _ in stages]
                phs: list[list] = [[] for _ in phases]
                for i in range(0, x.shape[0], cs):
                    c = Chunk(np.ascontiguousarray(x[i:i + cs]), t[i:i + cs], truth.rate_hz,
                              names, float(t[i]))
                    for k, st in enumerate(stages):
                        evs[k].extend([e.kind, e.channel]
                                      + [repr(getattr(e, f, None)) for f in fields]
                                      for e in st.process(c))
                    for k, p in enumerate(phases):
                        e = p.process(c)
                        if (i // cs) % 7 == 0:
                            phs[k].append([e.t_s, e.phase_deg, e.frequency_hz, e.amplitude,
                                           e.confidence])
                key = f"seed {seed}, {'laminar' if laminar else 'default'}, chunk {cs}"
                result[key] = {"events": evs, "phase": phs}
    for rec in recordings:
        open_blocks = load("engramloop.drivers.files", "drivers.files").open_blocks
        for cs in rec_chunks:
            b = open_blocks(rec)
            names = tuple(b.channels)
            ds = DetectorsSettings()
            ds = dataclasses.replace(
                ds, ripple=dataclasses.replace(ds.ripple, enabled=False),
                spindle=dataclasses.replace(ds.spindle, channels=names),
                so=dataclasses.replace(ds.so, channels=names))
            stages = list(make_detectors(ds, channels=names))
            evs = [[] for _ in stages]
            left_x, left_t = np.zeros((0, len(names))), np.zeros(0)
            for x, t in b.blocks(range(len(names))):
                x, t = np.concatenate([left_x, x]), np.concatenate([left_t, t])
                end = x.shape[0] - x.shape[0] % cs
                for i in range(0, end, cs):
                    c = Chunk(np.ascontiguousarray(x[i:i + cs]), t[i:i + cs], b.rate_hz,
                              names, float(t[i]))
                    for k, st in enumerate(stages):
                        evs[k].extend([e.kind, e.channel]
                                      + [repr(getattr(e, f, None)) for f in fields]
                                      for e in st.process(c))
                left_x, left_t = x[end:], t[end:]
            if left_t.size:
                c = Chunk(np.ascontiguousarray(left_x), left_t, b.rate_hz, names,
                          float(left_t[0]))
                for k, st in enumerate(stages):
                    evs[k].extend([e.kind, e.channel]
                                  + [repr(getattr(e, f, None)) for f in fields]
                                  for e in st.process(c))
            result[f"{Path(rec).name}, chunk {cs}"] = {"events": evs, "phase": []}
    Path(out).write_text(json.dumps(result))


def compare(a: dict, b: dict) -> list[str]:
    """The differences between two dumps (empty: identical within the phase tolerance)."""
    problems = []
    for key in a:
        if key not in b:
            problems.append(f"{key}: missing")
            continue
        for k, (ea, eb) in enumerate(zip(a[key]["events"], b[key]["events"], strict=True)):
            if ea != eb:
                m = next((j for j, (u, v) in enumerate(zip(ea, eb, strict=False)) if u != v),
                         min(len(ea), len(eb)))
                problems.append(f"{key}: stage {k}, {len(ea)} vs {len(eb)} events, first "
                                f"difference at {m}: {ea[m:m + 1]} vs {eb[m:m + 1]}")
        for k, (pa, pb) in enumerate(zip(a[key]["phase"], b[key]["phase"], strict=True)):
            for ra, rb in zip(pa, pb, strict=False):    # counts compared below
                t, ph, f, amp, conf = zip(ra, rb, strict=True)
                dph = abs((ph[0] - ph[1] + 180.0) % 360.0 - 180.0)
                rel = [abs(u - v) / max(abs(u), 1e-300) for u, v in (f, amp, conf)]
                nan_same = all(math.isnan(u) == math.isnan(v) for u, v in (ph, f, amp))
                same_t = t[0] == t[1] or (math.isnan(t[0]) and math.isnan(t[1]))
                if not same_t or not nan_same or (not math.isnan(ph[0]) and (
                        dph > 1e-9 or max(rel) > 1e-12)):
                    problems.append(f"{key}: phase estimator {k} at {t[0]}: {ra} vs {rb}")
                    break
            if len(pa) != len(pb):
                problems.append(f"{key}: phase estimator {k}: {len(pa)} vs {len(pb)}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", help="the other checkout (built: setup.py build_ext --inplace)")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--recordings", nargs="+", default=[],
                    help="real recordings to run the spindle and SO detectors over")
    ap.add_argument("--rec-chunks", type=int, nargs="+", default=[10, 1000])
    ap.add_argument("--dump", nargs=2, metavar=("ROOT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dump:
        dump(args.dump[0], args.dump[1], args.seconds, args.seeds, args.recordings,
             args.rec_chunks)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        outs = []
        for i, root in enumerate((str(ROOT), str(Path(args.other).resolve()))):
            out = str(Path(tmp) / f"{i}.json")
            rec = (["--recordings", *map(str, map(Path.resolve, map(Path, args.recordings))),
                    "--rec-chunks", *map(str, args.rec_chunks)] if args.recordings else [])
            subprocess.run([sys.executable, __file__, root, "--dump", root, out,
                            "--seconds", str(args.seconds), "--seeds", *map(str, args.seeds),
                            *rec], check=True, cwd=root)
            outs.append(json.loads(Path(out).read_text()))
    problems = compare(*outs)
    n_events = sum(len(e) for v in outs[0].values() for e in v["events"])
    print(f"{len(outs[0])} runs, {n_events} events in this checkout")
    for key, v in outs[0].items():
        if not key.startswith("seed "):
            print(f"  {key}: {sum(len(e) for e in v['events'])} events")
    for p in problems[:20]:
        print(p)
    print("IDENTICAL" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
