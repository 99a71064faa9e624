"""`engramloop report B --out DIR` into a folder holding the report of recording A,
stopped half-way (Ctrl-C, or a section that fails): DIR kept A's index.html while B's
first figures had replaced A's files of the same names -- a page that reads as A's
report showing B's raster, without a word. Once B's report starts, A's page is gone: an
interrupted report leaves figures without a page, never a page over the wrong figures.

The interrupt is raised at a chosen moment (the spectrogram section, after the raster
figure of B is written) by replacing that section in-process; a real signal could not
be timed to that point."""
from __future__ import annotations

from engramloop.analysis.report import write as report_write
from engramloop.cli import main
from engramloop.controller.config import SHIPPED_DIR


def _run(tmp_path, name: str):
    rec = tmp_path / f"{name}.xdf"
    assert main(["run", str(SHIPPED_DIR / "sim-ripple.toml"), "--speed", "max",
                 "--duration", "6", "--quiet", "--record", str(rec)]) == 0
    return rec


def test_an_interrupted_report_leaves_no_page_of_the_last_report(tmp_path, capsys,
                                                                 monkeypatch) -> None:
    a, b = _run(tmp_path, "night_a"), _run(tmp_path, "night_b")
    out = tmp_path / "rep"
    assert main(["report", str(a), "--out", str(out), "--quiet"]) == 0
    index = out / "index.html"
    assert "night_a" in index.read_text(encoding="utf-8")
    raster_a = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}

    def interrupted(rec, out_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_write, "section_spectrogram", interrupted)
    capsys.readouterr()
    assert main(["report", str(b), "--out", str(out), "--quiet"]) == 130
    # B's first figures were written over A's ...
    assert any(p.stat().st_mtime_ns != raster_a.get(p.name) for p in out.glob("*.png"))
    # ... so A's page must not be there to show them
    assert not index.exists() or "night_b" in index.read_text(encoding="utf-8")
