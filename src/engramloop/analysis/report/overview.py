"""Section "Recording": streams, duration, a glance at what happened, the effective config.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

from engramloop.analysis.report.page import Section, html_table
from engramloop.analysis.report.recording import Recording
from engramloop.analysis.report.records import PulseRecord, events_by_kind
from engramloop.recording.schema import MARKER_STREAMS


def _glance(rec: Recording, pulses: list[PulseRecord]) -> str:
    """A few lines a person reads first: what happened in this session."""
    dur = max(rec.t1 - rec.t0, 1e-9)
    items = []
    events = events_by_kind(rec)
    if events:
        items.append("detections: " + ", ".join(
            f"{k} {len(v)} ({len(v) * 60.0 / dur:.1f}/min)" for k, v in events.items()))
    if pulses:
        by_cond: dict[str, int] = {}
        for p in pulses:
            if p.delivered:
                by_cond[p.condition] = by_cond.get(p.condition, 0) + 1
        undelivered = sum(1 for p in pulses if not p.delivered)
        items.append("pulses delivered: " + (", ".join(f"{c} {n}" for c, n in
                                                       sorted(by_cond.items())) or "none")
                     + (f"; not delivered {undelivered}" if undelivered else ""))
    refused = [d for _, d in rec.markers.get("governor", []) if d.get("approved") is False]
    if rec.markers.get("governor"):
        items.append(f"governor refusals: {len(refused)}")
    if not items:
        return ""
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def section_overview(rec: Recording, pulses: Sequence[PulseRecord] = ()) -> Section:
    sec = Section("overview", "Recording")
    rows = [(s.name, "signal", len(s.channels), ", ".join(s.channels), f"{s.rate_hz:g}",
             s.n) for s in rec.signals]
    rows += [(f"engramloop.{k}", "markers (JSON)", 1, "", "irregular", len(v))
             for k, v in sorted(rec.markers.items()) if v]
    missing = [f"engramloop.{k}" for k in MARKER_STREAMS if not rec.markers.get(k)]
    dur = rec.t1 - rec.t0
    sec.body = (f"<p>File <code>{html.escape(rec.path.name)}</code>"
                + (f", recorded {html.escape(rec.datetime)}" if rec.datetime else "")
                + f", {dur:.1f} s ({dur / 60:.1f} min).</p>"
                + _glance(rec, list(pulses))
                + html_table(["stream", "type", "channels", "names", "rate (Hz)", "samples"], rows)
                + (f"<p>Not in this recording: {', '.join(missing)}.</p>" if missing else ""))
    if not rec.signals:
        sec.body += "<p>Raw signal: not in this recording.</p>"
    if rec.config_text:
        sec.body += ("<details><summary>Effective configuration</summary><pre>"
                     + html.escape(rec.config_text) + "</pre></details>")
    return sec
