"""XDF writer primitives: magic, chunks, headers, clock offsets, boundaries, footers.

XDF (Extensible Data Format) is the LSL ecosystem's container, read by pyxdf, MNE,
EEGLAB and LabRecorder's tools. The layout used here follows the XDF 1.0 specification
(github.com/sccn/xdf, wiki "Specifications"):

- the file starts with the 4 magic bytes ``XDF:``;
- then a sequence of chunks ``[NumLengthBytes][Length][Tag][Content]``: ``NumLengthBytes``
  is one byte (1, 4 or 8) giving the width of ``Length``, a little-endian unsigned int
  counting the tag (2 bytes) plus the content;
- tags: 1 FileHeader (XML), 2 StreamHeader (StreamId uint32 + XML), 3 Samples (StreamId +
  sample count as a variable-length int + samples), 4 ClockOffset (StreamId + collection
  time float64 + offset float64), 5 Boundary (a fixed 16-byte UUID), 6 StreamFooter
  (StreamId + XML);
- a sample is ``[TimestampBytes][Timestamp][Values]``: ``TimestampBytes`` is 0 or 8 and
  values are little-endian; a string value is a variable-length byte count followed by
  its UTF-8 bytes. A sample written with ``TimestampBytes`` 0 carries no timestamp: a
  reader deduces it as the previous sample's timestamp plus ``1 / nominal_srate`` (the
  specification's rule; pyxdf's ``_read_chunk3`` and the MATLAB ``load_xdf`` do exactly
  ``last_timestamp + tdiff`` in double precision, sample after sample).
  :func:`stamp_mask` decides which samples of a regular stream need their stamp so that
  this deduction stays within a tolerance of the true time.

Every function here returns ``bytes`` for one complete chunk, so a writer can hand whole
chunks to a single ``os.write`` and a process killed between writes leaves a file that
readers load up to the last complete chunk.
"""
from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from xml.sax.saxutils import escape as _escape

import numpy as np

MAGIC = b"XDF:"

TAG_FILE_HEADER = 1
TAG_STREAM_HEADER = 2
TAG_SAMPLES = 3
TAG_CLOCK_OFFSET = 4
TAG_BOUNDARY = 5
TAG_STREAM_FOOTER = 6

# Boundary chunk content, fixed by the XDF specification; readers scan forward to it to
# resynchronise after a corrupt region.
BOUNDARY_UUID = bytes([0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F,
                       0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4])

# XDF channel formats and their little-endian numpy dtypes.
NUMERIC_FORMATS = {"float32": "<f4", "double64": "<f8", "int8": "<i1", "int16": "<i2",
                   "int32": "<i4", "int64": "<i8"}


def varlen_int(n: int) -> bytes:
    """Encode a non-negative integer as an XDF variable-length int (1, 4 or 8 bytes)."""
    if n < 0:
        raise ValueError(f"varlen_int: negative length {n}")
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 2 ** 32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def chunk(tag: int, content: bytes) -> bytes:
    """One complete chunk: length prefix, 2-byte tag, content."""
    return varlen_int(len(content) + 2) + struct.pack("<H", tag) + content


