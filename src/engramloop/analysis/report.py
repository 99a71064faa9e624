"""Session reports: an HTML page with PNG figures, made from one XDF recording only.

:func:`write_report` reads the recording with pyxdf (the raw signal stream(s) and the JSON
marker streams ``engramloop.events``, ``.pulses``, ``.governor``, ``.forecasts``,
``.truth``, ``.memory`` and ``.log``) and writes ``index.html`` plus one PNG per figure into
a folder. Nothing else is consulted (except, for a simulated trial, the memory stream of its
sham twin's recording beside it), so any session can be re-reported later. A stream that is
not in the recording turns its section into a short "not in this recording" note.

File names are fixed per figure kind (``examples-ripple.png``, ``phase-so_upstate.png``,
...), the page carries no generation time and the PNGs no software tag, so reporting the
same recording twice gives identical files. The page uses no scripts, fonts or styles from
the network: it opens offline.

Offline analysis here uses zero-phase filters (``scipy.signal.sosfiltfilt``) and the
Hilbert transform on whole channels: that is right for a report (it sees the future) and
is exactly what the online loop cannot do, so the report is an independent check of it.

Phase convention (project-wide): degrees of cosine phase, 0 = positive peak, +-180 =
trough, wrapped to (-180, 180].
"""
from __future__ import annotations

import dataclasses
import html
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from engramloop.analysis.scoring import circular_mean_sd
from engramloop.decoders.phase import wrap_deg
from engramloop.recording import reader
from engramloop.recording.reader import SignalStream
from engramloop.recording.schema import MARKER_STREAMS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


#: Band (Hz) and display window (s before, s after) used offline per event kind. Bands
#: follow the simulator's defaults and the usual detector bands: ripples 150-250 Hz
#: (Buzsaki 2015, Hippocampus 25:1073), spindles 11-16 Hz (AASM spindle range, as in
#: YASA), slow oscillations below 1.25 Hz (Molle et al. 2002 J Neurosci 22:10941 use
#: <1 Hz; 0.5-1.25 Hz keeps a usable filter length), theta 4-12 Hz.
BANDS_HZ = {"ripple": (150.0, 250.0), "spindle": (11.0, 16.0), "so": (0.5, 1.25),
            "theta": (4.0, 12.0)}
WINDOWS_S = {"ripple": (0.15, 0.15), "spindle": (1.5, 1.5), "so": (1.5, 2.0),
             "theta": (0.5, 0.5)}
#: Stimulation target -> (rhythm whose phase matters, intended phase in degrees).
TARGET_PHASE = {"so_upstate": ("so", 0.0), "spindle": ("spindle", 0.0),
                "theta_peak": ("theta", 0.0), "theta_trough": ("theta", 180.0)}
#: Channel name prefixes marking hippocampal LFP (as in sim.settings.SimSettings).
LFP_PREFIXES = ("CA", "HPC", "LFP", "DG")
#: Scalp channels preferred for sleep rhythms, in order (central first: spindles and SOs
#: are large fronto-centrally).
EEG_PREFERENCE = ("Cz", "C3", "C4", "Fz", "FCz", "Pz", "EEG")
STAGE_ORDER = ("wake", "REM", "N1", "N2", "N3")
MAX_AVERAGED_EVENTS = 400
#: the one spelling of microvolts in figures and tables
UV = "\u00b5V"
#: above this length the raster shows detections per 30 s epoch instead of one tick each
#: (an 8-hour night has tens of thousands of events: ticks merge into a solid bar)
RASTER_TICKS_MAX_S = 1800.0
#: epoch of the density raster and the per-stage densities, seconds (sleep-scoring epoch,
#: AASM manual: 30 s)
EPOCH_S = 30.0
EXAMPLES_PER_KIND = 4


class ReportError(RuntimeError):
    """The recording cannot be read (missing, not XDF, no usable stream)."""


# ----------------------------------------------------------------------------- loading
@dataclass
class Recording:
    """Everything the report reads from one XDF file."""

    path: Path
    signals: list[SignalStream]
    markers: dict[str, list[tuple[float, dict]]]
    config_text: str = ""
    config: dict = field(default_factory=dict)
    datetime: str = ""

    @property
    def t0(self) -> float:
        """Session start, seconds (host clock): the first signal sample, else the first
        marker."""
        starts = [s.t[0] for s in self.signals if s.t.size] or \
            [m[0][0] for m in self.markers.values() if m]
        return float(min(starts)) if starts else 0.0

    @property
    def t1(self) -> float:
        """Session end, seconds: the last signal sample, else the last marker."""
        ends = [s.t[-1] for s in self.signals if s.t.size] or \
            [m[-1][0] for m in self.markers.values() if m]
        return float(max(ends)) if ends else 0.0

    def find_channel(self, name: str) -> tuple[SignalStream, int] | None:
        for s in self.signals:
            if name in s.channels:
                return s, s.channels.index(name)
        return None


def _config_of(text: str) -> tuple[str, dict]:
    """The effective config a recording carries: its TOML text and the parsed table ({}
    when absent or unreadable)."""
    try:
        return str(text), (tomllib.loads(text) if text else {})
    except tomllib.TOMLDecodeError:
        return str(text), {}


_first = reader.first


def load_recording(path: str | Path) -> Recording:
    """Read an engramloop XDF file (through :func:`engramloop.recording.reader.read`).

    Raises
    ------
    ReportError
        If the file is missing or is not a readable XDF file.
    """
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"recording {path} not found (give the .xdf file written by "
                          "engramloop run/replay)")
    from engramloop.core.chunk import SourceError
    from engramloop.drivers.files import check_xdf

    try:  # a file cut short (copy interrupted, disk full) is named with its byte offset
        check_xdf(path)
    except SourceError as exc:
        why = str(exc).removeprefix(f"{path}: ")
        raise ReportError(f"recording {path} is not a readable XDF file: {why}") from None
    except OSError as exc:
        raise ReportError(f"recording {path}: cannot read it ({exc.strerror})") from None
    try:
        got = reader.read(path)
    except reader.RecordingReadError as exc:
        raise ReportError(f"recording {exc}") from None
    signals = [dataclasses.replace(st, units=st.units or "V") for st in got.signals]
    markers = got.markers
    if "truth" in markers:
        markers["truth"] = expand_truth(markers["truth"])
        markers["truth"].sort(key=lambda r: r[0])
    config_text, config = _config_of(got.config_text)
    return Recording(path, signals, markers, config_text, config,
                     str(_first(got.header, "info", "datetime") or ""))


def expand_truth(rows: Sequence[tuple[float, dict]]) -> list[tuple[float, dict]]:
    """Unpack whole ground-truth documents in the truth stream into single records.

    A truth document (``sim.truth.Truth.to_json``, ``"format": "engramloop.truth/1"``),
    either as the record itself or as a JSON string/object under ``"truth"`` in a record
    of kind ``"truth_document"``, holds every event as ``[kind, channel, onset, peak,
    offset, meta]`` and the stage segments as ``[starts, ends, labels]``, in sim seconds
    since ``t0_s``. The segments become ``{"kind": "stage", "stage", "onset_s",
    "offset_s"}`` records on the host clock, the memory state one ``{"kind": "memory"}``
    record, and the events TruthEvent-like dicts -- unless the stream already holds the
    events one by one (then they are not duplicated). Other records pass through.
    """
    docs: list[tuple[float, dict]] = []
    out: list[tuple[float, dict]] = []
    for t, d in rows:
        doc = d.get("truth") if d.get("kind") == "truth_document" else d
        if isinstance(doc, str):
            try:
                doc = json.loads(doc)
            except ValueError:
                doc = None
        if isinstance(doc, dict) and doc.get("format") == "engramloop.truth/1":
            docs.append((t, doc))
        else:
            out.append((t, d))
    has_events = any(math.isfinite(_num(d.get("onset_s"))) and d.get("kind") not in
                     ("stage", "memory") for _, d in out)
    for t, d in docs:
        t0 = _num(d.get("t0_s"))
        t0 = t0 if math.isfinite(t0) else 0.0
        for rec in () if has_events else d.get("records", ()):
            try:
                kind, ch, on, pk, off, meta = rec
                out.append((t0 + float(on), {"kind": kind, "channel": ch,
                                             "onset_s": t0 + float(on),
                                             "peak_s": t0 + float(pk),
                                             "offset_s": t0 + float(off), "meta": meta}))
            except (TypeError, ValueError):
                continue
        seg = d.get("segments") or [[], [], []]
        for on, off, stage in zip(*seg, strict=False):
            out.append((t0 + float(on), {"kind": "stage", "stage": str(stage),
                                         "onset_s": t0 + float(on),
                                         "offset_s": t0 + float(off)}))
        if isinstance(d.get("memory"), dict) and d["memory"]:
            out.append((t, {"kind": "memory", **d["memory"]}))
    return out


