"""Recorded files as a Source: XDF (ours and LabRecorder's), EDF/EDF+/BDF, BrainFlow CSV
and the simulator's .npz, replayed in real time, N times faster, or as fast as the loop
runs on a simulated clock.

Every file is checked before it is used: a truncated or malformed file raises
:class:`~drivers.chunk.SourceError` naming the file and the byte offset (or line) where
it goes wrong, instead of replaying silently shortened data.
"""
from __future__ import annotations

import math
import struct
import time
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engramloop.core import sample_format as _fmt
from engramloop.core.chunk import Chunk, EndOfStream, SourceError
from engramloop.core.clock import HostClock, SimClock
from engramloop.core.schema import name_with_hint
from engramloop.drivers.brainflow_lib import load_brainflow
from engramloop.drivers.brainflow_source import (
    CounterGapDetector,
    board_id,
    board_sample_format,
    counter_step,
)
from engramloop.drivers.edf_plus import read_discontinuous, read_header, read_plus
from engramloop.drivers.file_data import FileData, table_error
from engramloop.drivers.openbci_txt import is_openbci_txt, load_openbci_txt
from engramloop.drivers.sources import unit_scale
from engramloop.recording import reader
from engramloop.recording.xdf import MAGIC


class ScaledClock:
    """Host time running ``speed`` times faster from the moment it was made.

    ``now() = t0 + (monotonic() - t0) * speed``; with speed 1 it is the host clock.
    """

    def __init__(self, speed: float) -> None:
        self.speed = float(speed)
        self._t0 = time.monotonic()

    def now(self) -> float:
        return self._t0 + (time.monotonic() - self._t0) * self.speed

    def sleep_until(self, t_s: float) -> None:
        HostClock().sleep_until(self._t0 + (t_s - self._t0) / self.speed)


def _scale(unit: str, override: str, path: Path, what: str) -> float:
    if override != "auto":
        return unit_scale(override) or 1.0
    if not unit.strip():
        # volts, microvolts or ADC counts? a factor-of-a-million guess would silently
        # skew every threshold (as for a live LSL stream without units)
        raise SourceError(f"{path}: {what} declares no unit; set source.file.units (V, mV, "
                          "uV or nV) to say what its values are")
    s = unit_scale(unit)
    if s is None:
        raise SourceError(f"{path}: {what} has unit {unit!r}, not a voltage; set "
                          "source.file.units (V, mV, uV or nV) to say how to read it")
    return s


# ---------------------------------------------------------------------------- XDF
def check_xdf(path: Path) -> bytes:
    """Walk the chunk structure of an XDF file; raise SourceError at the first bad offset.

    Returns the FileHeader chunk's XML (empty if the file has none)."""
    header = b""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            raise SourceError(f"{path}: not an XDF file (no 'XDF:' magic at byte offset 0)")
        off = 4
        while off < size:
            f.seek(off)
            nb = f.read(1)
            if nb[0] not in (1, 4, 8):
                raise SourceError(f"{path}: malformed XDF chunk at byte offset {off} "
                                  f"(length width {nb[0]}, must be 1, 4 or 8)")
            raw = f.read(nb[0])
            if len(raw) < nb[0]:
                raise SourceError(f"{path}: truncated XDF file: chunk header at byte offset "
                                  f"{off} is cut off at end of file ({size} bytes)")
            length = int.from_bytes(raw, "little")
            body = off + 1 + nb[0]
            if length < 2:
                raise SourceError(f"{path}: malformed XDF chunk at byte offset {off} "
                                  f"(length {length})")
            if body + length > size:
                raise SourceError(f"{path}: truncated XDF file: chunk at byte offset {off} "
                                  f"needs {length} bytes, file ends at byte {size}")
            tag = struct.unpack("<H", f.read(2))[0]
            if not 1 <= tag <= 6:
                raise SourceError(f"{path}: malformed XDF chunk at byte offset {off} "
                                  f"(unknown tag {tag})")
            if tag == 1:
                header = f.read(length - 2)
            off = body + length
    return header


