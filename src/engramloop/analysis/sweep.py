"""Parameter sweeps over a replayed recording: ``engramloop replay CONFIG FILE --sweep
detectors.ripple.threshold_sd=3,4,5``.

The file is replayed once per setting (every combination when several keys are swept),
each time through exactly the code of a single ``engramloop replay --speed max``: the
config is the file's config with the swept keys set (and validated by the schema like any
config), the loop is :func:`controller.build.build_loop`'s, and the detections are scored
with :func:`analysis.scoring.score_session`, as ``engramloop score`` scores a recording.
So a row of the sweep table equals a single replay with that setting, scored.

Truth: ``--truth FILE`` (expert annotations as ``onset,duration`` CSV, seconds from the
start of the file; or a truth .json/.xdf/.npz), else the truth the replayed file carries
(an XDF with an ``engramloop.truth`` stream or an ``.npz`` from ``engramloop sim``).
Without truth the table gives detection counts and rates per kind.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engramloop.analysis.scoring import score_session
from engramloop.analysis.trial import DETECTED_KINDS
from engramloop.analysis.truth_files import (
    edf_truth,
    expanded_truth,
    npz_truth,
    read_truth,
    truth_t0,
    xdf_streams,
)
from engramloop.controller.build import build_loop
from engramloop.controller.config import Config, dump_config, load_config
from engramloop.core.schema import ConfigError, build

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


class SweepError(ValueError):
    """A ``--sweep`` argument that cannot be used (printed as one line)."""


def split_values(text: str) -> list[str]:
    """``"3,4,[1, 2],'a,b'"`` -> ``["3", "4", "[1, 2]", "'a,b'"]``: commas inside brackets
    or quotes do not separate values."""
    out, cur, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_value(text: str) -> Any:
    """A value as TOML reads it (``3`` -> 3, ``2.5``, ``true``, ``[150.0, 250.0]``,
    ``"x"``); anything TOML cannot read is taken as a bare string (``sham``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sweep(specs: Sequence[str]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """``["detectors.ripple.threshold_sd=3,4,5"]`` -> ``[("detectors.ripple.threshold_sd",
    [("3", 3), ("4", 4), ("5", 5)])]`` (text as given, parsed value).

    Raises
    ------
    SweepError
        For a spec without ``=``, an empty key or value, a key given twice or a value
        repeated.
    """
    axes: list[tuple[str, list[tuple[str, Any]]]] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        texts = split_values(values) if sep else []
        if not sep or not key or not values.strip() or any(not t for t in texts):
            raise SweepError(f"--sweep {spec!r}: expected KEY=V1,V2,... e.g. "
                             "detectors.ripple.threshold_sd=3,4,5")
        if any(key == k for k, _ in axes):
            raise SweepError(f"--sweep: {key} is given twice; list all its values once")
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise SweepError(f"--sweep {key}: value(s) {', '.join(repeated)} given more than "
                             "once; each setting is replayed once")
        axes.append((key, [(t, parse_value(t)) for t in texts]))
    return axes


def grid(axes: Sequence[tuple[str, list[tuple[str, Any]]]]) -> list[dict[str, tuple[str, Any]]]:
    """Every combination of the axes' values, the last key varying fastest."""
    keys = [k for k, _ in axes]
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(vals for _, vals in axes))]


def config_with(path: str | Path, overrides: dict[str, Any]) -> Any:
    """Load the TOML config at ``path`` with dotted keys set, validated by the schema.

    Raises
    ------
    ConfigError
        Naming the file and the key, for an unknown key or a value out of range.
    """
    load_config(path)  # the file's own errors first, with its own messages
    table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    where = f"{path} with --sweep"
    for key, value in overrides.items():
        parts = key.split(".")
        node = table
        for i, part in enumerate(parts[:-1]):
            sub = node.setdefault(part, {})
            if not isinstance(sub, dict):
                raise ConfigError(where, ".".join(parts[:i + 1]), "is a value, not a table")
            node = sub
        node[parts[-1]] = value
    return build(Config, table, file=where)


