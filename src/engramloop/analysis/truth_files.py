"""Read truth to score against: expert annotations (CSV of onset,duration; EDF+
annotations), the simulator's truth (a truth .json, an .npz from ``engramloop sim``, the
``engramloop.truth`` stream of a recording), and the span and start of a recording.

Used by ``engramloop score`` and by replay sweeps (:mod:`analysis.sweep`). A file that
cannot be read is a one-line :class:`~engramloop.core.errors.UserError` naming it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from engramloop.analysis.scoring import label_names_kind, read_annotations_csv
from engramloop.core.chunk import SourceError
from engramloop.core.errors import UserError
from engramloop.drivers.files import edf_annotations, edf_first_sample_s
from engramloop.recording import reader
from engramloop.sim.truth import Truth


def xdf_streams(path: Path) -> tuple[dict, float, float]:
    """Marker streams of an XDF file as {suffix: [(t, dict)]}, its signal span (s) and the
    time of its first signal sample (s; NaN without signal).

    Only the marker streams are decoded; the span comes from the signal streams' footers
    (a file cut off before its footers -- a killed run -- has the first and last chunk of
    its signal decoded instead), so memory and time do not grow with the night."""
    try:
        got, sums = reader.markers_and_spans(path)
    except reader.RecordingReadError as exc:
        raise UserError(f"cannot read XDF: {exc}") from None
    spans = [(s.first_timestamp, s.last_timestamp) for s in sums if s.sample_count > 0]
    if not spans:
        return got.markers, math.nan, math.nan
    t0, t1 = min(a for a, _ in spans), max(b for _, b in spans)
    return got.markers, t1 - t0, t0


def read_csv_truth(path: Path, kind: str) -> list[dict]:
    """Expert annotations (``onset,duration`` rows) with
    :func:`analysis.scoring.read_annotations_csv`; a bad row is a one-line error."""
    try:
        return read_annotations_csv(path, kind)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--truth {exc}") from None


def read_truth(path: Path, kind: str) -> tuple[list[dict], object | None]:
    """Truth records (and a Truth object when available, for phases), on the truth file's
    own time base (see :func:`truth_t0`)."""
    if not path.is_file():
        raise UserError(f"--truth {path}: file not found")
    ext = path.suffix.lower()
    if ext == ".csv":
        return read_csv_truth(path, kind), None
    if ext == ".json":
        try:
            tr = Truth.load(path)
        except (ValueError, KeyError) as exc:
            raise UserError(f"--truth {path}: not a truth file from sim.truth: {exc}") from None
        return [e.to_dict() for e in tr.events()] + stage_records(tr), tr
    if ext == ".xdf":
        return expanded_truth(xdf_streams(path)[0]), None
    if ext == ".npz":
        return npz_truth(path)
    if ext in (".edf", ".bdf"):
        recs = edf_truth(path, kind)
        if not recs:
            raise UserError(f"--truth {path}: no EDF+ annotation names {kind!r} "
                            f"({edf_annotation_texts(path)}); give --kind")
        return recs, None
    raise UserError(f"--truth {path}: use a .csv, .json, .xdf, .npz or EDF+ (.edf/.bdf) "
                    "file")


def edf_annotation_texts(path: Path) -> str:
    texts = sorted({str(o.get("text")) for o in _edf_annotations(path)})
    return ("its annotations: " + ", ".join(repr(t) for t in texts[:10])
            + (", ..." if len(texts) > 10 else "")) if texts else "it has no annotations"


def _edf_annotations(path: Path) -> list[dict]:
    """The annotation signal's records only (no sample of a night is read)."""
    try:
        return edf_annotations(path)
    except SourceError as exc:
        raise UserError(f"--truth {exc}") from None


def edf_truth(path: Path, kind: str) -> list[dict]:
    """EDF+ annotations whose text names ``kind`` (case-insensitive: "Spindle",
    "sleep spindle" for kind spindle) as truth records, seconds from the file's start
    (the EDF+ onset convention, as the CSV annotations)."""
    out = []
    for o in _edf_annotations(path):
        if label_names_kind(str(o.get("text", "")), kind):
            on = float(o["onset_s"])
            dur = float(o["duration_s"]) if o.get("duration_s") is not None else 0.0
            out.append({"kind": kind, "onset_s": on, "offset_s": on + dur,
                        "peak_s": on + dur / 2, "text": o.get("text")})
    return out


def truth_t0(path: Path, truth_obj: object | None) -> float:
    """Time (s) that a truth file counts from: its first signal sample (.xdf, .npz; for
    EDF+ the first data record's onset, which its annotations count on from), the
    simulator's sample 0 (.json), 0 for CSV annotations (seconds from the start).

    The one rule of ``score --truth`` and of the sweeps (:class:`analysis.sweep.Truth`):
    truth at ``t`` lies ``t - truth_t0`` after the recording's first sample."""
    ext = path.suffix.lower()
    if ext in (".edf", ".bdf"):
        try:
            return edf_first_sample_s(path)
        except SourceError as exc:
            raise UserError(f"--truth {exc}") from None
    if ext == ".xdf":
        t0 = xdf_streams(path)[2]
        return t0 if math.isfinite(t0) else 0.0
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for key in ("timestamps", "t", "time_s"):
                if key in z.files and z[key].size:
                    return float(z[key].reshape(-1)[0])
        return 0.0
    return float(getattr(truth_obj, "t0_s", 0.0) or 0.0)


def stage_records(tr: object) -> list[dict]:
    """The simulator's hypnogram as ``{"kind": "stage", "stage", "onset_s", "offset_s"}``
    records on the host clock (as the report expands a truth document), so scores give
    densities per sleep stage."""
    t0 = float(getattr(tr, "t0_s", 0.0) or 0.0)
    return [{"kind": "stage", "stage": str(st), "onset_s": t0 + float(on),
             "offset_s": t0 + float(off)}
            for on, off, st in zip(getattr(tr, "seg_start", ()), getattr(tr, "seg_end", ()),
                                   getattr(tr, "seg_stage", ()), strict=False)]


def expanded_truth(markers: dict) -> list[dict]:
    """Truth records of an XDF's engramloop.truth stream, with a whole truth document (as
    `engramloop sim` and the recorder write it last) unpacked: its stages always, its
    events when the stream does not hold them one by one."""
    out, docs = [], []
    for _, rec in markers.get("truth", []):
        doc = rec.get("truth") if rec.get("kind") == "truth_document" else rec
        if isinstance(doc, dict) and doc.get("format") == "engramloop.truth/1":
            doc = json.dumps(doc)
        if isinstance(doc, str) and '"engramloop.truth/1"' in doc:
            docs.append(doc)
        else:
            out.append(rec)
    has_events = any("onset_s" in r for r in out)
    for doc in docs:
        try:
            tr = Truth.from_json(doc)
        except (ValueError, KeyError, TypeError):
            continue          # not a document this version reads: its records still count
        out += stage_records(tr)
        if not has_events:
            out += [e.to_dict() for e in tr.events()]
    return out


def npz_truth(path: Path) -> tuple[list[dict], object | None]:
    with np.load(path, allow_pickle=False) as z:
        if "truth" not in z.files:
            return [], None
        tr = Truth.from_json(str(z["truth"]))
    return [e.to_dict() for e in tr.events()] + stage_records(tr), tr


__all__ = ["xdf_streams", "read_csv_truth", "read_truth", "edf_annotation_texts", "edf_truth",
           "truth_t0", "stage_records", "expanded_truth", "npz_truth"]
