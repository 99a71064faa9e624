"""The recording's records as the report reads them: numbers from JSON, pulses merged from
their life records, detections and truth by kind, sleep stages, lock times, numeric
series of memory and forecast records.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engramloop.recording.reader import first

#: the report's view of a recording (:class:`report.recording.Recording`, which imports
#: this module: named here, not imported, so the two do not import each other)
Recording = Any


def num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


@dataclass
class PulseRecord:
    """One pulse merged from the pulses stream (Pulse dicts and Delivery dicts)."""

    pulse_id: int
    target: str = ""
    condition: str = "stim"
    modality: str = ""
    detect_s: float = math.nan
    intended_s: float = math.nan
    deadline_s: float = math.nan
    sent_s: float = math.nan
    ack_s: float = math.nan
    device_edge_s: float = math.nan
    statuses: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return any(s in ("sent", "acked") for s in self.statuses) or (
            not self.statuses and math.isfinite(self.sent_s))

    @property
    def fire_s(self) -> float:
        """Best estimate of when the stimulus happened: device edge, else send time."""
        return self.device_edge_s if math.isfinite(self.device_edge_s) else self.sent_s


def merge_pulses(rows: Sequence[tuple[float, dict]]) -> list[PulseRecord]:
    """Merge Pulse and Delivery records of the pulses stream by ``pulse_id``.

    Accepts flat Pulse dicts (``pulse_id``, ``target``, ``spec``, ``intended_s``...),
    Delivery dicts (``pulse_id``, ``output``, ``status``, ``sent_s``...), and wrappers
    ``{"pulse": {...}, "delivery": {...}}`` / ``{"deliveries": [...]}``.
    """
    out: dict[int, PulseRecord] = {}

    def take(d: dict, t: float) -> None:
        if not isinstance(d, dict):
            return
        outer_id = d.get("pulse_id", first(d, "pulse", "pulse_id"))
        for key in ("pulse", "delivery"):
            if isinstance(d.get(key), dict):
                inner = dict(d[key])
                inner.setdefault("pulse_id", outer_id)
                take(inner, t)
        for dl in d.get("deliveries", ()) if isinstance(d.get("deliveries"), list) else ():
            if isinstance(dl, dict):
                dl = dict(dl)
                dl.setdefault("pulse_id", outer_id)
                take(dl, t)
        pid = d.get("pulse_id")
        if pid is None or isinstance(d.get("pulse"), dict):
            return
        try:
            pid = int(pid)
        except (TypeError, ValueError):
            return
        p = out.setdefault(pid, PulseRecord(pid))
        if d.get("target"):
            p.target = str(d["target"])
        if d.get("condition"):
            p.condition = str(d["condition"])
        spec = d.get("spec")
        if isinstance(spec, dict) and spec.get("modality"):
            p.modality = str(spec["modality"])
        elif d.get("modality"):
            p.modality = str(d["modality"])
        for k in ("detect_s", "intended_s", "deadline_s"):
            if math.isfinite(num(d.get(k))):
                setattr(p, k, num(d[k]))
        if "status" in d:
            p.statuses.append(str(d["status"]))
            if d.get("reason"):
                p.reasons.append(str(d["reason"]))
            for k in ("sent_s", "ack_s", "device_edge_s"):
                v = num(d.get(k))
                if math.isfinite(v) and not math.isfinite(getattr(p, k)):
                    setattr(p, k, v)

    for t, d in rows:
        take(d, t)
    return [out[k] for k in sorted(out)]


def lock_name(evs: Sequence[dict]) -> str:
    """What :func:`lock_time` locks these events to, for axis labels."""
    has_peak = [math.isfinite(num(e.get("peak_s"))) for e in evs]
    if all(has_peak):
        return "peak"
    return "onset" if not any(has_peak) else "peak (onset where unknown)"


def lock_time(ev: dict) -> float:
    for k in ("peak_s", "onset_s", "detect_s"):
        v = num(ev.get(k))
        if math.isfinite(v):
            return v
    return math.nan


def events_by_kind(rec: Recording) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t, e in rec.markers.get("events", []):
        kind = str(e.get("kind", "event"))
        if kind.startswith("calibration"):  # detector status records, not detections
            continue
        e = dict(e)
        if not math.isfinite(num(e.get("detect_s"))):
            e["detect_s"] = t
        out.setdefault(kind, []).append(e)
    return dict(sorted(out.items()))


def truth_by_kind(rec: Recording) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for _, e in rec.markers.get("truth", []):
        kind = e.get("kind")
        if kind and math.isfinite(num(e.get("onset_s"))) and not e.get("stage"):
            out.setdefault(str(kind), []).append(e)
    return dict(sorted(out.items()))


STAGE_ORDER = ("wake", "REM", "N1", "N2", "N3")


def stages_of(rec: Recording) -> list[tuple[float, float, str]]:
    """Sleep stages from the truth stream: records with a ``stage`` and a time span
    (``onset_s``/``offset_s``), or stage-change records (``stage`` at ``t_s``)."""
    spans, changes = [], []
    for t, e in rec.markers.get("truth", []):
        stage = e.get("stage") or (e.get("label") if e.get("kind") in ("stage", "hypnogram")
                                   else None)
        if not stage:
            continue
        on, off = num(e.get("onset_s")), num(e.get("offset_s"))
        if math.isfinite(on) and math.isfinite(off):
            spans.append((on, off, str(stage)))
        else:
            changes.append((num(e.get("t_s", t)), str(stage)))
    if not spans and changes:
        changes.sort()
        ends = [c[0] for c in changes[1:]] + [rec.t1]
        spans = [(t, e, s) for (t, s), e in zip(changes, ends, strict=True)]
    if not spans:
        spans = stages_from_config(rec)
    return sorted(spans)


def stages_from_config(rec: Recording) -> list[tuple[float, float, str]]:
    """The simulator's stage schedule rebuilt from the recorded ``[sim.hypnogram]``
    config when it is a fixed schedule and the run's source was the simulator: segments
    ``"STAGE:seconds"`` repeat from the first recorded sample (the simulator's sample 0).
    Generated ("night") hypnograms are not rebuilt: they need stage records in the truth
    stream."""
    cfg = rec.config if isinstance(rec.config, dict) else {}
    if cfg.get("source", {}).get("kind", "sim") != "sim" or not rec.signals \
            or not rec.signals[0].n:
        return []
    hyp = cfg.get("sim", {}).get("hypnogram", {})
    if not isinstance(hyp, dict) or hyp.get("mode", "fixed") != "fixed" \
            or "schedule" not in hyp:
        return []
    segs = []
    for item in hyp["schedule"]:
        stage, _, dur = str(item).partition(":")
        if num(dur) > 0:
            segs.append((stage, num(dur)))
    if not segs:
        return []
    t, out, i = rec.signals[0].t_first, [], 0
    while t < rec.t1 and i < 100000:
        stage, dur = segs[i % len(segs)]
        out.append((t, t + dur, stage))
        t += dur
        i += 1
    return out


def kind_rhythm(kind: str) -> str:
    return {"so": "so", "slow_oscillation": "so", "spindle": "spindle", "ripple": "ripple",
            "theta_burst": "theta"}.get(kind, kind)


def numeric_series(rows: Sequence[tuple[float, dict]], skip: Sequence[str] = ()
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Flatten numeric fields of JSON records into time series ``name -> (t, values)``.
    Time-like keys (ending in ``_s``) and ids are not series."""
    acc: dict[str, tuple[list, list]] = {}

    def walk(prefix: str, obj: Any, t: float) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, t)
        elif isinstance(obj, list) and obj and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj):
            for i, v in enumerate(obj[:12]):
                walk(f"{prefix}[{i}]", v, t)
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            last = prefix.rsplit(".", 1)[-1].split("[", 1)[0]
            if last.endswith("_s") or last.endswith("_id") or last in skip or last == "seed":
                return
            acc.setdefault(prefix, ([], []))
            acc[prefix][0].append(t)
            acc[prefix][1].append(float(obj))

    for t, d in rows:
        tt = num(d.get("t_s", d.get("time_s", t)))
        walk("", d, tt if math.isfinite(tt) else t)
    return {k: (np.array(v[0]), np.array(v[1])) for k, v in sorted(acc.items())}


def memory_rows(rec: Recording) -> list[tuple[float, dict]]:
    rows = []
    for t, d in rec.markers.get("truth", []):
        if d.get("kind") in ("memory", "recall") or "recall_scores" in d or "memory" in d:
            body = d.get("recall_scores", d.get("recall", d.get("memory", d.get("scores", d))))
            rows.append((num(d.get("t_s", t)) if math.isfinite(num(d.get("t_s", t)))
                         else t, body if isinstance(body, dict) else {"value": body}))
    return rows


def condition_of(config: dict) -> str:
    pol = config.get("policy", {}) if isinstance(config, dict) else {}
    return str(pol.get("condition", "")) if isinstance(pol, dict) else ""
