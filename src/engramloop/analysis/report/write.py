"""write_report: every section in order, the page and its figures in one folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engramloop.analysis.report.averages import section_averages
from engramloop.analysis.report.examples import section_examples
from engramloop.analysis.report.forecast_gate import section_forecast_gate
from engramloop.analysis.report.governor import section_governor
from engramloop.analysis.report.latency import section_latency
from engramloop.analysis.report.log import section_log
from engramloop.analysis.report.memory import section_memory
from engramloop.analysis.report.overview import section_overview
from engramloop.analysis.report.page import Section, page
from engramloop.analysis.report.phase import section_phase
from engramloop.analysis.report.raster import section_raster
from engramloop.analysis.report.recording import ReportError, load_recording
from engramloop.analysis.report.spectrogram import section_spectrogram
from engramloop.analysis.report.stim_vs_sham import section_stim_vs_sham
from engramloop.analysis.trial import sham_twin_path
from engramloop.controller.progress import progress


@dataclass
class ReportResult:
    """What :func:`write_report` wrote."""

    index: Path
    figures: list[Path]
    sections: list[Section]
    #: the recording was never closed: why (Recording.unclosed), else ""
    unclosed: str = ""


def write_report(recording: str | Path, out_dir: str | Path, *,
                 quiet: bool = True, twin: str | Path | None = None) -> ReportResult:
    """Write ``index.html`` and the PNG figures for one recording into ``out_dir``.

    Parameters
    ----------
    recording : str or Path
        An ``.xdf`` file written by engramloop (or any XDF with a numeric stream).
    out_dir : str or Path
        Output folder (created if needed). Existing files with the same names are
        overwritten; other files are left alone.
    quiet : bool
        No progress (the default).
    twin : str or Path, optional
        The sham twin's recording, whose memory trajectory is drawn beside this one's;
        default: ``NAME-sham-twin.xdf`` beside ``NAME.xdf`` when it exists (as
        :func:`controller.trial.run_trial` writes it).

    Raises
    ------
    ReportError
        If the recording cannot be read or the folder cannot be written.
    """
    out = Path(out_dir)
    if twin is None and sham_twin_path(recording).is_file():
        twin = sham_twin_path(recording)
    rec = load_recording(recording)   # an unreadable file fails before any progress line
    with progress(13, "report", quiet=quiet) as bar:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportError(f"cannot create report folder {out}: {exc.strerror}") from None
        index = out / "index.html"
        # the last report's page goes before this report's first figure replaces one of
        # its files: a report stopped half-way leaves figures, never a page over the
        # wrong figures
        try:
            index.unlink(missing_ok=True)
        except OSError as exc:
            raise ReportError(f"cannot replace {index}: {exc.strerror}") from None
        import matplotlib

        def step(value: Any) -> Any:
            bar.advance()
            return value

        with matplotlib.rc_context({"font.size": 9, "axes.spines.top": False,
                                    "axes.spines.right": False}):
            phase, pulses = step(section_phase(rec, out))
            sections = [step(section_overview(rec, pulses)),
                        step(section_raster(rec, out, pulses)),
                        step(section_spectrogram(rec, out)),
                        step(section_examples(rec, out)), step(section_averages(rec, out)),
                        phase, step(section_latency(rec, out, pulses)),
                        step(section_stim_vs_sham(rec, out, pulses)),
                        step(section_memory(rec, out, twin)),
                        step(section_forecast_gate(rec, out, pulses)),
                        step(section_governor(rec, out)),
                        step(section_log(rec))]
        part = out / ".index.html.part"       # whole or not at all
        part.write_text(page(rec, sections), encoding="utf-8")
        part.replace(index)
        bar.advance()
    figs = [out / f.file for s in sections for f in s.figures]
    return ReportResult(index, figs, sections, rec.unclosed)
