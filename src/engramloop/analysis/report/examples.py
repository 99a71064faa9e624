"""Section "Example detections": raw and band-passed traces around a few detections per
kind, spread over the session (a padded window read for each).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engramloop.analysis.report.page import FigureInfo, Section, color_for, new_figure, save, slug
from engramloop.analysis.report.recording import Recording
from engramloop.analysis.report.records import (
    events_by_kind,
    kind_rhythm,
    lock_name,
    lock_time,
    num,
    truth_by_kind,
)
from engramloop.analysis.report.signals import (
    BANDS_HZ,
    WINDOWS_S,
    band_for,
    bandpass,
    pad_s,
    pick_channel,
    uv_scale,
)

EXAMPLES_PER_KIND = 4


def section_examples(rec: Recording, out: Path) -> Section:
    sec = Section("examples", "Example detections: raw and filtered traces")
    events = events_by_kind(rec)
    if not events:
        sec.missing = "Detections (stream engramloop.events): not in this recording."
        return sec
    if not rec.signals:
        sec.missing = "Raw signal: not in this recording."
        return sec
    truth = truth_by_kind(rec)
    for kind, evs in events.items():
        rhythm = kind_rhythm(kind)
        before, after = WINDOWS_S.get(rhythm, (0.5, 0.5))
        ok = []
        for e in evs:
            where = rec.find_channel(str(e.get("channel", ""))) or pick_channel(rec, rhythm)
            t = lock_time(e)
            if where and where[0].inside(t - before, t + after) and \
                    (before + after) * where[0].rate_hz >= 4:
                ok.append((e, where))
        if not ok:
            continue
        # evenly spread over the session: first, last and between (deterministic)
        idx = sorted(set(np.linspace(0, len(ok) - 1, min(EXAMPLES_PER_KIND, len(ok)))
                         .round().astype(int).tolist()))
        fig = new_figure(9, 1.9 * len(idx) + 0.6)
        axes = fig.subplots(len(idx), 1, squeeze=False)[:, 0]
        for ax, i in zip(axes, idx, strict=True):
            e, (s, ci) = ok[i]
            t_lock = lock_time(e)
            # filter a padded stretch so the edges of the shown window are clean
            pad = pad_s(BANDS_HZ.get(rhythm, (1.0, 1.0)))
            tt, xx = s.window(ci, t_lock - before - pad, t_lock + after + pad)
            tt = tt - t_lock
            k, unit = uv_scale(s.units)
            keep = (tt >= -before) & (tt <= after)
            ax.plot(tt[keep], (xx[keep] - np.mean(xx[keep])) * k, color="0.55", lw=0.7,
                    label="raw")
            band = band_for(rec, rhythm, s.rate_hz)
            yf = bandpass(xx, band, s.rate_hz)
            if yf is not None:
                ax.plot(tt[keep], yf[keep] * k, color=color_for(rhythm), lw=1.0,
                        label=f"{band[0]:g}-{band[1]:g} Hz")
            for tr in truth.get(kind, ()):
                on, off = num(tr.get("onset_s")) - t_lock, num(tr.get("offset_s")) - t_lock
                if off > -before and on < after:
                    ax.axvspan(max(on, -before), min(off, after), color="gold", alpha=0.25,
                               lw=0, label="truth")
            for key, style in (("onset_s", ":"), ("detect_s", "-")):
                v = num(e.get(key)) - t_lock
                if -before <= v <= after:
                    ax.axvline(v, color="k", ls=style, lw=0.8,
                               label="onset" if key == "onset_s" else "decision")
            ax.set_xlim(-before, after)
            ax.set_ylabel(unit)
            ax.set_title(f"{kind} on {s.channels[ci]} at {t_lock - rec.t0:.2f} s "
                         f"(score {num(e.get('score')):.2g})", fontsize=9, loc="left")
            handles, labels = ax.get_legend_handles_labels()
            uniq = dict(zip(labels, handles, strict=True))
            ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper right", ncol=5)
        axes[-1].set_xlabel(f"time from the detector's {lock_name([e for e, _ in ok])} "
                            "time (s)")
        name = save(fig, out, f"examples-{slug(kind)}.png")
        sec.figures.append(FigureInfo(name, f"Example {kind} detections",
                                      f"{len(idx)} of {len(evs)} {kind} detections, spread "
                                      "over the session: raw (grey, mean removed) and "
                                      "zero-phase band-passed trace; dotted line = detector "
                                      "onset, solid = decision sample; yellow = simulator "
                                      "ground truth where recorded."))
    if not sec.figures:
        sec.missing = "No detection lies far enough inside the recorded signal to plot."
    return sec
