"""The report's view of a recording: every marker stream in memory (small: JSON records),
the signal streams as :class:`Signal` handles that read samples on demand -- blocks for
running aggregates, windows around the few moments a figure plots -- so the report's
memory does not grow with the night.
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engramloop.analysis.report.records import num
from engramloop.core.chunk import SourceError
from engramloop.drivers.files import check_xdf
from engramloop.recording import reader
from engramloop.recording.schema import upgrade_forecast
from engramloop.recording.xdf_blocks import BLOCK_SAMPLES, XdfFile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


class ReportError(RuntimeError):
    """The recording cannot be read (missing, not XDF, no usable stream)."""


@dataclass
class Signal:
    """One numeric stream of the recording; samples are read when asked for.

    Attributes
    ----------
    n : int
        Samples in the stream.
    t_first, t_last : float
        First and last sample time, seconds (host clock for our recordings); NaN when the
        stream is empty.
    units : str
        The first channel's unit ("V" when the file says none: our recordings are volts).
    """

    name: str
    channels: tuple[str, ...]
    rate_hz: float
    units: str
    n: int
    t_first: float
    t_last: float
    file: XdfFile = field(repr=False)
    stream_id: int = 0
    synchronize: bool = False

    def blocks(self, ci: int, *, start_s: float | None = None,
               block_samples: int = BLOCK_SAMPLES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Channel ``ci`` block by block: ``(t, x)``, seconds and float64 in the stream's
        units, shapes (n,) and (n,)."""
        for t, x in self.file.blocks(self.stream_id, synchronize=self.synchronize,
                                     start_s=start_s, block_samples=block_samples):
            yield t, x[:, ci].astype(np.float64)

    def window(self, ci: int, start_s: float, stop_s: float
               ) -> tuple[np.ndarray, np.ndarray]:
        """Samples of channel ``ci`` with ``start_s <= t < stop_s``: ``(t, x)``."""
        ts, xs = [], []
        block = int(min(BLOCK_SAMPLES, max(64.0, (stop_s - start_s) * self.rate_hz + 64)))
        for t, x in self.blocks(ci, start_s=start_s, block_samples=block):
            keep = (t >= start_s) & (t < stop_s)
            ts.append(t[keep])
            xs.append(x[keep])
            if t[-1] >= stop_s:
                break
        if not ts:
            return np.empty(0), np.empty(0)
        return np.concatenate(ts), np.concatenate(xs)

    def inside(self, start_s: float, stop_s: float) -> bool:
        """Whether ``[start_s, stop_s]`` lies strictly inside the recorded signal."""
        return self.n > 0 and start_s > self.t_first and stop_s < self.t_last


@dataclass
class Recording:
    """Everything the report reads from one XDF file."""

    path: Path
    signals: list[Signal]
    markers: dict[str, list[tuple[float, dict]]]
    config_text: str = ""
    config: dict = field(default_factory=dict)
    datetime: str = ""
    #: why the recording is not a whole session ("" when it is): an engramloop
    #: recording whose streams have no footers was never closed (the process was killed,
    #: crashed or lost power), so the session may have gone on after its last sample
    unclosed: str = ""

    @property
    def t0(self) -> float:
        """Session start, seconds (host clock): the first signal sample, else the first
        marker."""
        starts = [s.t_first for s in self.signals if s.n] or \
            [m[0][0] for m in self.markers.values() if m]
        return float(min(starts)) if starts else 0.0

    @property
    def t1(self) -> float:
        """Session end, seconds: the last signal sample, else the last marker."""
        ends = [s.t_last for s in self.signals if s.n] or \
            [m[-1][0] for m in self.markers.values() if m]
        return float(max(ends)) if ends else 0.0

    def find_channel(self, name: str) -> tuple[Signal, int] | None:
        for s in self.signals:
            if name in s.channels:
                return s, s.channels.index(name)
        return None


def config_of(text: str) -> tuple[str, dict]:
    """The effective config a recording carries: its TOML text and the parsed table ({}
    when absent or unreadable)."""
    try:
        return str(text), (tomllib.loads(text) if text else {})
    except tomllib.TOMLDecodeError:
        return str(text), {}


def load_recording(path: str | Path) -> Recording:
    """Open an engramloop XDF file for the report: markers decoded, signals indexed
    (through :func:`engramloop.recording.reader.open_file`).

    Raises
    ------
    ReportError
        If the file is missing or is not a readable XDF file.
    """
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"recording {path} not found (give the .xdf file written by "
                          "engramloop run/replay)")
    try:  # a file cut short (copy interrupted, disk full) is named with its byte offset
        check_xdf(path)
    except SourceError as exc:
        why = str(exc).removeprefix(f"{path}: ")
        raise ReportError(f"recording {path} is not a readable XDF file: {why}") from None
    except OSError as exc:
        raise ReportError(f"recording {path}: cannot read it ({exc.strerror})") from None
    try:
        f, ours = reader.open_file(path)
    except reader.RecordingReadError as exc:
        raise ReportError(f"recording {exc}") from None
    signals: list[Signal] = []
    markers: dict[str, list[tuple[float, dict]]] = {}
    for info in f.streams.values():
        if not info.numeric:
            kind = reader.marker_kind(info.name) if ours or \
                info.name.startswith("engramloop.") else info.name
            markers.setdefault(kind, []).extend(reader.marker_records(f, info, ours=ours))
            continue
        t_first, t_last = f.span(info.stream_id, synchronize=not ours)
        signals.append(Signal(info.name, info.channels, reader.stream_rate(info),
                              (info.units[0] if info.units else "") or "V",
                              f.sample_count(info.stream_id), t_first, t_last, f,
                              info.stream_id, not ours))
    for rows in markers.values():
        rows.sort(key=lambda r: r[0])
    if "forecasts" in markers:   # older recordings: the fields by their current names
        markers["forecasts"] = [(t, upgrade_forecast(d)) for t, d in markers["forecasts"]]
    if "truth" in markers:
        markers["truth"] = expand_truth(markers["truth"])
        markers["truth"].sort(key=lambda r: r[0])
    _, config_text = reader.engramloop_header(f.header_xml) if ours else (None, "")
    config_text, config = config_of(config_text)
    rec = Recording(path, signals, markers, config_text, config,
                    str(reader.first(reader.header_dict(f.header_xml), "info", "datetime")
                        or ""))
    open_ = [i.name for i in f.streams.values() if not i.footer]
    if ours and open_:      # our recorder writes every stream's footer when it closes
        rec.unclosed = (f"This recording was never closed: {len(open_)} of "
                        f"{len(f.streams)} streams have no footer (the process was killed, "
                        f"crashed or lost power). It ends at its last sample, "
                        f"{rec.t1 - rec.t0:.1f} s after its first; the session may have "
                        "gone on, and there is no run summary.")
    return rec


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
    has_events = any(math.isfinite(num(d.get("onset_s"))) and d.get("kind") not in
                     ("stage", "memory") for _, d in out)
    for t, d in docs:
        t0 = num(d.get("t0_s"))
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
