"""Section "Spectrogram and hypnogram": a spectrogram of the scalp (else first) channel
built block by block over the whole night (a running aggregate: memory does not grow
with the night), under the hypnogram.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engramloop.analysis.report.page import (
    STAGE_COLORS,
    FigureInfo,
    Section,
    new_figure,
    save,
    time_unit,
)
from engramloop.analysis.report.raster import EPOCH_S, RASTER_TICKS_MAX_S
from engramloop.analysis.report.recording import Recording
from engramloop.analysis.report.records import STAGE_ORDER, stages_of
from engramloop.analysis.report.signals import RunningSpectrogram, pick_channel, uv_scale


def section_spectrogram(rec: Recording, out: Path) -> Section:
    """The night at a glance: a spectrogram of the scalp (else first) channel under the
    hypnogram, 0.5-30 Hz, in dB re 1 \u00b5V^2/Hz."""
    sec = Section("spectrogram", "Spectrogram and hypnogram")
    where = pick_channel(rec, "spindle") or (
        (rec.signals[0], 0) if rec.signals and rec.signals[0].n else None)
    if where is None:
        sec.missing = "A signal stream: not in this recording."
        return sec
    st, ci = where
    fs = st.rate_hz
    if not (fs > 0 and st.n >= 4 * fs):
        sec.missing = "At least 4 s of signal: not in this recording."
        return sec
    factor, ulabel = uv_scale(st.units)
    # 4-s windows, 50 % overlap, 0.5-30 Hz (what sleep scoring reads), accumulated block
    # by block over the whole channel
    spec = RunningSpectrogram(fs, int(4 * fs), 0.5, 30.0)
    for _, x in st.blocks(ci):
        spec.add(x * factor)
    f, tt, sxx = spec.result()
    per_epoch = st.t_last - st.t_first > RASTER_TICKS_MAX_S
    if per_epoch and tt.size:
        # a night: the mean spectrum per 30-s scoring epoch (AASM), one column each
        ep = np.floor(tt / EPOCH_S).astype(int)
        counts = np.bincount(ep)
        sums = np.stack([np.bincount(ep, weights=row, minlength=counts.size) for row in sxx])
        have = counts > 0
        sxx = sums[:, have] / counts[have]
        tt = (np.arange(counts.size)[have] + 0.5) * EPOCH_S
    to_min, unit = time_unit(rec)
    stages = stages_of(rec)
    fig = new_figure(10, 3.6 if stages else 2.8)
    if stages:
        ax_h, ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 3]})
        levels = {s: i for i, s in enumerate(STAGE_ORDER)}
        for on, off, sname in stages:
            y = levels.get(sname, -1)
            ax_h.fill_between([(on - rec.t0) / to_min, (off - rec.t0) / to_min], y - 0.4,
                              y + 0.4, color=STAGE_COLORS.get(sname, "0.5"), lw=0)
        ax_h.set_yticks(range(len(STAGE_ORDER)), STAGE_ORDER, fontsize=7)
        ax_h.set_ylim(len(STAGE_ORDER) - 0.5, -0.5)
    else:
        ax = fig.subplots(1, 1)
    off = st.t_first - rec.t0
    db = 10 * np.log10(np.maximum(sxx, 1e-12))
    lo, hi = np.percentile(db, [2, 98]) if db.size else (0.0, 1.0)
    mesh = ax.pcolormesh((tt + off) / to_min, f, db, shading="auto", vmin=lo, vmax=hi,
                         cmap="magma", rasterized=True)
    ax.set_ylabel("Hz")
    ax.set_xlabel(f"time since start ({unit})")
    ax.set_xlim(0, max(rec.t1 - rec.t0, 1e-3) / to_min)
    fig.colorbar(mesh, ax=[ax_h, ax] if stages else ax, pad=0.01,
                 label=f"dB re 1 {ulabel}\u00b2/Hz")
    what = (f"Channel {st.channels[ci]}, 0.5-30 Hz, 4 s windows with 50 % overlap"
            + (f", averaged per {EPOCH_S:g} s epoch" if per_epoch else "")
            + ("; top: sleep stages." if stages else "; hypnogram: not in this recording."))
    sec.figures.append(FigureInfo(save(fig, out, "spectrogram.png"), "Spectrogram", what))
    return sec