# Characters XML 1.0 does not allow even escaped (control characters other than tab, LF,
# CR; lone surrogates; U+FFFE/U+FFFF): a header holding one cannot be parsed by pyxdf.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def escape(text: str) -> str:
    """``text`` as XML character data: ``&<>`` escaped, and each character XML 1.0 cannot
    hold (a control character in a config name, say) written as visible text -- a
    backslash, ``u`` and four hex digits (``\\u0007``) -- so every XDF reader can parse
    the header."""
    return _escape(_XML_ILLEGAL.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def _xml(tag: str, value: object) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


def file_header(extra_xml: str = "", *, datetime_iso: str = "") -> bytes:
    """The magic plus the FileHeader chunk.

    Parameters
    ----------
    extra_xml : str
        Already-escaped XML elements placed inside ``<info>`` after the version (we put
        the effective run config there).
    datetime_iso : str
        Recording start as ISO-8601 text (informational).
    """
    body = ('<?xml version="1.0"?><info>' + _xml("version", "1.0")
            + (_xml("datetime", datetime_iso) if datetime_iso else "") + extra_xml
            + "</info>")
    return MAGIC + chunk(TAG_FILE_HEADER, body.encode("utf-8"))


def stream_header(stream_id: int, *, name: str, stream_type: str, channels: Sequence[str],
                  rate_hz: float, channel_format: str, units: str | Sequence[str] = "",
                  source_id: str = "", created_at: float = 0.0, desc_xml: str = "") -> bytes:
    """A StreamHeader chunk with LSL-style metadata (name, type, channel labels, units).

    Parameters
    ----------
    rate_hz : float
        Nominal sampling rate in Hz; 0 for irregular (marker) streams.
    channel_format : str
        ``"double64"``, ``"float32"``, ... or ``"string"``.
    units : str or sequence of str
        One unit for every channel or one per channel (``"V"`` for our signals).
    """
    if isinstance(units, str):
        units = [units] * len(channels)
    chans = "".join("<channel>" + _xml("label", c) + _xml("unit", u) + "</channel>"
                    for c, u in zip(channels, units, strict=True))
    body = ('<?xml version="1.0"?><info>' + _xml("name", name) + _xml("type", stream_type)
            + _xml("channel_count", len(channels)) + _xml("nominal_srate", repr(float(rate_hz)))
            + _xml("channel_format", channel_format) + _xml("source_id", source_id)
            + _xml("created_at", repr(float(created_at)))
            + "<desc><channels>" + chans + "</channels>" + desc_xml + "</desc></info>")
    return chunk(TAG_STREAM_HEADER, struct.pack("<I", stream_id) + body.encode("utf-8"))


def stamp_mask(timestamps: np.ndarray, rate_hz: float, *, tolerance_s: float,
               max_run: int) -> np.ndarray:
    """Which samples of a Samples chunk must carry their timestamp.

    A sample without one is read back as the previous sample's time plus
    ``1 / rate_hz``, accumulated in double precision exactly as readers do
    (:func:`numpy.add.accumulate` is the same left-to-right sum). A sample keeps its stamp
    when that deduction would be more than ``tolerance_s`` from its true time (a gap, a
    jittery or drifting clock), when it is the chunk's first sample (so every chunk reads
    on its own, whatever a reader skipped before it), and when ``max_run`` samples have
    passed since the last stored stamp (so drift against the nominal rate and the clock
    stay visible in the file even inside a tolerance).

    Parameters
    ----------
    timestamps : ndarray, shape (n_samples,), seconds
    rate_hz : float
        The stream's nominal rate as written in its header; 0 (irregular) keeps every
        stamp.
    tolerance_s : float
        Largest difference allowed between a deduced and the true timestamp, seconds.
    max_run : int
        Most samples from one stored stamp to the next (>= 1).

    Returns
    -------
    keep : ndarray of bool, shape (n_samples,)
    """
    t = np.asarray(timestamps, dtype=np.float64)
    n = t.size
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    if not rate_hz > 0 or max_run <= 1:
        keep[:] = True
        return keep
    tdiff = 1.0 / float(rate_hz)   # what readers compute from <nominal_srate>
    tl = t.tolist()                # Python floats: the one-by-one steps below are cheap
    i = 0
    while i < n:
        keep[i] = True
        end = min(n, i + max_run)
        acc = tl[i]
        k = i + 1
        nxt = end
        # a few samples one by one first (a jittery source breaks here, cheaply), then
        # growing blocks (a regular source runs to max_run in a handful of calls)
        while k < min(end, i + 8):
            acc += tdiff
            if not abs(acc - tl[k]) <= tolerance_s:
                nxt = k
                break
            k += 1
        else:
            w = 64
            while k < end:
                m = min(w, end - k)
                seg = np.full(m + 1, tdiff)
                seg[0] = acc
                deduced = np.add.accumulate(seg)[1:]
                bad = np.flatnonzero(~(np.abs(deduced - t[k:k + m]) <= tolerance_s))
                if bad.size:
                    nxt = k + int(bad[0])
                    break
                acc = float(deduced[-1])
                k += m
                w *= 4
        i = nxt
    return keep


def numeric_samples(stream_id: int, values: np.ndarray, timestamps: np.ndarray,
                    dtype: str = "<f8", keep: np.ndarray | None = None) -> bytes:
    """A Samples chunk for a numeric stream.

    Parameters
    ----------
    values : ndarray, shape (n_samples, n_channels)
        Sample values, converted to ``dtype`` (little-endian).
    timestamps : ndarray, shape (n_samples,), seconds
        One timestamp per sample.
    keep : ndarray of bool, shape (n_samples,), optional
        Which samples carry their timestamp (8 bytes); the others are written with
        ``TimestampBytes`` 0 and read back by deduction (see :func:`stamp_mask`). Default:
        every sample carries one.
    """
    values = np.asarray(values)
    n, c = values.shape
    rec = np.empty(n, dtype=[("nb", "u1"), ("t", "<f8"), ("v", dtype, (c,))])
    rec["nb"] = 8
    rec["t"] = timestamps
    rec["v"] = values
    if keep is None or bool(np.all(keep)):
        body = rec.tobytes()
    else:
        keep = np.asarray(keep, dtype=bool)
        starts = np.flatnonzero(keep)
        if starts.size <= 64:
            # few stamps (a regular source): each run is one stamped sample followed by
            # samples without a stamp, copied as two blocks
            bare = np.empty(n, dtype=[("nb", "u1"), ("v", dtype, (c,))])
            bare["nb"] = 0
            bare["v"] = values
            ends = [*starts[1:].tolist(), n] if starts.size else []
            parts = [bare[:starts[0] if starts.size else n].tobytes()]
            for a, b in zip(starts.tolist(), ends, strict=True):
                parts.append(rec[a:a + 1].tobytes())
                parts.append(bare[a + 1:b].tobytes())
            body = b"".join(parts)
        else:
            # many (a jittery source): drop the 8 stamp bytes of the samples without one;
            # a boolean mask over the (n, record size) byte matrix, read in row order, is
            # the chunk's byte sequence
            rec["nb"][~keep] = 0
            raw = rec.view(np.uint8).reshape(n, rec.dtype.itemsize)
            mask = np.ones(raw.shape, dtype=bool)
            mask[~keep, 1:9] = False
            body = raw[mask].tobytes()
    content = struct.pack("<I", stream_id) + varlen_int(n) + body
    return chunk(TAG_SAMPLES, content)


def string_samples(stream_id: int, values: Iterable[str], timestamps: Iterable[float]) -> bytes:
    """A Samples chunk for a one-channel string (marker) stream."""
    parts = []
    n = 0
    for text, t in zip(values, timestamps, strict=True):
        raw = text.encode("utf-8")
        parts.append(struct.pack("<Bd", 8, float(t)) + varlen_int(len(raw)) + raw)
        n += 1
    return chunk(TAG_SAMPLES, struct.pack("<I", stream_id) + varlen_int(n) + b"".join(parts))


def clock_offset(stream_id: int, collection_time_s: float, offset_s: float) -> bytes:
    """A ClockOffset chunk: at ``collection_time_s`` (stream clock), local - remote clock
    was ``offset_s`` seconds. Our streams are already on the host clock, so 0."""
    return chunk(TAG_CLOCK_OFFSET, struct.pack("<Idd", stream_id, collection_time_s, offset_s))


def boundary() -> bytes:
    """A Boundary chunk (lets readers resynchronise after a damaged region)."""
    return chunk(TAG_BOUNDARY, BOUNDARY_UUID)


def stream_footer(stream_id: int, *, first_timestamp: float, last_timestamp: float,
                  sample_count: int, offsets: Sequence[tuple[float, float]] = ()) -> bytes:
    """A StreamFooter chunk with first/last timestamps, the sample count and the clock
    offsets measured during the recording (``(time_s, value_s)`` pairs)."""
    offs = "".join("<offset>" + _xml("time", repr(float(t))) + _xml("value", repr(float(v)))
                   + "</offset>" for t, v in offsets)
    body = ('<?xml version="1.0"?><info>' + _xml("first_timestamp", repr(float(first_timestamp)))
            + _xml("last_timestamp", repr(float(last_timestamp)))
            + _xml("sample_count", int(sample_count))
            + "<clock_offsets>" + offs + "</clock_offsets></info>")
    return chunk(TAG_STREAM_FOOTER, struct.pack("<I", stream_id) + body.encode("utf-8"))


__all__ = ["escape", "MAGIC", "BOUNDARY_UUID", "NUMERIC_FORMATS", "varlen_int", "chunk",
           "file_header", "stream_header", "stamp_mask", "numeric_samples", "string_samples",
           "clock_offset", "boundary", "stream_footer"]