# ----------------------------------------------------------------------------- analysis
def _bandpass(x: np.ndarray, band: tuple[float, float], fs: float) -> np.ndarray | None:
    """Zero-phase band-pass (4th-order Butterworth run forwards and backwards); None if
    the band does not fit below Nyquist or the signal is too short."""
    from scipy.signal import butter, sosfiltfilt

    lo, hi = band
    if hi >= 0.45 * fs:
        return None
    sos = butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")
    if x.shape[0] <= 3 * (2 * sos.shape[0] + 1) * 4 or x.shape[0] < int(2 * fs / lo):
        return None
    return sosfiltfilt(sos, x, axis=0)


def _signal_phase_deg(x: np.ndarray, band: tuple[float, float], fs: float
                      ) -> tuple[np.ndarray, np.ndarray] | None:
    """Cosine phase (degrees, 0 = peak) and amplitude envelope of ``x`` in ``band``."""
    from scipy.signal import hilbert

    y = _bandpass(x, band, fs)
    if y is None:
        return None
    z = hilbert(y)
    return np.degrees(np.angle(z)), np.abs(z)


def _lfp(name: str) -> bool:
    return name.upper().startswith(LFP_PREFIXES)


def pick_channel(rec: Recording, rhythm: str) -> tuple[SignalStream, int] | None:
    """The channel a rhythm is best looked at on.

    Uses ``[detectors.<kind>] channels`` from the recorded config when present, else the
    first hippocampal channel for ripples/theta and a central scalp channel for
    spindles/slow oscillations, else the first channel.
    """
    det = rec.config.get("detectors", {}) if isinstance(rec.config, dict) else {}
    sub = det.get(rhythm, {}) if isinstance(det, dict) else {}
    for name in (sub.get("channels", ()) if isinstance(sub, dict) else ()):
        hit = rec.find_channel(str(name))
        if hit:
            return hit
    names = [c for s in rec.signals for c in s.channels]
    if not names:
        return None
    if rhythm in ("ripple", "theta"):
        cands = [c for c in names if _lfp(c)]
    else:
        eeg = [c for c in names if not _lfp(c)]
        cands = sorted(eeg, key=lambda c: next((i for i, p in enumerate(EEG_PREFERENCE)
                                                 if c.startswith(p)), len(EEG_PREFERENCE)))
    return rec.find_channel((cands or names)[0])


def _band_for(rec: Recording, rhythm: str, fs: float, *, phase: bool = False
              ) -> tuple[float, float]:
    """The band (Hz) the recorded config's detector used for ``rhythm`` (its
    ``phase_band_hz`` first when ``phase``), else :data:`BANDS_HZ`."""
    det = rec.config.get("detectors", {}) if isinstance(rec.config, dict) else {}
    sub = det.get(rhythm, {}) if isinstance(det, dict) else {}
    keys = ("phase_band_hz", "band_hz", "sigma_band_hz") if phase else \
        ("band_hz", "sigma_band_hz")
    for key in keys:
        band = sub.get(key) if isinstance(sub, dict) else None
        if isinstance(band, list) and len(band) == 2 and 0 < band[0] < band[1] < fs / 2:
            return float(band[0]), float(band[1])
    return BANDS_HZ.get(rhythm, (1.0, min(40.0, 0.4 * fs)))


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


@dataclass
class PulseRecord:
    """One pulse merged from the pulses stream (Pulse dicts and Delivery dicts)."""

    pulse_id: int
    target: str = ""
    condition: str = "stim"
    modality: str = ""
    detect_s: float = math.nan
    intended_s: float = math.nan
    deadline_s: float = math.nan
    sent_s: float = math.nan
    ack_s: float = math.nan
    device_edge_s: float = math.nan
    statuses: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return any(s in ("sent", "acked") for s in self.statuses) or (
            not self.statuses and math.isfinite(self.sent_s))

    @property
    def fire_s(self) -> float:
        """Best estimate of when the stimulus happened: device edge, else send time."""
        return self.device_edge_s if math.isfinite(self.device_edge_s) else self.sent_s


def merge_pulses(rows: Sequence[tuple[float, dict]]) -> list[PulseRecord]:
    """Merge Pulse and Delivery records of the pulses stream by ``pulse_id``.

    Accepts flat Pulse dicts (``pulse_id``, ``target``, ``spec``, ``intended_s``...),
    Delivery dicts (``pulse_id``, ``output``, ``status``, ``sent_s``...), and wrappers
    ``{"pulse": {...}, "delivery": {...}}`` / ``{"deliveries": [...]}``.
    """
    out: dict[int, PulseRecord] = {}

    def take(d: dict, t: float) -> None:
        if not isinstance(d, dict):
            return
        outer_id = d.get("pulse_id", _first(d, "pulse", "pulse_id"))
        for key in ("pulse", "delivery"):
            if isinstance(d.get(key), dict):
                inner = dict(d[key])
                inner.setdefault("pulse_id", outer_id)
                take(inner, t)
        for dl in d.get("deliveries", ()) if isinstance(d.get("deliveries"), list) else ():
            if isinstance(dl, dict):
                dl = dict(dl)
                dl.setdefault("pulse_id", outer_id)
                take(dl, t)
        pid = d.get("pulse_id")
        if pid is None or isinstance(d.get("pulse"), dict):
            return
        try:
            pid = int(pid)
        except (TypeError, ValueError):
            return
        p = out.setdefault(pid, PulseRecord(pid))
        if d.get("target"):
            p.target = str(d["target"])
        if d.get("condition"):
            p.condition = str(d["condition"])
        spec = d.get("spec")
        if isinstance(spec, dict) and spec.get("modality"):
            p.modality = str(spec["modality"])
        elif d.get("modality"):
            p.modality = str(d["modality"])
        for k in ("detect_s", "intended_s", "deadline_s"):
            if math.isfinite(_num(d.get(k))):
                setattr(p, k, _num(d[k]))
        if "status" in d:
            p.statuses.append(str(d["status"]))
            if d.get("reason"):
                p.reasons.append(str(d["reason"]))
            for k in ("sent_s", "ack_s", "device_edge_s"):
                v = _num(d.get(k))
                if math.isfinite(v) and not math.isfinite(getattr(p, k)):
                    setattr(p, k, v)

    for t, d in rows:
        take(d, t)
    return [out[k] for k in sorted(out)]


# ----------------------------------------------------------------------------- figures
@dataclass
class FigureInfo:
    file: str
    title: str
    caption: str


@dataclass
class Section:
    key: str
    title: str
    figures: list[FigureInfo] = field(default_factory=list)
    body: str = ""
    missing: str = ""


_COLORS = {"ripple": "#1f77b4", "spindle": "#2ca02c", "so": "#d62728", "theta": "#9467bd",
           "stim": "#d62728", "sham": "#7f7f7f", "yoked-random": "#ff7f0e"}
_STAGE_COLORS = {"wake": "#f2c14e", "REM": "#f78154", "N1": "#b4d2e7", "N2": "#5d9cec",
                 "N3": "#1c3f95"}


