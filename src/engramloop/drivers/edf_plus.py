"""EDF+/BDF+ time-keeping and annotations (Kemp & Olivan 2003, "European data format
'plus' (EDF+)", Clin Neurophysiol 114:1755), and the data records of discontinuous files
(EDF+D), which pyedflib refuses to read.

An EDF+ file has one or more ordinary signals plus an ``EDF Annotations`` signal whose
bytes in each data record hold Time-stamped Annotation Lists (TALs)::

    +Onset[\\x15Duration]\\x14Text\\x14[Text\\x14...]\\x00

Onsets are seconds from the file's start. The first TAL of each record is the record's
time-keeping TAL (``+Onset\\x14\\x14\\x00``, no text): in an EDF+D file records need not be
contiguous, and that onset is the only source of each record's real start time. The
header's reserved field (bytes 192-236) starts with ``EDF+C`` or ``EDF+D`` (``BDF+C/D``
for 24-bit BDF+).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engramloop.core.chunk import SourceError

ANNOTATION_LABEL = "EDF Annotations"
#: the annotation signal's label: "EDF Annotations", "BDF Annotations" in BDF+ (BioSemi)
ANNOTATION_LABELS = (ANNOTATION_LABEL, "BDF Annotations")


@dataclass
class EdfHeader:
    """The fixed and per-signal header fields an EDF(+)/BDF(+) reader needs."""

    header_bytes: int
    n_records: int
    record_s: float
    labels: list[str]
    dims: list[str]
    phys: np.ndarray          # (ns, 2) physical min, max
    dig: np.ndarray           # (ns, 2) digital min, max
    per_record: list[int]     # samples per data record, per signal
    bytes_per_sample: int     # 2 (EDF) or 3 (BDF)
    plus: bool = False
    discontinuous: bool = False
    annotation_signals: list[int] = field(default_factory=list)


def read_header(path: Path) -> EdfHeader:
    """Parse the header (after :func:`drivers.files.check_edf` vouched for its size)."""
    with open(path, "rb") as f:
        head = f.read(256)
        ns = int(head[252:256].decode("ascii").strip())
        sig = f.read(256 * ns)

    def field_(offset: int, width: int) -> list[str]:
        base = offset * ns
        return [sig[base + width * i: base + width * (i + 1)].decode("latin-1").strip()
                for i in range(ns)]

    try:
        labels = field_(0, 16)
        dims = field_(96, 8)
        nums = [[float(sig[o * ns + 8 * i: o * ns + 8 * i + 8].decode("ascii").strip())
                 for i in range(ns)] for o in (104, 112, 120, 128)]
        per_record = [int(sig[216 * ns + 8 * i: 216 * ns + 8 * i + 8].decode("ascii").strip())
                      for i in range(ns)]
        record_s = float(head[244:252].decode("ascii").strip())
    except ValueError:
        raise SourceError(f"{path}: malformed EDF header: a signal's physical/digital range, "
                          "samples per record or the record duration is not a number") from None
    reserved = head[192:236].decode("latin-1")
    return EdfHeader(
        header_bytes=int(head[184:192].decode("ascii").strip()),
        n_records=int(head[236:244].decode("ascii").strip()), record_s=record_s,
        labels=labels, dims=dims, phys=np.array([nums[0], nums[1]]).T,
        dig=np.array([nums[2], nums[3]]).T, per_record=per_record,
        bytes_per_sample=3 if head[0] == 0xFF else 2,
        plus=reserved[:4] in ("EDF+", "BDF+"), discontinuous=reserved[:5] in ("EDF+D", "BDF+D"),
        annotation_signals=[i for i, lab in enumerate(labels) if lab in ANNOTATION_LABELS])


def _tals(data: bytes) -> list[tuple[float, float, list[str]]]:
    """The TALs in one record's annotation bytes: (onset_s, duration_s or -1, texts)."""
    out = []
    # the record's unused bytes are NULs: drop them before splitting (a night's records
    # each carry ~100 of them, which were ~100 empty pieces to skip per record)
    for tal in data.rstrip(b"\x00").split(b"\x00"):
        if not tal:
            continue
        parts = tal.split(b"\x14")
        head = parts[0].decode("latin-1")
        onset, _, dur = head.partition("\x15")
        try:
            out.append((float(onset), float(dur) if dur else -1.0,
                        [p.decode("utf-8", "replace") for p in parts[1:] if p]))
        except ValueError:
            raise SourceError(f"malformed EDF+ annotation {tal[:40]!r}") from None
    return out


def read_plus(path: Path, h: EdfHeader) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Each record's start time (s from the file's start; from the time-keeping TAL) and
    every annotation (onset_s, duration_s or -1, text)."""
    if not h.annotation_signals:
        raise SourceError(f"{path}: EDF+ file without an '{ANNOTATION_LABEL}' signal; "
                          "the header says EDF+ (bytes 192-236) but no signal carries the "
                          "time-keeping annotations")
    starts = np.cumsum([0] + [n * h.bytes_per_sample for n in h.per_record])
    rb = int(starts[-1])
    n_records = max(h.n_records, 0)
    onsets = np.empty(n_records)
    notes: list[tuple[float, float, str]] = []
    # each record's annotation bytes, read one by one: a map of the file would count
    # every page it touched in the resident memory of a whole-night replay
    f = open(path, "rb")   # noqa: SIM115 (closed below, the loop is long)
    try:
        for r in range(n_records):
            first = True
            for s in h.annotation_signals:
                f.seek(h.header_bytes + r * rb + int(starts[s]))
                try:
                    tals = _tals(f.read(int(starts[s + 1] - starts[s])))
                except SourceError as exc:
                    raise SourceError(f"{path}: data record {r}: {exc}") from None
                for onset, dur, texts in tals:
                    if first and s == h.annotation_signals[0]:
                        onsets[r] = onset            # the record's time-keeping TAL
                        first = False
                        if not texts:
                            continue
                    notes.extend((onset, dur, t) for t in texts)
            if first:
                raise SourceError(f"{path}: EDF+ data record {r} has no time-keeping "
                                  "annotation")
    finally:
        f.close()
    return onsets, notes


def first_record_onset(path: Path, h: EdfHeader) -> float:
    """The first data record's start (s from the file's start: its time-keeping TAL),
    reading that record's annotation bytes only. EDF+ annotation onsets count from the
    file's start; the first sample lies here, not at 0, when this is not 0 (EDF+D often).
    """
    if not h.annotation_signals or h.n_records < 1:
        raise SourceError(f"{path}: EDF+ file without an '{ANNOTATION_LABEL}' signal or "
                          "data records: no time-keeping annotation")
    starts = np.cumsum([0] + [n * h.bytes_per_sample for n in h.per_record])
    s = h.annotation_signals[0]
    with open(path, "rb") as f:
        f.seek(h.header_bytes + int(starts[s]))
        tals = _tals(f.read(int(starts[s + 1] - starts[s])))
    if not tals:
        raise SourceError(f"{path}: EDF+ data record 0 has no time-keeping annotation")
    return float(tals[0][0])


__all__ = ["EdfHeader", "read_header", "read_plus", "ANNOTATION_LABEL",
           "first_record_onset"]
