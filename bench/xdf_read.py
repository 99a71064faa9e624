"""Reading a recording's signal: our streaming reader (``recording.xdf_blocks``, block by
block) against pyxdf (``load_xdf``, the whole file into memory), each in a fresh process:
wall time and peak RSS (``getrusage(RUSAGE_CHILDREN)``), and both check sums printed so
the two are seen to read the same samples.

    .venv/bin/python bench/xdf_read.py FILE.xdf [--stream engramloop.raw]

(``bench/report_memory.py`` makes long synthetic recordings to read.)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OURS = """
import sys
import numpy as np
from engramloop.recording.xdf_blocks import XdfFile
f = XdfFile(sys.argv[1])
info = f.by_name(sys.argv[2])
n, total = 0, 0.0
for t, x in f.blocks(info.stream_id):
    n += t.size
    total += float(np.sum(x, dtype=np.float64))
print(n, repr(total))
"""

PYXDF = """
import sys
import numpy as np
import pyxdf
streams, _ = pyxdf.load_xdf(sys.argv[1], synchronize_clocks=False, dejitter_timestamps=False)
s = next(s for s in streams if s["info"]["name"][0] == sys.argv[2])
x = np.asarray(s["time_series"])
print(x.shape[0], repr(float(np.sum(x, dtype=np.float64))))
"""

_MEASURE = ("import resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "dt = time.perf_counter() - t\n"
            "print(r.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
            " r.stdout.strip().replace(' ', '/'))\n")


def measure(code: str, path: Path, stream: str) -> tuple[str, float, float, str]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-c", code,
                          str(path), stream], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    rc, wall, rss, res = out.stdout.split()
    return rc, float(wall), int(rss) / 1024.0, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--stream", default="engramloop.raw")
    ap.add_argument("--no-pyxdf", action="store_true",
                    help="skip pyxdf (it holds the whole file: ~2x its size in memory)")
    args = ap.parse_args()
    print(f"# {args.file.name}: {args.file.stat().st_size / 1e9:.2f} GB")
    print(f"{'reader':<22}{'wall s':>8}{'peak RSS MB':>13}  exit  samples/sum")
    rows = [("ours (blocks)", OURS)] + ([] if args.no_pyxdf else [("pyxdf (load_xdf)", PYXDF)])
    for name, code in rows:
        rc, wall, rss, res = measure(code, args.file, args.stream)
        print(f"{name:<22}{wall:>8.1f}{rss:>13.0f}  {rc:>4}  {res}")


if __name__ == "__main__":
    main()
