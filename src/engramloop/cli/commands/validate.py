"""engramloop validate CONFIG"""
from __future__ import annotations

import argparse

HELP = "check a config file and print the effective config (every default filled in)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="path of a TOML config (`engramloop configs` lists "
                                  "and copies the shipped examples)")


def run(args: argparse.Namespace) -> int:
    from engramloop.controller.config import dump_config, load_config

    cfg = load_config(args.config)
    print(f"# {args.config}: valid\n")
    print(dump_config(cfg), end="")
    return 0
