"""The Python API for notebooks: the real-time detectors on arrays, and recordings.

Everything here is re-exported from ``engramloop``::

    import engramloop
    spindles = engramloop.detect_spindles(eeg_v, fs=256.0, ch_names=["Cz"])
    rec = engramloop.read_recording("out/demo/session.xdf")
    raw = rec.to_mne()                    # needs the `mne` extra
    rec.to_edf("session.edf")             # EDF+ with the events, pulses and truth

The ``detect_*`` functions run the same detector classes as the real-time loop
(:mod:`engramloop.decoders`), causally, chunk by chunk over the array: an event is known
at ``detect_s`` from samples up to that time only, exactly as in a live run. Tables are
pandas DataFrames when pandas is importable, else NumPy structured arrays with the same
columns (docs/api.md).
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engramloop.analysis.edf_export import write_edf
from engramloop.core.chunk import Chunk
from engramloop.core.events import Event
from engramloop.core.extras import require
from engramloop.core.schema import build
from engramloop.decoders.ripple import RippleDetector, RippleSettings
from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings
from engramloop.decoders.spindle import SpindleDetector, SpindleSettings
from engramloop.recording import reader

__all__ = ["EVENT_COLUMNS", "PULSE_COLUMNS", "ANNOTATION_COLUMNS", "Recording",
           "RecordingError", "SignalStream", "detect_ripples", "detect_slow_oscillations",
           "detect_spindles", "read_recording"]

#: Columns of an event table (``Event`` fields): times in seconds, amplitude in volts.
EVENT_COLUMNS = (("kind", "U"), ("channel", "U"), ("onset_s", "f8"), ("detect_s", "f8"),
                 ("peak_s", "f8"), ("amplitude", "f8"), ("score", "f8"),
                 ("threshold", "f8"), ("predicted_s", "f8"))
#: Columns of a pulse table: one row per pulse and output (host-clock seconds).
PULSE_COLUMNS = (("pulse_id", "i8"), ("target", "U"), ("condition", "U"),
                 ("modality", "U"), ("output", "U"), ("status", "U"), ("detect_s", "f8"),
                 ("intended_s", "f8"), ("deadline_s", "f8"), ("sent_s", "f8"),
                 ("ack_s", "f8"), ("device_edge_s", "f8"), ("duration_s", "f8"),
                 ("amplitude", "f8"), ("reason", "U"))
#: Columns of an annotation table (host-clock seconds).
ANNOTATION_COLUMNS = (("onset_s", "f8"), ("duration_s", "f8"), ("description", "U"),
                      ("channel", "U"))

UNIT_SCALE = {"V": 1.0, "mV": 1e-3, "uV": 1e-6, "µV": 1e-6}
#: Unit labels a recorded stream may carry (XDF channel ``unit``), as factors to volts.
RECORDED_UNITS = {"v": 1.0, "volts": 1.0, "mv": 1e-3, "millivolts": 1e-3, "uv": 1e-6,
                  "µv": 1e-6, "microvolts": 1e-6}


# ------------------------------------------------------------------------------ tables
def _pandas() -> Any:
    """pandas, or None when it is not installed (tables are then structured arrays)."""
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def _cell(value: Any, dtype: str) -> Any:
    if dtype == "U":
        return "" if value is None else str(value)
    try:
        v = float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        v = math.nan
    if dtype == "i8":
        return int(v) if math.isfinite(v) else -1
    return v


def make_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> Any:
    """Rows (dicts) as a pandas DataFrame, or a NumPy structured array without pandas.

    Missing or ``None`` numbers become NaN (``-1`` in integer columns), missing text "".
    """
    cols = {name: [_cell(r.get(name), dt_) for r in rows] for name, dt_ in columns}
    pd = _pandas()
    if pd is not None:
        return pd.DataFrame({name: np.asarray(cols[name], dtype=object if dt_ == "U"
                                              else dt_) for name, dt_ in columns})
    dtype = [(name, f"U{max([1] + [len(s) for s in cols[name]])}" if dt_ == "U" else dt_)
             for name, dt_ in columns]
    out = np.zeros(len(rows), dtype=dtype)
    for name, _ in columns:
        out[name] = cols[name]
    return out


# --------------------------------------------------------------------------- detection
def _detect(cls: type, settings_cls: type, what: str, x: Any, fs: float,
            ch_names: Sequence[str] | None, t0_s: float, unit: str,
            chunk_samples: int | None, all_events: bool, settings: dict) -> Any:
    if not (isinstance(fs, (int, float)) and not isinstance(fs, bool)
            and math.isfinite(fs) and fs > 0):
        raise ValueError(f"{what}: fs must be a sampling rate in Hz > 0, got {fs!r}")
    if not (isinstance(t0_s, (int, float)) and not isinstance(t0_s, bool)
            and math.isfinite(t0_s)):
        raise ValueError(f"{what}: t0_s must be a finite time in seconds, got {t0_s!r}")
    if unit not in UNIT_SCALE:
        raise ValueError(f"{what}: unit must be one of {', '.join(UNIT_SCALE)}, got "
                         f"{unit!r}")
    if np.ma.isMaskedArray(x) and np.ma.getmaskarray(x).any():
        raise ValueError(f"{what}: x is a masked array with {int(np.ma.getmaskarray(x).sum())}"
                         f" masked samples; the detectors cannot skip samples: interpolate "
                         f"or cut them first")
    if np.iscomplexobj(x):
        raise ValueError(f"{what}: x is complex; give the real signal")
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{what}: x must have shape (n_samples,) or (n_samples, "
                         f"n_channels), got {np.shape(x)}")
    if a.shape[1] > a.shape[0]:
        raise ValueError(f"{what}: x has shape {a.shape}, more channels than samples; time "
                         f"runs along the first axis, (n_samples, n_channels): pass x.T "
                         f"for an (n_channels, n_times) array such as MNE's get_data()")
    bad = ~np.isfinite(a)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{what}: x has {int(bad.sum())} non-finite samples (first: "
                         f"sample {i}, column {j}); interpolate or cut them first")
    names = tuple(ch_names) if ch_names is not None else tuple(
        f"ch{i}" for i in range(a.shape[1]))
    if len(names) != a.shape[1]:
        raise ValueError(f"{what}: {len(names)} ch_names for {a.shape[1]} columns of x")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: ch_names must be unique, got {list(names)}")
    table = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
    table.setdefault("channels", list(names))
    st = build(settings_cls, table, file=what)  # ConfigError names a bad key or value
    det = cls(st)
    a = np.ascontiguousarray(a * UNIT_SCALE[unit])
    t = t0_s + np.arange(a.shape[0]) / float(fs)
    step = int(chunk_samples) if chunk_samples else max(1, int(round(fs)))
    if step < 1:
        raise ValueError(f"{what}: chunk_samples must be >= 1, got {chunk_samples}")
    events: list[Event] = []
    for i in range(0, a.shape[0], step):
        c = Chunk(a[i:i + step].copy(), t[i:i + step].copy(), float(fs), names,
                  arrival_s=float(t[min(i + step, a.shape[0]) - 1]), first_index=i)
        events.extend(det.process(c))
    if not any(e.kind == "calibration_done" for e in events):
        raise ValueError(f"{what}: the detector never finished calibrating on this "
                         f"{a.shape[0] / float(fs):.3g} s signal (calibration_s = "
                         f"{st.calibration_s} s, plus the baseline it needs), so it could "
                         f"detect nothing: give a longer signal or a smaller calibration_s")
    keep = [e.to_dict() for e in events if all_events or e.kind == cls.KIND]
    return make_table(keep, EVENT_COLUMNS)


_DETECT_DOC = """
    Parameters
    ----------
    x : array_like, shape (n_samples,) or (n_samples, n_channels)
        The signal, in ``unit`` (volts by default), time along the first axis.
    fs : float
        Sampling rate, Hz.
    ch_names : sequence of str, optional
        One name per column (default ``ch0``, ``ch1``, ...). The detector runs on the
        channels named by its ``channels`` setting, by default all of them.
    t0_s : float
        Time of the first sample, seconds; event times are on this axis.
    unit : {{"V", "mV", "uV"}}
        Unit of ``x`` (the detectors work in volts; SO thresholds are absolute).
    chunk_samples : int, optional
        Samples per chunk fed to the detector (default: one second). Events do not
        depend on it (the detectors are tested for chunk-size independence); it only
        trades Python overhead against memory.
    all_events : bool
        Also return the detector's status events (``calibration_done``, for spindles
        ``spindle_rejected``, for slow oscillations ``so_gate_closed`` and
        ``so_gate_open``), not only detections.
    **settings
        Keys of the config table ``[detectors.{table}]`` (docs/config-reference.md), e.g.
        ``threshold_sd=4``. A wrong key or value raises ``ConfigError`` naming it.

    Returns
    -------
    DataFrame or structured ndarray
        One row per event, columns :data:`EVENT_COLUMNS`: ``kind``, ``channel``,
        ``onset_s``, ``detect_s`` (when the causal detector decided), ``peak_s``,
        ``amplitude`` (volts), ``score``, ``threshold``, ``predicted_s``. No event is
        reported during the detector's calibration (``calibration_s`` from the start).
