"""engramloop demo"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from engramloop.analysis.trial import run_sim, sham_twin_path
from engramloop.cli import main
from engramloop.cli.paths import prepare_output_dir
from engramloop.controller.config import SHIPPED_DIR, dump_config, load_config
from engramloop.core.errors import UserError
from engramloop.core.extras import available
from engramloop.decoders.uplift import default_uplift_path

HELP = ("run the simulated default: closed-loop ripple stimulation on the built-in simulator "
        "spending a pulse budget with the uplift allocator and the shipped uplift model, "
        "recorded to XDF with a sham twin and an ungated run of as many pulses, scored, "
        "compared and reported")

CONFIG = SHIPPED_DIR / "demo-uplift.toml"
#: Run instead of CONFIG when torch (the ``forecaster`` extra) is not installed.
UNGATED = SHIPPED_DIR / "sim-ripple.toml"
#: Simulated seconds: the config's N2-N3-N2 night (2 + 5 + 1 min), over which the
#: allocator spreads its budget (kept short: the demo runs three nights).
DURATION_S = 480.0
#: What the fixed experiment found (docs/uplift.md, "What the experiment found"): printed
#: after the one recorded night, which proves nothing either way.
EXPERIMENT_FINDING = (
    "one night proves nothing either way. Over 20 held-out seeds (docs/uplift.md) the "
    "online allocator with the uplift model, spending only on ripples detected within 1 s "
    "after a spindle detection, did not beat the one-line rule \"stimulate ripples "
    "detected within 1 s after a spindle detection\" at 30 pulses (target B missed), and "
    "the same allocator with every predicted gain equal (no model) did better: in this "
    "simulator the uplift model adds nothing over that rule paced evenly over the night.")


def ungated_config(cfg, n_pulses: int):
    """The demo's comparison: the same night and pulses with no gate -- every ripple the
    policy sees, at least ``min_gap_s`` apart as the allocator spaces them, until
    ``n_pulses`` are delivered (the governor's session cap), no forecaster."""
    return dataclasses.replace(
        cfg, name=f"{cfg.name}-ungated",
        forecaster=dataclasses.replace(cfg.forecaster, enabled=False),
        policy=dataclasses.replace(cfg.policy, min_interval_s=cfg.forecaster.min_gap_s),
        safety=dataclasses.replace(cfg.safety, max_pulses_per_session=n_pulses))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=DURATION_S, metavar="S",
                   help=f"simulated seconds (default {DURATION_S:g})")
    p.add_argument("--out", default="out/demo", metavar="DIR",
                   help="folder for session.xdf, summary.txt/json and the HTML report "
                        "(index.html)")
    p.add_argument("--config", default=None,
                   help=f"config to run (default: the shipped {CONFIG.name}, or "
                        f"{UNGATED.name} when torch is not installed)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (only the summary and the report's path)")


