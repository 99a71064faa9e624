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
from engramloop.drivers.edf_plus import first_record_onset, read_header, read_plus
from engramloop.drivers.file_blocks import (
    EdfBlocks,
    NpzBlocks,
    TextBlocks,
    TimeBaseScan,
    XdfBlocks,
    _check_names,
    iter_table,
    read_whole,
)
from engramloop.drivers.file_data import FileData
from engramloop.drivers.openbci_txt import is_openbci_txt, open_openbci_txt
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


def open_xdf(path: Path, stream: str = "", units: str = "auto") -> Any:
    """The numeric stream ``stream`` (default: the first regularly sampled numeric stream
    with more than one sample) as :class:`~drivers.file_blocks.XdfBlocks`, checked by one
    streaming pass; the marker streams are read whole (they are small).

    Opened by :func:`engramloop.recording.reader.open_file`: our recordings keep their
    exact host-clock stamps, other writers' streams are synchronised and dejittered."""
    check_xdf(path)
    try:
        f, ours = reader.open_file(path)
    except reader.RecordingReadError as exc:
        raise SourceError(str(exc)) from None
    numeric = [i for i in f.streams.values() if i.numeric]
    names = [i.name for i in f.streams.values() if i.numeric or i.channel_format == "string"]
    if stream:
        chosen = [i for i in numeric if i.name == stream]
        if not chosen:
            if stream in names:
                raise SourceError(f"{path}: stream {stream!r} is a marker stream, not a signal")
            raise SourceError(f"{path}: no stream named {stream!r}; streams: "
                              f"{', '.join(names) or '(none)'}")
        info = chosen[0]
        rate = reader.signal_rate(f, info, ours=ours)
    else:
        if not numeric:
            raise SourceError(f"{path}: no numeric signal stream in this XDF file")
        rates = ((i, reader.signal_rate(f, i, ours=ours)) for i in numeric)
        info, rate = next(((i, r) for i, r in rates
                           if r > 0 and f.sample_count(i.stream_id) > 1),
                          (numeric[0], None))
        rate = reader.signal_rate(f, info, ours=ours) if rate is None else rate
    scales = [_scale(u, units, path, f"stream {info.name!r} channel {lab!r}")
              for lab, u in zip(info.channels, info.units, strict=True)]
    # the file's own channel_format says what resolution its values have
    fmt = _fmt.for_dtype(_XDF_DTYPES.get(info.channel_format, ""))
    return XdfBlocks(path, f, info, rate, not ours, scales,
                     reader.marker_streams(f, ours=ours), fmt)


def load_xdf(path: Path, stream: str = "", units: str = "auto") -> FileData:
    """:func:`open_xdf`'s stream read whole (notebooks and tests; a replay reads it
    block by block)."""
    return read_whole(open_xdf(path, stream, units))


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


