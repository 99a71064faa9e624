"""Section "Event-triggered averages": the signal, its band-passed trace and a band
envelope averaged around up to MAX_AVERAGED_EVENTS detections per kind, from padded
windows around those detections only.
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
    slug,
)
from engramloop.analysis.report.recording import Recording
from engramloop.analysis.report.records import events_by_kind, kind_rhythm, lock_name, lock_time
from engramloop.analysis.report.signals import (
    BANDS_HZ,
    WINDOWS_S,
    band_for,
    bandpass,
    locked_moments,
    pad_s,
    phase_and_envelope,
    pick_channel,
    uv_scale,
)

MAX_AVERAGED_EVENTS = 400


def section_averages(rec: Recording, out: Path) -> Section:
    sec = Section("averages", "Event-triggered averages")
    events = events_by_kind(rec)
    if not events:
        sec.missing = "Detections (stream engramloop.events): not in this recording."
        return sec
    rows = []
    for kind in sorted(events, key=lambda k: (["ripple", "spindle", "so"] + [k]).index(k)):
        evs = events[kind]
        rhythm = kind_rhythm(kind)
        where = pick_channel(rec, rhythm)
        if where is None:
            continue
        s, ci = where
        before, after = WINDOWS_S.get(rhythm, (0.5, 0.5))
        band = band_for(rec, rhythm, s.rate_hz)
        # SO-locked: show spindle-band power too (SO-spindle coupling, Staresina et al.
        # 2015 Nat Neurosci 18:1679); ripple/spindle-locked: their own band envelope
        env_band = BANDS_HZ["spindle"] if rhythm == "so" else band
        times = np.array([lock_time(e) for e in evs])
        times = times[np.isfinite(times)]
        if times.size > MAX_AVERAGED_EVENTS:
            times = times[np.linspace(0, times.size - 1, MAX_AVERAGED_EVENTS).round()
                          .astype(int)]
        n_before = int(round(before * s.rate_hz))
        n_after = int(round(after * s.rate_hz))
        fs = s.rate_hz

        def envelope(x: np.ndarray, fs: float = fs) -> np.ndarray | None:
            pe = phase_and_envelope(x, env_band, fs)
            return None if pe is None else pe[1]

        n_avg, mom = locked_moments(s, ci, times, n_before, n_after,
                                    {"raw": lambda x: x,
                                     "band": lambda x, fs=fs: bandpass(x, band, fs),
                                     "env": envelope},
                                    pad=pad_s((min(band[0], env_band[0]), 0.0)),
                                    remove={"raw": "mean"})
        if n_avg == 0:
            continue
        lag = np.arange(-n_before, n_after + 1) / s.rate_hz
        k, unit = uv_scale(s.units)
        fig = new_figure(9, 4.2)
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        m, se = mom["raw"][0] * k, mom["raw"][1] * k / math.sqrt(n_avg)
        ax1.fill_between(lag, m - se, m + se, color="0.8", lw=0)
        ax1.plot(lag, m, color="k", lw=1, label="raw mean +- SEM")
        if mom["band"] is not None:
            ax1.plot(lag, mom["band"][0] * k, color=color_for(rhythm), lw=1,
                     label=f"{band[0]:g}-{band[1]:g} Hz mean")
        ax1.axvline(0, color="k", lw=0.5)
        ax1.set_ylabel(unit)
        ax1.legend(fontsize=7, loc="upper right")
        ax1.set_title(f"{kind}-locked average on {s.channels[ci]} (n = {n_avg})",
                      fontsize=10, loc="left")
        if mom["env"] is not None:
            ax2.plot(lag, mom["env"][0] * k,
                     color=color_for("spindle" if rhythm == "so" else rhythm))
            ax2.set_ylabel(f"{env_band[0]:g}-{env_band[1]:g} Hz\nenvelope ({unit})")
        else:
            ax2.text(0.5, 0.5, "band above Nyquist or recording too short", ha="center",
                     transform=ax2.transAxes)
        ax2.axvline(0, color="k", lw=0.5)
        ax2.set_xlabel(f"time from the {kind} detections' {lock_name(evs)} time (s)")
        name = save(fig, out, f"eta-{slug(kind)}.png")
        sec.figures.append(FigureInfo(name, f"{kind}-locked average",
                                      f"Average of the recording around {n_avg} {kind} "
                                      "detections (locked to the detector's peak time, else "
                                      "onset). Bottom: mean band envelope"
                                      + (" in the spindle band (SO-spindle coupling)."
                                         if rhythm == "so" else ".")))
        rows.append((kind, s.channels[ci], len(evs), n_avg))
    if not sec.figures:
        sec.missing = "No detection lies far enough inside the recorded signal to average."
    sec.body = html_table(["kind", "channel", "detections", "averaged"], rows)
    return sec
