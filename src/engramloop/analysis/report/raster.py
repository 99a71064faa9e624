"""Section "Detections over the session": one row per kind (ticks, or densities per 30-s
epoch for long sessions) under the hypnogram, per-stage densities and agreement with
ground truth (markers only).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engramloop.analysis.report.page import (
    STAGE_COLORS,
    FigureInfo,
    Section,
    color_for,
    fmt,
    html_table,
    new_figure,
    save,
    time_unit,
)
from engramloop.analysis.report.recording import Recording
from engramloop.analysis.report.records import (
    STAGE_ORDER,
    PulseRecord,
    events_by_kind,
    kind_rhythm,
    num,
    stages_of,
    truth_by_kind,
)
from engramloop.analysis.scoring import MATCH_TOLERANCE_S, score_session, stage_density

#: above this length the raster shows detections per 30 s epoch instead of one tick each
#: (an 8-hour night has tens of thousands of events: ticks merge into a solid bar)
RASTER_TICKS_MAX_S = 1800.0


#: epoch of the density raster and the per-stage densities, seconds (sleep-scoring epoch,
#: AASM manual: 30 s)
EPOCH_S = 30.0


def stage_densities(events: dict[str, list[dict]], stages: Sequence[tuple[float, float, str]],
                    t0: float, t1: float) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Minutes spent in each stage (inside [t0, t1]) and detections per minute of each stage
    per kind (an event counts in the stage its decision falls in); stages with no time are
    left out."""
    minutes = {st: d["minutes"] for st, d in stage_density([], stages, t0, t1).items()}
    per = {kind: {st: d["per_min"] for st, d in stage_density(
        [num(e.get("detect_s")) for e in evs], stages, t0, t1).items()}
        for kind, evs in events.items()}
    return minutes, per


def stage_density_table(events: dict[str, list[dict]],
                        stages: Sequence[tuple[float, float, str]], t0: float,
                        t1: float) -> str:
    """HTML: detections per minute of each sleep stage, one row per kind."""
    minutes, per = stage_densities(events, stages, t0, t1)
    order = [st for st in STAGE_ORDER if st in minutes] + \
        sorted(st for st in minutes if st not in STAGE_ORDER)
    if not order or not per:
        return ""
    rows = [[kind] + [fmt(per[kind][st], 2) for st in order] for kind in sorted(per)]
    rows.append(["minutes in stage"] + [fmt(minutes[st], 1) for st in order])
    return ("<p>Detections per minute of each sleep stage (a detection counts in the stage "
            "its decision falls in):</p>" + html_table(["kind"] + order, rows))