# ----------------------------------------------------------------------------- truth
@dataclasses.dataclass
class Truth:
    """Truth records on the replayed file's own time base, and how to move them onto the
    replay's clock: ``file_based`` records are shifted by (first replayed sample - first
    sample of the file); CSV annotations count from the start of the file."""

    records: list[dict]
    file_based: bool = True
    phase: Any = None
    origin: str = ""
    #: the time the truth counts from when it is not the replayed file's first sample:
    #: an EDF+'s first data record onset (analysis.truth_files.truth_t0, as score uses)
    t0_s: float | None = None

    def shifted(self, replay_t0_s: float, file_t0_s: float) -> list[dict]:
        t0 = self.t0_s if self.t0_s is not None else file_t0_s
        return shift_records(self.records, replay_t0_s - (t0 if self.file_based else 0.0))


def shift_records(records: Sequence[dict], d_s: float) -> list[dict]:
    """Truth records with onset, peak and offset moved by ``d_s`` seconds (copies)."""
    if d_s == 0.0:
        return list(records)
    out = []
    for e in records:
        e = dict(e)
        for k in ("onset_s", "peak_s", "offset_s"):
            if isinstance(e.get(k), (int, float)):
                e[k] = float(e[k]) + d_s
        out.append(e)
    return out


def find_truth(recording: str | Path, truth_file: str | None, kind: str) -> Truth | None:
    """The truth to score a replay of ``recording`` against, or None when there is none."""
    if truth_file:
        recs, obj = read_truth(Path(truth_file), kind)
        # CSV annotations count from the start of the file; the rest (EDF+ annotations
        # included: EDF sample times are file times too) on the file's own time base
        ext = Path(truth_file).suffix.lower()
        return Truth(_events(recs), ext != ".csv", obj, str(truth_file),
                     truth_t0(Path(truth_file), obj) if ext in (".edf", ".bdf") else None)
    rec = Path(recording)
    ext = rec.suffix.lower()
    if ext == ".xdf":
        recs = expanded_truth(xdf_streams(rec)[0])
        obj = None
    elif ext == ".npz":
        recs, obj = npz_truth(rec)
    elif ext in (".edf", ".bdf"):     # its own EDF+ annotations of this kind, if any
        recs = _events(edf_truth(rec, kind))
        return Truth(recs, True, None, f"{rec} (EDF+ annotations)",
                     truth_t0(rec, None)) if recs else None
    else:
        return None
    recs = _events(recs)
    return Truth(recs, True, obj, str(rec)) if recs else None


def _events(records: Sequence[Any]) -> list[dict]:
    return [e for e in records if isinstance(e, dict) and "onset_s" in e and "offset_s" in e]


# ----------------------------------------------------------------------------- running
@dataclasses.dataclass
class PointResult:
    """One setting of the sweep: what was set, what the replay did, how it scored."""

    setting: dict[str, str]
    duration_s: float
    counts: dict[str, int]
    score: dict | None
    stop_reason: str
    #: stretches of non-finite samples (detectors paused) and gaps the replay met
    nonfinite_stretches: int = 0
    gaps: int = 0
    #: what each detector's gates (and the policy) passed over, by reason
    #: (``RunResult.detector_skips``): a quiet setting that only held events back says so
    detector_skips: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_point(cfg: Any, path: str, *, duration_s: float | None, truth: Truth | None,
              setting: dict[str, str], status_board: Any = None,
              on_built: Callable | None = None, **overrides: Any) -> PointResult:
    """Replay ``path`` at ``--speed max`` with ``cfg`` and score it."""
    loop = build_loop(cfg, config_text=dump_config(cfg), speed="max", duration_s=duration_s,
                      path=path, status_board=status_board, **overrides)
    if on_built is not None:
        on_built(loop)
    res = loop.run(duration_s)
    dets = [e.to_dict() for e in res.events]
    counts: dict[str, int] = {}
    for d in dets:
        if d["kind"] != "calibration_done":
            counts[d["kind"]] = counts.get(d["kind"], 0) + 1
    span = res.t_end_s - res.t0_s
    score = None
    if truth is not None:
        # the file's first stamp from its reader (FileSource.data would read the whole
        # night again into memory)
        reader = getattr(loop.source, "reader", None)
        file_t0 = float(reader.t_first) if reader is not None else 0.0
        recs = truth.shifted(res.t0_s, file_t0)
        phase = truth.phase
        d = res.t0_s - file_t0
        phase_fn = (lambda t: phase.phase("so", t - d)) if phase is not None else None

        score = score_session(dets, recs, span, so_phase=phase_fn, start_s=res.t0_s)
    return PointResult(setting, span, counts, score, res.stop_reason, res.n_artefacts,
                       res.n_gaps, {k: dict(v) for k, v in res.detector_skips.items()})


