"""A streaming XDF reader: one pass over the chunk headers, then signal blocks on demand.

Written from the XDF 1.0 specification (github.com/sccn/xdf, wiki "Specifications"; the
layout is summarised in :mod:`engramloop.recording.xdf`). :class:`XdfFile` walks the
file's chunks once, reading only what is small -- the file header, stream headers and
footers, clock offsets and the string (marker) samples -- and, for each Samples chunk of a
numeric stream, where it lies and how many samples it holds (a few bytes read, the
samples seeked past). :meth:`XdfFile.blocks` then decodes one numeric stream block by
block, so memory holds one block, not the night.

Timestamps
----------
A sample's ``TimestampBytes`` is 8 (a float64 stamp follows) or 0 (omitted): an omitted
stamp is the previous sample's plus ``1 / nominal_srate`` (the specification's rule;
``0`` for an irregular stream), carried across chunks of the same stream.

On top of the decoded stamps :meth:`XdfFile.blocks` applies one policy, the one the
project's reader has always used (:mod:`engramloop.recording.reader`):

- ``synchronize=False`` (our recordings: every stream already on the host clock) -- the
  stamps as decoded;
- ``synchronize=True`` (other writers, e.g. LabRecorder) -- clock synchronisation, then
  dejittering, as pyxdf does by default:

  * the stream's ClockOffset measurements ``(collection time, offset)`` are split at
    clock resets and each range fitted by a least-squares line; ``offset(t)`` is added
    to each stamp (:mod:`engramloop.recording.clock_sync`; pyxdf fits the same lines
    with a Huber-robust solver, and for offsets without outliers the two agree);
  * a regular stream is cut into segments where two successive stamps are further apart
    (forwards or backwards, as after a restarted source clock) than
    ``max(1 s, 500 samples)`` and each segment's stamps are replaced by the
    least-squares line through them (sample index -> time), i.e. a constant rate per
    segment; a stream whose header says ``can_drop_samples`` is not dejittered (as in
    pyxdf). The line is accumulated in one pass over the stamps (running means and
    co-moments, Chan et al. 1979 pairwise update), so it needs no copy of the stamps.
"""
from __future__ import annotations

import math
import struct
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engramloop.recording.clock_sync import ClockMap, clock_map
from engramloop.recording.xdf import (
    BOUNDARY_UUID,
    MAGIC,
    NUMERIC_FORMATS,
    TAG_CLOCK_OFFSET,
    TAG_FILE_HEADER,
    TAG_SAMPLES,
    TAG_STREAM_FOOTER,
    TAG_STREAM_HEADER,
)

#: dejittering: a gap longer than this many seconds, or this many sample periods
#: (whichever is longer), starts a new segment (pyxdf's defaults, ``load_xdf``'s
#: ``jitter_break_threshold_seconds`` and ``..._samples``)
BREAK_S = 1.0
BREAK_SAMPLES = 500
#: samples decoded per block by default (8 channels of float64: 4 MB)
BLOCK_SAMPLES = 65536


class RecordingDamageWarning(UserWarning):
    """A recording that reads, but not completely: it ends inside a chunk (a cut-off copy,
    a full disk, a crash inside a write), so that chunk's samples are lost, or it holds
    samples that cannot be read (a stream without a header, an undefined channel format,
    a record that cannot be decoded)."""


class XdfFormatError(ValueError):
    """The file is not XDF (no magic) or a chunk cannot be parsed (one line: path, byte)."""


@dataclass(frozen=True)
class StreamInfo:
    """One stream as its header (and footer, when written) describe it.

    Attributes
    ----------
    rate_hz : float
        Nominal sampling rate (Hz); 0 for an irregular stream.
    channels, units : tuple of str
        Channel labels and units from ``desc/channels`` (``ch1``.. and "" when absent).
    footer : dict
        ``first_timestamp``, ``last_timestamp`` (s), ``sample_count`` from the footer;
        empty when the file has none (a killed writer).
    """

    stream_id: int
    name: str
    type: str
    channel_count: int
    rate_hz: float
    channel_format: str
    channels: tuple[str, ...]
    units: tuple[str, ...]
    header_xml: str
    footer: dict = field(default_factory=dict)

    @property
    def numeric(self) -> bool:
        return self.channel_format in NUMERIC_FORMATS

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(NUMERIC_FORMATS[self.channel_format])


