"""Section "Safety governor: refusals" (markers only).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from engramloop.analysis.report.page import (
    FigureInfo,
    Section,
    html_table,
    new_figure,
    save,
    time_unit,
)
from engramloop.analysis.report.recording import Recording


def section_governor(rec: Recording, out: Path) -> Section:
    sec = Section("governor", "Safety governor: refusals")
    gov = rec.markers.get("governor", [])
    if not gov:
        sec.missing = "Governor decisions (stream engramloop.governor): not in this recording."
        return sec
    decisions = [(t, d) for t, d in gov if "approved" in d]
    refused = [(t, d) for t, d in decisions if not d.get("approved")]
    approved = len(decisions) - len(refused)
    by_rule: dict[str, int] = {}
    for _, d in refused:
        by_rule[str(d.get("rule", "?"))] = by_rule.get(str(d.get("rule", "?")), 0) + 1
    sec.body = (f"<p>{len(decisions)} decisions: {approved} approved, {len(refused)} "
                "refused.</p>")
    arming = [(t, d) for t, d in gov if "approved" not in d]
    if refused:
        rules = sorted(by_rule, key=lambda r: (-by_rule[r], r))
        fig = new_figure(10, 1.0 + 0.4 * len(rules) + 0.4)
        ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 2.5])
        ax1.barh(range(len(rules)), [by_rule[r] for r in rules], color="C3")
        ax1.set_yticks(range(len(rules)), rules, fontsize=8)
        ax1.invert_yaxis()
        ax1.set_xlabel("refusals")
        ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
        t0 = rec.t0
        scale, unit = time_unit(rec)
        for i, r in enumerate(rules):
            t = np.array([t for t, d in refused if str(d.get("rule", "?")) == r])
            ax2.vlines((t - t0) / scale, i + 0.1, i + 0.9, color="C3", lw=0.6)
        ax2.set_yticks([i + 0.5 for i in range(len(rules))], rules, fontsize=8)
        ax2.set_ylim(len(rules), 0)
        ax2.set_xlim(0, max((rec.t1 - t0) / scale, 1e-3))
        ax2.set_xlabel(f"time since start ({unit})")
        sec.figures.append(FigureInfo(save(fig, out, "refusals.png"),
                                      "Governor refusals by rule",
                                      "Count of refused stimulation intents per safety rule, "
                                      "and when they happened."))
        sec.body += html_table(["rule", "refusals"], [(r, by_rule[r]) for r in rules])
        sample = refused[:20]
        sec.body += ("<p>First refusals (of " + str(len(refused)) + "):</p>"
                     + html_table(["time (s)", "rule", "target", "detail"],
                              [(f"{t - t0:.3f}", d.get("rule", ""), d.get("target", ""),
                                d.get("detail", "")) for t, d in sample]))
    else:
        sec.body += "<p>No intent was refused.</p>"
    if arming:
        sec.body += ("<p>Other governor records (arming, calibration):</p>"
                     + html_table(["time (s)", "record"],
                              [(f"{t - rec.t0:.3f}", json.dumps(d, sort_keys=True))
                               for t, d in arming[:30]]))
    return sec
