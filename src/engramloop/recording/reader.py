"""The one reader of recordings: every XDF file that replay, score, sweep, report and
training open goes through :func:`read` (the project's single ``pyxdf.load_xdf`` call),
with one timestamp policy:

- **our recordings** (the file header carries ``<engramloop>``): timestamps exactly as
  written -- host-clock stamps shared by signals and markers, so neither clock
  synchronisation nor dejittering (either would move samples against markers);
- **other writers** (LabRecorder, ...): pyxdf's clock synchronisation and dejittering (a
  linear fit per segment, broken at real gaps) give the regular sample times replay needs.

:func:`read` with ``signals=False`` decodes only the marker streams: pyxdf skips the
sample chunks of the others, which is what ``score`` needs (seconds, not minutes, for a
long night). :func:`footers` gives each stream's span and count from its footer without
decoding any sample.
"""
from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engramloop.recording.schema import marker_kind
from engramloop.recording.xdf import MAGIC, TAG_STREAM_FOOTER, TAG_STREAM_HEADER


class RecordingReadError(ValueError):
    """A file that is missing or not readable as XDF (one line: the path and why)."""


class RecordingDamageWarning(UserWarning):
    """A recording that reads, but not completely: it ends inside a chunk (a cut-off copy,
    a full disk, a crash inside a write), so that chunk's samples are lost."""


def cut_off(path: str | Path) -> str:
    """Why ``path`` is damaged at its end, or "" when it ends on a chunk boundary.

    Walks the chunk headers (``[NumLengthBytes][Length][Tag]``, XDF 1.0) without decoding
    any content. pyxdf drops a chunk that the file's end cuts through and only logs it.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        off = len(MAGIC)
        while off < size:
            f.seek(off)
            head = f.read(1)
            nb = head[0] if head else 0
            raw = f.read(nb) if nb in (1, 4, 8) else b""
            length = int.from_bytes(raw, "little")
            tag = f.read(2)
            tag_text = f" (tag {int.from_bytes(tag, 'little')})" if len(tag) == 2 else ""
            if nb not in (1, 4, 8) or len(raw) < nb or length < 2 \
                    or off + 1 + nb + length > size:
                return (f"{path}: recording cut off inside a chunk{tag_text} starting at "
                        f"byte {off} of {size}: the last {size - off} bytes are unreadable "
                        f"and that chunk's samples are lost; everything before it is read")
            off += 1 + nb + length
    return ""


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


def _raw_header(path: Path) -> bytes:
    """The FileHeader chunk's XML bytes (empty when the first chunk is something else)."""
    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            raise RecordingReadError(f"{path}: not a readable XDF file (no 'XDF:' magic at byte 0)")
        nb = f.read(1)
        if not nb or nb[0] not in (1, 4, 8):
            return b""
        length = int.from_bytes(f.read(nb[0]), "little")
        if f.read(2) != b"\x01\x00":
            return b""
        return f.read(max(0, length - 2))


