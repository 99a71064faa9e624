"""engramloop configs [--copy NAME|all ...] [--to DIR] [--force]"""
from __future__ import annotations

import argparse
from pathlib import Path

from engramloop.controller.config import shipped_config, shipped_configs
from engramloop.core.errors import UserError

HELP = ("list the example configs shipped with engramloop, or copy them to a folder to "
        "edit (default ./configs, so `engramloop run configs/NAME.toml` works)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--copy", nargs="+", metavar="NAME",
                   help="config names to copy ('sim-ripple' or 'sim-ripple.toml'), or 'all'")
    p.add_argument("--to", default="configs", metavar="DIR",
                   help="folder to copy into, created if missing (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="overwrite files that already exist in DIR")


def summary(path: Path) -> str:
    """The first line of the config's leading comment (what the config is for)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and line.strip("# "):
            return line.lstrip("#").strip()
        if line.strip() and not line.startswith("#"):
            break
    return ""


def run(args: argparse.Namespace) -> int:
    if not args.copy:
        paths = shipped_configs()
        width = max(len(p.stem) for p in paths)
        for p in paths:
            print(f"{p.stem:<{width}}  {summary(p)}")
        print(f"\n{len(paths)} configs in {paths[0].parent}; copy one to edit it: "
              "engramloop configs --copy NAME [--to DIR]")
        return 0
    names = [p.stem for p in shipped_configs()] if "all" in args.copy else args.copy
    sources = [shipped_config(n) for n in names]  # ConfigError names an unknown one
    dest = Path(args.to)
    targets = [dest / s.name for s in sources]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.force:
        raise UserError(f"{', '.join(existing)} already exist(s); nothing copied (pass "
                        "--force to overwrite, or --to another folder)")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for s, t in zip(sources, targets, strict=True):
            t.write_bytes(s.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot write into {dest}: {exc.strerror}") from None
    for t in targets:
        print(f"wrote {t}")
    return 0
