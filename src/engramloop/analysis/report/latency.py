"""Section "Latency per stage": histograms of each stage of the loop's timing from the
events and pulses streams (markers only), flagged when the run was on a simulated clock.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engramloop.analysis.report.page import FigureInfo, Section, html_table, new_figure, save
from engramloop.analysis.report.recording import Recording
from engramloop.analysis.report.records import PulseRecord, events_by_kind, num, truth_by_kind
from engramloop.analysis.report.signals import TARGET_PHASE


def section_latency(rec: Recording, out: Path, pulses: list[PulseRecord]) -> Section:
    sec = Section("latency", "Latency per stage")
    stages: list[tuple[str, np.ndarray]] = []
    truth = truth_by_kind(rec)
    for kind, evs in events_by_kind(rec).items():
        d = np.array([num(e.get("detect_s")) - num(e.get("onset_s")) for e in evs])
        stages.append((f"{kind}: onset -> decision", d))
        if truth.get(kind):
            ton = np.array(sorted(num(e.get("onset_s")) for e in truth[kind]))
            toff = np.array([num(e.get("offset_s")) for e in
                             sorted(truth[kind], key=lambda e: num(e.get("onset_s")))])
            det = np.array([num(e.get("detect_s")) for e in evs])
            j = np.searchsorted(ton, det, side="right") - 1
            ok = (j >= 0)
            ok[ok] &= det[ok] <= toff[j[ok]] + 0.05
            stages.append((f"{kind}: true onset -> decision", det[ok] - ton[j[ok]]))
    if pulses:
        sent = [p for p in pulses if math.isfinite(p.sent_s)]
        for target in sorted({p.target for p in sent}):
            wait = " (incl. planned wait for the phase)" if target in TARGET_PHASE else ""
            stages.append((f"{target}: decision -> command sent{wait}",
                           np.array([p.sent_s - p.detect_s for p in sent
                                     if p.target == target])))
        stages.append(("scheduler lateness (sent - intended)",
                       np.array([p.sent_s - p.intended_s for p in sent])))
        stages.append(("command -> device ack", np.array([p.ack_s - p.sent_s for p in sent])))
        stages.append(("command -> device output edge",
                       np.array([p.device_edge_s - p.sent_s for p in sent])))
    stages = [(n, v[np.isfinite(v)]) for n, v in stages]
    stages = [(n, v) for n, v in stages if v.size]
    if not stages:
        sec.missing = ("Detections and pulses (streams engramloop.events, "
                       "engramloop.pulses): not in this recording.")
        return sec
    simulated = all(np.all(v == 0.0) for n, v in stages if "->" in n and "onset" not in n
                    and "wait" not in n) and any("command" in n for n, _ in stages)
    if simulated:
        sec.body = ("<p><b>Simulated clock.</b> This run's pulse timings were taken on a "
                    "simulated clock (a <code>--speed max</code> run or a replay): sending, "
                    "acknowledgement and device edges take zero time there by construction, "
                    "so the command-path panels below are not a measurement of this "
                    "machine. Measure latency with a paced run on the rig "
                    "(<code>bench/hardware.py</code>, <code>bench/loop.py</code>).</p>")
    ncols = 2 if len(stages) > 3 else 1
    nrows = -(-len(stages) // ncols)
    fig = new_figure(6.0 * ncols, 1.9 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    rows = []
    for i, (ax, (name, v)) in enumerate(zip(axes, stages, strict=False)):
        ms = v * 1e3
        lo, hi = np.percentile(ms, [0, 99.5])
        if hi - lo < 1e-3:  # all values (nearly) equal: centre one bar in a 2 ms range
            lo, hi = lo - 1.0, hi + 1.0
        ax.hist(np.clip(ms, lo, hi), bins=np.linspace(lo, hi, 41), color=f"C{i % 10}")
        ax.ticklabel_format(axis="x", useOffset=False)
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        for q, ls in ((p50, "-"), (p99, "--")):
            ax.axvline(q, color="k", ls=ls, lw=0.8)
        ax.set_title(f"{name}\nmedian {p50:.2f} ms, p99 {p99:.2f} ms, n = {v.size}",
                     fontsize=8, loc="left")
        ax.set_ylabel("count")
        ax.set_xlabel("ms")
        rows.append((name, v.size, f"{p50:.2f}", f"{p95:.2f}", f"{p99:.2f}",
                     f"{ms.max():.2f}"))
    for ax in axes[len(stages):]:
        ax.set_visible(False)
    sec.figures.append(FigureInfo(save(fig, out, "latency.png"), "Latency histograms",
                                  "Per stage, in milliseconds; solid line = median, dashed = "
                                  "p99 (values above the 99.5th percentile are drawn in the "
                                  "last bin). 'true onset' uses the simulator's ground truth."))
    sec.body += html_table(["stage", "n", "median (ms)", "p95 (ms)", "p99 (ms)", "max (ms)"],
                       rows)
    return sec