@dataclass
class _Chunks:
    """Where one numeric stream's Samples chunks lie: start of the first sample record,
    end of the chunk, sample count, and the first sample's stamp (NaN when omitted)."""

    pos: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    n: list[int] = field(default_factory=list)
    first_t: list[float] = field(default_factory=list)


def _text(el: ET.Element | None, path: str) -> str:
    found = el.findtext(path) if el is not None else None
    return (found or "").strip()


def _parse_header(sid: int, xml: str) -> StreamInfo:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        root = None
    n_ch = int(_num(_text(root, "channel_count"), 1))
    labels: list[str] = []
    units: list[str] = []
    if root is not None:
        for ch in root.findall("desc/channels/channel"):
            labels.append(_text(ch, "label") or f"ch{len(labels) + 1}")
            units.append(_text(ch, "unit"))
    if len(labels) != n_ch:
        labels, units = [f"ch{i + 1}" for i in range(n_ch)], [""] * n_ch
    return StreamInfo(sid, _text(root, "name"), _text(root, "type"), n_ch,
                      max(_num(_text(root, "nominal_srate"), 0.0), 0.0),
                      _text(root, "channel_format") or "float32", tuple(labels),
                      tuple(units), xml)


def _num(text: str, default: float) -> float:
    try:
        v = float(text)
    except ValueError:
        return default
    return v if math.isfinite(v) else default


def _varlen(buf: bytes, at: int) -> tuple[int, int]:
    """(value, position after it) of the variable-length int at ``buf[at]``."""
    nb = buf[at]
    if nb not in (1, 4, 8) or at + 1 + nb > len(buf):
        raise ValueError(f"bad variable-length int width {nb}")
    return int.from_bytes(buf[at + 1:at + 1 + nb], "little"), at + 1 + nb