def open_edf(path: Path, units: str = "auto", channels: Sequence[str] = ()) -> Any:
    """An EDF/EDF+/BDF file as :class:`~drivers.file_blocks.EdfBlocks`: all ordinary
    signals at the first one's rate in physical units converted to volts; for EDF+, the
    annotations (``markers["annotations"]``) and each data record at its real start
    time (EDF+D: a jump between records is a gap in the timestamps). Reads the header
    and the annotations, not the samples."""
    import pyedflib


    check_edf(path)
    h = read_header(path)
    if h.n_records < 0:
        # EDF spec: -1 while recording; pyedflib refuses such a file too
        raise SourceError(f"{path}: the EDF header gives {h.n_records} data records "
                          "(unknown: its writer did not finish the file); write the number "
                          "of data records into the header (bytes 236-243) or export the "
                          "file again")
    onsets, notes = None, []
    if h.plus:
        try:
            onsets, notes = read_plus(path, h)
        except SourceError:
            if h.discontinuous:   # without its time-keeping an EDF+D file has no time base
                raise
            # EDF+C: the samples are contiguous anyway; pyedflib reads the annotations
    ordinary = [i for i in range(len(h.labels)) if i not in h.annotation_signals]
    n_records = h.n_records
    if h.discontinuous:
        # pyedflib refuses EDF+D: the records are read here, each at its own start time
        if np.any(np.diff(onsets) < h.record_s - 1e-9):
            raise SourceError(f"{path}: EDF+D data records overlap or go back in time "
                              f"(record onsets {onsets[:5].tolist()}...); the file's "
                              "time-keeping is broken")
    else:
        # pyedflib (the counterpart) judges the header and reads EDF+C annotations
        try:
            reader = pyedflib.EdfReader(str(path))
        except OSError as exc:
            raise SourceError(f"{path}: not a readable EDF/EDF+/BDF file: {exc}") from None
        try:
            n_records = int(reader.datarecords_in_file)
            if h.plus:
                on, du, tx = reader.readAnnotations()
                notes = [(float(o), float(d), str(t))
                         for o, d, t in zip(on, du, tx, strict=True)]
        finally:
            reader.close()
    if not ordinary:
        raise SourceError(f"{path}: EDF file has no signals")
    # the replay runs at one rate: that of the channels asked for, else the first signal's
    asked = [h.labels.index(c) for c in channels if c in h.labels
             and h.labels.index(c) in ordinary]
    rates = {h.per_record[i] for i in asked}
    if len(rates) > 1:
        raise SourceError(f"{path}: the channels asked for have different rates ("
                          + ", ".join(f"{h.labels[i]} ({h.per_record[i] / h.record_s:g} Hz)"
                                      for i in asked)
                          + "); a replay runs at one rate: choose channels of one rate")
    ref = asked[0] if asked else ordinary[0]
    keep = [i for i in ordinary if h.per_record[i] == h.per_record[ref]]
    if not (math.isfinite(h.record_s) and h.record_s > 0):
        raise SourceError(f"{path}: malformed EDF header: data record duration "
                          f"{h.record_s} s is not a number > 0")
    sc = [_scale(h.dims[i], units, path, f"signal {h.labels[i]!r}") for i in keep]
    b = EdfBlocks(path, h, keep, sc, n_records, onsets, _annotation_markers(notes))
    b.sample_format = _edf_format(h)
    other = [f"{h.labels[i]} ({h.per_record[i] / h.record_s:g} Hz)" for i in ordinary
             if i not in keep]
    if other:
        # a replay runs at one rate: the rest is left out, and the recording says so
        b.left_out = tuple(h.labels[i] for i in ordinary if i not in keep)
        b.notes = (f"{path}: signal(s) {', '.join(other)} left out: sampled at another "
                   f"rate than {b.rate_hz:g} Hz, which the replay runs at",)
    _check_blocks(b)
    return b


def load_edf(path: Path, units: str = "auto") -> FileData:
    """:func:`open_edf`'s signals read whole (for notebooks, ``score`` and tests; a
    replay reads them block by block); signals left out for their rate are a
    UserWarning."""
    b = open_edf(path, units)
    for note in b.notes:
        import warnings

        warnings.warn(note, stacklevel=2)
    return read_whole(b)


def edf_annotations(path: str | Path) -> list[dict]:
    """An EDF+/BDF+ file's annotations as :func:`open_edf` hands them on (``kind``
    "annotation", ``text``, ``onset_s``, ``duration_s`` or None; sorted by onset), reading
    the header and each data record's annotation-signal bytes only -- no ordinary sample
    (``score --truth night.edf``). A plain EDF has none: []."""
    path = Path(path)
    check_edf(path)
    h = read_header(path)
    if not h.plus:
        return []
    # as open_edf: EDF+D by our TAL parser (pyedflib refuses it), EDF+C by pyedflib, the
    # counterpart; both read the annotation signal's bytes of each record, nothing else
    notes = read_plus(path, h)[1] if h.discontinuous else _pyedflib_annotations(path)
    m = _annotation_markers(notes)
    return list(m["annotations"][1]) if m else []


def edf_first_sample_s(path: str | Path) -> float:
    """Time of an EDF/EDF+/BDF file's first sample (s from the file's start), as
    :func:`open_edf` replays it: the first data record's onset for EDF+, 0 for a plain
    EDF (and for an EDF+C whose time-keeping cannot be read, as open_edf does)."""
    path = Path(path)
    check_edf(path)
    h = read_header(path)
    if not h.plus:
        return 0.0
    try:
        t0 = first_record_onset(path, h)
    except SourceError:
        if h.discontinuous:
            raise
        return 0.0
    return t0 if math.isfinite(t0) else 0.0


def _pyedflib_annotations(path: Path) -> list[tuple[float, float, str]]:
    import pyedflib

    try:
        r = pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise SourceError(f"{path}: not a readable EDF/EDF+/BDF file: {exc}") from None
    try:
        on, du, tx = r.readAnnotations()
    finally:
        r.close()
    return [(float(o), float(d), str(t)) for o, d, t in zip(on, du, tx, strict=True)]


