"""A truth CSV with a label column (``onset,duration,label``, several labels) was read as
if every row were the kind scored: `score --truth`, `sweep` and `replay --sweep` counted
the expert's K-complexes as missed spindles (n_truth, recall, false negatives wrong).
Rows are kept when their label names the kind (the rule EDF+ annotations are read with);
a labelled file in which no label names it is a one-line error. References: the csv module
reading the same file, and the simulator's own truth."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from engramloop.analysis.scoring import read_annotations_csv
from engramloop.sim.truth import Truth


def _labelled(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["onset", "duration", "label"])
        w.writerows(rows)


def test_only_rows_labelled_with_the_kind_are_its_truth(tmp_path) -> None:
    path = tmp_path / "night.csv"
    _labelled(path, [(10.0, 0.8, "spindle"), (12.5, 1.1, "K-complex"),
                     (20.0, 0.6, "Sleep Spindle"), (31.0, 0.4, "arousal")])
    with open(path, newline="") as f:
        ref = [r for r in csv.DictReader(f) if "spindle" in r["label"].lower()]
    got = read_annotations_csv(path, "spindle")
    assert [e["onset_s"] for e in got] == [float(r["onset"]) for r in ref] == [10.0, 20.0]
    assert [e["onset_s"] for e in read_annotations_csv(path, "k-complex")] == [12.5]


def test_no_label_naming_the_kind_is_a_one_line_error(tmp_path) -> None:
    path = tmp_path / "night.csv"
    _labelled(path, [(10.0, 0.8, "K-complex"), (12.5, 1.1, "arousal")])
    with pytest.raises(ValueError) as err:
        read_annotations_csv(path, "spindle")
    msg = str(err.value)
    assert "\n" not in msg and "'K-complex'" in msg and "--kind" in msg


def test_a_numeric_third_column_is_not_a_label(tmp_path) -> None:
    path = tmp_path / "night.csv"
    path.write_text("onset_s,duration_s,channel\n1.5,0.5,3\n4.0,1.0,4\n", encoding="utf-8")
    assert [e["onset_s"] for e in read_annotations_csv(path, "spindle")] == [1.5, 4.0]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engramloop", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_score_of_a_labelled_csv_counts_the_kind_only(tmp_path) -> None:
    """A real `engramloop score` process: the simulator's ripples written to a CSV among
    rows of other labels score as the simulator's own truth does."""
    rec = tmp_path / "sim.npz"
    assert _run("sim", "--duration", "60", "--out", str(rec), "--quiet").returncode == 0
    with np.load(rec, allow_pickle=False) as z:
        truth = Truth.from_json(str(z["truth"]))
        t0 = float(z["timestamps"][0])
    events = [e.to_dict() for e in truth.events()]
    ripples = [e for e in events if e["kind"] == "ripple"]
    assert ripples
    rows = [(e["onset_s"] - t0, e["offset_s"] - e["onset_s"], e["kind"]) for e in events]
    rows += [(e["onset_s"] - t0 + 0.5, 0.3, "artefact") for e in ripples]
    path = tmp_path / "labelled.csv"
    _labelled(path, sorted(rows))
    own = _run("score", str(rec), "--json")
    got = _run("score", str(rec), "--truth", str(path), "--kind", "ripple", "--json")
    assert own.returncode == 0 and got.returncode == 0, got.stderr
    a, b = json.loads(own.stdout)["ripple"], json.loads(got.stdout)["ripple"]
    assert b["n_truth"] == a["n_truth"]
    assert b["true_positives"] == a["true_positives"]
    bad = _run("score", str(rec), "--truth", str(path), "--kind", "spindle-ish")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "'artefact'" in bad.stderr
