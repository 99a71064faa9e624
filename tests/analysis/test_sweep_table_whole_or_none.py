"""sweep --out is written whole or not at all: an interrupt (Ctrl-C, or a SIGTERM after
the command's signal handling ended) or a failure half-way through the table must not
leave a partial table at --out that reads as the sweep's, nor clobber the previous one.

The interrupt is raised by a row value's ``__str__`` (a stand-in for a Ctrl-C at that
moment: a real signal cannot be timed into a write this short)."""
from __future__ import annotations

import pytest

from engramloop.analysis.fanout import write_table


class _Interrupt:
    def __str__(self) -> str:
        raise KeyboardInterrupt


def test_interrupted_csv_leaves_the_previous_table_untouched(tmp_path) -> None:
    out = tmp_path / "sweep.csv"
    out.write_text("old,table\n1,2\n", encoding="utf-8")
    rows = [{"recording": f"n{i}.edf", "f1": 0.5} for i in range(2000)]
    rows.append({"recording": "last.edf", "f1": _Interrupt()})
    with pytest.raises(KeyboardInterrupt):
        write_table(rows, str(out))
    assert out.read_text(encoding="utf-8") == "old,table\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.csv"]   # no leftovers


def test_interrupted_csv_leaves_no_file(tmp_path) -> None:
    out = tmp_path / "sweep.csv"
    rows = [{"recording": f"n{i}.edf", "f1": 0.5} for i in range(2000)]
    rows.append({"recording": "last.edf", "f1": _Interrupt()})
    with pytest.raises(KeyboardInterrupt):
        write_table(rows, str(out))
    assert list(tmp_path.iterdir()) == []


def test_complete_csv_is_written(tmp_path) -> None:
    out = tmp_path / "sweep.csv"
    write_table([{"recording": "a.edf", "f1": 0.5}, {"recording": "b.edf", "p": 1}],
                str(out))
    assert out.read_text(encoding="utf-8").splitlines() == [
        "recording,f1,p", "a.edf,0.5,", "b.edf,,1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.csv"]
