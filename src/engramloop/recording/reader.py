"""The one reader of recordings: every XDF file that replay, score, sweep, report and
training open goes through this module, on the project's own streaming XDF reader
(:mod:`engramloop.recording.xdf_blocks`; pyxdf stays as the independent reference in the
tests), with one timestamp policy:

- **our recordings** (the file header carries ``<engramloop>``): timestamps exactly as
  written (an omitted stamp is the previous one plus one sample period) -- host-clock
  stamps shared by signals and markers, so neither clock synchronisation nor
  dejittering (either would move samples against markers);
- **other writers** (LabRecorder, ...): clock synchronisation and dejittering as pyxdf
  does them by default (a line through the clock offsets; a linear fit per segment,
  broken at real gaps) give the regular sample times replay needs.

:func:`read` loads a whole file (small files, the API); :func:`open_file` gives the
indexed file whose signal :meth:`~engramloop.recording.xdf_blocks.XdfFile.blocks`
decodes block by block, which is what the offline paths that must not grow with the
night use. ``read(..., signals=False)`` decodes only the marker streams, seeking past the
sample chunks (seconds, not minutes, for a long night). :func:`footers` gives each
stream's span and count from its footer without decoding any sample.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engramloop.recording.schema import marker_kind
from engramloop.recording.xdf_blocks import (
    RecordingDamageWarning,
    StreamInfo,
    XdfFile,
    XdfFormatError,
)


class RecordingReadError(ValueError):
    """A file that is missing or not readable as XDF (one line: the path and why)."""


def cut_off(path: str | Path) -> str:
    """Why ``path`` is damaged (cut off inside a chunk, or a damaged region skipped to the
    next boundary chunk), naming the byte; "" when it reads to its end."""
    try:
        return XdfFile(path).damage
    except XdfFormatError as exc:
        raise RecordingReadError(str(exc)) from None


@dataclass
class SignalStream:
    """One numeric stream.

    Attributes
    ----------
    t : ndarray, shape (n_samples,), seconds (host clock for our recordings)
    x : ndarray, shape (n_samples, n_channels), in the stream's units (volts for ours)
    units : str
        The first channel's unit ("" when the file says none).
    channel_units : tuple of str
        Each channel's unit as the file gives it ("" when absent).
    """

    name: str
    channels: tuple[str, ...]
    rate_hz: float
    units: str
    t: np.ndarray
    x: np.ndarray
    channel_units: tuple[str, ...] = ()

    def channel(self, name: str) -> np.ndarray:
        return self.x[:, self.channels.index(name)]


@dataclass
class Contents:
    """What :func:`read` found.

    Attributes
    ----------
    ours : bool
        Written by engramloop (timestamps kept exactly).
    schema_version : int or None
        The recording schema version of one of ours (1 for files from before it was
        written); None for other writers.
    markers : dict
        Every string stream's records as ``{kind: [(t, dict), ...]}`` sorted by time:
        ``engramloop.<kind>`` streams under ``kind`` with their JSON objects decoded (a
        non-object value as ``{"value": v}``, text that is not JSON as ``{"text": s}``);
        other writers' marker streams under their own name.
    """

    path: Path
    header: dict
    ours: bool
    schema_version: int | None
    config_text: str
    signals: list[SignalStream] = field(default_factory=list)
    markers: dict[str, list[tuple[float, dict]]] = field(default_factory=dict)
    #: every stream read, in file order, by its name in the file
    stream_names: list[str] = field(default_factory=list)


def first(d: Any, *keys: str) -> Any:
    """Walk pyxdf's list-wrapped XML dicts: ``first(info, "desc", "channels")``."""
    for k in keys:
        if isinstance(d, list):
            d = d[0] if d else None
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    if isinstance(d, list):
        d = d[0] if d else None
    return d