def _color(key: str, i: int = 0) -> str:
    return _COLORS.get(key, f"C{i % 10}")


def _new_figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _save(fig: Any, out: Path, name: str) -> str:
    # no Software tag: identical input gives byte-identical PNGs
    fig.savefig(out / name, format="png", metadata={"Software": None})
    return name


def _window(rec: Recording, where: tuple[SignalStream, int], t_s: float,
            before_s: float, after_s: float) -> tuple[np.ndarray, np.ndarray] | None:
    s, ci = where
    i0 = int(np.searchsorted(s.t, t_s - before_s))
    i1 = int(np.searchsorted(s.t, t_s + after_s))
    if i1 - i0 < 4 or i0 <= 0 or i1 >= s.t.size:
        return None
    return s.t[i0:i1] - t_s, s.x[i0:i1, ci]


def _scale(units: str) -> tuple[float, str]:
    """Factor and label to plot values stored in ``units`` as microvolts when possible."""
    u = units.strip().lower().replace("µ", "u").replace("μ", "u")
    if u in ("v", "volt", "volts", ""):
        return 1e6, UV
    if u in ("mv", "millivolt", "millivolts"):
        return 1e3, UV
    if u in ("uv", "microvolt", "microvolts"):
        return 1.0, UV
    return 1.0, units


def _lock_name(evs: Sequence[dict]) -> str:
    """What :func:`_lock_time` locks these events to, for axis labels."""
    has_peak = [math.isfinite(_num(e.get("peak_s"))) for e in evs]
    if all(has_peak):
        return "peak"
    return "onset" if not any(has_peak) else "peak (onset where unknown)"


def _lock_time(ev: dict) -> float:
    for k in ("peak_s", "onset_s", "detect_s"):
        v = _num(ev.get(k))
        if math.isfinite(v):
            return v
    return math.nan


def _events_by_kind(rec: Recording) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t, e in rec.markers.get("events", []):
        kind = str(e.get("kind", "event"))
        if kind.startswith("calibration"):  # detector status records, not detections
            continue
        e = dict(e)
        if not math.isfinite(_num(e.get("detect_s"))):
            e["detect_s"] = t
        out.setdefault(kind, []).append(e)
    return dict(sorted(out.items()))


def _truth_by_kind(rec: Recording) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for _, e in rec.markers.get("truth", []):
        kind = e.get("kind")
        if kind and math.isfinite(_num(e.get("onset_s"))) and not e.get("stage"):
            out.setdefault(str(kind), []).append(e)
    return dict(sorted(out.items()))


def _stages(rec: Recording) -> list[tuple[float, float, str]]:
    """Sleep stages from the truth stream: records with a ``stage`` and a time span
    (``onset_s``/``offset_s``), or stage-change records (``stage`` at ``t_s``)."""
    spans, changes = [], []
    for t, e in rec.markers.get("truth", []):
        stage = e.get("stage") or (e.get("label") if e.get("kind") in ("stage", "hypnogram")
                                   else None)
        if not stage:
            continue
        on, off = _num(e.get("onset_s")), _num(e.get("offset_s"))
        if math.isfinite(on) and math.isfinite(off):
            spans.append((on, off, str(stage)))
        else:
            changes.append((_num(e.get("t_s", t)), str(stage)))
    if not spans and changes:
        changes.sort()
        ends = [c[0] for c in changes[1:]] + [rec.t1]
        spans = [(t, e, s) for (t, s), e in zip(changes, ends, strict=True)]
    if not spans:
        spans = _stages_from_config(rec)
    return sorted(spans)


def _stages_from_config(rec: Recording) -> list[tuple[float, float, str]]:
    """The simulator's stage schedule rebuilt from the recorded ``[sim.hypnogram]``
    config when it is a fixed schedule and the run's source was the simulator: segments
    ``"STAGE:seconds"`` repeat from the first recorded sample (the simulator's sample 0).
    Generated ("night") hypnograms are not rebuilt: they need stage records in the truth
    stream."""
    cfg = rec.config if isinstance(rec.config, dict) else {}
    if cfg.get("source", {}).get("kind", "sim") != "sim" or not rec.signals \
            or not len(rec.signals[0].t):
        return []
    hyp = cfg.get("sim", {}).get("hypnogram", {})
    if not isinstance(hyp, dict) or hyp.get("mode", "fixed") != "fixed" \
            or "schedule" not in hyp:
        return []
    segs = []
    for item in hyp["schedule"]:
        stage, _, dur = str(item).partition(":")
        if _num(dur) > 0:
            segs.append((stage, _num(dur)))
    if not segs:
        return []
    t, out, i = rec.signals[0].t[0], [], 0
    while t < rec.t1 and i < 100000:
        stage, dur = segs[i % len(segs)]
        out.append((t, t + dur, stage))
        t += dur
        i += 1
    return out


def _kind_rhythm(kind: str) -> str:
    return {"so": "so", "slow_oscillation": "so", "spindle": "spindle", "ripple": "ripple",
            "theta_burst": "theta"}.get(kind, kind)


def section_examples(rec: Recording, out: Path) -> Section:
    sec = Section("examples", "Example detections: raw and filtered traces")
    events = _events_by_kind(rec)
    if not events:
        sec.missing = "Detections (stream engramloop.events): not in this recording."
        return sec
    if not rec.signals:
        sec.missing = "Raw signal: not in this recording."
        return sec
    truth = _truth_by_kind(rec)
    for kind, evs in events.items():
        rhythm = _kind_rhythm(kind)
        before, after = WINDOWS_S.get(rhythm, (0.5, 0.5))
        ok = []
        for e in evs:
            where = rec.find_channel(str(e.get("channel", ""))) or pick_channel(rec, rhythm)
            if where and _window(rec, where, _lock_time(e), before, after) is not None:
                ok.append((e, where))
        if not ok:
            continue
        # evenly spread over the session: first, last and between (deterministic)
        idx = sorted(set(np.linspace(0, len(ok) - 1, min(EXAMPLES_PER_KIND, len(ok)))
                         .round().astype(int).tolist()))
        fig = _new_figure(9, 1.9 * len(idx) + 0.6)
        axes = fig.subplots(len(idx), 1, squeeze=False)[:, 0]
        for ax, i in zip(axes, idx, strict=True):
            e, (s, ci) = ok[i]
            t_lock = _lock_time(e)
            # filter a padded stretch so the edges of the shown window are clean
            pad = max(3.0 / BANDS_HZ.get(rhythm, (1.0, 1.0))[0], 1.0)
            i0 = max(int(np.searchsorted(s.t, t_lock - before - pad)), 0)
            i1 = min(int(np.searchsorted(s.t, t_lock + after + pad)), s.t.size)
            tt, xx = s.t[i0:i1] - t_lock, s.x[i0:i1, ci]
            k, unit = _scale(s.units)
            keep = (tt >= -before) & (tt <= after)
            ax.plot(tt[keep], (xx[keep] - np.mean(xx[keep])) * k, color="0.55", lw=0.7,
                    label="raw")
            band = _band_for(rec, rhythm, s.rate_hz)
            yf = _bandpass(xx, band, s.rate_hz)
            if yf is not None:
                ax.plot(tt[keep], yf[keep] * k, color=_color(rhythm), lw=1.0,
                        label=f"{band[0]:g}-{band[1]:g} Hz")
            for tr in truth.get(kind, ()):
                on, off = _num(tr.get("onset_s")) - t_lock, _num(tr.get("offset_s")) - t_lock
                if off > -before and on < after:
                    ax.axvspan(max(on, -before), min(off, after), color="gold", alpha=0.25,
                               lw=0, label="truth")
            for key, style in (("onset_s", ":"), ("detect_s", "-")):
                v = _num(e.get(key)) - t_lock
                if -before <= v <= after:
                    ax.axvline(v, color="k", ls=style, lw=0.8,
                               label="onset" if key == "onset_s" else "decision")
            ax.set_xlim(-before, after)
            ax.set_ylabel(unit)
            ax.set_title(f"{kind} on {s.channels[ci]} at {t_lock - rec.t0:.2f} s "
                         f"(score {_num(e.get('score')):.2g})", fontsize=9, loc="left")
            handles, labels = ax.get_legend_handles_labels()
            uniq = dict(zip(labels, handles, strict=True))
            ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper right", ncol=5)
        axes[-1].set_xlabel(f"time from the detector's {_lock_name([e for e, _ in ok])} "
                            "time (s)")
        name = _save(fig, out, f"examples-{_slug(kind)}.png")
        sec.figures.append(FigureInfo(name, f"Example {kind} detections",
                                      f"{len(idx)} of {len(evs)} {kind} detections, spread "
                                      "over the session: raw (grey, mean removed) and "
                                      "zero-phase band-passed trace; dotted line = detector "
                                      "onset, solid = decision sample; yellow = simulator "
                                      "ground truth where recorded."))
    if not sec.figures:
        sec.missing = "No detection lies far enough inside the recorded signal to plot."
    return sec