"""


def detect_spindles(x: Any, fs: float, ch_names: Sequence[str] | None = None, *,
                    t0_s: float = 0.0, unit: str = "V", chunk_samples: int | None = None,
                    all_events: bool = False, **settings: Any) -> Any:
    return _detect(SpindleDetector, SpindleSettings, "detect_spindles", x, fs, ch_names,
                   t0_s, unit, chunk_samples, all_events, settings)


def detect_ripples(x: Any, fs: float, ch_names: Sequence[str] | None = None, *,
                   t0_s: float = 0.0, unit: str = "V", chunk_samples: int | None = None,
                   all_events: bool = False, **settings: Any) -> Any:
    return _detect(RippleDetector, RippleSettings, "detect_ripples", x, fs, ch_names, t0_s,
                   unit, chunk_samples, all_events, settings)


def detect_slow_oscillations(x: Any, fs: float, ch_names: Sequence[str] | None = None, *,
                             t0_s: float = 0.0, unit: str = "V",
                             chunk_samples: int | None = None, all_events: bool = False,
                             **settings: Any) -> Any:
    return _detect(SlowOscDetector, SlowOscSettings, "detect_slow_oscillations", x, fs,
                   ch_names, t0_s, unit, chunk_samples, all_events, settings)


detect_spindles.__doc__ = ("Sleep spindles on EEG with the loop's causal spindle detector."
                           + _DETECT_DOC.format(table="spindle"))
detect_ripples.__doc__ = ("Sharp-wave ripples on hippocampal LFP with the loop's causal "
                          "ripple detector." + _DETECT_DOC.format(table="ripple"))
detect_slow_oscillations.__doc__ = (
    "Slow-oscillation down-states on EEG with the loop's causal SO detector "
    "(``predicted_s`` is the predicted next up-state)." + _DETECT_DOC.format(table="so"))


# --------------------------------------------------------------------------- recordings
class RecordingError(ValueError):
    """A recording cannot be read or converted; the message names the file and the fix."""


@dataclass(frozen=True)
class SignalStream:
    """One numeric stream of a recording.

    Attributes
    ----------
    name : str
        Stream name (``engramloop.raw`` for the signal the loop read).
    channels : tuple of str
    rate_hz : float
        Nominal sampling rate.
    t : ndarray, shape (n_samples,), seconds on the host clock
    x : ndarray, shape (n_samples, n_channels), volts
    """

    name: str
    channels: tuple[str, ...]
    rate_hz: float
    t: np.ndarray
    x: np.ndarray


@dataclass(frozen=True)
class Recording:
    """An engramloop recording (XDF) read back.

    Attributes
    ----------
    path : Path
    signals : list of SignalStream
    events : table
        Every detector event the loop recorded (:data:`EVENT_COLUMNS`; status events such
        as ``calibration_done`` included).
    pulses : table
        One row per pulse and output (:data:`PULSE_COLUMNS`): decided, sent, acknowledged
        or cancelled, with the reason.
    truth : table
        The simulator's ground truth (:data:`ANNOTATION_COLUMNS`; empty for a device).
    annotations : table
        Detections, pulses, truth events and sleep stages as (onset, duration, text)
        rows, the form MNE and EDF+ take (:data:`ANNOTATION_COLUMNS`).
    config_text : str
        The effective config the run used (TOML).
    start : datetime or None
        Wall-clock time the recording started (UTC), from the file header.
    """

    path: Path
    signals: list[SignalStream]
    events: Any
    pulses: Any
    truth: Any
    annotations: Any
    config_text: str = ""
    start: dt.datetime | None = None
    _rows: dict = field(default_factory=dict, repr=False)

    def signal(self, name: str = "engramloop.raw") -> SignalStream:
        """The numeric stream called ``name`` (default: the signal the loop read)."""
        for s in self.signals:
            if s.name == name:
                return s
        have = ", ".join(s.name for s in self.signals) or "none"
        raise RecordingError(f"{self.path}: no signal stream {name!r} (streams: {have})")

    def _sample_annotations(self, s: SignalStream) -> list[tuple[float, float, str, str]]:
        """Annotations as (onset, duration, text, channel) on the stream's sample axis:
        an onset maps to the time of the first sample at or after it (``index / rate``),
        so they stay aligned to the data even where the device clock drifts from its
        nominal rate; durations end at the last sample at the latest."""
        out, outside = [], []
        last = s.t.size - 1
        for r in self._rows.get("annotations", []):
            on, dur = r["onset_s"], r["duration_s"]
            early = s.t.size and on < s.t[0] - 0.5 / s.rate_hz
            if early and dur > 0 and on + dur > s.t[0]:
                # began before the first sample and lasts into the signal (a sleep stage
                # that started before the recording): keep the part the signal covers
                on, dur = float(s.t[0]), on + dur - float(s.t[0])
            elif s.t.size == 0 or early or on > s.t[-1] + 1.0 / s.rate_hz:
                # (an onset within the last sample's period -- the recall marker at the end
                # of a simulated night -- is inside: it goes on the last sample)
                outside.append(r)  # EDF and MNE cannot hold it
                continue
            i = int(np.clip(np.searchsorted(s.t, on), 0, last))
            # the end on the same axis, cut at the last sample (a sleep stage may go on)
            j = int(np.clip(np.searchsorted(s.t, on + max(0.0, dur)), i, last))
            out.append((i / s.rate_hz, (j - i) / s.rate_hz if dur > 0 else 0.0,
                        r["description"], r["channel"]))
        if outside:
            import warnings

            first = outside[0]
            warnings.warn(f"{self.path}: {len(outside)} annotation(s) lie outside the signal "
                          f"{s.name} and are not exported (first: {first['description']!r} at "
                          f"{first['onset_s']:.3f} s)", UserWarning, stacklevel=3)
        return out

    def _check_uniform(self, s: SignalStream, what: str) -> None:
        if s.t.size < 2:
            return
        d = np.diff(s.t)
        gaps = np.flatnonzero(d > 2.5 / s.rate_hz)
        if gaps.size:
            g = gaps[0]
            raise RecordingError(
                f"{self.path}: {what} needs evenly spaced samples, but {s.name} has "
                f"{gaps.size} gap(s) (the first: {d[g]:.3f} s missing at "
                f"t = {s.t[g] - s.t[0]:.3f} s); use Recording.signals, which keep the "
                "true sample times")

    def to_mne(self, stream: str = "engramloop.raw") -> Any:
        """The signal as an ``mne.io.RawArray`` (volts, channel type "eeg") with the
        recording's annotations (needs MNE: ``pip install 'engramloop[mne]'``).

        Raises
        ------
        MissingExtraError
            MNE is not installed.
        RecordingError
            The stream has gaps (MNE assumes evenly spaced samples).
        """
        mne = require("mne", "mne", "Recording.to_mne")
        s = self.signal(stream)
        self._check_uniform(s, "to_mne")
        info = mne.create_info(list(s.channels), s.rate_hz, ch_types="eeg")
        raw = mne.io.RawArray(s.x.T, info, verbose="error")
        if self.start is not None:
            raw.set_meas_date(self.start)
        ann = self._sample_annotations(s)
        chans = set(s.channels)
        raw.set_annotations(mne.Annotations(
            onset=[a[0] for a in ann], duration=[a[1] for a in ann],
            description=[a[2] for a in ann],
            ch_names=[(a[3],) if a[3] in chans else () for a in ann],
            orig_time=raw.info["meas_date"]))
        return raw

    def to_edf(self, path: str | Path, stream: str = "engramloop.raw",
               ch_names: Sequence[str] | None = None) -> Path:
        """Write the signal and annotations to an EDF+ file (microvolts, 16 bit; see
        :mod:`engramloop.analysis.edf_export`). Returns the path.

        ``ch_names`` relabels the channels for the file (one per channel): EDF labels are
        at most 16 printable ASCII characters, and a channel name EDF cannot hold exactly
        is refused rather than cut."""
        s = self.signal(stream)
        self._check_uniform(s, "to_edf")
        if ch_names is not None:
            if len(ch_names) != len(s.channels):
                raise RecordingError(f"{path}: {len(ch_names)} ch_names for the "
                                     f"{len(s.channels)} channels of {s.name}")
        names = tuple(map(str, ch_names)) if ch_names is not None else s.channels
        rename = dict(zip(s.channels, names, strict=True))
        ann = [(on, dur, f"{text} {rename.get(ch, ch)}".strip() if ch else text, )
               for on, dur, text, ch in self._sample_annotations(s)]
        s = replace(s, channels=names)
        try:
            return write_edf(path, s.x, s.rate_hz, s.channels,
                             [(a[0], a[1], a[2]) for a in ann],
                             start=self.start.replace(tzinfo=None) if self.start else None)
        except ValueError as exc:
            raise RecordingError(f"{path}: {exc}") from None


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _pulse_rows(markers: dict) -> list[dict]:
    rows = []
    for _, rec in markers.get("pulses", []):
        p, d = rec.get("pulse") or {}, rec.get("delivery") or {}
        spec = p.get("spec") or {}
        train = max(1, int(_num(spec.get("train_count")) or 1))
        width = _num(spec.get("phase_width_s"))
        n_phase = 2 if spec.get("shape") == "biphasic" else 1
        dur = (train * (n_phase * width + _num(spec.get("interphase_s") or 0.0))
               + (train - 1) * _num(spec.get("train_interval_s") or 0.0))
        rows.append({**{k: p.get(k) for k in ("pulse_id", "target", "condition",
                                               "detect_s", "intended_s", "deadline_s")},
                     **{k: d.get(k) for k in ("output", "status", "sent_s", "ack_s",
                                              "device_edge_s", "reason")},
                     "modality": spec.get("modality"), "amplitude": spec.get("amplitude"),
                     "duration_s": dur})
    return rows


def _annotation_rows(events: list[dict], pulses: list[dict], truth: list[dict]
                     ) -> list[dict]:
    rows = []
    for e in events:
        if e.get("kind") == "calibration_done":
            continue
        on, det = _num(e.get("onset_s")), _num(e.get("detect_s"))
        if math.isfinite(on):
            rows.append({"onset_s": on, "duration_s": max(0.0, det - on) if
                         math.isfinite(det) else 0.0, "description": f"detect/{e['kind']}",
                         "channel": e.get("channel") or ""})
    for p in pulses:
        t = next((_num(p.get(k)) for k in ("device_edge_s", "sent_s", "intended_s")
                  if math.isfinite(_num(p.get(k)))), math.nan)
        if math.isfinite(t):
            dur = p["duration_s"] if math.isfinite(p["duration_s"]) else 0.0
            rows.append({"onset_s": t, "duration_s": dur,
                         "description": f"pulse/{p.get('output') or 'none'}/"
                                        f"{p.get('status') or 'unknown'}", "channel": ""})
    rows += truth
    rows.sort(key=lambda r: r["onset_s"])
    return rows


def _truth_rows(markers: dict) -> list[dict]:
    rows = []
    for t, d in markers.get("truth", []):
        kind = d.get("kind")
        if kind == "memory":
            continue
        on = _num(d.get("onset_s"))
        on = on if math.isfinite(on) else t
        off = _num(d.get("offset_s"))
        label = f"stage/{d.get('stage')}" if kind == "stage" else f"truth/{kind}"
        rows.append({"onset_s": on, "duration_s": max(0.0, off - on) if math.isfinite(off)
                     else 0.0, "description": label, "channel": d.get("channel") or ""})
    return rows


def _file_annotation_rows(markers: dict) -> list[dict]:
    """The replayed file's own annotations (EDF+ scoring, stream engramloop.annotations),
    at their times on the recording's clock."""
    rows = []
    for t, d in markers.get("annotations", []):
        dur = _num(d.get("duration_s"))
        rows.append({"onset_s": float(t), "duration_s": dur if math.isfinite(dur) else 0.0,
                     "description": str(d.get("text", d.get("value", ""))), "channel": ""})
    return rows