def _engramloop_header(raw: bytes) -> tuple[int, str]:
    """(schema version, config text) from our FileHeader XML; version 1 when the file
    predates the version field."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(raw.decode("utf-8", "replace"))
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


def read(path: str | Path, *, signals: bool = True,
         streams: Sequence[str] | None = None) -> Contents:
    """Read a recording.

    Parameters
    ----------
    signals : bool
        False: decode only the marker (string) streams.
    streams : sequence of str, optional
        Read only the streams with these names.

    Raises
    ------
    RecordingReadError
        Missing file, no XDF magic, or content pyxdf cannot parse.
    """
    import pyxdf

    path = Path(path)
    if not path.is_file():
        raise RecordingReadError(f"{path}: no such recording")
    raw = _raw_header(path)
    ours = b"<engramloop>" in raw
    version, config_text = _engramloop_header(raw) if ours else (None, "")
    select: list[int] | None = None
    if streams is not None or not signals:
        # stream ids from the headers (pyxdf's own name matching would parse every chunk)
        want = set(streams or ())
        select = [s.stream_id for s in footers(path)
                  if (s.name in want if streams is not None else s.channel_format == "string")]
    got: list = []
    header: Any = {}
    if select is None or select:
        try:
            got, header = pyxdf.load_xdf(str(path), select_streams=select,
                                         synchronize_clocks=not ours,
                                         dejitter_timestamps=not ours)
        except Exception as exc:  # pyxdf raises bare Exceptions (and others) on bad content
            raise RecordingReadError(f"{path}: not a readable XDF file: {exc}") from None
        damage = cut_off(path)
        if damage:
            warnings.warn(damage, RecordingDamageWarning, stacklevel=2)
    out = Contents(path, header if isinstance(header, dict) else {}, ours, version,
                   config_text)
    for st in sorted(got, key=lambda st: int(first(st.get("info", {}), "stream_id") or 0)):
        info = st.get("info", {})
        name = str(first(info, "name") or "")
        out.stream_names.append(name)
        stamps = np.asarray(st.get("time_stamps", []), dtype=np.float64)
        if first(info, "channel_format") == "string":
            rows = out.markers.setdefault(marker_kind(name) if ours or
                                          name.startswith("engramloop.") else name, [])
            for t, values in zip(stamps, st.get("time_series", []), strict=False):
                text = values[0] if isinstance(values, (list, tuple)) and values else values
                try:
                    obj = json.loads(text)
                except (TypeError, ValueError):
                    obj = {"text": str(text)}
                rows.append((float(t), obj if isinstance(obj, dict) else {"value": obj}))
            continue
        if not signals:
            continue
        x = np.asarray(st.get("time_series", np.empty((0, 0))), dtype=np.float64)
        n_ch = int(first(info, "channel_count") or (x.shape[1] if x.ndim == 2 else 1))
        x = x.reshape(-1, n_ch) if x.size else np.empty((0, n_ch))
        labels: list[str] = []
        units: list[str] = []
        chans = first(info, "desc", "channels")
        if isinstance(chans, dict):
            for ch in chans.get("channel", []) or []:
                labels.append(str(first(ch, "label") or f"ch{len(labels) + 1}"))
                units.append(str(first(ch, "unit") or ""))
        if len(labels) != n_ch:
            labels, units = [f"ch{i + 1}" for i in range(n_ch)], [""] * n_ch
        rate = float(first(info, "nominal_srate") or 0.0)
        if rate <= 0:
            rate = float(first(info, "effective_srate") or 0.0)
        if rate <= 0 and stamps.size > 1 and stamps[-1] > stamps[0]:
            rate = float((stamps.size - 1) / (stamps[-1] - stamps[0]))
        out.signals.append(SignalStream(name, tuple(labels), rate, units[0] if units else "",
                                        stamps, x, tuple(units)))
    for rows in out.markers.values():
        rows.sort(key=lambda r: r[0])
    return out


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
    and footer, skipping the sample chunks (a file cut off before its footers -- a killed
    process -- gives ``has_footer=False`` for the streams that lack one).

    Raises
    ------
    RecordingReadError
        No XDF magic.
    """
    import re

    def tag(xml: str, name: str) -> str:
        m = re.search(rf"<{name}>(.*?)</{name}>", xml, re.S)
        return m.group(1).strip() if m else ""

    path = Path(path)
    found: dict[int, StreamSummary] = {}
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            raise RecordingReadError(f"{path}: not a readable XDF file (no 'XDF:' magic at byte 0)")
        off = 4
        while off < size:
            f.seek(off)
            nb = f.read(1)
            if not nb or nb[0] not in (1, 4, 8):
                break
            raw = f.read(nb[0])
            if len(raw) < nb[0]:
                break
            length = int.from_bytes(raw, "little")
            body = off + 1 + nb[0]
            if length < 2 or body + length > size:
                break
            t = struct.unpack("<H", f.read(2))[0]
            if t in (TAG_STREAM_HEADER, TAG_STREAM_FOOTER):
                content = f.read(length - 2)
                sid = struct.unpack("<I", content[:4])[0]
                xml = content[4:].decode("utf-8", "replace")
                if t == TAG_STREAM_HEADER:
                    found[sid] = StreamSummary(sid, tag(xml, "name"), tag(xml, "channel_format"))
                elif sid in found:
                    s = found[sid]
                    try:
                        found[sid] = StreamSummary(
                            sid, s.name, s.channel_format, float(tag(xml, "first_timestamp")),
                            float(tag(xml, "last_timestamp")), int(tag(xml, "sample_count")),
                            True)
                    except ValueError:
                        pass
            off = body + length
    return list(found.values())


__all__ = ["read", "footers", "cut_off", "RecordingDamageWarning", "Contents",
           "SignalStream", "StreamSummary", "RecordingReadError", "first"]