# ----------------------------------------------------------------------------- table
def fmt_number(v: Any, scale: float = 1.0, nd: int = 3) -> str:
    """``v * scale`` with ``nd`` decimals for a text table; "-" when missing or not finite."""
    try:
        f = float(v) * scale
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(f) else f"{f:.{nd}f}"


def table(points: Sequence[PointResult], keys: Sequence[str]) -> list[str]:
    """The sweep as text: one row per setting. With truth, per scored kind: detections,
    precision, recall, F1, false positives and detections per minute, median latency from
    onset (ms);
    without, detections and detections per minute of each kind."""
    kinds = sorted({k for p in points if p.score for k, v in p.score.items()
                    if isinstance(v, dict) and "f1" in v})
    if not kinds:   # detections; the detectors' state events (so_gate_closed) stay in JSON
        kinds = [k for k in DETECTED_KINDS if any(k in p.counts for p in points)]
    heads = [k.rsplit(".", 1)[-1] if sum(x.rsplit(".", 1)[-1] == k.rsplit(".", 1)[-1]
                                         for x in keys) == 1 else k for k in keys]
    cols: list[tuple[str, Callable[[PointResult], str]]] = [
        (h, (lambda p, k=k: p.setting[k])) for h, k in zip(heads, keys, strict=True)]
    scored = any(p.score for p in points)
    for kind in kinds:
        if scored:
            def m(p: PointResult, key: str, kind: str = kind) -> Any:
                return (p.score or {}).get(kind, {}).get(key, math.nan)
            cols += [(f"{kind} det", lambda p, m=m: fmt_number(m(p, "n_detected"), 1, 0)),
                     ("prec", lambda p, m=m: fmt_number(m(p, "precision"))),
                     ("recall", lambda p, m=m: fmt_number(m(p, "recall"))),
                     ("F1", lambda p, m=m: fmt_number(m(p, "f1"))),
                     ("FP/min", lambda p, m=m: fmt_number(m(p, "fp_per_min"), 1, 2)),
                     ("det/min", lambda p, m=m: fmt_number(m(p, "detected_per_min"), 1, 2)),
                     ("lat ms", lambda p, m=m: fmt_number(m(p, "latency_onset_median_s"), 1e3, 1))]
        else:
            cols += [(f"{kind} det", lambda p, kind=kind: str(p.counts.get(kind, 0))),
                     ("per min", lambda p, kind=kind: fmt_number(
                         p.counts.get(kind, 0) * 60.0 / p.duration_s if p.duration_s > 0
                         else math.nan, 1, 2))]
    rows = [[h for h, _ in cols]] + [[fn(p) for _, fn in cols] for p in points]
    width = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return ["  ".join(c.rjust(w) if i >= len(keys) else c.ljust(w)
                      for i, (c, w) in enumerate(zip(r, width, strict=True))).rstrip()
            for r in rows]


__all__ = ["SweepError", "parse_sweep", "grid", "config_with", "find_truth", "run_point",
           "PointResult", "table", "split_values", "parse_value", "Truth", "fmt_number",
           "shift_records"]