def _annotation_markers(notes: list) -> dict:
    """EDF+ annotations as a marker stream: onset times (s, file time) and one JSON-able
    record each (``kind`` "annotation", ``text``, ``onset_s``, ``duration_s`` or None)."""
    if not notes:
        return {}
    notes = sorted(notes, key=lambda n: n[0])
    return {"annotations": (np.array([n[0] for n in notes], dtype=np.float64),
                            [{"kind": "annotation", "text": n[2], "onset_s": n[0],
                              "duration_s": n[1] if n[1] >= 0 else None} for n in notes])}


# ---------------------------------------------------------------------------- CSV
def open_brainflow_csv(path: Path, board: str, units: str = "auto",
                       check: bool = True) -> Any:
    """A file written by BrainFlow's ``DataFilter.write_file``: one sample per line,
    tab-separated, columns as in the board description; EEG rows in microvolts and the
    timestamp row in Unix seconds (BrainFlow docs, "Data format description"). Parsed
    in blocks (:class:`~drivers.file_blocks.TextBlocks`)."""

    if not board:
        raise SourceError(f"{path}: a BrainFlow CSV file has no header; set "
                          "source.file.board to the board that wrote it (e.g. cyton)")
    load_brainflow()
    from brainflow.board_shim import BoardShim

    bid = board_id(board)
    descr = BoardShim.get_board_descr(bid)
    eeg = list(descr["eeg_channels"])
    names = str(descr.get("eeg_names", "")).split(",")
    if len(names) != len(eeg):
        names = [f"EEG{i + 1}" for i in range(len(eeg))]
    scale = 1e-6 if units == "auto" else (unit_scale(units) or 1.0)
    ts_col, rate = descr["timestamp_channel"], float(descr["sampling_rate"])
    pkg = descr.get("package_num_channel")

    def table():
        return iter_table(path, "BrainFlow CSV", delimiter="\t")

    def convert(data: np.ndarray, state: dict) -> tuple:
        if data.shape[1] != descr["num_rows"]:
            raise SourceError(f"{path}: {data.shape[1]} columns per line, board {board} "
                              f"writes {descr['num_rows']}; is source.file.board right?")
        t = data[:, ts_col]
        lost = None
        if pkg is not None:
            # BrainFlow stamps packets when parsed, so stamps bunch up; losses are judged
            # from the packet counter (with the host time for long ones), as on the board
            det = state.get("det") or state.setdefault(
                "det", CounterGapDetector(rate, step=counter_step(bid)))
            lost = det.update(data[:, pkg], t) > 0
        return data[:, eeg] * scale, t, lost

    b = TextBlocks(path, rate, names, table, convert, check=check)
    b.sample_format = board_sample_format(bid)
    return b


def load_brainflow_csv(path: Path, board: str, units: str = "auto") -> FileData:
    """:func:`open_brainflow_csv` read whole."""
    return read_whole(open_brainflow_csv(path, board, units))


# ---------------------------------------------------------------------------- NPZ
def load_npz(path: Path, units: str = "auto") -> FileData:
    """An .npz from ``engramloop sim`` read whole: ``samples`` (n, c) volts, ``timestamps``
    (n,) s, ``rate_hz``, ``channels``; common aliases (data, t, fs, ch_names) are
    accepted (:class:`~drivers.file_blocks.NpzBlocks`, which a replay streams)."""
    return read_whole(NpzBlocks(path, units))


def _check_blocks(b: Any) -> None:
    _check_names(b.path, b.rate_hz, b.channels)
    if b.n_samples <= 0:
        raise SourceError(f"{b.path}: the recording holds no samples")


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
    _check_names(path, d.rate_hz, d.channels)
    if d.samples.shape[0] == 0:
        raise SourceError(f"{path}: the recording holds no samples")
    scan = TimeBaseScan(path, d.rate_hz, len(d.channels))
    scan.feed(d.timestamps)
    scan.finish()


