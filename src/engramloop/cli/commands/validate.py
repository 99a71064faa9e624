"""engramloop validate CONFIG"""
from __future__ import annotations

import argparse

from engramloop.controller.config import (
    check_source_fit,
    dump_config,
    load_config,
    source_shape,
)
from engramloop.core.chunk import SourceError
from engramloop.core.errors import UserError
from engramloop.core.schema import ConfigError

HELP = ("check a config file and print the effective config (every default filled in); "
        "where the source's channels and rate are known without starting it (simulator, "
        "file, BrainFlow board), also check the detectors against them")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="path of a TOML config (`engramloop configs` lists "
                                  "and copies the shipped examples)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    try:
        channels, rate = source_shape(cfg)
        check_source_fit(cfg, channels, rate)
    except ConfigError as exc:  # the source-fit errors carry no file name: add it
        raise ConfigError(args.config, exc.key, exc.message) from None
    except SourceError as exc:
        raise UserError(f"{args.config}: {exc}") from None
    print(f"# {args.config}: valid\n")
    if channels is None:
        print(f"# channels: not known before a {cfg.source.kind} source starts; the "
              "detectors are checked against them at start\n")
    print(dump_config(cfg), end="")
    return 0
