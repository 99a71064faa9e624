"""`engramloop sweep CONFIG a.edf ./a.edf` replayed one night twice and pooled both: its
true and false positives counted double in the pooled scores, and the table said
"recordings 2". The deduplication compared the path text only. One file, however named
(another spelling, a symbolic link), is now replayed once, with a note. A real process;
the reference is the --out table read back with the csv module."""
from __future__ import annotations

import csv
import subprocess
import sys

from shared_data import DATA, require_data


def test_one_file_named_three_ways_is_replayed_once(tmp_path) -> None:
    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    (tmp_path / "a.edf").symlink_to(edf)
    (tmp_path / "link.edf").symlink_to(tmp_path / "a.edf")
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nchannels = ["C3-A1"]\n[detectors.spindle]\n'
                   'channels = ["C3-A1"]\n[policy]\ntarget = "spindle"\n')
    proc = subprocess.run([sys.executable, "-m", "engramloop", "sweep", str(cfg), "a.edf",
                           "./a.edf", "link.edf", "--duration", "60", "--workers", "1",
                           "--out", "out.csv", "--quiet"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if ln.startswith("note:")]
    assert notes == ["note: ./a.edf is the file a.edf again: replayed once",
                     "note: link.edf is the file a.edf again: replayed once"], proc.stderr
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["recording"] for r in rows] == ["a.edf", "(pooled)"]
    assert rows[1]["recordings"] == "1"