def section_raster(rec: Recording, out: Path, pulses: list[PulseRecord]) -> Section:
    sec = Section("raster", "Detections over the session")
    events = events_by_kind(rec)
    truth = truth_by_kind(rec)
    stages = stages_of(rec)
    refusals = [t for t, d in rec.markers.get("governor", []) if d.get("approved") is False]
    if not (events or truth or pulses or stages):
        sec.missing = "Detections, pulses and ground truth: not in this recording."
        return sec
    t0 = rec.t0
    to_min, unit = time_unit(rec)
    rows: list[tuple[str, np.ndarray, str]] = []
    for kind in sorted(set(events) | set(truth)):
        if kind in truth:
            rows.append((f"{kind} (truth)", np.array([num(e.get("onset_s")) for e in
                                                      truth[kind]]), "0.6"))
        if kind in events:
            rows.append((f"{kind} detected", np.array([num(e.get("detect_s")) for e in
                                                       events[kind]]),
                         color_for(kind_rhythm(kind))))
    for cond in sorted({p.condition for p in pulses}):
        rows.append((f"pulses {cond}", np.array([p.fire_s if math.isfinite(p.fire_s)
                                                 else p.intended_s for p in pulses
                                                 if p.condition == cond and p.delivered]),
                     color_for(cond)))
    if refusals:
        rows.append(("refused", np.array(refusals), "k"))
    fig = new_figure(10, 1.2 + 0.35 * len(rows) + (0.9 if stages else 0.4))
    if stages:
        ax_h, ax = fig.subplots(2, 1, sharex=True,
                                gridspec_kw={"height_ratios": [1, max(len(rows), 1) * 0.5]})
        levels = {s: i for i, s in enumerate(STAGE_ORDER)}
        for on, off, st in stages:
            y = levels.get(st, -1)
            ax_h.fill_between([(on - t0) / to_min, (off - t0) / to_min], y - 0.4, y + 0.4,
                              color=STAGE_COLORS.get(st, "0.5"), lw=0)
        ax_h.set_yticks(range(len(STAGE_ORDER)), STAGE_ORDER, fontsize=7)
        ax_h.set_ylim(len(STAGE_ORDER) - 0.5, -0.5)
        ax_h.set_title("hypnogram (simulator ground truth)", fontsize=9, loc="left")
    else:
        ax = fig.subplots(1, 1)
    span_s = max(rec.t1 - t0, 1e-3)
    dense = span_s > RASTER_TICKS_MAX_S
    if dense:
        edges = np.arange(0.0, span_s + EPOCH_S, EPOCH_S)
        for i, (_label, t, color) in enumerate(rows):
            t = t[np.isfinite(t)]
            counts, _ = np.histogram(t - t0, edges)
            peak = max(int(counts.max()) if counts.size else 0, 1)
            # one bar per epoch, its height the epoch's count relative to the row's busiest
            ax.bar(edges[:-1] / to_min, 0.8 * counts / peak, width=EPOCH_S / to_min,
                   bottom=i + 0.9 - 0.8 * counts / peak, align="edge", color=color, lw=0)
            ax.text(span_s / to_min, i + 0.5, f" max {peak}/epoch", fontsize=6,
                    va="center")
    else:
        for i, (_label, t, color) in enumerate(rows):
            t = t[np.isfinite(t)]
            ax.vlines((t - t0) / to_min, i + 0.1, i + 0.9, color=color, lw=0.6)
    ax.set_yticks([i + 0.5 for i in range(len(rows))], [r[0] for r in rows], fontsize=8)
    ax.set_ylim(len(rows), 0)
    ax.set_xlim(0, span_s / to_min)
    ax.set_xlabel(f"time since start ({unit})")
    name = save(fig, out, "raster.png")
    what = (f"Events per {EPOCH_S:g} s epoch (bar height relative to the row's busiest "
            "epoch, whose count is printed on the right)" if dense else
            "One tick per detection, ground-truth event, delivered pulse and governor "
            "refusal")
    sec.figures.append(FigureInfo(name, "Detection raster and hypnogram",
                                  what + ("; top: sleep stages from the simulator's ground "
                                          "truth." if stages else
                                          "; hypnogram: not in this recording.")))
    if not stages:
        sec.body += "<p>Hypnogram (sleep stages in engramloop.truth): not in this recording.</p>"
    else:
        sec.body += stage_density_table(events, stages, rec.t0, rec.t1)
    scored = sorted(set(events) | ({"ripple", "spindle", "so"} & set(truth)))
    if truth and scored:
        # the one scoring module, as `engramloop score` scores this file and the trial
        # summary its run: from the detectors' calibration on
        dets = [e for _, e in rec.markers.get("events", []) if isinstance(e, dict)]
        recs = [e for _, e in rec.markers.get("truth", []) if isinstance(e, dict)]
        sc = score_session(dets, recs, rec.t1 - rec.t0, also=("ripple",), start_s=rec.t0)
        trows = []
        for kind in scored:
            m = sc.get(kind)
            if m is None:
                continue
            trows.append((kind, m["n_truth"], m["n_detected"], m["true_positives"],
                          fmt(m["precision"], 2), fmt(m["recall"], 2), fmt(m["f1"], 2),
                          fmt(m["latency_onset_median_s"] * 1e3, 1),
                          fmt(m["detected_per_min"], 2), fmt(m["truth_per_min"], 2)))
        tol = ", ".join(f"{k} {v * 1e3:g} ms" for k, v in MATCH_TOLERANCE_S.items())
        cal_end = sc.get("calibration_end_s")
        since = (f"from {cal_end - rec.t0:.1f} s (after detector calibration)"
                 if cal_end is not None else "over the whole recording")
        sec.body += ("<p>Agreement with ground truth, scored by "
                     "<code>analysis.scoring</code> as <code>engramloop score</code> scores "
                     "this file: a detection (from its onset to its decision) matches a true "
                     "event it overlaps, the event widened by a tolerance per kind "
                     f"({tol}); each true event is used once; {since}.</p>"
                     + html_table(["kind", "true events", "detections", "matched",
                               "precision", "recall", "F1", "median latency (ms)",
                               "detections/min", "true events/min"], trows))
    return sec