def _time_unit(rec: Recording) -> tuple[float, str]:
    """Seconds per unit and its name for session-long time axes (minutes past 10 min)."""
    return (60.0, "min") if rec.t1 - rec.t0 > 600 else (1.0, "s")


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s) or "x"


def section_averages(rec: Recording, out: Path) -> Section:
    sec = Section("averages", "Event-triggered averages")
    events = _events_by_kind(rec)
    if not events:
        sec.missing = "Detections (stream engramloop.events): not in this recording."
        return sec
    rows = []
    for kind in sorted(events, key=lambda k: (["ripple", "spindle", "so"] + [k]).index(k)):
        evs = events[kind]
        rhythm = _kind_rhythm(kind)
        where = pick_channel(rec, rhythm)
        if where is None:
            continue
        s, ci = where
        before, after = WINDOWS_S.get(rhythm, (0.5, 0.5))
        x = s.x[:, ci]
        band = _band_for(rec, rhythm, s.rate_hz)
        yf = _bandpass(x, band, s.rate_hz)
        # SO-locked: show spindle-band power too (SO-spindle coupling, Staresina et al.
        # 2015 Nat Neurosci 18:1679); ripple/spindle-locked: their own band envelope
        env_band = BANDS_HZ["spindle"] if rhythm == "so" else band
        pe = _signal_phase_deg(x, env_band, s.rate_hz)
        times = np.array([_lock_time(e) for e in evs])
        times = times[np.isfinite(times)]
        if times.size > MAX_AVERAGED_EVENTS:
            times = times[np.linspace(0, times.size - 1, MAX_AVERAGED_EVENTS).round()
                          .astype(int)]
        n_before = int(round(before * s.rate_hz))
        n_after = int(round(after * s.rate_hz))
        centers = np.searchsorted(s.t, times)
        centers = centers[(centers - n_before > 0) & (centers + n_after < s.t.size)]
        if centers.size == 0:
            continue
        offs = np.arange(-n_before, n_after + 1)
        idx = centers[:, None] + offs[None, :]
        lag = offs / s.rate_hz
        k, unit = _scale(s.units)
        raw = x[idx] - np.mean(x[idx], axis=1, keepdims=True)
        fig = _new_figure(9, 4.2)
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        m, se = raw.mean(0) * k, raw.std(0) * k / math.sqrt(max(len(centers), 1))
        ax1.fill_between(lag, m - se, m + se, color="0.8", lw=0)
        ax1.plot(lag, m, color="k", lw=1, label="raw mean +- SEM")
        if yf is not None:
            ax1.plot(lag, yf[idx].mean(0) * k, color=_color(rhythm), lw=1,
                     label=f"{band[0]:g}-{band[1]:g} Hz mean")
        ax1.axvline(0, color="k", lw=0.5)
        ax1.set_ylabel(unit)
        ax1.legend(fontsize=7, loc="upper right")
        ax1.set_title(f"{kind}-locked average on {s.channels[ci]} (n = {len(centers)})",
                      fontsize=10, loc="left")
        if pe is not None:
            env = pe[1][idx] * k
            ax2.plot(lag, env.mean(0), color=_color("spindle" if rhythm == "so" else rhythm))
            ax2.set_ylabel(f"{env_band[0]:g}-{env_band[1]:g} Hz\nenvelope ({unit})")
        else:
            ax2.text(0.5, 0.5, "band above Nyquist or recording too short", ha="center",
                     transform=ax2.transAxes)
        ax2.axvline(0, color="k", lw=0.5)
        ax2.set_xlabel(f"time from the {kind} detections' {_lock_name(evs)} time (s)")
        name = _save(fig, out, f"eta-{_slug(kind)}.png")
        sec.figures.append(FigureInfo(name, f"{kind}-locked average",
                                      f"Average of the recording around {len(centers)} {kind} "
                                      "detections (locked to the detector's peak time, else "
                                      "onset). Bottom: mean band envelope"
                                      + (" in the spindle band (SO-spindle coupling)."
                                         if rhythm == "so" else ".")))
        rows.append((kind, s.channels[ci], len(evs), len(centers)))
    if not sec.figures:
        sec.missing = "No detection lies far enough inside the recorded signal to average."
    sec.body = _table(["kind", "channel", "detections", "averaged"], rows)
    return sec


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
        band = _band_for(rec, rhythm, s.rate_hz, phase=True)
        pe = _signal_phase_deg(s.x[:, ci], band, s.rate_hz)
        if pe is None:
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
        fig = _new_figure(4.0 * len(panels) + 0.5, 4.4)
        axes = [fig.add_subplot(1, len(panels), i + 1, projection="polar")
                for i in range(len(panels))]
        for ax, (cond, want, t) in zip(axes, panels, strict=True):
            i = np.searchsorted(s.t, t)
            inside = (i > 0) & (i < s.t.size)
            ph = pe[0][i[inside]]
            mean, sd, r = circular_mean_sd(ph)
            tmean, tsd = _truth_stim_phase(rec, t, rhythm)
            bins = np.linspace(-np.pi, np.pi, 19)
            hist, _ = np.histogram(np.deg2rad(ph), bins)
            ax.bar(bins[:-1] + np.diff(bins) / 2, hist, width=np.diff(bins), bottom=0,
                   color=_color(cond.split(",")[0]), alpha=0.75, edgecolor="white")
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
                         _f(want, 0), _f(mean, 0), _f(sd, 0), _f(r, 2),
                         _f(wrap_deg(mean - want), 0) if np.isfinite(mean - want) else "",
                         _f(tmean, 0), _f(tsd, 0)))
        name = _save(fig, out, f"phase-{_slug(target)}.png")
        sec.figures.append(FigureInfo(
            name, f"Stimulation phase, target {target}",
            f"{rhythm} phase on {s.channels[ci]} at each delivered pulse (device edge when "
            f"known, else send time), from a zero-phase {band[0]:g}-{band[1]:g} Hz filter and "
            "the Hilbert transform; 0 deg = peak, +-180 deg = trough. Arrow = circular mean "
            "(length = resultant R), gold line = intended phase. In the two-click protocol "
            "(Ngo et al. 2013) only the first click targets a phase; the second follows at a "
            "fixed interval and is shown apart."))
    sec.body = _table(["target", "condition", "channel", "band (Hz)", "n", "intended (deg)",
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
    gap = _num(pol.get("click_interval_s", 1.075))
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
    stims = [(_num(e.get("onset_s")), _num((e.get("meta") or {}).get(f"{rhythm}_phase_deg")))
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


def _f(v: float, nd: int) -> str:
    return f"{v:.{nd}f}" if v is not None and math.isfinite(v) else ""


def section_latency(rec: Recording, out: Path, pulses: list[PulseRecord]) -> Section:
    sec = Section("latency", "Latency per stage")
    stages: list[tuple[str, np.ndarray]] = []
    truth = _truth_by_kind(rec)
    for kind, evs in _events_by_kind(rec).items():
        d = np.array([_num(e.get("detect_s")) - _num(e.get("onset_s")) for e in evs])
        stages.append((f"{kind}: onset -> decision", d))
        if truth.get(kind):
            ton = np.array(sorted(_num(e.get("onset_s")) for e in truth[kind]))
            toff = np.array([_num(e.get("offset_s")) for e in
                             sorted(truth[kind], key=lambda e: _num(e.get("onset_s")))])
            det = np.array([_num(e.get("detect_s")) for e in evs])
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
    fig = _new_figure(6.0 * ncols, 1.9 * nrows + 0.4)
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
    sec.figures.append(FigureInfo(_save(fig, out, "latency.png"), "Latency histograms",
                                  "Per stage, in milliseconds; solid line = median, dashed = "
                                  "p99 (values above the 99.5th percentile are drawn in the "
                                  "last bin). 'true onset' uses the simulator's ground truth."))
    sec.body += _table(["stage", "n", "median (ms)", "p95 (ms)", "p99 (ms)", "max (ms)"],
                       rows)
    return sec


def stage_densities(events: dict[str, list[dict]], stages: Sequence[tuple[float, float, str]],
                    t0: float, t1: float) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Minutes spent in each stage (inside [t0, t1]) and detections per minute of each stage
    per kind (an event counts in the stage its decision falls in); stages with no time are
    left out."""
    from engramloop.analysis.scoring import stage_density

    minutes = {st: d["minutes"] for st, d in stage_density([], stages, t0, t1).items()}
    per = {kind: {st: d["per_min"] for st, d in stage_density(
        [_num(e.get("detect_s")) for e in evs], stages, t0, t1).items()}
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
    rows = [[kind] + [_f(per[kind][st], 2) for st in order] for kind in sorted(per)]
    rows.append(["minutes in stage"] + [_f(minutes[st], 1) for st in order])
    return ("<p>Detections per minute of each sleep stage (a detection counts in the stage "
            "its decision falls in):</p>" + _table(["kind"] + order, rows))


def section_spectrogram(rec: Recording, out: Path) -> Section:
    """The night at a glance: a spectrogram of the scalp (else first) channel under the
    hypnogram, 0.5-30 Hz, in dB re 1 \u00b5V^2/Hz."""
    from scipy import signal as sps

    sec = Section("spectrogram", "Spectrogram and hypnogram")
    where = pick_channel(rec, "spindle") or (
        (rec.signals[0], 0) if rec.signals and rec.signals[0].x.size else None)
    if where is None:
        sec.missing = "A signal stream: not in this recording."
        return sec
    st, ci = where
    fs = st.rate_hz
    x = st.x[:, ci]
    if not (fs > 0 and x.size >= 4 * fs):
        sec.missing = "At least 4 s of signal: not in this recording."
        return sec
    factor, ulabel = _scale(st.units)
    # decimate to ~100 Hz before the spectrogram: 0-30 Hz is what sleep scoring reads
    q = max(1, int(fs // 100))
    xd = sps.decimate(x * factor, q, ftype="fir", zero_phase=True) if q > 1 else x * factor
    fsd = fs / q
    nper = int(min(4 * fsd, xd.size))
    f, tt, sxx = sps.spectrogram(xd, fsd, nperseg=nper, noverlap=nper // 2,
                                 scaling="density")
    keep = (f >= 0.5) & (f <= 30.0)
    to_min, unit = _time_unit(rec)
    stages = _stages(rec)
    fig = _new_figure(10, 3.6 if stages else 2.8)
    if stages:
        ax_h, ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 3]})
        levels = {s: i for i, s in enumerate(STAGE_ORDER)}
        for on, off, sname in stages:
            y = levels.get(sname, -1)
            ax_h.fill_between([(on - rec.t0) / to_min, (off - rec.t0) / to_min], y - 0.4,
                              y + 0.4, color=_STAGE_COLORS.get(sname, "0.5"), lw=0)
        ax_h.set_yticks(range(len(STAGE_ORDER)), STAGE_ORDER, fontsize=7)
        ax_h.set_ylim(len(STAGE_ORDER) - 0.5, -0.5)
    else:
        ax = fig.subplots(1, 1)
    off = (st.t[0] - rec.t0) if st.t.size else 0.0
    db = 10 * np.log10(np.maximum(sxx[keep], 1e-12))
    lo, hi = np.percentile(db, [2, 98]) if db.size else (0.0, 1.0)
    mesh = ax.pcolormesh((tt + off) / to_min, f[keep], db, shading="auto", vmin=lo, vmax=hi,
                         cmap="magma", rasterized=True)
    ax.set_ylabel("Hz")
    ax.set_xlabel(f"time since start ({unit})")
    ax.set_xlim(0, max(rec.t1 - rec.t0, 1e-3) / to_min)
    fig.colorbar(mesh, ax=[ax_h, ax] if stages else ax, pad=0.01,
                 label=f"dB re 1 {ulabel}\u00b2/Hz")
    sec.figures.append(FigureInfo(_save(fig, out, "spectrogram.png"), "Spectrogram",
                                  f"Channel {st.channels[ci]}, 0.5-30 Hz, 4 s windows with "
                                  "50 % overlap" + ("; top: sleep stages." if stages else
                                                    "; hypnogram: not in this recording.")))
    return sec


def section_raster(rec: Recording, out: Path, pulses: list[PulseRecord]) -> Section:
    sec = Section("raster", "Detections over the session")
    events = _events_by_kind(rec)
    truth = _truth_by_kind(rec)
    stages = _stages(rec)
    refusals = [t for t, d in rec.markers.get("governor", []) if d.get("approved") is False]
    if not (events or truth or pulses or stages):
        sec.missing = "Detections, pulses and ground truth: not in this recording."
        return sec
    t0 = rec.t0
    to_min, unit = _time_unit(rec)
    rows: list[tuple[str, np.ndarray, str]] = []
    for kind in sorted(set(events) | set(truth)):
        if kind in truth:
            rows.append((f"{kind} (truth)", np.array([_num(e.get("onset_s")) for e in
                                                      truth[kind]]), "0.6"))
        if kind in events:
            rows.append((f"{kind} detected", np.array([_num(e.get("detect_s")) for e in
                                                       events[kind]]),
                         _color(_kind_rhythm(kind))))
    for cond in sorted({p.condition for p in pulses}):
        rows.append((f"pulses {cond}", np.array([p.fire_s if math.isfinite(p.fire_s)
                                                 else p.intended_s for p in pulses
                                                 if p.condition == cond and p.delivered]),
                     _color(cond)))
    if refusals:
        rows.append(("refused", np.array(refusals), "k"))
    fig = _new_figure(10, 1.2 + 0.35 * len(rows) + (0.9 if stages else 0.4))
    if stages:
        ax_h, ax = fig.subplots(2, 1, sharex=True,
                                gridspec_kw={"height_ratios": [1, max(len(rows), 1) * 0.5]})
        levels = {s: i for i, s in enumerate(STAGE_ORDER)}
        for on, off, st in stages:
            y = levels.get(st, -1)
            ax_h.fill_between([(on - t0) / to_min, (off - t0) / to_min], y - 0.4, y + 0.4,
                              color=_STAGE_COLORS.get(st, "0.5"), lw=0)
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
    name = _save(fig, out, "raster.png")
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
        from engramloop.analysis.scoring import MATCH_TOLERANCE_S, score_session

        # the one scoring module, as `engramloop score` scores this file and the trial
        # summary its run: from the detectors' calibration on
        dets = [e for _, e in rec.markers.get("events", []) if isinstance(e, dict)]
        recs = [e for _, e in rec.markers.get("truth", []) if isinstance(e, dict)]
        sc = score_session(dets, recs, rec.t1 - rec.t0, also=("ripple",))
        trows = []
        for kind in scored:
            m = sc.get(kind)
            if m is None:
                continue
            trows.append((kind, m["n_truth"], m["n_detected"], m["true_positives"],
                          _f(m["precision"], 2), _f(m["recall"], 2), _f(m["f1"], 2),
                          _f(m["latency_onset_median_s"] * 1e3, 1),
                          _f(m["detected_per_min"], 2), _f(m["truth_per_min"], 2)))
        tol = ", ".join(f"{k} {v * 1e3:g} ms" for k, v in MATCH_TOLERANCE_S.items())
        cal_end = sc.get("calibration_end_s")
        since = (f"from {cal_end - rec.t0:.1f} s (after detector calibration)"
                 if cal_end is not None else "over the whole recording")
        sec.body += ("<p>Agreement with ground truth, scored by "
                     "<code>analysis.scoring</code> as <code>engramloop score</code> scores "
                     "this file: a detection (from its onset to its decision) matches a true "
                     "event it overlaps, the event widened by a tolerance per kind "
                     f"({tol}); each true event is used once; {since}.</p>"
                     + _table(["kind", "true events", "detections", "matched",
                               "precision", "recall", "F1", "median latency (ms)",
                               "detections/min", "true events/min"], trows))
    return sec


def _numeric_series(rows: Sequence[tuple[float, dict]], skip: Sequence[str] = ()
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Flatten numeric fields of JSON records into time series ``name -> (t, values)``.
    Time-like keys (ending in ``_s``) and ids are not series."""
    acc: dict[str, tuple[list, list]] = {}

    def walk(prefix: str, obj: Any, t: float) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, t)
        elif isinstance(obj, list) and obj and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj):
            for i, v in enumerate(obj[:12]):
                walk(f"{prefix}[{i}]", v, t)
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            last = prefix.rsplit(".", 1)[-1].split("[", 1)[0]
            if last.endswith("_s") or last.endswith("_id") or last in skip or last == "seed":
                return
            acc.setdefault(prefix, ([], []))
            acc[prefix][0].append(t)
            acc[prefix][1].append(float(obj))

    for t, d in rows:
        tt = _num(d.get("t_s", d.get("time_s", t)))
        walk("", d, tt if math.isfinite(tt) else t)
    return {k: (np.array(v[0]), np.array(v[1])) for k, v in sorted(acc.items())}


def _memory_rows(rec: Recording) -> list[tuple[float, dict]]:
    rows = []
    for t, d in rec.markers.get("truth", []):
        if d.get("kind") in ("memory", "recall") or "recall_scores" in d or "memory" in d:
            body = d.get("recall_scores", d.get("recall", d.get("memory", d.get("scores", d))))
            rows.append((_num(d.get("t_s", t)) if math.isfinite(_num(d.get("t_s", t)))
                         else t, body if isinstance(body, dict) else {"value": body}))
    return rows


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
    good = [d for _, d in rows if math.isfinite(_num(d.get("sim_t_s")))
            and math.isfinite(_num(d.get("pooled"))) and isinstance(d.get("recall"), dict)]
    if not good:
        return None
    names = sorted({k for d in good for k in d["recall"]})
    final = [d for d in good if d.get("final")]
    return MemoryTrack(label, np.array([_num(d["sim_t_s"]) for d in good]),
                       np.array([_num(d["pooled"]) for d in good]),
                       {n: np.array([_num(d["recall"].get(n)) for d in good]) for n in names},
                       _num((final or good)[-1]["pooled"]), path)


def _condition(config: dict) -> str:
    pol = config.get("policy", {}) if isinstance(config, dict) else {}
    return str(pol.get("condition", "")) if isinstance(pol, dict) else ""


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
    _, config = _config_of(got.config_text)
    return memory_track(rows, _condition(config) or "sham", path), config


def _memory_figure(tracks: list[MemoryTrack], out: Path) -> FigureInfo:
    span = max(float(tr.sim_t[-1]) for tr in tracks)
    scale, unit = (60.0, "min") if span > 600 else (1.0, "s")
    fig = _new_figure(9, 3.8)
    ax = fig.subplots(1, 1)
    for k, tr in enumerate(tracks):
        color = _color(tr.label, k)
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
    return FigureInfo(_save(fig, out, "memory.png"), "Memory trajectories",
                      f"The simulated engram model during the session, {what}: recall each "
                      "memory would have at the next-day test if the session ended at that "
                      "moment (thin lines, one per memory) and their mean (thick), recorded "
                      "every few seconds of signal in engramloop.memory.")


def section_memory(rec: Recording, out: Path, twin: str | Path | None = None) -> Section:
    sec = Section("memory", "Memory trajectories (simulated engram model) and forecasts")
    track = memory_track(rec.markers.get("memory", []), _condition(rec.config) or "run",
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
    mem = {} if track is not None else _numeric_series(_memory_rows(rec), skip=("kind",))
    fc = _numeric_series(rec.markers.get("forecasts", []))
    if track is None and not mem and not fc:
        sec.missing = ("Memory states (engramloop.memory, engramloop.truth) and forecasts "
                       "(engramloop.forecasts): not in this recording.")
        return sec
    if track is not None:
        tracks = [track] + ([twin_track] if twin_track is not None else [])
        sec.figures.append(_memory_figure(tracks, out))
        rows = [(tr.label, tr.path.name if tr.path else "", tr.sim_t.size,
                 _f(float(tr.pooled[0]), 3), _f(tr.final, 3)) for tr in tracks]
        if twin_track is not None:
            rows.append((f"{track.label} - {twin_track.label}", "", "",
                         _f(float(track.pooled[0] - twin_track.pooled[0]), 3),
                         _f(track.final - twin_track.final, 3)))
        sec.body += _table(["condition", "recording", "states", "first pooled recall",
                            "final pooled recall"], rows)
        if twin_note:
            sec.body += f'<p class="missing">{html.escape(twin_note)}</p>'
        elif twin_track is None:
            sec.body += ("<p>Sham twin: not found (a simulated trial recorded with "
                         "<code>--report</code> writes it beside the run as "
                         "<code>NAME-sham-twin.xdf</code>).</p>")
    t0 = rec.t0
    scale, unit = _time_unit(rec)
    for name, series, what in (("memory.png", mem, "simulated recall score"),
                               ("forecast.png", fc, "forecast")):
        if series is mem and track is not None:
            continue
        if not series:
            sec.body += (f"<p>{'Memory scores' if series is mem else 'Forecasts'}: "
                         "not in this recording.</p>")
            continue
        keys = list(series)[:12]
        fig = _new_figure(9, 3.6)
        ax = fig.subplots(1, 1)
        for i, k in enumerate(keys):
            t, v = series[k]
            ax.plot((t - t0) / scale, v, marker="." if t.size < 50 else None, lw=1,
                    color=f"C{i % 10}", label=k)
        ax.set_xlabel(f"time since start ({unit})")
        ax.set_ylabel(what)
        ax.legend(fontsize=7, ncol=3)
        sec.figures.append(FigureInfo(_save(fig, out, name),
                                      "Memory trajectories" if series is mem else "Forecasts",
                                      f"Every numeric field of the {what} records over time"
                                      + (f" (first 12 of {len(series)})"
                                         if len(series) > 12 else "") + "."))
    return sec


def _gate_settings(rec: Recording) -> tuple[float, bool, float]:
    """``(gate_threshold, opens when high, max_age_s)`` from the recorded config's
    ``[forecaster]`` (the schema defaults where absent)."""
    from engramloop.controller.forecast_worker import ForecasterSettings

    d = ForecasterSettings()
    f = rec.config.get("forecaster", {}) if isinstance(rec.config, dict) else {}
    f = f if isinstance(f, dict) else {}
    thr = _num(f.get("gate_threshold", d.gate_threshold))
    age = _num(f.get("max_age_s", d.max_age_s))
    return (thr if math.isfinite(thr) else d.gate_threshold,
            f.get("gate_when", d.gate_when) != "risk_low",
            age if math.isfinite(age) else d.max_age_s)


def section_forecast_gate(rec: Recording, out: Path, pulses: list[PulseRecord]) -> Section:
    """The forecaster's decay risk over the run, the gate it drives and the pulses."""
    sec = Section("forecast-gate", "Forecast gate")
    rows = [(t, d) for t, d in rec.markers.get("forecasts", [])
            if isinstance(d, dict) and math.isfinite(_num(d.get("p_decay")))]
    if not rows:
        sec.missing = ("Forecasts (engramloop.forecasts): not in this recording (the "
                       "forecaster was off, or the run ended before its first epoch).")
        return sec
    thr, when_high, max_age = _gate_settings(rec)
    t = np.array([_num(d.get("time_s", tt)) if math.isfinite(_num(d.get("time_s", tt)))
                  else tt for tt, d in rows])
    p = np.array([_num(d["p_decay"]) for _, d in rows])
    is_open = (p >= thr) == when_high
    # the gate follows each forecast until the next one, or until it is too old
    ends = np.minimum(np.append(t[1:], rec.t1), t + max_age)
    open_s = float(np.sum((ends - t)[is_open]))
    span_s = max(float(rec.t1 - t[0]), 1e-9)
    fired = [q for q in pulses if q.delivered and math.isfinite(q.fire_s)]

    def gate_at(x: float) -> str:
        i = int(np.searchsorted(t, x, side="right")) - 1
        if i < 0:
            return "before the first forecast"
        return "open" if is_open[i] and x <= ends[i] else "closed"

    where: dict[str, int] = {}
    for q in fired:
        k = f"{q.condition}, gate {gate_at(q.fire_s)}"
        where[k] = where.get(k, 0) + 1
    summary = next((d["forecast_gate"] for _, d in reversed(rec.markers.get("log", []))
                    if isinstance(d, dict) and isinstance(d.get("forecast_gate"), dict)), None)
    rule = f"p_decay {'>=' if when_high else '<'} {thr:g}"
    table = [("forecasts", f"{len(p)} by model "
              f"{rows[0][1].get('model_version', '?')}, the first "
              f"{t[0] - rec.t0:.0f} s into the run"),
             ("p_decay", f"{p.min():.3f} to {p.max():.3f} (median {np.median(p):.3f})"),
             ("gate rule", rule),
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
    sec.body = _table(["", ""], table)
    scale, unit = _time_unit(rec)
    fig = _new_figure(9, 3.2)
    ax = fig.subplots(1, 1)
    x0 = rec.t0
    for a, b, o in zip(t, ends, is_open, strict=True):
        if o:
            ax.axvspan((a - x0) / scale, (b - x0) / scale, color="#2ca02c", alpha=0.15, lw=0)
    ax.step((np.append(t, rec.t1) - x0) / scale, np.append(p, p[-1]), where="post",
            color="k", lw=1.2, label="p_decay (forecast)")
    ax.plot((t - x0) / scale, p, "k.", ms=5)
    ax.axhline(thr, color="#d62728", ls="--", lw=1, label=f"gate threshold ({rule})")
    for i, cond in enumerate(sorted({q.condition for q in fired})):
        ft = np.array([q.fire_s for q in fired if q.condition == cond])
        ax.plot((ft - x0) / scale, np.full(ft.size, -0.04 - 0.04 * i), "|", ms=8,
                color=_color(cond, i), label=f"{cond} pulses")
    ax.set_ylim(-0.05 - 0.04 * max(len({q.condition for q in fired}), 1), 1.02)
    ax.set_xlim(0, (rec.t1 - x0) / scale)
    ax.set_xlabel(f"time since start ({unit})")
    ax.set_ylabel("forecast decay probability")
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    sec.figures.append(FigureInfo(_save(fig, out, "forecast-gate.png"), "Forecast gate",
                                  "The forecaster's decay probability (steps), the threshold, "
                                  "the spans where the gate was open (green) and the pulses "
                                  "delivered."))
    return sec


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
        x = s.x[:, ci]
        fig = _new_figure(9, 3.6)
        ax = fig.subplots(1, 1)
        k, unit = _scale(s.units)
        lag = np.arange(-nb, na + 1) / s.rate_hz
        for c in conds:
            t = np.array([p.fire_s for p in pulses if p.condition == c and p.delivered
                          and p.target == target])
            i = np.searchsorted(s.t, t)
            i = i[(i - nb > 0) & (i + na < s.t.size)]
            if not i.size:
                continue
            seg = x[i[:, None] + np.arange(-nb, na + 1)[None, :]]
            seg = seg - seg[:, :nb].mean(axis=1, keepdims=True)
            m = seg.mean(0) * k
            se = seg.std(0) * k / math.sqrt(i.size)
            ax.fill_between(lag, m - se, m + se, color=_color(c), alpha=0.25, lw=0)
            ax.plot(lag, m, color=_color(c), lw=1, label=f"{c} (n = {i.size})")
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel(f"time from pulse (s), target {target}")
        ax.set_ylabel(f"{s.channels[ci]} ({unit}, baseline removed)")
        ax.legend(fontsize=8)
        sec.figures.append(FigureInfo(_save(fig, out, "stim-vs-sham.png"),
                                      "Pulse-locked response, stim vs sham",
                                      "Average signal around delivered pulses of each condition "
                                      "(mean +- SEM, pre-pulse baseline removed). Sham pulses "
                                      "are logged at the same decision points but not delivered "
                                      "to the subject."))
    mem_rows = _memory_rows(rec)
    if mem_rows:
        last = _numeric_series(mem_rows[-1:])
        by = {c: [v[1][-1] for k2, v in last.items() if c in k2.lower().split(".")]
              for c in conds}
        if all(by.values()):
            rows = [(c, n, _f(float(np.mean(by[c])), 3)) for c, n in rows]
            sec.body = _table(["condition", "delivered pulses", "final recall (mean)"], rows)
            return sec
    sec.body = _table(["condition", "delivered pulses"], rows)
    return sec


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
        fig = _new_figure(10, 1.0 + 0.4 * len(rules) + 0.4)
        ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 2.5])
        ax1.barh(range(len(rules)), [by_rule[r] for r in rules], color="C3")
        ax1.set_yticks(range(len(rules)), rules, fontsize=8)
        ax1.invert_yaxis()
        ax1.set_xlabel("refusals")
        ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
        t0 = rec.t0
        scale, unit = _time_unit(rec)
        for i, r in enumerate(rules):
            t = np.array([t for t, d in refused if str(d.get("rule", "?")) == r])
            ax2.vlines((t - t0) / scale, i + 0.1, i + 0.9, color="C3", lw=0.6)
        ax2.set_yticks([i + 0.5 for i in range(len(rules))], rules, fontsize=8)
        ax2.set_ylim(len(rules), 0)
        ax2.set_xlim(0, max((rec.t1 - t0) / scale, 1e-3))
        ax2.set_xlabel(f"time since start ({unit})")
        sec.figures.append(FigureInfo(_save(fig, out, "refusals.png"),
                                      "Governor refusals by rule",
                                      "Count of refused stimulation intents per safety rule, "
                                      "and when they happened."))
        sec.body += _table(["rule", "refusals"], [(r, by_rule[r]) for r in rules])
        sample = refused[:20]
        sec.body += ("<p>First refusals (of " + str(len(refused)) + "):</p>"
                     + _table(["time (s)", "rule", "target", "detail"],
                              [(f"{t - t0:.3f}", d.get("rule", ""), d.get("target", ""),
                                d.get("detail", "")) for t, d in sample]))
    else:
        sec.body += "<p>No intent was refused.</p>"
    if arming:
        sec.body += ("<p>Other governor records (arming, calibration):</p>"
                     + _table(["time (s)", "record"],
                              [(f"{t - rec.t0:.3f}", json.dumps(d, sort_keys=True))
                               for t, d in arming[:30]]))
    return sec


def section_log(rec: Recording) -> Section:
    sec = Section("log", "Run log")
    log = rec.markers.get("log", [])
    if not log:
        sec.missing = "Log (stream engramloop.log): not in this recording."
        return sec
    levels = [str(d.get("level", "")).lower() for _, d in log]
    worth = [(t, d) for (t, d), lv in zip(log, levels, strict=True) if lv in ("warning", "error",
                                                                  "critical")]
    shown = worth or log
    sec.body = (f"<p>{len(log)} log records, {len(worth)} warnings/errors; showing "
                f"{min(len(shown), 50)}.</p>"
                + _table(["time (s)", "level", "message"],
                         [(f"{t - rec.t0:.3f}", d.get("level", ""),
                           d.get("message", d.get("msg", d.get("text", json.dumps(
                               d, sort_keys=True))))) for t, d in shown[:50]]))
    return sec


def _glance(rec: Recording, pulses: list[PulseRecord]) -> str:
    """A few lines a person reads first: what happened in this session."""
    dur = max(rec.t1 - rec.t0, 1e-9)
    items = []
    events = _events_by_kind(rec)
    if events:
        items.append("detections: " + ", ".join(
            f"{k} {len(v)} ({len(v) * 60.0 / dur:.1f}/min)" for k, v in events.items()))
    if pulses:
        by_cond: dict[str, int] = {}
        for p in pulses:
            if p.delivered:
                by_cond[p.condition] = by_cond.get(p.condition, 0) + 1
        undelivered = sum(1 for p in pulses if not p.delivered)
        items.append("pulses delivered: " + (", ".join(f"{c} {n}" for c, n in
                                                       sorted(by_cond.items())) or "none")
                     + (f"; not delivered {undelivered}" if undelivered else ""))
    refused = [d for _, d in rec.markers.get("governor", []) if d.get("approved") is False]
    if rec.markers.get("governor"):
        items.append(f"governor refusals: {len(refused)}")
    if not items:
        return ""
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def section_overview(rec: Recording, pulses: Sequence[PulseRecord] = ()) -> Section:
    sec = Section("overview", "Recording")
    rows = [(s.name, "signal", len(s.channels), ", ".join(s.channels), f"{s.rate_hz:g}",
             s.t.size) for s in rec.signals]
    rows += [(f"engramloop.{k}", "markers (JSON)", 1, "", "irregular", len(v))
             for k, v in sorted(rec.markers.items()) if v]
    missing = [f"engramloop.{k}" for k in MARKER_STREAMS if not rec.markers.get(k)]
    dur = rec.t1 - rec.t0
    sec.body = (f"<p>File <code>{html.escape(rec.path.name)}</code>"
                + (f", recorded {html.escape(rec.datetime)}" if rec.datetime else "")
                + f", {dur:.1f} s ({dur / 60:.1f} min).</p>"
                + _glance(rec, list(pulses))
                + _table(["stream", "type", "channels", "names", "rate (Hz)", "samples"], rows)
                + (f"<p>Not in this recording: {', '.join(missing)}.</p>" if missing else ""))
    if not rec.signals:
        sec.body += "<p>Raw signal: not in this recording.</p>"
    if rec.config_text:
        sec.body += ("<details><summary>Effective configuration</summary><pre>"
                     + html.escape(rec.config_text) + "</pre></details>")
    return sec


# ----------------------------------------------------------------------------- HTML
def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;
color:#222}h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;
margin-top:2em}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}.missing{color:#8a5a00;background:#fff6e0;
padding:.4em .8em;border-left:4px solid #e0a000}pre{background:#f7f7f7;padding:.5em;
overflow:auto;font-size:.8em}nav a{margin-right:1em}"""


def _html(rec: Recording, sections: list[Section]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>engramloop report: {html.escape(rec.path.name)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>engramloop session report: {html.escape(rec.path.name)}</h1>",
             "<nav>" + "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>'
                               for s in sections) + '<a href="#figures">All figures</a></nav>']
    n = 0
    table_rows = []
    for s in sections:
        parts.append(f'<h2 id="{s.key}">{html.escape(s.title)}</h2>')
        if s.missing:
            parts.append(f'<p class="missing">{html.escape(s.missing)}</p>')
        parts.append(s.body)
        for f in s.figures:
            n += 1
            fid = "fig-" + f.file.rsplit(".", 1)[0]
            parts.append(f'<figure id="{fid}"><img src="{html.escape(f.file)}" '
                         f'alt="{html.escape(f.title)}"><figcaption><b>Figure {n}.</b> '
                         f"{html.escape(f.caption)}</figcaption></figure>")
            table_rows.append((n, f.title, s.title, f.file, fid))
    parts.append('<h2 id="figures">All figures</h2>')
    if table_rows:
        parts.append("<table><thead><tr><th>#</th><th>figure</th><th>section</th>"
                     "<th>file</th></tr></thead><tbody>")
        for i, title, stitle, file, fid in table_rows:
            parts.append(f'<tr><td>{i}</td><td><a href="#{fid}">{html.escape(title)}</a></td>'
                         f"<td>{html.escape(stitle)}</td><td><a href=\"{html.escape(file)}\">"
                         f"{html.escape(file)}</a></td></tr>")
        parts.append("</tbody></table>")
    else:
        parts.append("<p>No figures: the recording holds no signal or markers to plot.</p>")
    parts.append("<p><small>Made by <code>engramloop report</code> from the XDF file "
                 "alone.</small></p></body></html>")
    return "\n".join(parts) + "\n"


@dataclass
class ReportResult:
    """What :func:`write_report` wrote."""

    index: Path
    figures: list[Path]
    sections: list[Section]


def write_report(recording: str | Path, out_dir: str | Path, *,
                 quiet: bool = True, twin: str | Path | None = None) -> ReportResult:
    """Write ``index.html`` and the PNG figures for one recording into ``out_dir``.

    Parameters
    ----------
    recording : str or Path
        An ``.xdf`` file written by engramloop (or any XDF with a numeric stream).
    out_dir : str or Path
        Output folder (created if needed). Existing files with the same names are
        overwritten; other files are left alone.
    quiet : bool
        No progress (the default).
    twin : str or Path, optional
        The sham twin's recording, whose memory trajectory is drawn beside this one's;
        default: ``NAME-sham-twin.xdf`` beside ``NAME.xdf`` when it exists (as
        :func:`controller.trial.run_trial` writes it).

    Raises
    ------
    ReportError
        If the recording cannot be read or the folder cannot be written.
    """
    from engramloop.analysis.trial import sham_twin_path
    from engramloop.controller.progress import progress

    out = Path(out_dir)
    if twin is None and sham_twin_path(recording).is_file():
        twin = sham_twin_path(recording)
    rec = load_recording(recording)   # an unreadable file fails before any progress line
    with progress(13, "report", quiet=quiet) as bar:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportError(f"cannot create report folder {out}: {exc.strerror}") from None
        import matplotlib

        def step(value: Any) -> Any:
            bar.advance()
            return value

        with matplotlib.rc_context({"font.size": 9, "axes.spines.top": False,
                                    "axes.spines.right": False}):
            phase, pulses = step(section_phase(rec, out))
            sections = [step(section_overview(rec, pulses)),
                        step(section_raster(rec, out, pulses)),
                        step(section_spectrogram(rec, out)),
                        step(section_examples(rec, out)), step(section_averages(rec, out)),
                        phase, step(section_latency(rec, out, pulses)),
                        step(section_stim_vs_sham(rec, out, pulses)),
                        step(section_memory(rec, out, twin)),
                        step(section_forecast_gate(rec, out, pulses)),
                        step(section_governor(rec, out)),
                        step(section_log(rec))]
        index = out / "index.html"
        index.write_text(_html(rec, sections), encoding="utf-8")
        bar.advance()
    figs = [out / f.file for s in sections for f in s.figures]
    return ReportResult(index, figs, sections)


__all__ = ["ReportError", "Recording", "SignalStream", "PulseRecord", "load_recording",
           "write_report", "ReportResult", "merge_pulses",
           "pick_channel", "expand_truth", "MemoryTrack", "memory_track",
           "load_twin_memory"]
