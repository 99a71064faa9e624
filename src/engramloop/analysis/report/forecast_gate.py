"""Section "Forecast gate": the forecaster's P(below-median consolidation), the gate it
drives and the pulses (markers only).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engramloop.analysis.report.page import (
    FigureInfo,
    Section,
    color_for,
    html_table,
    new_figure,
    save,
    time_unit,
)
from engramloop.analysis.report.recording import Recording
from engramloop.analysis.report.records import PulseRecord, num
from engramloop.controller.forecast_worker import ForecasterSettings


def gate_settings(rec: Recording) -> tuple[float, bool, float]:
    """``(p_below_median_threshold, opens when high, max_age_s)`` from the recorded config's
    ``[forecaster]`` (the schema defaults where absent)."""
    d = ForecasterSettings()
    f = rec.config.get("forecaster", {}) if isinstance(rec.config, dict) else {}
    f = f if isinstance(f, dict) else {}
    # recordings made before issue 21 carry the old names gate_threshold / gate_when
    thr = num(f.get("p_below_median_threshold",
                    f.get("gate_threshold", d.p_below_median_threshold)))
    age = num(f.get("max_age_s", d.max_age_s))
    low = f.get("gate", "") == "p_below_median_low" or f.get("gate_when") == "risk_low"
    return (thr if math.isfinite(thr) else d.p_below_median_threshold, not low,
            age if math.isfinite(age) else d.max_age_s)


def section_forecast_gate(rec: Recording, out: Path, pulses: list[PulseRecord]) -> Section:
    """The forecaster's P(below-median consolidation) over the run, the gate it drives and
    the pulses."""
    sec = Section("forecast-gate", "Forecast gate")
    rows = [(t, d) for t, d in rec.markers.get("forecasts", [])
            if isinstance(d, dict) and math.isfinite(num(d.get("p_below_median")))]
    if not rows:
        sec.missing = ("Forecasts (engramloop.forecasts): not in this recording (the "
                       "forecaster was off, or the run ended before its first epoch).")
        return sec
    thr, when_high, max_age = gate_settings(rec)
    f = rec.config.get("forecaster", {}) if isinstance(rec.config, dict) else {}
    # the uplift gate decides each ripple from its predicted gain: forecasts do not open it
    uplift = isinstance(f, dict) and f.get("gate") == "uplift_budget"
    t = np.array([num(d.get("time_s", tt)) if math.isfinite(num(d.get("time_s", tt)))
                  else tt for tt, d in rows])
    p = np.array([num(d["p_below_median"]) for _, d in rows])
    is_open = ((p >= thr) == when_high) & (not uplift)
    # the gate follows each forecast until the next one, or until it is too old
    ends = np.minimum(np.append(t[1:], rec.t1), t + max_age)
    open_s = float(np.sum((ends - t)[is_open]))
    span_s = max(float(rec.t1 - t[0]), 1e-9)
    fired = [q for q in pulses if q.delivered and math.isfinite(q.fire_s)]

    def gate_at(x: float) -> str:
        i = int(np.searchsorted(t, x, side="right")) - 1
        if i < 0:
            return "before the first forecast"
        if uplift:
            return "uplift allocator"
        return "open" if is_open[i] and x <= ends[i] else "closed"

    where: dict[str, int] = {}
    for q in fired:
        k = f"{q.condition}, gate {gate_at(q.fire_s)}"
        where[k] = where.get(k, 0) + 1
    summary = next((d["forecast_gate"] for _, d in reversed(rec.markers.get("log", []))
                    if isinstance(d, dict) and isinstance(d.get("forecast_gate"), dict)), None)
    rule = f"p_below_median {'>=' if when_high else '<'} {thr:g}"
    table = [("forecasts", f"{len(p)} by model "
              f"{rows[0][1].get('model_version', '?')}, the first "
              f"{t[0] - rec.t0:.0f} s into the run"),
             ("p_below_median", f"{p.min():.3f} to {p.max():.3f} (median {np.median(p):.3f})")]
    if uplift:
        rule = "uplift_budget"
        table.append(("gate rule", "uplift_budget: each ripple's predicted recall gain "
                                   "against the pulse budget (forecasts only supply the "
                                   "stage features)"))
    else:
        table += [("gate rule", rule),
                  ("forecasts that opened the gate", f"{int(is_open.sum())} of {len(p)}"),
                  ("gate open", f"{100 * open_s / span_s:.0f} % of the time from the first "
                                "forecast to the end")]
    if summary is not None:
        held = summary.get("held_back", {}) or {}
        table.append(("detections the gate let through / held back",
                      f"{summary.get('allowed', 0)} / {sum(held.values())}"
                      + (" (" + ", ".join(f"{k} {v}"
                                          for k, v in sorted(held.items())) + ")"
                         if held else "")))
    table.append(("pulses delivered", ", ".join(f"{k}: {v}" for k, v in sorted(where.items()))
                  or "none"))
    sec.body = html_table(["", ""], table)
    scale, unit = time_unit(rec)
    fig = new_figure(9, 3.2)
    ax = fig.subplots(1, 1)
    x0 = rec.t0
    for a, b, o in zip(t, ends, is_open, strict=True):
        if o:
            ax.axvspan((a - x0) / scale, (b - x0) / scale, color="#2ca02c", alpha=0.15, lw=0)
    ax.step((np.append(t, rec.t1) - x0) / scale, np.append(p, p[-1]), where="post",
            color="k", lw=1.2, label="p_below_median (forecast)")
    ax.plot((t - x0) / scale, p, "k.", ms=5)
    if not uplift:
        ax.axhline(thr, color="#d62728", ls="--", lw=1, label=f"gate threshold ({rule})")
    for i, cond in enumerate(sorted({q.condition for q in fired})):
        ft = np.array([q.fire_s for q in fired if q.condition == cond])
        ax.plot((ft - x0) / scale, np.full(ft.size, -0.04 - 0.04 * i), "|", ms=8,
                color=color_for(cond, i), label=f"{cond} pulses")
    ax.set_ylim(-0.05 - 0.04 * max(len({q.condition for q in fired}), 1), 1.02)
    ax.set_xlim(0, (rec.t1 - x0) / scale)
    ax.set_xlabel(f"time since start ({unit})")
    ax.set_ylabel("P(below-median consolidation)")
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    sec.figures.append(FigureInfo(save(fig, out, "forecast-gate.png"), "Forecast gate",
                                  "The forecaster's decay probability (steps), the threshold, "
                                  "the spans where the gate was open (green) and the pulses "
                                  "delivered."))
    return sec
