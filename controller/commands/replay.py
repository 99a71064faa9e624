"""engramloop replay CONFIG FILE"""
from __future__ import annotations

import argparse
import dataclasses

HELP = ("run the closed loop on a recorded file (XDF/EDF/BDF/CSV/npz); pulses are sham "
        "unless --stimulate is given")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from controller.commands.run import add_arguments as run_arguments

    run_arguments(p)
    p.add_argument("file", help="recording to replay (overrides source.file.path)")
    p.add_argument("--stimulate", action="store_true",
                   help="send pulses to the configured stimulators (default: sham, "
                        "everything decided and logged, nothing sent)")


def run(args: argparse.Namespace) -> int:
    from controller.commands.run import run_loop

    def to_replay(cfg):
        src = dataclasses.replace(cfg.source, kind="file")
        pol = cfg.policy if args.stimulate else dataclasses.replace(cfg.policy,
                                                                    condition="sham")
        return dataclasses.replace(cfg, source=src, policy=pol)

    return run_loop(args, replay_path=args.file, cfg_transform=to_replay)
