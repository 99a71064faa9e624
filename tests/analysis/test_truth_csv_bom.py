"""Expert annotations saved by a spreadsheet as "CSV UTF-8" start with a byte-order mark.
Without a header row, the first annotation's line read as '\\ufeff282.240' -- not a
number -- and was skipped as if it were a header: one expert spindle silently missing
from the truth (recall and false negatives off by one). Reference: the csv module
reading the same file with the BOM-aware codec."""
from __future__ import annotations

import csv

from shared_data import DATA, require_data

from engramloop.analysis.scoring import read_annotations_csv


def test_a_byte_order_mark_does_not_hide_the_first_annotation(tmp_path) -> None:
    expert = require_data(DATA / "dreams_dev" / "excerpt1_expert1.csv")
    rows = expert.read_text(encoding="utf-8").splitlines()[1:]      # no header row
    path = tmp_path / "excel.csv"
    path.write_bytes("\r\n".join(rows).encode("utf-8-sig") + b"\r\n")
    with open(path, newline="", encoding="utf-8-sig") as f:
        ref = [(float(a), float(b)) for a, b in csv.reader(f)]
    got = read_annotations_csv(path, "spindle")
    assert len(got) == len(ref) == len(rows)
    for e, (onset, dur) in zip(got, ref, strict=True):
        assert e["onset_s"] == onset
        assert abs(e["offset_s"] - (onset + dur)) < 1e-9


def test_a_byte_order_mark_before_a_header_row_is_still_a_header(tmp_path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("onset_s,duration_s\r\n1.5,0.5\r\n".encode("utf-8-sig"))
    assert [e["onset_s"] for e in read_annotations_csv(path)] == [1.5]
