"""The page and its pieces: sections and figures, colours, matplotlib figures saved
reproducibly, tables, and the HTML document (no scripts, fonts or styles from the
network: it opens offline).
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engramloop.analysis.report.recording import Recording


@dataclass
class FigureInfo:
    file: str
    title: str
    caption: str


@dataclass
class Section:
    key: str
    title: str
    figures: list[FigureInfo] = field(default_factory=list)
    body: str = ""
    missing: str = ""


COLORS = {"ripple": "#1f77b4", "spindle": "#2ca02c", "so": "#d62728", "theta": "#9467bd",
           "stim": "#d62728", "sham": "#7f7f7f", "yoked-random": "#ff7f0e"}


STAGE_COLORS = {"wake": "#f2c14e", "REM": "#f78154", "N1": "#b4d2e7", "N2": "#5d9cec",
                 "N3": "#1c3f95"}


def color_for(key: str, i: int = 0) -> str:
    return COLORS.get(key, f"C{i % 10}")


def new_figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def save(fig: Any, out: Path, name: str) -> str:
    # no Software tag: identical input gives byte-identical PNGs
    fig.savefig(out / name, format="png", metadata={"Software": None})
    return name


def time_unit(rec: Recording) -> tuple[float, str]:
    """Seconds per unit and its name for session-long time axes (minutes past 10 min)."""
    return (60.0, "min") if rec.t1 - rec.t0 > 600 else (1.0, "s")


def slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s) or "x"


def fmt(v: float, nd: int) -> str:
    return f"{v:.{nd}f}" if v is not None and math.isfinite(v) else ""


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;
color:#222}h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;
margin-top:2em}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}.missing{color:#8a5a00;background:#fff6e0;
padding:.4em .8em;border-left:4px solid #e0a000}pre{background:#f7f7f7;padding:.5em;
overflow:auto;font-size:.8em}nav a{margin-right:1em}"""


def page(rec: Recording, sections: list[Section]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>engramloop report: {html.escape(rec.path.name)}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>engramloop session report: {html.escape(rec.path.name)}</h1>",
             "<nav>" + "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>'
                               for s in sections) + '<a href="#figures">All figures</a></nav>']
    if rec.unclosed:
        parts.append(f'<p class="missing" id="unclosed"><b>{html.escape(rec.unclosed)}</b></p>')
    n = 0
    table_rows = []
    for s in sections:
        parts.append(f'<h2 id="{s.key}">{html.escape(s.title)}</h2>')
        if s.missing:
            parts.append(f'<p class="missing">{html.escape(s.missing)}</p>')
        parts.append(s.body)
        for f in s.figures:
            n += 1
            fid = "fig-" + f.file.rsplit(".", 1)[0]
            parts.append(f'<figure id="{fid}"><img src="{html.escape(f.file)}" '
                         f'alt="{html.escape(f.title)}"><figcaption><b>Figure {n}.</b> '
                         f"{html.escape(f.caption)}</figcaption></figure>")
            table_rows.append((n, f.title, s.title, f.file, fid))
    parts.append('<h2 id="figures">All figures</h2>')
    if table_rows:
        parts.append("<table><thead><tr><th>#</th><th>figure</th><th>section</th>"
                     "<th>file</th></tr></thead><tbody>")
        for i, title, stitle, file, fid in table_rows:
            parts.append(f'<tr><td>{i}</td><td><a href="#{fid}">{html.escape(title)}</a></td>'
                         f"<td>{html.escape(stitle)}</td><td><a href=\"{html.escape(file)}\">"
                         f"{html.escape(file)}</a></td></tr>")
        parts.append("</tbody></table>")
    else:
        parts.append("<p>No figures: the recording holds no signal or markers to plot.</p>")
    parts.append("<p><small>Made by <code>engramloop report</code> from the XDF file "
                 "alone.</small></p></body></html>")
    return "\n".join(parts) + "\n"