def load_xdf(path: Path, stream: str = "", units: str = "auto") -> FileData:
    """The numeric stream ``stream`` (default: first regularly sampled numeric stream).

    Read by :func:`engramloop.recording.reader.read`: our recordings keep their exact
    host-clock stamps, other writers' streams are synchronised and dejittered."""
    check_xdf(path)
    try:
        rec = reader.read(path)
    except reader.RecordingReadError as exc:
        raise SourceError(str(exc)) from None
    if stream:
        chosen = [s for s in rec.signals if s.name == stream]
        if not chosen:
            names = ", ".join(rec.stream_names) or "(none)"
            if stream in rec.stream_names:
                raise SourceError(f"{path}: stream {stream!r} is a marker stream, not a signal")
            raise SourceError(f"{path}: no stream named {stream!r}; streams: {names}")
    else:
        chosen = [s for s in rec.signals if s.rate_hz > 0 and s.t.size > 1] or rec.signals
        if not chosen:
            raise SourceError(f"{path}: no numeric signal stream in this XDF file")
    s = chosen[0]
    scales = np.array([_scale(u, units, path, f"stream {s.name!r} channel {lab!r}")
                       for lab, u in zip(s.channels, s.channel_units, strict=True)])
    x = np.ascontiguousarray(s.x * scales)
    # the file's own channel_format says what resolution its values have
    formats = [f.channel_format for f in reader.footers(path) if f.name == s.name]
    fmt = _fmt.for_dtype(_XDF_DTYPES.get(formats[0], "")) if formats else _fmt.FLOAT64
    return FileData(x, s.t, s.rate_hz, list(s.channels), rec.markers, sample_format=fmt)


#: XDF channel formats (specification) as numpy dtypes
_XDF_DTYPES = {"float32": "<f4", "double64": "<f8", "int8": "<i1", "int16": "<i2",
               "int32": "<i4", "int64": "<i8"}


def _edf_format(h: Any) -> str:
    """float32 when every ordinary EDF/BDF signal's physical range, in steps of
    physical range / digital range, fits float32 (16-bit EDF and 24-bit BDF do)."""
    parts = []
    for i in range(len(h.labels)):
        if i in h.annotation_signals:
            continue
        (pmin, pmax), (dmin, dmax) = h.phys[i], h.dig[i]
        span = abs(float(dmax) - float(dmin))
        step = abs(float(pmax) - float(pmin)) / span if span else math.nan
        parts.append(_fmt.for_range(max(abs(float(pmin)), abs(float(pmax))), step))
    return _fmt.combine(*parts)


