"""Section "Run log": warnings and errors first (markers only).
"""
from __future__ import annotations

import json

from engramloop.analysis.report.page import Section, html_table
from engramloop.analysis.report.recording import Recording


def section_log(rec: Recording) -> Section:
    sec = Section("log", "Run log")
    log = rec.markers.get("log", [])
    if not log:
        sec.missing = "Log (stream engramloop.log): not in this recording."
        return sec
    levels = [str(d.get("level", "")).lower() for _, d in log]
    worth = [(t, d) for (t, d), lv in zip(log, levels, strict=True) if lv in ("warning", "error",
                                                                  "critical")]
    shown = worth or log
    sec.body = (f"<p>{len(log)} log records, {len(worth)} warnings/errors; showing "
                f"{min(len(shown), 50)}.</p>"
                + html_table(["time (s)", "level", "message"],
                         [(f"{t - rec.t0:.3f}", d.get("level", ""),
                           d.get("message", d.get("msg", d.get("text", json.dumps(
                               d, sort_keys=True))))) for t, d in shown[:50]]))
    return sec