def open_blocks(path: str | Path, *, stream: str = "", board: str = "",
                units: str = "auto", check: bool = True,
                channels: Sequence[str] = ()) -> Any:
    """Any supported recording by its extension, as a block reader
    (:mod:`drivers.file_blocks`), checked as :func:`check_data` checks a loaded one.
    ``check=False``: only the header (channels, rate), for a config check. ``channels``:
    those a replay keeps (an EDF of several rates is read at theirs)."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    ext = path.suffix.lower()
    if ext in (".xdf", ".xdfz"):
        return open_xdf(path, stream, units)
    if ext in (".edf", ".bdf", ".rec"):
        return open_edf(path, units, channels)
    if ext in (".csv", ".tsv"):
        return open_brainflow_csv(path, board, units, check=check)
    if ext == ".npz":
        return NpzBlocks(path, units, check=check)
    if ext == ".txt" and is_openbci_txt(path):
        return open_openbci_txt(path, 1e-6 if units == "auto" else (unit_scale(units) or 1.0),
                                check=check)
    raise SourceError(f"{path}: unknown file type {ext!r}; replay reads .xdf, .edf, .bdf, "
                      ".csv (BrainFlow), .txt (OpenBCI GUI) and .npz (engramloop sim)")


def load_file(path: str | Path, *, stream: str = "", board: str = "",
              units: str = "auto") -> FileData:
    """Load any supported recording by its extension, whole (notebooks, tests, the Cyton
    emulator); a replay streams it with :func:`open_blocks`."""
    return read_whole(open_blocks(path, stream=stream, board=board, units=units))


class FileSource:
    """Replay a recording as a Source, reading it block by block (O(block) memory).

    Parameters
    ----------
    path : str or Path
        The recording (.xdf, .edf, .bdf, .csv, .txt, .npz).
    speed : float or "max"
        1 = real time on the host clock; N = N times faster (timestamps on a
        :class:`ScaledClock`); "max" = no waiting, timestamps on a simulated clock that
        ``read`` advances to each chunk's last sample.
    clock : Clock, optional
        Clock to stamp and pace with (default as above). Exposed as ``self.clock`` so the
        loop schedules on the same time base.
    channels : sequence of str
        Channels to keep, in order (default all); only these are read from the file.
    chunk_samples : int
        Samples per chunk; a chunk never spans a gap in the file's timestamps.

    Timestamps are the file's, shifted so the first sample is at the clock's time when
    :meth:`start` is called; ``gap_before`` marks a jump of more than 1.5 sample periods.

    At ``speed="max"`` the loop may call :meth:`use_blocks` to be handed larger chunks
    (whole multiples of ``chunk_samples``, still cut at gaps), which it decodes at once
    and acts on at the ``chunk_samples`` grid (:class:`controller.loop.Loop`).
    """

    def __init__(self, path: str | Path, *, speed: float | str = 1.0, clock: Any = None,
                 channels: Sequence[str] = (), chunk_samples: int = 10, stream: str = "",
                 board: str = "", units: str = "auto") -> None:
        self.path = Path(path)
        self._opts = dict(stream=stream, board=board, units=units, channels=tuple(channels))
        self.reader = b = open_blocks(self.path, **self._opts)
        if channels:
            missing = [c for c in channels if c not in b.channels]
            if missing:
                hint = ", ".join(name_with_hint(c, b.channels) for c in missing)
                raise SourceError(f"{self.path}: no channel(s) {hint}; the file has "
                                  f"{', '.join(b.channels)} (check source.channels or "
                                  "--channels)")
            self._cols = [b.channels.index(c) for c in channels]
        else:
            self._cols = list(range(len(b.channels)))
        self.channels = tuple(b.channels[i] for i in self._cols)
        #: what the reader left out of the file (EDF signals at other rates) when every
        #: channel was asked for; the loop records it (one line each)
        self.notes = tuple(b.notes) if not channels else ()
        dead = [c for c, i in zip(self.channels, self._cols, strict=True) if not b.finite[i]]
        if dead:
            raise SourceError(f"{self.path}: channel(s) {', '.join(dead)} hold no finite "
                              "sample (all NaN/Inf); leave them out with source.channels "
                              "(--channels)")
        self.rate_hz = b.rate_hz
        #: per channel, volts (+-): the file's own range (EDF/BDF), else inf
        self.full_scale_v = np.asarray(b.full_scale_v)[self._cols]
        #: how the recorder may store the samples: the file's own resolution decides
        self.sample_format = b.sample_format
        self.speed = speed
        if clock is None:
            clock = SimClock() if speed == "max" else ScaledClock(float(speed))
        self.clock = clock
        self.chunk_samples = int(chunk_samples)
        #: samples per chunk handed out (``chunk_samples`` unless :meth:`use_blocks`)
        self.block_samples = self.chunk_samples
        self.n_samples = int(b.n_samples)
        self._gaps = np.asarray(b.gaps, dtype=np.intp)
        self._pos = 0
        self._next_gap = 0
        self._offset = math.nan
        self._blocks = None
        self._buf_x = np.zeros((0, len(self._cols)))
        self._buf_t = np.zeros(0)
        self._buf0 = 0           # file index of the buffer's first sample
        self._data: FileData | None = None
        # annotations the file carries (EDF+): handed out with the chunk they fall in
        # (chunk.meta["annotations"], host times), so the recording keeps them
        ann_t, ann = b.markers.get("annotations", (np.empty(0), []))
        self._ann_t = np.asarray(ann_t, dtype=np.float64)
        self._ann = list(ann)
        self._next_ann = 0
        self.duration_s = float(b.t_last - b.t_first) + 1.0 / b.rate_hz

    @property
    def data(self) -> FileData:
        """The kept channels of the whole file, loaded on first use (file times; for
        notebooks and tests -- the replay itself never loads it)."""
        if self._data is None:
            self._data = read_whole(open_blocks(self.path, **self._opts), self._cols)
        return self._data

    def use_blocks(self, seconds: float) -> int:
        """At ``speed="max"``: hand out chunks of about ``seconds`` of samples (a whole
        multiple of ``chunk_samples``; a chunk still never spans a gap). Returns the
        decision grid (``chunk_samples``), or 0 when not replaying at max speed or the
        blocks would be no larger than a chunk."""
        if self.speed != "max":
            return 0
        k = max(1, int(round(seconds * self.rate_hz / self.chunk_samples)))
        self.block_samples = k * self.chunk_samples
        return self.chunk_samples if k > 1 else 0

    def start(self) -> None:
        self._offset = self.clock.now() - float(self.reader.t_first)

    def stop(self) -> None:
        self._pos = self.n_samples
        self._blocks = None

    def _fill(self, j: int) -> None:
        """Make the buffer hold samples [self._pos, j] (j included when in the file)."""
        if self._blocks is None:
            self._blocks = self.reader.blocks(self._cols)
        need = min(j + 1, self.n_samples)
        end = self._buf0 + self._buf_t.size
        if end >= need:
            return
        keep = self._pos - self._buf0
        xs, ts = [self._buf_x[keep:]], [self._buf_t[keep:]]
        self._buf0 = self._pos
        while end < need:
            try:
                x, t = next(self._blocks)
            except StopIteration:
                raise SourceError(f"{self.path}: the file ended after {end} of "
                                  f"{self.n_samples} samples while it was replayed; it "
                                  "changed or is damaged") from None
            xs.append(x)
            ts.append(t)
            end += t.size
        self._buf_x = np.concatenate(xs) if len(xs) > 1 else xs[0]
        self._buf_t = np.concatenate(ts) if len(ts) > 1 else ts[0]

    def read(self, timeout_s: float) -> Chunk | None:
        """The next chunk once the clock has reached its last sample; None if that is more
        than ``timeout_s`` (host seconds) away; EndOfStream after the last sample.

        With :meth:`use_blocks`, the clock is moved only to the chunk's first sample:
        the loop walks it through the chunk as it acts on the chunk_samples grid."""
        if math.isnan(self._offset):
            self.start()
        n = self.n_samples
        i = self._pos
        if i >= n:
            raise EndOfStream(f"{self.path}: end of recording")
        j = min(i + self.block_samples, n)
        while self._next_gap < len(self._gaps) and self._gaps[self._next_gap] <= i:
            self._next_gap += 1
        if self._next_gap < len(self._gaps):
            j = min(j, int(self._gaps[self._next_gap]))
        self._fill(j)
        a, e = i - self._buf0, j - self._buf0
        t = self._buf_t[a:e] + self._offset
        blocks = self.block_samples > self.chunk_samples
        due = float(t[0] if blocks else t[-1])
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
            end = np.inf if j >= n else float(self._buf_t[e])
            k = int(np.searchsorted(self._ann_t, end, side="left"))
            if k > self._next_ann:
                meta["annotations"] = [(float(self._ann_t[m]) + self._offset, self._ann[m])
                                       for m in range(self._next_ann, k)]
                self._next_ann = k
        return Chunk(self._buf_x[a:e].copy(), t, self.rate_hz, self.channels,
                     arrival_s=self.clock.now(), first_index=i, gap_before=gap,
                     meta=meta)


__all__ = ["FileSource", "FileData", "ScaledClock", "load_file", "open_blocks", "check_xdf",
           "edf_annotations",
           "check_edf"]
