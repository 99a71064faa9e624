"""Start-up cost of the command line and of a loop's imports, side by side for checkouts.

Each figure is the wall time of a fresh interpreter doing one thing, median of ``--runs``
runs, interleaved between the checkouts so machine load hits them alike:

- ``--help``: ``python -m engramloop --help`` (the parser imports every command module);
- ``build``: ``import engramloop.controller.build`` (everything a run needs but the
  device libraries, torch and scipy.signal, which load when a source or the forecaster
  starts).

    python bench/startup.py                         # this checkout
    python bench/startup.py --src src /work/main/src --runs 15

Figures depend on the machine and its load: the load average is printed next to them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {"--help": ["-m", "engramloop", "--help"],
         "build": ["-c", "import engramloop.controller.build"]}


def once(src: str, args: list[str]) -> float:
    """Seconds, or NaN when the command failed (e.g. a checkout without that module)."""
    env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
    t0 = time.perf_counter()
    rc = subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, check=False).returncode
    return time.perf_counter() - t0 if rc == 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", nargs="+", default=[str(Path(__file__).parents[1] / "src")],
                    help="src folders of the checkouts to compare")
    ap.add_argument("--runs", type=int, default=9)
    a = ap.parse_args()
    times: dict[tuple[str, str], list[float]] = {(s, c): [] for s in a.src for c in CASES}
    for _ in range(a.runs):
        for case, args in CASES.items():
            for s in a.src:
                times[(s, case)].append(once(s, args))
    print(f"load average {os.getloadavg()[0]:.2f}; median of {a.runs} runs, seconds")
    for case in CASES:
        for s in a.src:
            print(f"  {case:7s} {statistics.median(times[(s, case)]):6.3f}  {s}")


if __name__ == "__main__":
    main()
