"""Section "Stimulation vs sham": pulse-locked averages per condition from windows around
the pulses.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engramloop.analysis.report.page import (
    FigureInfo,
    Section,
    color_for,
    fmt,
    html_table,
    new_figure,
    save,
)
from engramloop.analysis.report.recording import Recording
from engramloop.analysis.report.records import PulseRecord, memory_rows, numeric_series
from engramloop.analysis.report.signals import (
    TARGET_PHASE,
    WINDOWS_S,
    locked_moments,
    pick_channel,
    uv_scale,
)


def section_stim_vs_sham(rec: Recording, out: Path, pulses: list[PulseRecord]) -> Section:
    sec = Section("stim-vs-sham", "Stimulation vs sham")
    conds = sorted({p.condition for p in pulses if p.delivered}, key=lambda c: (c != "stim", c))
    if len(conds) < 2:
        sec.missing = ("Both stim and sham (or yoked) pulses: not in this recording"
                       + (f" (only '{conds[0]}')." if conds else "."))
        return sec
    target = max({p.target for p in pulses}, key=lambda g: sum(p.target == g for p in pulses))
    rhythm = TARGET_PHASE.get(target, ("so" if target == "so_upstate" else "ripple", 0))[0]
    where = pick_channel(rec, rhythm)
    rows = []
    for c in conds:
        n = sum(1 for p in pulses if p.condition == c and p.delivered)
        rows.append((c, n))
    if where is not None:
        s, ci = where
        before, after = (1.0, 3.0) if rhythm == "so" else WINDOWS_S.get(rhythm, (0.5, 0.5))
        nb, na = int(before * s.rate_hz), int(after * s.rate_hz)
        fig = new_figure(9, 3.6)
        ax = fig.subplots(1, 1)
        k, unit = uv_scale(s.units)
        lag = np.arange(-nb, na + 1) / s.rate_hz
        for c in conds:
            t = np.array([p.fire_s for p in pulses if p.condition == c and p.delivered
                          and p.target == target])
            # running sums over batches of pulses: a night's pulses are never all held
            n, mom = locked_moments(s, ci, t, nb, na, {"raw": lambda x: x}, pad=0.0,
                                    remove={"raw": "baseline"})
            if not n:
                continue
            m, se = mom["raw"][0] * k, mom["raw"][1] * k / math.sqrt(n)
            ax.fill_between(lag, m - se, m + se, color=color_for(c), alpha=0.25, lw=0)
            ax.plot(lag, m, color=color_for(c), lw=1, label=f"{c} (n = {n})")
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel(f"time from pulse (s), target {target}")
        ax.set_ylabel(f"{s.channels[ci]} ({unit}, baseline removed)")
        ax.legend(fontsize=8)
        sec.figures.append(FigureInfo(save(fig, out, "stim-vs-sham.png"),
                                      "Pulse-locked response, stim vs sham",
                                      "Average signal around delivered pulses of each condition "
                                      "(mean +- SEM, pre-pulse baseline removed). Sham pulses "
                                      "are logged at the same decision points but not delivered "
                                      "to the subject."))
    mem_rows = memory_rows(rec)
    if mem_rows:
        last = numeric_series(mem_rows[-1:])
        by = {c: [v[1][-1] for k2, v in last.items() if c in k2.lower().split(".")]
              for c in conds}
        if all(by.values()):
            rows = [(c, n, fmt(float(np.mean(by[c])), 3)) for c, n in rows]
            sec.body = html_table(["condition", "delivered pulses", "final recall (mean)"], rows)
            return sec
    sec.body = html_table(["condition", "delivered pulses"], rows)
    return sec