def engramloop_header(xml: str) -> tuple[int, str]:
    """(schema version, config text) from our FileHeader XML; version 1 when the file
    predates the version field."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return 1, ""
    el = root.find("engramloop")
    if el is None:
        return 1, ""
    try:
        version = int((el.findtext("schema_version") or "1").strip())
    except ValueError:
        version = 1
    return version, el.findtext("config") or ""


def _xml_dict(el: Any) -> dict:
    """An XML element as nested dicts of lists (``{"info": [{"name": ["x"]}]}``-style,
    the shape :func:`first` walks)."""
    out: dict = {}
    for child in el:
        out.setdefault(child.tag, []).append(_xml_dict(child) if len(child) else
                                             (child.text or ""))
    return out


def header_dict(xml: str) -> dict:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    return {root.tag: [_xml_dict(root)]}


def open_file(path: str | Path) -> tuple[XdfFile, bool]:
    """The recording indexed for streaming (:class:`~engramloop.recording.xdf_blocks.XdfFile`)
    and whether it is one of ours (timestamps kept as written; others are clock-
    synchronised and dejittered by ``blocks(..., synchronize=True)``). A damaged end
    is warned about (:class:`RecordingDamageWarning`).

    Raises
    ------
    RecordingReadError
        Missing file or no XDF magic.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingReadError(f"{path}: no such recording")
    try:
        f = XdfFile(path)
    except XdfFormatError as exc:
        raise RecordingReadError(str(exc)) from None
    if f.damage:
        warnings.warn(f.damage, RecordingDamageWarning, stacklevel=3)
    return f, "<engramloop>" in f.header_xml


def signal_stream(f: XdfFile, info: StreamInfo, *, ours: bool) -> SignalStream:
    """A whole numeric stream in memory, float64 (small files, tests and the API; the
    offline paths that must stay bounded stream :meth:`XdfFile.blocks` instead)."""
    ts, xs = [], []
    for t, x in f.blocks(info.stream_id, synchronize=not ours):
        ts.append(t)
        xs.append(x.astype(np.float64, copy=False))
    t = np.concatenate(ts) if ts else np.empty(0)
    x = np.concatenate(xs) if xs else np.empty((0, info.channel_count))
    return SignalStream(info.name, info.channels, stream_rate(info, t), info.units[0] if
                        info.units else "", t, x, info.units)


def stream_rate(info: StreamInfo, t: np.ndarray | None = None) -> float:
    """The nominal rate, else the rate the stamps (or the footer) imply."""
    if info.rate_hz > 0:
        return info.rate_hz
    if t is not None and t.size > 1 and t[-1] > t[0]:
        return float((t.size - 1) / (t[-1] - t[0]))
    foot = info.footer
    if foot and foot.get("sample_count", 0) > 1 and \
            foot["last_timestamp"] > foot["first_timestamp"]:
        return (foot["sample_count"] - 1) / (foot["last_timestamp"] - foot["first_timestamp"])
    return 0.0


def signal_rate(f: XdfFile, info: StreamInfo, *, ours: bool) -> float:
    """:func:`stream_rate` of a stream read whole, without reading it: the nominal rate,
    else the rate its first and last stamps (as ``blocks`` gives them) and its sample
    count imply, else its footer's; only the first and last chunk are decoded."""
    if info.rate_hz > 0:
        return info.rate_hz
    n = f.sample_count(info.stream_id)
    if n > 1:
        t0, t1 = f.span(info.stream_id, synchronize=not ours)
        if t1 > t0:
            return float((n - 1) / (t1 - t0))
    return stream_rate(info)


def marker_records(f: XdfFile, info: StreamInfo, *, ours: bool) -> list[tuple[float, dict]]:
    """A string stream's samples as ``(t, dict)``: JSON objects decoded (a non-object
    value as ``{"value": v}``, text that is not JSON as ``{"text": s}``), sorted by time."""
    t, vals = f.markers(info.stream_id, synchronize=not ours)
    rows = []
    for tt, values in zip(t, vals, strict=True):
        text = values[0] if values else ""
        try:
            obj = json.loads(text)
        except (TypeError, ValueError):
            obj = {"text": str(text)}
        rows.append((float(tt), obj if isinstance(obj, dict) else {"value": obj}))
    rows.sort(key=lambda r: r[0])
    return rows


def read(path: str | Path, *, signals: bool = True,
         streams: Sequence[str] | None = None) -> Contents:
    """Read a recording (everything in memory: for the bounded-memory offline paths use
    :func:`open_file` and stream the signal).

    Parameters
    ----------
    signals : bool
        False: decode only the marker (string) streams; the signal chunks are seeked past.
    streams : sequence of str, optional
        Read only the streams with these names.

    Raises
    ------
    RecordingReadError
        Missing file, no XDF magic.
    """
    f, ours = open_file(path)
    version, config_text = engramloop_header(f.header_xml) if ours \
        else (None, "")
    out = Contents(Path(path), header_dict(f.header_xml), ours, version, config_text)
    for info in f.streams.values():
        if streams is not None and info.name not in streams:
            continue
        if info.numeric and not signals:
            continue
        if not info.numeric and info.channel_format != "string":
            continue                  # not readable: named in the damage warning
        out.stream_names.append(info.name)
        if info.numeric:
            out.signals.append(signal_stream(f, info, ours=ours))
    out.markers = marker_streams(f, ours=ours, names=streams)
    return out


