"""Section "Memory trajectories": the simulated engram model (engramloop.memory) of this
run and of its sham twin, and forecasts (markers only).
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
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
    time_unit,
)
from engramloop.analysis.report.recording import Recording, ReportError, config_of
from engramloop.analysis.report.records import condition_of, memory_rows, num, numeric_series
from engramloop.recording import reader


@dataclass
class MemoryTrack:
    """The simulator's engram model over one session (stream ``engramloop.memory``).

    Attributes
    ----------
    label : str
        The session's condition ("stim", "sham", ...) or a name.
    sim_t : ndarray, shape (n,), seconds since the start of the session
    pooled : ndarray, shape (n,)
        Mean next-day recall over the memories (0-1), as the forecaster forecasts it.
    recall : dict of str to ndarray, shape (n,)
        Next-day recall of each memory.
    final : float
        Pooled recall at the end of the session (the ``"final"`` record, else the last).
    path : Path, optional
        The recording it came from.
    """

    label: str
    sim_t: np.ndarray
    pooled: np.ndarray
    recall: dict[str, np.ndarray]
    final: float
    path: Path | None = None


def memory_track(rows: Sequence[tuple[float, dict]], label: str,
                 path: Path | None = None) -> MemoryTrack | None:
    """A :class:`MemoryTrack` from ``engramloop.memory`` records; None without records."""
    good = [d for _, d in rows if math.isfinite(num(d.get("sim_t_s")))
            and math.isfinite(num(d.get("pooled"))) and isinstance(d.get("recall"), dict)]
    if not good:
        return None
    names = sorted({k for d in good for k in d["recall"]})
    final = [d for d in good if d.get("final")]
    return MemoryTrack(label, np.array([num(d["sim_t_s"]) for d in good]),
                       np.array([num(d["pooled"]) for d in good]),
                       {n: np.array([num(d["recall"].get(n)) for d in good]) for n in names},
                       num((final or good)[-1]["pooled"]), path)


def load_twin_memory(path: str | Path) -> tuple[MemoryTrack | None, dict]:
    """The memory track and the config of a sham-twin recording (only its memory stream
    is read, so a long twin costs little).

    Raises
    ------
    ReportError
        If the file is missing or not readable XDF.
    """
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"sham twin {path} not found")
    try:
        got = reader.read(path, streams=["engramloop.memory"])
    except reader.RecordingReadError as exc:
        raise ReportError(f"sham twin {exc}") from None
    rows = list(got.markers.get("memory", []))
    rows.sort(key=lambda r: r[0])
    _, config = config_of(got.config_text)
    return memory_track(rows, condition_of(config) or "sham", path), config


def _memory_figure(tracks: list[MemoryTrack], out: Path) -> FigureInfo:
    span = max(float(tr.sim_t[-1]) for tr in tracks)
    scale, unit = (60.0, "min") if span > 600 else (1.0, "s")
    fig = new_figure(9, 3.8)
    ax = fig.subplots(1, 1)
    for k, tr in enumerate(tracks):
        color = color_for(tr.label, k)
        style = "-" if k == 0 else "--"
        for series in tr.recall.values():
            ax.plot(tr.sim_t / scale, series, style, color=color, lw=0.6, alpha=0.35)
        ax.plot(tr.sim_t / scale, tr.pooled, style, color=color, lw=2,
                marker="." if tr.sim_t.size < 50 else None,
                label=f"{tr.label}{' (sham twin)' if k else ''}: pooled, final "
                      f"{tr.final:.3f}")
    ax.set_xlabel(f"time since start ({unit})")
    ax.set_ylabel("next-day recall (0-1)")
    ax.legend(fontsize=8)
    what = ("this run (solid) and its sham twin with the same seed (dashed)"
            if len(tracks) > 1 else "this run")
    return FigureInfo(save(fig, out, "memory.png"), "Memory trajectories",
                      f"The simulated engram model during the session, {what}: recall each "
                      "memory would have at the next-day test if the session ended at that "
                      "moment (thin lines, one per memory) and their mean (thick), recorded "
                      "every few seconds of signal in engramloop.memory.")


def section_memory(rec: Recording, out: Path, twin: str | Path | None = None) -> Section:
    sec = Section("memory", "Memory trajectories (simulated engram model) and forecasts")
    track = memory_track(rec.markers.get("memory", []), condition_of(rec.config) or "run",
                         rec.path)
    twin_track, twin_note = None, ""
    if track is not None and twin is not None:
        try:
            twin_track, twin_cfg = load_twin_memory(twin)
        except ReportError as exc:
            twin_note = f"{exc}."
        else:
            if twin_track is None:
                twin_note = f"Sham twin {Path(twin).name}: no engramloop.memory stream."
            elif twin_cfg.get("seed") != rec.config.get("seed"):
                twin_note = (f"Sham twin {Path(twin).name} has seed {twin_cfg.get('seed')}, "
                             f"this run {rec.config.get('seed')}: not a twin, compare with "
                             "care.")
    mem = {} if track is not None else numeric_series(memory_rows(rec), skip=("kind",))
    fc = numeric_series(rec.markers.get("forecasts", []))
    if track is None and not mem and not fc:
        sec.missing = ("Memory states (engramloop.memory, engramloop.truth) and forecasts "
                       "(engramloop.forecasts): not in this recording.")
        return sec
    if track is not None:
        tracks = [track] + ([twin_track] if twin_track is not None else [])
        sec.figures.append(_memory_figure(tracks, out))
        rows = [(tr.label, tr.path.name if tr.path else "", tr.sim_t.size,
                 fmt(float(tr.pooled[0]), 3), fmt(tr.final, 3)) for tr in tracks]
        if twin_track is not None:
            rows.append((f"{track.label} - {twin_track.label}", "", "",
                         fmt(float(track.pooled[0] - twin_track.pooled[0]), 3),
                         fmt(track.final - twin_track.final, 3)))
        sec.body += html_table(["condition", "recording", "states", "first pooled recall",
                            "final pooled recall"], rows)
        if twin_note:
            sec.body += f'<p class="missing">{html.escape(twin_note)}</p>'
        elif twin_track is None:
            sec.body += ("<p>Sham twin: not found (a simulated trial recorded with "
                         "<code>--report</code> writes it beside the run as "
                         "<code>NAME-sham-twin.xdf</code>).</p>")
    t0 = rec.t0
    scale, unit = time_unit(rec)
    for name, series, what in (("memory.png", mem, "simulated recall score"),
                               ("forecast.png", fc, "forecast")):
        if series is mem and track is not None:
            continue
        if not series:
            sec.body += (f"<p>{'Memory scores' if series is mem else 'Forecasts'}: "
                         "not in this recording.</p>")
            continue
        keys = list(series)[:12]
        fig = new_figure(9, 3.6)
        ax = fig.subplots(1, 1)
        for i, k in enumerate(keys):
            t, v = series[k]
            ax.plot((t - t0) / scale, v, marker="." if t.size < 50 else None, lw=1,
                    color=f"C{i % 10}", label=k)
        ax.set_xlabel(f"time since start ({unit})")
        ax.set_ylabel(what)
        ax.legend(fontsize=7, ncol=3)
        sec.figures.append(FigureInfo(save(fig, out, name),
                                      "Memory trajectories" if series is mem else "Forecasts",
                                      f"Every numeric field of the {what} records over time"
                                      + (f" (first 12 of {len(series)})"
                                         if len(series) > 12 else "") + "."))
    return sec
