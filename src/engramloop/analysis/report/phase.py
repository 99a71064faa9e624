"""Section "Stimulation phase": the rhythm's phase (zero-phase filter, Hilbert) at each
delivered pulse, from padded windows around the pulses; the two-click protocol's second
clicks apart; the simulator's own phase where recorded.

Phase convention (project-wide): degrees of cosine phase, 0 = positive peak, +-180 =
trough, wrapped to (-180, 180].
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from engramloop.analysis.report.page import (
    FigureInfo,
    Section,
    color_for,
    fmt,
    html_table,
    new_figure,
    save,
    slug,
)
from engramloop.analysis.report.recording import Recording
from engramloop.analysis.report.records import PulseRecord, merge_pulses, num
from engramloop.analysis.report.signals import (
    TARGET_PHASE,
    band_for,
    locked,
    pad_s,
    phase_and_envelope,
    pick_channel,
)
from engramloop.analysis.scoring import circular_mean_sd
from engramloop.core.angles import wrap_deg


def section_phase(rec: Recording, out: Path) -> tuple[Section, list[PulseRecord]]:
    sec = Section("phase", "Stimulation phase")
    pulses = merge_pulses(rec.markers.get("pulses", []))
    if not pulses:
        sec.missing = "Pulses (stream engramloop.pulses): not in this recording."
        return sec, pulses
    rows = []
    notes = []
    for target in sorted({p.target for p in pulses}):
        group = [p for p in pulses if p.target == target and p.delivered
                 and math.isfinite(p.fire_s)]
        if target not in TARGET_PHASE:
            notes.append(f"{len(group)} delivered pulse(s) with target '{html.escape(target)}'"
                         " are event-triggered, not phase-targeted: see the latency section.")
            continue
        rhythm, want = TARGET_PHASE[target]
        where = pick_channel(rec, rhythm)
        if where is None or not group:
            notes.append(f"target '{target}': no delivered pulses or no signal.")
            continue
        s, ci = where
        band = band_for(rec, rhythm, s.rate_hz, phase=True)
        fs = s.rate_hz

        def phase(x: np.ndarray, fs: float = fs, band: tuple = band) -> np.ndarray | None:
            pe = phase_and_envelope(x, band, fs)
            return None if pe is None else pe[0]

        at, got = locked(s, ci, [p.fire_s for p in group], 0, 0, {"phase": phase},
                         pad=pad_s(band))
        if got["phase"] is None:
            notes.append(f"target '{target}': {band[0]:g}-{band[1]:g} Hz cannot be filtered "
                         f"at {s.rate_hz:g} Hz / this length.")
            continue
        conds = sorted({p.condition for p in group}, key=lambda c: (c != "stim", c))
        panels = []
        for cond in conds:
            times = np.sort([p.fire_s for p in group if p.condition == cond])
            second = _second_clicks(rec, target, times)
            if second.any():
                panels.append((f"{cond}, first click", want, times[~second]))
                panels.append((f"{cond}, second click", math.nan, times[second]))
            else:
                panels.append((cond, want, times))
        fig = new_figure(4.0 * len(panels) + 0.5, 4.4)
        axes = [fig.add_subplot(1, len(panels), i + 1, projection="polar")
                for i in range(len(panels))]
        for ax, (cond, want, t) in zip(axes, panels, strict=True):
            j = np.clip(np.searchsorted(at, t), 0, max(at.size - 1, 0))
            found = (j < at.size) & (at[j] == t) if at.size else np.zeros(t.size, bool)
            ph = got["phase"][j[found], 0]
            mean, sd, r = circular_mean_sd(ph)
            tmean, tsd = _truth_stim_phase(rec, t, rhythm)
            bins = np.linspace(-np.pi, np.pi, 19)
            hist, _ = np.histogram(np.deg2rad(ph), bins)
            ax.bar(bins[:-1] + np.diff(bins) / 2, hist, width=np.diff(bins), bottom=0,
                   color=color_for(cond.split(",")[0]), alpha=0.75, edgecolor="white")
            if np.isfinite(mean):
                top = max(hist.max(), 1)
                ax.annotate("", xy=(math.radians(mean), r * top), xytext=(0, 0),
                            arrowprops={"arrowstyle": "->", "color": "k", "lw": 1.5})
            if math.isfinite(want):
                ax.plot([math.radians(want)] * 2, [0, max(hist.max(), 1)], color="gold", lw=2)
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
            ax.set_theta_zero_location("E")
            ax.set_thetagrids(range(0, 360, 45), ["0", "45", "90", "135", "+-180", "-135",
                                                  "-90", "-45"])
            ax.set_title(f"{cond}: n = {ph.size}\nmean {mean:.0f} deg, SD {sd:.0f} deg",
                         fontsize=9)
            rows.append((target, cond, s.channels[ci], f"{band[0]:g}-{band[1]:g}", ph.size,
                         fmt(want, 0), fmt(mean, 0), fmt(sd, 0), fmt(r, 2),
                         fmt(wrap_deg(mean - want), 0) if np.isfinite(mean - want) else "",
                         fmt(tmean, 0), fmt(tsd, 0)))
        name = save(fig, out, f"phase-{slug(target)}.png")
        sec.figures.append(FigureInfo(
            name, f"Stimulation phase, target {target}",
            f"{rhythm} phase on {s.channels[ci]} at each delivered pulse (device edge when "
            f"known, else send time), from a zero-phase {band[0]:g}-{band[1]:g} Hz filter and "
            "the Hilbert transform; 0 deg = peak, +-180 deg = trough. Arrow = circular mean "
            "(length = resultant R), gold line = intended phase. In the two-click protocol "
            "(Ngo et al. 2013) only the first click targets a phase; the second follows at a "
            "fixed interval and is shown apart."))
    sec.body = html_table(["target", "condition", "channel", "band (Hz)", "n", "intended (deg)",
                       "circular mean (deg)", "circular SD (deg)", "R", "error (deg)",
                       "true mean (deg)", "true SD (deg)"], rows) \
        + "".join(f"<p>{n}</p>" for n in notes)
    if not sec.figures and not notes:
        sec.missing = "No delivered phase-targeted pulse in this recording."
    return sec, pulses


def _second_clicks(rec: Recording, target: str, times: np.ndarray) -> np.ndarray:
    """Which of these sorted pulse times are the second click of a two-click sequence.

    Only when the recorded config has ``[policy] so_mode = "two_click"`` and the target is
    the SO up-state: a pulse ``click_interval_s`` (+-25 %) after a first click is a second
    click. Returns a boolean mask, all False otherwise.
    """
    pol = rec.config.get("policy", {}) if isinstance(rec.config, dict) else {}
    mask = np.zeros(times.size, bool)
    if target != "so_upstate" or not isinstance(pol, dict) or \
            pol.get("so_mode") != "two_click":
        return mask
    gap = num(pol.get("click_interval_s", 1.075))
    for k in range(1, times.size):
        if not mask[k - 1] and abs(times[k] - times[k - 1] - gap) <= 0.25 * gap:
            mask[k] = True
    return mask


def _truth_stim_phase(rec: Recording, fire_s: np.ndarray, rhythm: str
                      ) -> tuple[float, float]:
    """Circular mean and SD of the simulator's own generator phase at these pulses.

    The simulator records each delivered pulse as a truth event of kind ``"stim"`` whose
    ``meta["<rhythm>_phase_deg"]`` is the noise-free generator phase at that moment; a
    pulse is matched to the truth event starting within 5 ms of it. NaNs without truth.
    """
    stims = [(num(e.get("onset_s")), num((e.get("meta") or {}).get(f"{rhythm}_phase_deg")))
             for _, e in rec.markers.get("truth", []) if e.get("kind") == "stim"]
    stims = sorted(s for s in stims if math.isfinite(s[0]))
    if not stims or not fire_s.size:
        return math.nan, math.nan
    on = np.array([s[0] for s in stims])
    ph = np.array([s[1] for s in stims])
    j = np.clip(np.searchsorted(on, fire_s), 1, on.size - 1) if on.size > 1 else \
        np.zeros(fire_s.size, int)
    if on.size > 1:
        j = np.where(np.abs(on[j - 1] - fire_s) < np.abs(on[j] - fire_s), j - 1, j)
    ok = np.abs(on[j] - fire_s) <= 0.005
    mean, sd, _ = circular_mean_sd(ph[j[ok]])
    return mean, sd