def marker_streams(f: XdfFile, *, ours: bool, names: Sequence[str] | None = None
                   ) -> dict[str, list[tuple[float, dict]]]:
    """Every string stream's records (those named in ``names`` when given) as
    ``{kind: [(t, dict), ...]}`` sorted by time (:attr:`Contents.markers`); no signal
    sample is decoded."""
    out: dict[str, list[tuple[float, dict]]] = {}
    for info in f.streams.values():
        if info.channel_format != "string" or (names is not None and info.name not in names):
            continue                  # numeric, or not readable (named in the damage warning)
        kind = marker_kind(info.name) if ours or info.name.startswith("engramloop.") \
            else info.name
        out.setdefault(kind, []).extend(marker_records(f, info, ours=ours))
    for rows in out.values():
        rows.sort(key=lambda r: r[0])
    return out


def markers_and_spans(path: str | Path) -> tuple[Contents, list[StreamSummary]]:
    """The marker streams (as :func:`read` with ``signals=False``) and every numeric
    stream's span and count -- from its footer, or, for a file cut off before its footers
    (a killed run), from the chunk index and the stream's first and last chunk only. No
    other signal sample is decoded, so this costs seconds, not minutes, for a long night.
    Another writer's file is the exception: its spans are clock-synchronised and
    dejittered as its markers and :func:`read` are, which decodes each signal's stamps
    once.
    """
    f, ours = open_file(path)
    version, config_text = engramloop_header(f.header_xml) if ours \
        else (None, "")
    out = Contents(Path(path), header_dict(f.header_xml), ours, version, config_text)
    spans = []
    for info in f.streams.values():
        if not info.numeric and info.channel_format != "string":
            continue                  # not readable: named in the damage warning
        out.stream_names.append(info.name)
        if not info.numeric:
            continue
        foot = info.footer
        if not ours:
            # another writer's stamps are on its own clock: the span is synchronised (and
            # dejittered) like the markers beside it, as read() gives it -- one pass over
            # this stream's stamps
            t0, t1 = f.span(info.stream_id, synchronize=True)
            spans.append(StreamSummary(info.stream_id, info.name, info.channel_format, t0, t1,
                                       f.sample_count(info.stream_id), bool(foot)))
        elif foot:
            spans.append(StreamSummary(info.stream_id, info.name, info.channel_format,
                                       foot["first_timestamp"], foot["last_timestamp"],
                                       foot["sample_count"], True))
        else:
            t0, t1 = f.span(info.stream_id)
            spans.append(StreamSummary(info.stream_id, info.name, info.channel_format, t0, t1,
                                       f.sample_count(info.stream_id), False))
    out.markers = marker_streams(f, ours=ours)
    return out, spans


@dataclass(frozen=True)
class StreamSummary:
    """A stream as its header and footer describe it (no samples decoded)."""

    stream_id: int
    name: str
    channel_format: str
    first_timestamp: float = float("nan")
    last_timestamp: float = float("nan")
    sample_count: int = 0
    has_footer: bool = False


def footers(path: str | Path) -> list[StreamSummary]:
    """Every stream's name, format, first/last timestamp and sample count from its header
    and footer, without decoding a sample (a file cut off before its footers -- a killed
    process -- gives ``has_footer=False`` for the streams that lack one).

    Raises
    ------
    RecordingReadError
        No XDF magic.
    """
    try:
        f = XdfFile(path)
    except XdfFormatError as exc:
        raise RecordingReadError(str(exc)) from None
    out = []
    for info in f.streams.values():
        foot = info.footer
        out.append(StreamSummary(info.stream_id, info.name, info.channel_format,
                                 foot["first_timestamp"], foot["last_timestamp"],
                                 foot["sample_count"], True) if foot else
                   StreamSummary(info.stream_id, info.name, info.channel_format))
    return out


__all__ = ["read", "open_file", "signal_stream", "marker_records", "marker_streams",
           "stream_rate", "signal_rate", "footers", "markers_and_spans", "engramloop_header",
           "header_dict", "marker_kind", "cut_off", "RecordingDamageWarning", "Contents",
           "SignalStream", "StreamSummary", "RecordingReadError", "first"]