# ---------------------------------------------------------------------------- EDF/BDF
def check_edf(path: Path) -> tuple[int, int]:
    """Check an EDF/EDF+/BDF header against the file size (EDF spec, Kemp et al. 1992:
    256-byte fixed header, then 256 bytes per signal; data records of 2-byte (EDF) or
    3-byte (BDF) samples). Returns (header_bytes, record_bytes)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(256)
        if len(head) < 256:
            raise SourceError(f"{path}: truncated EDF header: file ends at byte offset "
                              f"{len(head)}, the fixed header needs 256 bytes")
        bdf = head[0] == 0xFF
        try:
            header_bytes = int(head[184:192].decode("ascii").strip())
            n_records = int(head[236:244].decode("ascii").strip())
            ns = int(head[252:256].decode("ascii").strip())
        except ValueError:
            raise SourceError(f"{path}: malformed EDF header (bytes 184-256 are not "
                              "numbers); is this an EDF/BDF file?") from None
        if header_bytes != 256 * (ns + 1):
            raise SourceError(f"{path}: malformed EDF header: header size {header_bytes} at "
                              f"byte offset 184 does not match {ns} signals")
        sig = f.read(256 * ns)
        if len(sig) < 256 * ns:
            raise SourceError(f"{path}: truncated EDF header: file ends at byte offset "
                              f"{256 + len(sig)}, the signal headers need {header_bytes}")
        base = 216 * ns
        try:
            per_rec = [int(sig[base + 8 * i: base + 8 * i + 8].decode("ascii").strip())
                       for i in range(ns)]
        except ValueError:
            raise SourceError(f"{path}: malformed EDF header: samples-per-record field at "
                              f"byte offset {256 + base} is not a number") from None
    record_bytes = sum(per_rec) * (3 if bdf else 2)
    need = header_bytes + max(n_records, 0) * record_bytes
    if size < need:
        full = (size - header_bytes) // record_bytes if record_bytes else 0
        raise SourceError(f"{path}: truncated EDF file: {n_records} data records need "
                          f"{need} bytes, file ends at byte offset {size} (inside record "
                          f"{full}, which starts at byte offset "
                          f"{header_bytes + full * record_bytes})")
    return header_bytes, record_bytes


def load_edf(path: Path, units: str = "auto") -> FileData:
    """All ordinary signals (same rate) in physical units converted to volts; for EDF+,
    the annotations (``markers["annotations"]``) and each data record at its real start
    time (EDF+D: a jump between records is a gap in the timestamps)."""
    import pyedflib

    check_edf(path)
    h = read_header(path)
    onsets, notes = None, []
    if h.plus:
        try:
            onsets, notes = read_plus(path, h)
        except SourceError:
            if h.discontinuous:   # without its time-keeping an EDF+D file has no time base
                raise
            # EDF+C: the samples are contiguous anyway; pyedflib reads the annotations
    if h.discontinuous:
        return _load_edf_discontinuous(path, h, onsets, notes, units)
    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise SourceError(f"{path}: not a readable EDF/EDF+/BDF file: {exc}") from None
    try:
        n = reader.signals_in_file
        labels = [lab.strip() for lab in reader.getSignalLabels()]
        rates = [float(reader.getSampleFrequency(i)) for i in range(n)]
        if not n:
            raise SourceError(f"{path}: EDF file has no signals")
        keep = [i for i in range(n) if rates[i] == rates[0]]
        if len(keep) != n:
            dropped = ", ".join(labels[i] for i in range(n) if i not in keep)
            import warnings
            warnings.warn(f"{path}: skipping signals at other rates than "
                          f"{rates[0]} Hz: {dropped}", stacklevel=3)
        cols, full = [], []
        for i in keep:
            dim = reader.getPhysicalDimension(i).strip()
            sc = _scale(dim, units, path, f"signal {labels[i]!r}")
            cols.append(reader.readSignal(i) * sc)
            # the digital extremes map to the physical ones: a sample there is on the rail
            full.append(max(abs(reader.getPhysicalMaximum(i)),
                            abs(reader.getPhysicalMinimum(i))) * sc)
        x = np.column_stack(cols)
        if h.plus:   # pyedflib's own annotation reader for continuous files
            on, du, tx = reader.readAnnotations()
            notes = [(float(o), float(d), str(t)) for o, d, t in zip(on, du, tx, strict=True)]
    finally:
        reader.close()
    t0 = float(onsets[0]) if onsets is not None and onsets.size else 0.0
    t0 = t0 if math.isfinite(t0) else 0.0
    t = t0 + np.arange(x.shape[0]) / rates[0]
    return FileData(x, t, rates[0], [labels[i] for i in keep], full_scale_v=full,
                    markers=_annotation_markers(notes), sample_format=_edf_format(h))


def _annotation_markers(notes: list) -> dict:
    """EDF+ annotations as a marker stream: onset times (s, file time) and one JSON-able
    record each (``kind`` "annotation", ``text``, ``onset_s``, ``duration_s`` or None)."""
    if not notes:
        return {}
    notes = sorted(notes, key=lambda n: n[0])
    return {"annotations": (np.array([n[0] for n in notes], dtype=np.float64),
                            [{"kind": "annotation", "text": n[2], "onset_s": n[0],
                              "duration_s": n[1] if n[1] >= 0 else None} for n in notes])}


def _load_edf_discontinuous(path: Path, h: Any, onsets: np.ndarray, notes: list,
                            units: str) -> FileData:
    """EDF+D/BDF+D (pyedflib refuses these): the records are read here, each at its own
    start time from its time-keeping annotation."""
    ordinary = [i for i in range(len(h.labels)) if i not in h.annotation_signals]
    if not ordinary:
        raise SourceError(f"{path}: EDF file has no signals")
    keep = [i for i in ordinary if h.per_record[i] == h.per_record[ordinary[0]]]
    if len(keep) != len(ordinary):
        import warnings
        warnings.warn(f"{path}: skipping signals at other rates than the first one: "
                      + ", ".join(h.labels[i] for i in ordinary if i not in keep), stacklevel=3)
    if np.any(np.diff(onsets) < h.record_s - 1e-9):
        raise SourceError(f"{path}: EDF+D data records overlap or go back in time (record "
                          f"onsets {onsets[:5].tolist()}...); the file's time-keeping is "
                          "broken")
    x, t = read_discontinuous(path, h, keep, onsets)
    sc = np.array([_scale(h.dims[i], units, path, f"signal {h.labels[i]!r}") for i in keep])
    full = [max(abs(h.phys[i][0]), abs(h.phys[i][1])) * s for i, s in zip(keep, sc,
                                                                          strict=True)]
    rate = h.per_record[keep[0]] / h.record_s
    return FileData(x * sc, t, rate, [h.labels[i] for i in keep], full_scale_v=full,
                    markers=_annotation_markers(notes), sample_format=_edf_format(h))


# ---------------------------------------------------------------------------- CSV
def load_brainflow_csv(path: Path, board: str, units: str = "auto") -> FileData:
    """A file written by BrainFlow's ``DataFilter.write_file``: one sample per line,
    tab-separated, columns as in the board description; EEG rows in microvolts and the
    timestamp row in Unix seconds (BrainFlow docs, "Data format description")."""
    if not board:
        raise SourceError(f"{path}: a BrainFlow CSV file has no header; set "
                          "source.file.board to the board that wrote it (e.g. cyton)")
    load_brainflow()
    from brainflow.board_shim import BoardShim

    bid = board_id(board)
    descr = BoardShim.get_board_descr(bid)
    try:
        data = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise table_error(path, "BrainFlow CSV", exc) from None
    if data.shape[1] != descr["num_rows"]:
        raise SourceError(f"{path}: {data.shape[1]} columns per line, board {board} "
                          f"writes {descr['num_rows']}; is source.file.board right?")
    eeg = descr["eeg_channels"]
    names = str(descr.get("eeg_names", "")).split(",")
    if len(names) != len(eeg):
        names = [f"EEG{i + 1}" for i in range(len(eeg))]
    scale = 1e-6 if units == "auto" else (unit_scale(units) or 1.0)
    t = data[:, descr["timestamp_channel"]]
    rate = float(descr["sampling_rate"])
    gaps = None
    if descr.get("package_num_channel") is not None:
        # BrainFlow stamps packets when parsed, so stamps bunch up; losses are judged from
        # the packet counter (with the host time for long ones), as on the live board

        det = CounterGapDetector(rate, step=counter_step(bid))
        lost = det.update(data[:, descr["package_num_channel"]], t)
        gaps = np.flatnonzero(lost)
    return FileData(data[:, eeg] * scale, t, rate, names, gaps=gaps,
                    sample_format=board_sample_format(bid))


# ---------------------------------------------------------------------------- NPZ
def load_npz(path: Path, units: str = "auto") -> FileData:
    """An .npz from ``engramloop sim``: ``samples`` (n, c) volts, ``timestamps`` (n,) s,
    ``rate_hz``, ``channels``; common aliases (data, t, fs, ch_names) are accepted."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise SourceError(f"{path}: not an .npz archive (a single array?); save with "
                              "numpy.savez(samples=..., rate_hz=..., channels=...)")
        keys = set(z.files)

        def get(*names: str) -> Any:
            for k in names:
                if k in keys:
                    return z[k]
            return None

        x = get("samples", "data", "x")
        if x is None:
            raise SourceError(f"{path}: .npz has no 'samples' array (has: "
                              f"{', '.join(sorted(keys))})")
        t = get("timestamps", "t", "time_s")
        rate = get("rate_hz", "fs", "sfreq", "rate")
        ch = get("channels", "ch_names")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
        raise SourceError(f"{path}: malformed .npz file ({exc}); the file is damaged or not "
                          "an .npz archive (numpy.savez, engramloop sim --out X.npz)") from None
    for what, arr in (("samples", x), ("timestamps", t), ("rate_hz", rate)):
        if arr is not None and np.iscomplexobj(arr):
            raise SourceError(f"{path}: .npz '{what}' holds complex numbers; store real "
                              "values (volts, seconds, Hz)")
    fmt = _fmt.for_dtype(x.dtype)   # a float32 (or int16) array stays float32 recorded
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise SourceError(f"{path}: .npz 'samples' is not numeric (dtype {x.dtype}); store "
                          "an (n_samples, n_channels) float array in volts") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise SourceError(f"{path}: .npz 'samples' has shape {x.shape}; store an "
                          "(n_samples, n_channels) array")
    if t is not None:
        try:
            t = np.asarray(t, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise SourceError(f"{path}: .npz 'timestamps' is not numeric (dtype "
                              f"{np.asarray(t).dtype}); store seconds as floats") from None
    if rate is None:
        if t is None or len(t) < 2 or not t[-1] > t[0]:
            raise SourceError(f"{path}: .npz needs 'rate_hz' (or increasing 'timestamps' "
                              "to derive it from)")
        rate = (len(t) - 1) / (float(t[-1]) - float(t[0]))
    rate_arr = np.asarray(rate).reshape(-1)
    try:
        if rate_arr.size != 1:
            raise ValueError
        rate = float(rate_arr[0])
    except (TypeError, ValueError):
        raise SourceError(f"{path}: .npz 'rate_hz' must be one number in Hz, got "
                          f"{np.asarray(rate).tolist()!r}") from None
    if not (math.isfinite(rate) and rate > 0):
        raise SourceError(f"{path}: .npz 'rate_hz' must be a finite number of Hz > 0, got "
                          f"{rate}")
    if t is None:
        t = np.arange(x.shape[0]) / rate
    names = ([str(c) for c in np.atleast_1d(ch)] if ch is not None
             else [f"ch{i + 1}" for i in range(x.shape[1])])
    if len(t) != x.shape[0] or len(names) != x.shape[1]:
        raise SourceError(f"{path}: .npz shapes disagree: samples {x.shape}, timestamps "
                          f"{len(t)}, channels {len(names)}")
    scale = 1.0 if units == "auto" else (unit_scale(units) or 1.0)
    return FileData(x * scale, np.asarray(t, dtype=np.float64), rate, names,
                    sample_format=fmt)


def check_data(path: Path, d: FileData) -> None:
    """Refuse a loaded recording whose time base or layout cannot be replayed faithfully.

    One-line :class:`SourceError` for: a rate that is not a finite number > 0; duplicate
    channel names (a detector would read the wrong one); no samples; timestamps that are
    not finite, that step backwards or that never advance; a declared rate that the
    timestamps contradict (median spacing over ~0.5 s strides, off by more than 10 %;
    strides, not single steps, so host stamps that bunch up per USB packet still pass).
    Samples that are NaN/Inf in places are replayed as they are (the loop treats them as
    an artefact); a channel with no finite sample at all is refused by
    :class:`FileSource` for the channels it keeps.
    """
    if not (math.isfinite(d.rate_hz) and d.rate_hz > 0):
        raise SourceError(f"{path}: sampling rate {d.rate_hz} Hz is not a finite number "
                          "> 0; the file's rate field is broken")
    seen: set[str] = set()
    dup = sorted({c for c in d.channels if c in seen or seen.add(c)})
    if dup:
        raise SourceError(f"{path}: duplicate channel name(s) {', '.join(map(repr, dup))}; "
                          "give every channel a distinct name")
    t = d.timestamps
    n = t.size
    if d.samples.shape[0] == 0 or n == 0:
        raise SourceError(f"{path}: the recording holds no samples")
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise SourceError(f"{path}: {bad.size} timestamp(s) are NaN/Inf (first at sample "
                          f"{int(bad[0])}); the file's time base is broken")
    if n < 2:
        return
    dt = np.diff(t)
    back = np.flatnonzero(dt < 0)
    if back.size:
        i = int(back[0]) + 1
        raise SourceError(f"{path}: timestamps step backwards at sample {i} ({t[i]:.6f} s "
                          f"after {t[i - 1]:.6f} s; {back.size} time(s) in all); replay "
                          "needs increasing times")
    if not t[-1] > t[0]:
        raise SourceError(f"{path}: all {n} timestamps are {t[0]:.6f} s (constant); "
                          "replay needs increasing times")
    k = max(10, int(d.rate_hz * 0.5))
    if n > 2 * k:
        step = float(np.median(t[k:] - t[:-k])) / k
        if step > 0:
            implied = 1.0 / step
            if abs(implied / d.rate_hz - 1.0) > 0.1:
                raise SourceError(
                    f"{path}: declared rate {d.rate_hz:g} Hz does not match the timestamps "
                    f"(they advance at {implied:.4g} samples/s); fix the rate or the "
                    "timestamps")


def load_file(path: str | Path, *, stream: str = "", board: str = "",
              units: str = "auto") -> FileData:
    """Load any supported recording by its extension."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    ext = path.suffix.lower()
    if ext in (".xdf", ".xdfz"):
        d = load_xdf(path, stream, units)
    elif ext in (".edf", ".bdf", ".rec"):
        d = load_edf(path, units)
    elif ext in (".csv", ".tsv"):
        d = load_brainflow_csv(path, board, units)
    elif ext == ".npz":
        d = load_npz(path, units)
    elif ext == ".txt" and is_openbci_txt(path):
        d = load_openbci_txt(path, 1e-6 if units == "auto" else (unit_scale(units) or 1.0))
    else:
        d = None
    if d is not None:
        check_data(path, d)
        return d
    raise SourceError(f"{path}: unknown file type {ext!r}; replay reads .xdf, .edf, .bdf, "
                      ".csv (BrainFlow), .txt (OpenBCI GUI) and .npz (engramloop sim)")


class FileSource:
    """Replay a recording as a Source.

    Parameters
    ----------
    path : str or Path
        The recording (.xdf, .edf, .bdf, .csv, .npz).
    speed : float or "max"
        1 = real time on the host clock; N = N times faster (timestamps on a
        :class:`ScaledClock`); "max" = no waiting, timestamps on a simulated clock that
        ``read`` advances to each chunk's last sample.
    clock : Clock, optional
        Clock to stamp and pace with (default as above). Exposed as ``self.clock`` so the
        loop schedules on the same time base.
    channels : sequence of str
        Channels to keep, in order (default all).
    chunk_samples : int
        Samples per chunk; a chunk never spans a gap in the file's timestamps.

    Timestamps are the file's, shifted so the first sample is at the clock's time when
    :meth:`start` is called; ``gap_before`` marks a jump of more than 1.5 sample periods.
    """

    def __init__(self, path: str | Path, *, speed: float | str = 1.0, clock: Any = None,
                 channels: Sequence[str] = (), chunk_samples: int = 10, stream: str = "",
                 board: str = "", units: str = "auto") -> None:
        self.path = Path(path)
        self.data = load_file(self.path, stream=stream, board=board, units=units)
        d = self.data
        if channels:
            missing = [c for c in channels if c not in d.channels]
            if missing:
                hint = ", ".join(name_with_hint(c, d.channels) for c in missing)
                raise SourceError(f"{self.path}: no channel(s) {hint}; the file has "
                                  f"{', '.join(d.channels)} (check source.channels or "
                                  "--channels)")
            idx = [d.channels.index(c) for c in channels]
            d.samples = np.ascontiguousarray(d.samples[:, idx])
            d.full_scale_v = d.full_scale_v[idx]
            d.channels = tuple(channels)
        if d.samples.shape[0] == 0:
            raise SourceError(f"{self.path}: the recording holds no samples")
        dead = [c for c, ok in zip(d.channels, np.isfinite(d.samples).any(axis=0),
                                   strict=True) if not ok]
        if dead:
            raise SourceError(f"{self.path}: channel(s) {', '.join(dead)} hold no finite "
                              "sample (all NaN/Inf); leave them out with source.channels "
                              "(--channels)")
        self.rate_hz = d.rate_hz
        self.channels = d.channels
        #: per channel, volts (+-): the file's own range (EDF/BDF), else inf
        self.full_scale_v = d.full_scale_v
        #: how the recorder may store the samples: the file's own resolution decides
        self.sample_format = d.sample_format
        self.speed = speed
        if clock is None:
            clock = SimClock() if speed == "max" else ScaledClock(float(speed))
        self.clock = clock
        self.chunk_samples = int(chunk_samples)
        dt = np.diff(d.timestamps)
        if d.gaps is not None:
            self._gaps = np.asarray(d.gaps, dtype=np.intp)
        elif d.rate_hz > 0:
            self._gaps = np.flatnonzero(dt > 1.5 / d.rate_hz) + 1
        else:
            self._gaps = np.array([], dtype=np.intp)
        self._pos = 0
        self._next_gap = 0
        self._offset = math.nan
        # annotations the file carries (EDF+): handed out with the chunk they fall in
        # (chunk.meta["annotations"], host times), so the recording keeps them
        ann_t, ann = d.markers.get("annotations", (np.empty(0), []))
        self._ann_t = np.asarray(ann_t, dtype=np.float64)
        self._ann = list(ann)
        self._next_ann = 0
        self.duration_s = float(d.timestamps[-1] - d.timestamps[0]) + 1.0 / d.rate_hz

    def start(self) -> None:
        self._offset = self.clock.now() - float(self.data.timestamps[0])

    def stop(self) -> None:
        self._pos = self.data.samples.shape[0]

    def read(self, timeout_s: float) -> Chunk | None:
        """The next chunk once the clock has reached its last sample; None if that is more
        than ``timeout_s`` (host seconds) away; EndOfStream after the last sample."""
        if math.isnan(self._offset):
            self.start()
        d = self.data
        n = d.samples.shape[0]
        i = self._pos
        if i >= n:
            raise EndOfStream(f"{self.path}: end of recording")
        j = min(i + self.chunk_samples, n)
        while self._next_gap < len(self._gaps) and self._gaps[self._next_gap] <= i:
            self._next_gap += 1
        if self._next_gap < len(self._gaps):
            j = min(j, int(self._gaps[self._next_gap]))
        t = d.timestamps[i:j] + self._offset
        due = float(t[-1])
        if self.speed != "max":
            wait = (due - self.clock.now()) / float(self.speed)
            if wait > timeout_s:
                time.sleep(max(timeout_s, 0.0))
                return None
        self.clock.sleep_until(due)
        self._pos = j
        gap = bool(self._next_gap > 0 and self._gaps[self._next_gap - 1] == i)
        meta: dict = {"source": str(self.path)}
        if self._next_ann < len(self._ann):
            # every annotation up to this chunk's last sample (all of them at the end)
            end = np.inf if j >= n else float(d.timestamps[j])
            k = int(np.searchsorted(self._ann_t, end, side="left"))
            if k > self._next_ann:
                meta["annotations"] = [(float(self._ann_t[m]) + self._offset, self._ann[m])
                                       for m in range(self._next_ann, k)]
                self._next_ann = k
        return Chunk(d.samples[i:j].copy(), t, self.rate_hz, self.channels,
                     arrival_s=self.clock.now(), first_index=i, gap_before=gap,
                     meta=meta)


__all__ = ["FileSource", "FileData", "ScaledClock", "load_file", "check_xdf", "check_edf"]