def read_recording(path: str | Path) -> Recording:
    """Read an engramloop recording (the XDF file of ``engramloop run --record`` or
    ``demo``): signals, detector events, pulses, simulator truth and annotations.

    Timestamps are the host-clock times as recorded (no dejittering), so events, pulses
    and samples share one time axis.

    Raises
    ------
    RecordingError
        If the file is missing or is not a readable XDF file.
    """
    from engramloop.analysis.report import ReportError, load_recording

    try:
        rec = load_recording(path)      # markers, config; refuses a damaged file
        whole = reader.read(path, streams=[s.name for s in rec.signals])
    except ReportError as exc:
        raise RecordingError(str(exc)) from None
    except reader.RecordingReadError as exc:
        raise RecordingError(f"recording {exc}") from None
    signals = [SignalStream(s.name, tuple(s.channels), float(s.rate_hz), s.t,
                            s.x * RECORDED_UNITS.get((s.units or "V").strip().lower(), 1.0))
               for s in whole.signals]
    events = [d for _, d in rec.markers.get("events", [])]
    pulses = _pulse_rows(rec.markers)
    truth = _truth_rows(rec.markers)
    annotations = _annotation_rows(events, pulses, truth) + _file_annotation_rows(rec.markers)
    annotations.sort(key=lambda r: r["onset_s"])
    start = None
    if rec.datetime:
        try:
            start = dt.datetime.fromisoformat(rec.datetime).astimezone(dt.timezone.utc)
        except ValueError:
            start = None
    return Recording(Path(path), signals, make_table(events, EVENT_COLUMNS),
                     make_table(pulses, PULSE_COLUMNS), make_table(truth, ANNOTATION_COLUMNS),
                     make_table(annotations, ANNOTATION_COLUMNS), rec.config_text, start,
                     {"annotations": annotations})