class XdfFile:
    """An XDF file indexed in one pass; signal samples are decoded only by :meth:`blocks`.

    Parameters
    ----------
    path : str or Path

    Attributes
    ----------
    header_xml : str
        The FileHeader chunk's XML ("" when missing).
    streams : dict of int to StreamInfo
        Every stream with a header, by stream id, in file order.
    clock_offsets : dict of int to list of (float, float)
        ``(collection time s, offset s)`` per stream, in file order.
    damage : str
        Why the walk stopped before the end of the file (a chunk cut off or unparseable,
        naming the byte), which region it skipped, and which samples it cannot read (a
        stream without a header, a channel format the specification does not define);
        "" when it read everything.

    Raises
    ------
    XdfFormatError
        No ``XDF:`` magic at byte 0.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.header_xml = ""
        self.streams: dict[int, StreamInfo] = {}
        self.clock_offsets: dict[int, list[tuple[float, float]]] = {}
        self.damage = ""
        self._chunks: dict[int, _Chunks] = {}
        self._markers: dict[int, tuple[list[float], list[list[str]]]] = {}
        self._last_t: dict[int, float] = {}     # stamp carry while decoding markers
        self._timing: dict[int, tuple] = {}
        self._stamped: dict[tuple[int, int], tuple] = {}
        self._unread: dict[tuple, tuple[int, int, int]] = {}
        self._at = 0                            # byte of the chunk being indexed
        self._decode_damage: set[str] = set()
        self._scan()
        notes = []
        for (sid, name, fmt), (at, chunks, count) in self._unread.items():
            what = (f"stream id {sid} has no stream header before its samples" if name is None
                    else f"stream {name!r} (id {sid}) has channel_format {fmt!r}, not one "
                    f"of {', '.join([*NUMERIC_FORMATS, 'string'])}")
            notes.append(f"{self.path}: {what}: its {count} samples in {chunks} chunk(s) "
                         f"from byte {at} are not read")
        self.damage = "; also ".join(filter(None, (self.damage, *notes)))

    # ------------------------------------------------------------------ the one pass
    def _scan(self) -> None:
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            if f.read(4) != MAGIC:
                raise XdfFormatError(f"{self.path}: not a readable XDF file (no 'XDF:' "
                                     "magic at byte 0)")
            off = 4
            while off < size:
                why = self._read_chunk(f, off, size)
                if isinstance(why, int):
                    off = why
                    continue
                # a damaged region: resume after the next Boundary chunk, as the
                # specification intends them for (pyxdf does the same)
                nxt = self._next_boundary(f, off, size)
                if nxt is None:
                    self.damage = "; also ".join(filter(None, (self.damage, why)))
                    return
                self.damage = "; also ".join(filter(None, (self.damage, (
                    f"{self.path}: damaged chunk at byte {off}: bytes {off} to {nxt} are "
                    "unreadable and their samples are lost; reading resumed at the boundary "
                    "chunk after them"))))
                off = nxt

    def _read_chunk(self, f, off: int, size: int) -> int | str:
        """Index the chunk at ``off``: the offset after it, or why it cannot be read."""
        f.seek(off)
        head = f.read(11)
        nb = head[0] if head else 0
        if nb not in (1, 4, 8) or len(head) < 1 + nb + 2:
            return self._why(off, size, None)
        length = int.from_bytes(head[1:1 + nb], "little")
        body = off + 1 + nb + 2          # content starts after the tag
        end = off + 1 + nb + length
        tag = struct.unpack_from("<H", head, 1 + nb)[0]
        if length < 2 or end > size:
            return self._why(off, size, tag)
        self._at = off
        try:
            self._chunk(f, tag, body, end)
        except (ValueError, struct.error, UnicodeDecodeError, IndexError) as exc:
            return (f"{self.path}: chunk (tag {tag}) at byte {off} cannot be parsed ({exc}); "
                    "the file is read up to it")
        return end

    def _next_boundary(self, f, off: int, size: int) -> int | None:
        """The byte after the next Boundary chunk's UUID past ``off`` (None if none)."""
        pos, tail = off + 1, b""
        f.seek(pos)
        while pos < size:
            buf = f.read(1 << 20)
            if not buf:
                break
            data = tail + buf
            i = data.find(BOUNDARY_UUID)
            if i >= 0:
                return pos - len(tail) + i + len(BOUNDARY_UUID)
            tail = data[-(len(BOUNDARY_UUID) - 1):]
            pos += len(buf)
        return None

    def _why(self, off: int, size: int, tag: int | None) -> str:
        tag_text = f" (tag {tag})" if tag is not None else ""
        return (f"{self.path}: recording cut off inside a chunk{tag_text} starting at byte "
                f"{off} of {size}: the last {size - off} bytes are unreadable and that "
                "chunk's samples are lost; everything before it is read")

    def _chunk(self, f, tag: int, body: int, end: int) -> None:
        if tag == TAG_SAMPLES:
            f.seek(body)
            head = f.read(min(4 + 9 + 9, end - body))
            sid = struct.unpack_from("<I", head)[0]
            info = self.streams.get(sid)
            if info is None or not (info.numeric or info.channel_format == "string"):
                # samples of a stream without a header before them, or of a format the
                # specification does not define: not readable, but named (never lost in
                # silence) and the walk goes on
                n, _ = _varlen(head, 4)
                key = (sid, info.name if info else None,
                       info.channel_format if info else None)
                first_at, chunks, count = self._unread.get(key, (self._at, 0, 0))
                self._unread[key] = (first_at, chunks + 1, count + n)
                return
            if not info.numeric:
                f.seek(body)
                self._string_samples(info, f.read(end - body))
                return
            n, at = _varlen(head, 4)
            vb = info.dtype.itemsize * info.channel_count
            if not n * (1 + vb) <= end - body - at <= n * (9 + vb):
                raise ValueError(f"{n} samples of {vb} bytes cannot fill {end - body - at} "
                                 "bytes")
            c = self._chunks.setdefault(sid, _Chunks())
            first = math.nan
            if n and at < len(head) and head[at] == 8 and at + 9 <= len(head):
                first = struct.unpack_from("<d", head, at + 1)[0]
            c.pos.append(body + at)
            c.end.append(end)
            c.n.append(n)
            c.first_t.append(first)
            return
        f.seek(body)
        content = f.read(end - body)
        if tag == TAG_FILE_HEADER:
            self.header_xml = content.decode("utf-8", "replace")
        elif tag == TAG_STREAM_HEADER:
            sid = struct.unpack_from("<I", content)[0]
            self.streams[sid] = _parse_header(sid, content[4:].decode("utf-8", "replace"))
        elif tag == TAG_CLOCK_OFFSET:
            sid, t, v = struct.unpack_from("<Idd", content)
            self.clock_offsets.setdefault(sid, []).append((t, v))
        elif tag == TAG_STREAM_FOOTER:
            sid = struct.unpack_from("<I", content)[0]
            if sid in self.streams:
                try:
                    root = ET.fromstring(content[4:].decode("utf-8", "replace"))
                    foot = {"first_timestamp": float(_text(root, "first_timestamp")),
                            "last_timestamp": float(_text(root, "last_timestamp")),
                            "sample_count": int(_text(root, "sample_count"))}
                except (ET.ParseError, ValueError):
                    foot = {}
                info = self.streams[sid]
                self.streams[sid] = StreamInfo(**{**info.__dict__, "footer": foot})

    def _string_samples(self, info: StreamInfo, content: bytes) -> None:
        sid = info.stream_id
        n, at = _varlen(content, 4)
        tdiff = 1.0 / info.rate_hz if info.rate_hz > 0 else 0.0
        last = self._last_t.get(sid, 0.0)
        ts: list[float] = []          # decoded here, kept only if the chunk parses
        vals: list[list[str]] = []
        for _ in range(n):
            flag = content[at]
            if flag == 8:
                last = struct.unpack_from("<d", content, at + 1)[0]
                at += 9
            elif flag == 0:
                last += tdiff
                at += 1
            else:
                raise ValueError(f"TimestampBytes {flag} (0 or 8 expected)")
            row = []
            for _ in range(info.channel_count):
                k, at = _varlen(content, at)
                if at + k > len(content):
                    raise ValueError(f"a string of {k} bytes runs past the chunk's end")
                row.append(content[at:at + k].decode("utf-8", "replace"))
                at += k
            ts.append(last)
            vals.append(row)
        got_t, got_v = self._markers.setdefault(sid, ([], []))
        got_t.extend(ts)
        got_v.extend(vals)
        self._last_t[sid] = last

    # ------------------------------------------------------------------ what it found
    def by_name(self, name: str) -> StreamInfo | None:
        return next((s for s in self.streams.values() if s.name == name), None)

    def markers(self, stream_id: int, *, synchronize: bool = False
                ) -> tuple[np.ndarray, list[list[str]]]:
        """A string stream's samples: stamps (s, shape (n,)) and values (n lists of
        ``channel_count`` strings), clock-synchronised when asked (markers are irregular:
        never dejittered)."""
        ts, vals = self._markers.get(stream_id, ([], []))
        t = np.asarray(ts, dtype=np.float64)
        if synchronize:
            t = self._clock_map(stream_id).mapper()(t)
        return t, vals

    def sample_count(self, stream_id: int) -> int:
        """Samples of a numeric stream in its indexed chunks (without decoding them)."""
        c = self._chunks.get(stream_id)
        return int(sum(c.n)) if c else 0

    def span(self, stream_id: int, *, synchronize: bool = False) -> tuple[float, float]:
        """First and last stamp of a numeric stream as :meth:`blocks` gives them, decoding
        only its first and last chunk ((nan, nan) when empty); synchronised, from the
        dejittering pass (one pass over the stamps, done once per stream)."""
        c = self._chunks.get(stream_id)
        if not c or not sum(c.n):
            return math.nan, math.nan
        if synchronize:
            cmap, segs = self._sync_timing(stream_id)
            if segs is not None:
                n = sum(c.n)
                return float(segs[1][0]), float(segs[1][-1] + segs[2][-1] * (n - 1 - segs[0][-1]))
            if cmap.single:
                a, b = self.span(stream_id)
                (c0, c1), = cmap.lines
                return a + c0 + c1 * a, b + c0 + c1 * b
            first = last = math.nan       # after a clock reset: the ranges walked in order
            for t, _ in self.blocks(stream_id, synchronize=True):
                first = float(t[0]) if math.isnan(first) else first
                last = float(t[-1])
            return first, last
        first = last = math.nan
        for t, _ in self.blocks(stream_id, block_samples=1):
            first = float(t[0])
            break
        k = max(i for i, n in enumerate(c.n) if n)
        start = self._resume_chunk(c, k)
        for t, _ in self._decode(stream_id, start, len(c.n), BLOCK_SAMPLES):
            last = float(t[-1])
        return first, last

    # ------------------------------------------------------------------ signal blocks
    def blocks(self, stream_id: int, *, synchronize: bool = False,
               block_samples: int = BLOCK_SAMPLES, start_s: float | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Decode a numeric stream block by block.

        Parameters
        ----------
        synchronize : bool
            Apply clock offsets and dejittering (see the module docstring).
        block_samples : int
            At most this many samples per block (a chunk is never merged with the next,
            a large one is split).
        start_s : float, optional
            Skip what lies before this time (a seek, for windows late in the night): to
            the sample for the uniform stamp layouts, else to the chunk; the first block
            may still start earlier.

        Yields
        ------
        t : ndarray, shape (n,), float64 seconds
        x : ndarray, shape (n, channel_count), the file's numeric type (float32 stays
            float32, int16 stays int16), a fresh array per block
        """
        info = self.streams[stream_id]
        if not info.numeric:
            raise ValueError(f"stream {info.name!r} is {info.channel_format}, not numeric")
        c = self._chunks.get(stream_id)
        if not c:
            return
        first, within = 0, None
        if start_s is not None and not synchronize:
            first = self._seek(c, start_s)
            within = self._seek_within(stream_id, first, start_s)
        elif start_s is not None:
            first = self._seek_synchronized(stream_id, start_s)
        idx0 = int(sum(c.n[:first]))
        gen = self._decode(stream_id, first, len(c.n), block_samples, within)
        if not synchronize:
            yield from ((t, x) for t, x in gen)
            return
        cmap, segs = self._sync_timing(stream_id)
        to_local = cmap.mapper()      # a seek starts at chunk 0 when there are resets
        idx = idx0
        for t, x in gen:
            n = t.size
            if info.rate_hz > 0 and segs:
                i = idx + np.arange(n)
                s = np.searchsorted(segs[0], i, side="right") - 1
                t = segs[1][s] + segs[2][s] * (i - segs[0][s])
            else:
                t = to_local(t)
            idx += n
            yield t, x

    def _seek(self, c: _Chunks, start_s: float) -> int:
        """The last chunk with a known first stamp at or before ``start_s`` (0 if none)."""
        best = 0
        for k, t in enumerate(c.first_t):
            if math.isfinite(t):
                if t > start_s:
                    break
                best = k
        return best

    def _seek_synchronized(self, sid: int, start_s: float) -> int:
        """The last chunk whose first sample's synchronised time is at or before
        ``start_s`` (0 if none), from the dejittering line (no decoding)."""
        c = self._chunks[sid]
        cmap, segs = self._sync_timing(sid)
        first_idx = np.concatenate(([0], np.cumsum(c.n)[:-1]))
        if segs is not None:
            s = np.searchsorted(segs[0], first_idx, side="right") - 1
            t = segs[1][s] + segs[2][s] * (first_idx - segs[0][s])
        elif not cmap.single:
            return 0              # which reset range a chunk is in takes every stamp
        else:
            raw = np.asarray(c.first_t)
            (c0, c1), = cmap.lines
            t = raw + (c0 + c1 * raw)
        ok = np.flatnonzero(np.isfinite(t) & (t <= start_s))
        return int(ok[-1]) if ok.size else 0

    def _seek_within(self, sid: int, k: int, start_s: float
                     ) -> tuple[int, int, float] | None:
        """Where in chunk ``k`` (record ``j``, its byte position, the previous stamp) the
        last sample at or before ``start_s`` lies, for the two uniform layouts (every
        stamp written: a bisection on the stamps; only the first written: arithmetic);
        None for others (decoding then starts at the chunk)."""
        c = self._chunks[sid]
        info = self.streams[sid]
        pos, end, n, t0 = c.pos[k], c.end[k], c.n[k], c.first_t[k]
        if n < 2 or not math.isfinite(t0) or start_s <= t0:
            return None
        vb = info.dtype.itemsize * info.channel_count
        full, bare = 9 + vb, 1 + vb
        if end - pos == n * full:
            lo, hi = 0, n - 1
            with open(self.path, "rb") as f:
                while lo < hi:                  # last record with stamp <= start_s
                    mid = (lo + hi + 1) // 2
                    f.seek(pos + mid * full)
                    rec = f.read(9)
                    if rec[0] != 8:
                        return None
                    if struct.unpack_from("<d", rec, 1)[0] <= start_s:
                        lo = mid
                    else:
                        hi = mid - 1
            return lo, pos + lo * full, 0.0
        if end - pos == full + (n - 1) * bare and info.rate_hz > 0:
            j = min(int((start_s - t0) * info.rate_hz), n - 1)
            if j < 1:
                return None
            # the stamp of record j - 1 as a reader deduces it: j - 1 sequential steps
            return j, pos + full + (j - 1) * bare, float(_deduce(t0, 1.0 / info.rate_hz,
                                                                 j - 1)[-1]) if j > 1 else t0
        # any other layout: the chunk's stamped records (walked once, then kept), and
        # decoding starts at the last one at or before the time
        idx, at, stamps = self._stamped_records(sid, k)
        i = int(np.searchsorted(stamps, start_s, side="right")) - 1
        if i <= 0:
            return None
        return int(idx[i]), int(at[i]), 0.0

    def _stamped_records(self, sid: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Record index, byte position and stamp of every stamped record in chunk ``k``
        (found run by run from the flag bytes; the values are not decoded)."""
        key = (sid, k)
        if key not in self._stamped:
            c = self._chunks[sid]
            info = self.streams[sid]
            vb = info.dtype.itemsize * info.channel_count
            full, bare = 9 + vb, 1 + vb
            with open(self.path, "rb") as f:
                f.seek(c.pos[k])
                raw = f.read(c.end[k] - c.pos[k])
            buf = np.frombuffer(raw, dtype=np.uint8)
            idx, pos, stamps = [], [], []
            at = j = 0
            while j < c.n[k] and at < len(raw):
                if raw[at] == 8:
                    idx.append(j)
                    pos.append(at)
                    stamps.append(struct.unpack_from("<d", raw, at + 1)[0])
                    at += full
                    j += 1
                    continue
                m = min(c.n[k] - j, (len(raw) - at) // bare)
                if m <= 0:
                    break
                stop = np.flatnonzero(buf[at:at + m * bare:bare] != 0)
                m = int(stop[0]) if stop.size else m
                if m == 0:
                    break                      # a bad flag: decoding will name it
                at += m * bare
                j += m
            self._stamped[key] = (np.array(idx, dtype=np.int64),
                                  c.pos[k] + np.array(pos, dtype=np.int64),
                                  np.array(stamps))
        return self._stamped[key]

    def _resume_chunk(self, c: _Chunks, k: int) -> int:
        """Chunk ``k``, or the nearest earlier one whose first stamp is written (decoding
        must start there to carry omitted stamps)."""
        while k > 0 and not math.isfinite(c.first_t[k]):
            k -= 1
        return k

    def _decode(self, sid: int, k0: int, k1: int, block: int,
                within: tuple[int, int, float] | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks ``k0`` to ``k1 - 1`` of a numeric stream, in blocks of at most
        ``block`` samples (from record ``within[0]`` of chunk ``k0`` when given)."""
        info = self.streams[sid]
        c = self._chunks[sid]
        vdt = info.dtype
        nch = info.channel_count
        vb = vdt.itemsize * nch
        tdiff = 1.0 / info.rate_hz if info.rate_hz > 0 else 0.0
        block = max(1, int(block))
        # a seek into a chunk whose first stamp is omitted starts at an earlier one
        k_start = self._resume_chunk(c, k0)
        skip = int(sum(c.n[k_start:k0]))
        # an omitted stamp is the previous sample's plus one period, summed sample after
        # sample (as the specification's readers do, and as the writer checked it)
        last = 0.0          # the specification's start for a first stamp that is omitted
        with open(self.path, "rb") as f:
            for k in range(k_start, k1):
                pos, end, n = c.pos[k], c.end[k], c.n[k]
                done = 0
                if within is not None and k == k0 == k_start:
                    done, pos, last = within
                while done < n:
                    want = min(block, n - done)
                    f.seek(pos)
                    raw = f.read(min(want * (9 + vb), end - pos))
                    t, x, used, got, last = _records(raw, want, vdt, nch, vb, tdiff,
                                                     last)
                    pos += used
                    done += got
                    if skip:
                        drop = min(skip, got)
                        skip -= drop
                        t, x = t[drop:], x[drop:]
                    if t.size:
                        yield t, x
                    if got < want:
                        # a record that cannot be decoded: the rest of this chunk is
                        # lost (named once), the next chunks still read
                        flag = raw[used] if used < len(raw) else None
                        why = (f"TimestampBytes {flag}, 0 or 8 expected" if flag is not None
                               else "it ends before its samples do")
                        self._damaged(f"{self.path}: samples chunk of stream {info.name!r} "
                                      f"is damaged at byte {pos} ({why}): its last "
                                      f"{n - done} samples are lost; the next chunks are read")
                        skip -= min(skip, n - done)
                        break

    # ------------------------------------------------------------------ synchronisation
    def _damaged(self, msg: str) -> None:
        """Warn once about damage found while decoding (:class:`RecordingDamageWarning`)
        and add it to :attr:`damage`."""
        if msg in self._decode_damage:
            return
        self._decode_damage.add(msg)
        self.damage = "; also ".join(filter(None, (self.damage, msg)))
        warnings.warn(msg, RecordingDamageWarning, stacklevel=4)

    def _clock_map(self, sid: int) -> ClockMap:
        """The stream's clock-offset lines, one per range between clock resets."""
        return clock_map(self.clock_offsets.get(sid, []))

    def _sync_timing(self, sid: int) -> tuple[ClockMap, tuple | None]:
        """Clock-offset lines and, for a regular stream, its dejittered segments as arrays
        ``(start index, time at start, seconds per sample)`` -- one pass over the stamps."""
        if sid in self._timing:
            return self._timing[sid]
        info = self.streams[sid]
        cmap = self._clock_map(sid)
        to_local = cmap.mapper()
        segs = None
        if info.rate_hz > 0 and not _can_drop_samples(info.header_xml):
            gap = max(BREAK_S, BREAK_SAMPLES / info.rate_hz)
            starts: list[int] = []
            stats: list[list[float]] = []     # per segment: n, mean i, mean t, Sii, Sit
            prev = math.nan
            idx = 0
            c = self._chunks[sid]
            for t, _ in self._decode(sid, 0, len(c.n), BLOCK_SAMPLES):
                t = to_local(t)
                # a jump either way breaks the line (a backward one is a restarted
                # source clock), as pyxdf's _detect_breaks compares |diff|; inside the
                # first block too (its first difference, from NaN, is no break)
                brk = set(np.flatnonzero(np.abs(np.diff(t, prepend=prev)) > gap).tolist())
                edges = sorted({0, t.size} | brk)
                for a, b in zip(edges[:-1], edges[1:], strict=True):
                    if a in brk or not stats:
                        starts.append(idx + a)
                        stats.append([0.0, 0.0, 0.0, 0.0, 0.0])
                    _merge(stats[-1], np.arange(idx + a, idx + b, dtype=np.float64), t[a:b])
                prev = float(t[-1])
                idx += t.size
            if starts:
                a0 = np.array(starts, dtype=np.int64)
                slope = np.array([s[4] / s[3] if s[3] > 0 else 0.0 for s in stats])
                t_at = np.array([s[2] - sl * (s[1] - st)
                                 for s, sl, st in zip(stats, slope, starts, strict=True)])
                segs = (a0, t_at, slope)
        self._timing[sid] = (cmap, segs)
        return self._timing[sid]


def _can_drop_samples(header_xml: str) -> bool:
    """Whether a stream header says ``desc/synchronization/can_drop_samples`` true (a
    video or HMD stream whose dropped frames are real gaps in time): such a stream is not
    dejittered, since a line through the stamps would spread a dropped-frame interval over
    its neighbours (pyxdf skips it too)."""
    try:
        root = ET.fromstring(header_xml)
    except ET.ParseError:
        return False
    return _text(root, "desc/synchronization/can_drop_samples").lower() == "true"


def _merge(s: list[float], i: np.ndarray, t: np.ndarray) -> None:
    """Fold a block of (index, time) pairs into running ``[n, mean_i, mean_t, S_ii,
    S_it]`` (pairwise update of means and co-moments, Chan, Golub & LeVeque 1979)."""
    nb = float(i.size)
    mi, mt = float(i.mean()), float(t.mean())
    sii = float(np.sum((i - mi) ** 2))
    sit = float(np.sum((i - mi) * (t - mt)))
    na = s[0]
    if na == 0:
        s[:] = [nb, mi, mt, sii, sit]
        return
    n = na + nb
    di, dt = mi - s[1], mt - s[2]
    s[3] += sii + di * di * na * nb / n
    s[4] += sit + di * dt * na * nb / n
    s[1] += di * nb / n
    s[2] += dt * nb / n
    s[0] = n


def _deduce(last: float, tdiff: float, k: int) -> np.ndarray:
    """The stamps of ``k`` samples without one after a sample at ``last``: each the
    previous plus ``tdiff``, summed left to right in double precision (what pyxdf and
    the MATLAB reader compute, sample after sample; ``numpy.add.accumulate`` is the same
    sequential sum)."""
    seq = np.full(k + 1, tdiff)
    seq[0] = last
    return np.add.accumulate(seq)[1:]


def _records(raw: bytes, want: int, vdt: np.dtype, nch: int, vb: int, tdiff: float,
             last: float) -> tuple[np.ndarray, np.ndarray, int, int, float]:
    """Decode up to ``want`` sample records from the start of ``raw``.

    ``last`` is the previous sample's stamp. Returns stamps (an omitted one deduced by
    :func:`_deduce`), values, bytes used, records decoded and the last stamp. Three
    layouts are decoded with
    strided views (every stamp written; none; only the first); anything else record by
    record.
    """
    buf = np.frombuffer(raw, dtype=np.uint8)
    full, bare = 9 + vb, 1 + vb
    n_full = min(want, len(raw) // full)
    if n_full == want and np.all(buf[0:want * full:full] == 8):
        rec = np.frombuffer(raw, dtype=np.dtype([("nb", "u1"), ("t", "<f8"),
                                                 ("v", vdt, (nch,))]), count=want)
        t = rec["t"].astype(np.float64)
        return t, rec["v"].astype(vdt.newbyteorder("="), copy=True), want * full, want, \
            float(t[-1])
    n_bare = min(want, len(raw) // bare)
    if n_bare and raw[0] == 0 and np.all(buf[0:n_bare * bare:bare] == 0):
        rec = np.frombuffer(raw, dtype=np.dtype([("nb", "u1"), ("v", vdt, (nch,))]),
                            count=n_bare)
        t = _deduce(last, tdiff, n_bare)
        return t, rec["v"].astype(vdt.newbyteorder("="), copy=True), n_bare * bare, \
            n_bare, float(t[-1])
    if raw and raw[0] == 8 and len(raw) >= full:
        rest = min(want - 1, (len(raw) - full) // bare)
        if np.all(buf[full:full + rest * bare:bare] == 0):
            t0 = struct.unpack_from("<d", raw, 1)[0]
            first = np.frombuffer(raw, dtype=vdt, count=nch, offset=9)
            rec = np.frombuffer(raw, dtype=np.dtype([("nb", "u1"), ("v", vdt, (nch,))]),
                                count=rest, offset=full)
            x = np.empty((rest + 1, nch), dtype=vdt.newbyteorder("="))
            x[0] = first
            x[1:] = rec["v"]
            t = np.concatenate(([t0], _deduce(t0, tdiff, rest)))
            return t, x, full + rest * bare, rest + 1, float(t[-1])
    # mixed layout: walk it run by run -- a stamped record, or a run of omitted ones
    # found with one strided look at their flag bytes and copied through one strided
    # view -- so a layout that writes a stamp every so often costs a loop step per stamp,
    # not per sample
    bare_dt = np.dtype([("nb", "u1"), ("v", vdt, (nch,))])
    t = np.empty(want)
    x = np.empty((want, nch), dtype=vdt.newbyteorder("="))
    at = got = 0
    while got < want and at < len(raw):
        flag = raw[at]
        if flag == 8:
            if at + full > len(raw):
                break
            last = struct.unpack_from("<d", raw, at + 1)[0]
            t[got] = last
            x[got] = np.frombuffer(raw, dtype=vdt, count=nch, offset=at + 9)
            at += full
            got += 1
            continue
        if flag != 0:
            break                  # not a record: the caller names the damage
        k = min(want - got, (len(raw) - at) // bare)
        if k <= 0:
            break
        stop = np.flatnonzero(buf[at:at + k * bare:bare] != 0)
        k = int(stop[0]) if stop.size else k
        t[got:got + k] = _deduce(last, tdiff, k)
        last = float(t[got + k - 1])
        x[got:got + k] = np.frombuffer(raw, dtype=bare_dt, count=k, offset=at)["v"]
        at += k * bare
        got += k
    return t[:got], x[:got], at, got, last


__all__ = ["XdfFile", "StreamInfo", "XdfFormatError", "RecordingDamageWarning",
           "BLOCK_SAMPLES", "BREAK_S", "BREAK_SAMPLES"]
