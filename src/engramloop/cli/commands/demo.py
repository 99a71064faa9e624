"""engramloop demo"""
from __future__ import annotations

import argparse
from pathlib import Path

from engramloop.analysis.training.experiment import demo_comparison
from engramloop.analysis.trial import sham_twin_path
from engramloop.cli import main
from engramloop.cli.paths import prepare_output_dir
from engramloop.controller.config import SHIPPED_DIR, load_config
from engramloop.core.errors import UserError
from engramloop.core.extras import available

HELP = ("run the simulated default: a forecast-gated closed-loop ripple trial on the built-in "
        "simulator with the shipped forecaster checkpoint (stim vs sham twin), recorded to "
        "XDF, scored and reported")

CONFIG = SHIPPED_DIR / "sim-ripple-forecast.toml"
#: Run instead of CONFIG when torch (the ``forecaster`` extra) is not installed.
UNGATED = SHIPPED_DIR / "sim-ripple.toml"
#: Simulated seconds: 5 min of N2 then N3 (the config's hypnogram). The forecaster issues a
#: forecast every 30 s epoch from 30 s on; in N3 its decay risk crosses the gate threshold
#: (about 480 s in for seed 1), so 600 s shows the gate closed, then open with pulses.
DURATION_S = 600.0


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

    old = [f for f in (out / "session.xdf", sham_twin_path(out / "session.xdf")) if f.is_file()]
    if old:
        for f in old:
            f.unlink()
        print(f"engramloop demo: replacing the previous demo in {out} "
              f"({', '.join(f.name for f in old)})")
    fset = cfg.forecaster
    gated = " forecast-gated" if fset.enabled else ""
    print(f"engramloop demo: {args.duration:g} s simulated{gated} closed-loop ripple trial "
          f"({args.config}), unpaced on a simulated clock")
    if fset.enabled:
        from engramloop.decoders.forecaster import default_checkpoint_path

        where = (f"checkpoint {fset.checkpoint}" if fset.checkpoint else
                 f"the checkpoint shipped in the package, {default_checkpoint_path()}")
        if fset.gate == "uplift_budget":
            rule = (f"pulses where the uplift model's predicted recall gain clears a running "
                    f"threshold set to spend {fset.budget_pulses} pulses over "
                    f"{fset.night_s:g} s (docs/uplift.md says how this compares with the "
                    "one-line spindle rule)")
        else:
            when = "high" if fset.gate == "p_below_median_high" else "low"
            rule = (f"pulses only while P(below-median consolidation) is {when} (threshold "
                    f"{fset.p_below_median_threshold:g})")
        print(f"  forecaster: {where}; a forecast every {fset.features.hop_s:g} s from the "
              f"end of the first {fset.features.epoch_s:g} s epoch; {rule}")
    rc = main(["run", args.config, "--duration", str(args.duration), "--speed", "max",
               "--record", str(out / "session.xdf"), "--report", str(out)]
              + (["--quiet"] if args.quiet else []))
    if rc == 0 and available("torch"):
        for line in demo_comparison():
            print(line)
    return rc