def run(args: argparse.Namespace) -> int:
    if args.config is None:
        args.config = str(CONFIG)
        if not available("torch"):
            args.config = str(UNGATED)
            print("engramloop demo: torch is not installed, so the forecast gate is off: "
                  f"running the ungated trial {UNGATED.name} (for the forecast-gated demo: "
                  "pip install 'engramloop[forecaster]', see docs/install.md)")
    if not Path(args.config).is_file():
        raise UserError(f"demo config {args.config} not found; `engramloop configs` lists "
                        "the shipped ones")
    cfg = load_config(args.config)

    out = Path(args.out)
    prepare_output_dir(out, "--out")
    # the demo's folder is the demo's own: a new demo replaces the last one's recordings
    # (run --record never overwrites a file, so an earlier session is never lost by accident)

    old = [f for f in (out / "session.xdf", sham_twin_path(out / "session.xdf"),
                       out / "ungated.xdf") if f.is_file()]
    if old:
        for f in old:
            f.unlink()
        print(f"engramloop demo: replacing the previous demo in {out} "
              f"({', '.join(f.name for f in old)})")
    fset = cfg.forecaster
    gated = (" uplift-allocated" if fset.enabled and fset.gate == "uplift_budget" else
             " forecast-gated" if fset.enabled else "")
    print(f"engramloop demo: {args.duration:g} s simulated{gated} closed-loop ripple trial "
          f"({args.config}), unpaced on a simulated clock")
    if fset.enabled:
        from engramloop.decoders.forecaster import default_checkpoint_path

        where = (f"checkpoint {fset.checkpoint}" if fset.checkpoint else
                 f"the checkpoint shipped in the package, {default_checkpoint_path()}")
        if fset.gate == "uplift_budget":
            model = (f"uplift model {fset.uplift_model}" if fset.uplift_model else
                     f"the uplift model shipped in the package, {default_uplift_path()}")
            rule = (f"{model} predicts each ripple's recall gain from a pulse now (off the "
                    f"loop thread); the allocator spends {fset.budget_pulses} pulses over "
                    f"{fset.night_s:g} s where it is highest, >= {fset.min_gap_s:g} s apart"
                    + (", on ripples detected within 1 s after a spindle detection only"
                       if fset.uplift_after_spindle_only else ""))
        else:
            when = "high" if fset.gate == "p_below_median_high" else "low"
            rule = (f"pulses only while P(below-median consolidation) is {when} (threshold "
                    f"{fset.p_below_median_threshold:g})")
        print(f"  forecaster: {where}; a forecast every {fset.features.hop_s:g} s from the "
              f"end of the first {fset.features.epoch_s:g} s epoch; {rule}")
    run_config = args.config
    if fset.enabled and fset.gate == "uplift_budget" and fset.night_s != args.duration:
        # the budget is spread over the run: what ran is written beside the recordings
        cfg = dataclasses.replace(cfg, forecaster=dataclasses.replace(
            fset, night_s=float(args.duration)))
        fset = cfg.forecaster
        run_config = str(out / "demo-config.toml")
        Path(run_config).write_text(dump_config(cfg), encoding="utf-8")
        print(f"  the allocator's night_s is set to the run's {args.duration:g} s "
              f"({run_config})")
    rc = main(["run", run_config, "--duration", str(args.duration), "--speed", "max",
               "--record", str(out / "session.xdf"), "--report", str(out)]
              + (["--quiet"] if args.quiet else []))
    if rc == 0 and fset.enabled and fset.gate == "uplift_budget":
        for line in compare_at_equal_pulses(cfg, args.duration, out):
            print(line)
    return rc


def compare_at_equal_pulses(cfg, duration_s: float, out: Path) -> list[str]:
    """The closing comparison, from what was recorded: the allocator's run and its sham
    twin (summary.json of ``engramloop run --report``) and an ungated run of the same night
    with as many pulses, recorded to ``ungated.xdf``."""
    rep = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    run, sham = rep["run"], rep.get("sham") or {}
    n = int(run["pulses_sent"])
    rows = [("sham twin", sham.get("recall_mean", math.nan), 0,
             sham_twin_path(out / "session.xdf").name)]
    if n:
        ucfg = ungated_config(cfg, n)
        _, ung = run_sim(ucfg, duration_s, speed="max", record=str(out / "ungated.xdf"),
                         config_text=dump_config(ucfg))
        rows.append((f"ungated (every ripple >= {cfg.forecaster.min_gap_s:g} s apart, "
                     "first N)", ung.get("recall_mean", math.nan), int(ung["pulses_sent"]),
                     "ungated.xdf"))
    rows.append(("uplift allocator", run.get("recall_mean", math.nan), n, "session.xdf"))
    s0 = rows[0][1]
    lines = [f"at equal pulses on the recorded night (seed {cfg.seed}, {duration_s:g} s "
             "simulated; recall at the simulator's next-day memory test):"]
    for name, r, k, f in rows:
        vs = "" if name == "sham twin" else f" ({r - s0:+.4f} over sham, {k} pulses)"
        lines.append(f"  {name:<44} recall {r:.4f}{vs}  [{f}]")
    if not n:
        lines.append("  the allocator delivered no pulse, so there is no ungated run to "
                     "compare at equal pulses")
    elif rows[1][2] != n:
        lines.append(f"  the ungated run delivered {rows[1][2]} pulses, not {n}: NOT at "
                     "equal pulses")
    lines.append("  " + EXPERIMENT_FINDING)
    return lines
