"""Do two recordings hold the same run? Every marker stream's records (decoded JSON) and
every signal stream's samples and stamps (relative to its first) are compared, as pyxdf
(the counterpart) reads them -- e.g. the ``--record`` files of one replay made by two
checkouts.

    .venv/bin/python bench/compare_recordings.py A.xdf B.xdf

Prints one line per stream; exits 1 on a difference.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pyxdf


def load(path: str) -> dict:
    streams, _ = pyxdf.load_xdf(path, synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["name"][0]: s for s in streams}


def main() -> int:
    a, b = load(sys.argv[1]), load(sys.argv[2])
    same = sorted(a) == sorted(b)
    if not same:
        print("streams differ:", sorted(a), sorted(b))
    for name in sorted(set(a) & set(b)):
        sa, sb = a[name], b[name]
        if sa["info"]["channel_format"][0] == "string":
            ea = [json.loads(v[0]) for v in sa["time_series"]]
            eb = [json.loads(v[0]) for v in sb["time_series"]]
            ok = ea == eb
            print(f"{name}: {len(ea)} / {len(eb)} records, {'identical' if ok else 'DIFFER'}")
        else:
            ta, tb = sa["time_stamps"], sb["time_stamps"]
            ok = (np.array_equal(sa["time_series"], sb["time_series"])
                  and np.array_equal(ta - ta[:1], tb - tb[:1]))
            print(f"{name}: {len(ta)} / {len(tb)} samples, "
                  f"{'identical' if ok else 'DIFFER'} (samples, relative stamps)")
        same &= ok
    print("IDENTICAL" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
