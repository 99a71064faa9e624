"""engramloop demo"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("run the simulated default: a closed-loop ripple trial on the built-in simulator "
        "(stim vs sham twin), recorded to XDF, scored and reported")

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim-ripple.toml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=120.0, metavar="S",
                   help="simulated seconds (default 120)")
    p.add_argument("--out", default="out/demo", metavar="DIR",
                   help="folder for session.xdf, summary.txt/json and the HTML report "
                        "(index.html)")
    p.add_argument("--config", default=str(CONFIG), help="config to run (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from controller.cli import UserError, main

    if not Path(args.config).is_file():
        raise UserError(f"demo config {args.config} not found; run the demo from an "
                        "engramloop checkout or pass --config")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"engramloop demo: {args.duration:g} s simulated closed-loop ripple trial "
          f"({args.config}), unpaced on a simulated clock")
    return main(["run", args.config, "--duration", str(args.duration), "--speed", "max",
                 "--record", str(out / "session.xdf"), "--report", str(out), "--quiet"])
