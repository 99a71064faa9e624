"""Scoring detections against truth: matching, precision/recall/F1, false positives per
minute, density per minute (per sleep stage when the stages are known), detection latency,
and circular statistics of trigger phase.

The one scoring module of the project: ``engramloop score``, ``replay --sweep``
(:mod:`analysis.sweep`), ``report``, the trial summary (:mod:`analysis.trial`), the tests
and ``bench/`` all score with it. Pure functions of arrays and small records. Times are
host-clock seconds; phases are degrees in the project's cosine convention (0 = positive
peak, +-180 = trough).

Matching is by interval overlap, the convention of the spindle literature (a detection
matches an expert event it overlaps; e.g. Warby et al. 2014, Nat Methods 11:385; Lacourse
et al. 2019, J Neurosci Methods 316:3): a detection is the interval from its ``onset_s`` to
its ``offset_s`` when the record has one, else to ``detect_s`` (what the detector had seen
when it decided); it matches a truth event ``[onset, offset]`` widened by the kind's
tolerance (:data:`MATCH_TOLERANCE_S`) when the two intersect. Each truth event and each
detection is used at most once: detections in the order they were decided (their end),
each paired with the earliest still-unmatched truth event it overlaps. A detection given
as a time alone is the interval ``[detect_s, detect_s]``. Latency is ``detect_s - onset``
of the matched truth event.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from engramloop.controller.nonfinite import NonFiniteGuard
from engramloop.core.chunk import Chunk

__all__ = ["Interval", "DetectionScore", "PhaseScore", "match_events", "match_intervals",
           "score_detections", "score_kind", "circular_mean_sd", "score_phase", "intervals",
           "replay", "so_phase_from_events", "score_recording", "score_session", "as_float",
           "MATCH_TOLERANCE_S", "DEFAULT_TOLERANCE_S", "tolerance_s", "stage_density",
           "read_annotations_csv", "label_names_kind"]

#: How far (seconds) a truth event is widened on each side before overlap is tested, per
#: kind. Spindles: none, the literature's convention for expert scoring. Ripples: 20 ms (a
#: detection decides within a few ms of a ripple's onset; the simulator marks onsets
#: where the envelope rises). Slow oscillations: 250 ms (a down state is detected at its
#: up-crossing, whose timing the truth interval of one whole cycle already covers).
MATCH_TOLERANCE_S: dict[str, float] = {"ripple": 0.02, "spindle": 0.0, "so": 0.25}
#: the tolerance of any other kind (seconds)
DEFAULT_TOLERANCE_S = 0.05


def tolerance_s(kind: str) -> float:
    """The matching tolerance of ``kind`` (seconds): :data:`MATCH_TOLERANCE_S`, else
    :data:`DEFAULT_TOLERANCE_S`."""
    return MATCH_TOLERANCE_S.get(kind, DEFAULT_TOLERANCE_S)


@dataclass(frozen=True)
class Interval:
    """A truth event: onset, peak and offset (seconds; peak may be NaN)."""

    onset_s: float
    offset_s: float
    peak_s: float = float("nan")


@dataclass(frozen=True)
class DetectionScore:
    """Detection performance of one detector against one kind of truth event.

    Latencies are ``detect_s - onset_s`` (and ``- peak_s``) of matched detections, in
    seconds; NaN when nothing matched.
    """

    n_truth: int
    n_detected: int
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float
    recall: float
    f1: float
    fp_per_min: float
    duration_s: float
    latency_onset_median_s: float
    latency_onset_p90_s: float
    latency_peak_median_s: float
    latency_peak_p90_s: float
    detected_per_min: float = float("nan")
    truth_per_min: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PhaseScore:
    """Trigger phase accuracy: circular mean and SD of (estimated - true) phase (deg), the
    circular mean of the true phase at the triggers, and the fraction of triggers whose true
    phase lies in the target half-cycle (within +-90 deg of the target)."""

    n: int
    mean_error_deg: float
    sd_error_deg: float
    mean_phase_deg: float
    sd_phase_deg: float
    fraction_in_target_half: float

    def to_dict(self) -> dict:
        return asdict(self)


def match_intervals(det_onset_s: Sequence[float], det_offset_s: Sequence[float],
                    truth: Sequence[Interval], *, tol_before_s: float = 0.05,
                    tol_after_s: float = 0.05) -> list[tuple[int, int]]:
    """Pair detection intervals with truth events by overlap.

    Parameters
    ----------
    det_onset_s, det_offset_s : sequence of float
        Start and end of each detection (seconds; equal for a detection that is a time).
    truth : sequence of Interval
    tol_before_s, tol_after_s : float
        How far each truth event is widened before its onset and after its offset (s).

    Returns
    -------
    list of (detection index, truth index)
        In the order the detections ended (were decided; ties by onset); detection ``d``
        and event ``e`` pair when
        ``d.onset <= e.offset + tol_after`` and ``d.offset >= e.onset - tol_before``.
    """
    d_on = np.asarray(det_onset_s, dtype=float)
    d_off = np.asarray(det_offset_s, dtype=float)
    order = np.lexsort((d_on, d_off))         # in the order decided (end), ties by onset
    on = np.array([e.onset_s for e in truth], dtype=float) - tol_before_s
    off = np.array([e.offset_s for e in truth], dtype=float) + tol_after_s
    t_order = np.argsort(on, kind="stable")
    on_sorted = on[t_order]
    used = np.zeros(len(truth), dtype=bool)
    pairs: list[tuple[int, int]] = []
    for di in order:
        a, b = d_on[di], d_off[di]
        # truth events starting at or before the detection's end are the candidates; of
        # those, the ones still running at the detection's start overlap it
        hi = int(np.searchsorted(on_sorted, b, side="right"))
        for k in range(hi):
            ti = int(t_order[k])
            if not used[ti] and off[ti] >= a:
                used[ti] = True
                pairs.append((int(di), ti))
                break
    return pairs


def match_events(detect_s: Sequence[float], truth: Sequence[Interval], *,
                 tol_before_s: float = 0.05, tol_after_s: float = 0.05
                 ) -> list[tuple[int, int]]:
    """:func:`match_intervals` for detections that are times (seconds): a detection
    matches a truth event when it lies in ``[onset - tol_before_s, offset + tol_after_s]``.
    """
    return match_intervals(detect_s, detect_s, truth, tol_before_s=tol_before_s,
                           tol_after_s=tol_after_s)


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def score_detections(detect_s: Sequence[float], truth: Sequence[Interval], duration_s: float,
                     *, tol_before_s: float = 0.05, tol_after_s: float = 0.05,
                     onset_s: Sequence[float] | None = None,
                     offset_s: Sequence[float] | None = None) -> DetectionScore:
    """Precision, recall, F1, false positives and detections per minute, and latency.

    Parameters
    ----------
    detect_s : sequence of float
        Detection times (seconds): when each detection was decided.
    truth : sequence of Interval
        Truth events in the scored span.
    duration_s : float
        Length of the scored span (seconds), for the rates.
    onset_s, offset_s : sequence of float, optional
        Each detection's interval (seconds; :func:`match_intervals`); by default it starts
        at ``onset_s`` (or ``detect_s``) and ends at ``offset_s`` (or ``detect_s``).
    """
    d_on = detect_s if onset_s is None else onset_s
    d_off = detect_s if offset_s is None else offset_s
    pairs = match_intervals(d_on, d_off, truth, tol_before_s=tol_before_s,
                            tol_after_s=tol_after_s)
    tp = len(pairs)
    nd, nt = len(detect_s), len(truth)
    fp, fn = nd - tp, nt - tp
    precision = tp / nd if nd else float("nan")
    recall = tp / nt if nt else float("nan")
    f1 = 2 * tp / (nd + nt) if (nd + nt) else float("nan")
    det = np.asarray(detect_s, dtype=float)
    lat_on = np.array([det[d] - truth[t].onset_s for d, t in pairs])
    lat_pk = np.array([det[d] - truth[t].peak_s for d, t in pairs
                       if math.isfinite(truth[t].peak_s)])
    per_min = 60.0 / duration_s if duration_s > 0 else float("nan")
    return DetectionScore(
        n_truth=nt, n_detected=nd, true_positives=tp, false_positives=fp, false_negatives=fn,
        precision=precision, recall=recall, f1=f1, fp_per_min=fp * per_min,
        duration_s=float(duration_s),
        latency_onset_median_s=_pct(lat_on, 50), latency_onset_p90_s=_pct(lat_on, 90),
        latency_peak_median_s=_pct(lat_pk, 50), latency_peak_p90_s=_pct(lat_pk, 90),
        detected_per_min=nd * per_min, truth_per_min=nt * per_min)


def _field(rec: object, key: str) -> float:
    """A float field of an Event/TruthEvent-like object or a dict (NaN when absent)."""
    v = rec.get(key) if isinstance(rec, dict) else getattr(rec, key, None)
    return as_float(v)


def score_kind(kind: str, detections: Sequence, truth: Sequence, duration_s: float, *,
               tolerance: float | tuple[float, float] | None = None) -> DetectionScore:
    """Score detections of one kind by the module's convention (interval overlap, the
    kind's tolerance).

    Parameters
    ----------
    kind : str
        "ripple", "spindle", "so", ...: picks the tolerance (:func:`tolerance_s`).
    detections : sequence of Event or dict
        With ``detect_s`` and ``onset_s``, optionally ``offset_s`` (seconds); their
        interval runs from ``onset_s`` (``detect_s`` when NaN) to ``offset_s``
        (``detect_s`` when absent or NaN).
    truth : sequence of Interval, TruthEvent or dict
        With ``onset_s``, ``offset_s``, optionally ``peak_s`` (seconds).
    duration_s : float
        The scored span (seconds).
    tolerance : float or (before, after), optional
        Overrides the kind's tolerance (seconds).
    """
    tol = tolerance_s(kind) if tolerance is None else tolerance
    before, after = (tol, tol) if isinstance(tol, (int, float)) else tol
    det = np.array([_field(d, "detect_s") for d in detections], dtype=float)
    on = np.array([_field(d, "onset_s") for d in detections], dtype=float)
    off = np.array([_field(d, "offset_s") for d in detections], dtype=float)
    on = np.where(np.isfinite(on), np.minimum(on, det), det)
    off = np.where(np.isfinite(off), np.maximum(off, det), det)
    tr = [e if isinstance(e, Interval) else Interval(_field(e, "onset_s"),
                                                     _field(e, "offset_s"),
                                                     _field(e, "peak_s")) for e in truth]
    return score_detections(det.tolist(), tr, duration_s, tol_before_s=before,
                            tol_after_s=after, onset_s=on.tolist(), offset_s=off.tolist())


def stage_density(times_s: Sequence[float], stages: Sequence[tuple[float, float, str]],
                  t_lo: float = -math.inf, t_hi: float = math.inf) -> dict[str, dict]:
    """Events per minute in each sleep stage.

    Parameters
    ----------
    times_s : sequence of float
        Event times (seconds).
    stages : sequence of (onset_s, offset_s, label)
        The hypnogram's segments (seconds).
    t_lo, t_hi : float
        Only this span counts (seconds).

    Returns
    -------
    dict
        ``{label: {"minutes": ..., "count": ..., "per_min": ...}}`` for every label with
        time inside the span.
    """
    t = np.asarray(times_s, dtype=float)
    out: dict[str, dict] = {}
    for on, off, label in stages:
        a, b = max(float(on), t_lo), min(float(off), t_hi)
        if not b > a:
            continue
        d = out.setdefault(str(label), {"minutes": 0.0, "count": 0})
        d["minutes"] += (b - a) / 60.0
        d["count"] += int(np.count_nonzero((t >= a) & (t < b)))
    for d in out.values():
        d["per_min"] = d["count"] / d["minutes"] if d["minutes"] > 0 else float("nan")
    return out


def read_annotations_csv(path: object, kind: str = "spindle") -> list[dict]:
    """Expert annotations from a CSV of ``onset,duration`` rows (seconds from the
    recording's first sample; a header row and ``#`` comments are skipped), as truth
    records ``{"kind", "onset_s", "offset_s", "peak_s"}`` (peak: the middle).

    A third column of text (``onset,duration,label``) labels each row: only the rows
    whose label names ``kind`` are kept, by the rule EDF+ annotations are read with
    (:func:`label_names_kind`: "Sleep spindle" is a spindle); the others are another
    kind of event, not this one's truth.

    Raises
    ------
    ValueError
        ``"<path>: line N: ..."`` for a row that is not two numbers with duration >= 0;
        for a labelled file in which no label names ``kind`` (the labels it has).
    """
    from pathlib import Path

    p = Path(str(path))
    out = []
    labels: dict[str, int] = {}
    # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark, which would
    # make the first row unreadable (and skipped as a header)
    for i, line in enumerate(p.read_text(encoding="utf-8-sig").splitlines(), 1):
        cells = [c.strip() for c in line.split(",")]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        try:
            onset, dur = float(cells[0]), float(cells[1])
        except (ValueError, IndexError):
            if i == 1:
                continue  # a header row
            raise ValueError(f"{p}: line {i}: expected 'onset,duration' in seconds, got "
                             f"{line!r}") from None
        if not (math.isfinite(onset) and math.isfinite(dur) and dur >= 0):
            raise ValueError(f"{p}: line {i}: onset and duration must be finite seconds, "
                             f"duration >= 0; got {line!r}")
        label = _text_cell(cells[2]) if len(cells) > 2 else None
        if label is not None:
            labels[label] = labels.get(label, 0) + 1
            if not label_names_kind(label, kind):
                continue
        out.append({"kind": kind, "onset_s": onset, "offset_s": onset + dur,
                    "peak_s": onset + dur / 2})
    if labels and not out:
        have = ", ".join(f"{t!r} ({n})" for t, n in sorted(labels.items())[:10])
        raise ValueError(f"{p}: no row's label names {kind!r} (labels: {have}); give "
                         "--kind with the label of the events to score")
    return out


def _text_cell(cell: str) -> str | None:
    """A label cell: text that is not a number (a numeric third column -- a channel
    number, a confidence -- is not a label); None for a number or an empty cell."""
    cell = cell.strip().strip('"').strip()
    if not cell:
        return None
    try:
        float(cell)
    except ValueError:
        return cell
    return None


def label_names_kind(label: str, kind: str) -> bool:
    """Whether an annotation's text names an event kind: ``kind`` appears in it,
    case-insensitively ("Sleep spindle", "SPINDLE" for kind spindle). The one rule for
    expert labels, CSV and EDF+ alike."""
    want = kind.strip().lower()
    return bool(want) and want in str(label).lower()


def circular_mean_sd(deg: Iterable[float]) -> tuple[float, float, float]:
    """Circular mean (deg, (-180, 180]), circular SD (deg, ``sqrt(-2 ln R)``) and the mean
    resultant length R (0-1) of angles in degrees; NaNs are ignored."""
    a = np.radians(np.asarray(list(deg) if not isinstance(deg, np.ndarray) else deg,
                              dtype=float))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    c, s = float(np.mean(np.cos(a))), float(np.mean(np.sin(a)))
    r = min(math.hypot(c, s), 1.0)   # rounding can push identical angles above 1
    mean = math.degrees(math.atan2(s, c))
    if mean == -180.0:
        mean = 180.0
    sd = math.degrees(math.sqrt(-2.0 * math.log(r))) if r > 0 else float("inf")
    return mean, sd, r


def score_phase(true_deg: Sequence[float], target_deg: float = 0.0,
                estimated_deg: Sequence[float] | None = None) -> PhaseScore:
    """Phase accuracy at trigger times.

    Parameters
    ----------
    true_deg : sequence of float
        Noise-free true phase at each trigger (deg); NaN where the rhythm was absent
        (those triggers are left out).
    target_deg : float
        The phase the triggers aimed at.
    estimated_deg : sequence of float, optional
        The phase the estimator believed at each trigger; the error is
        ``estimated - true``. Without it the estimate is taken to be ``target_deg``
        (a trigger aimed at the target), so the error is ``target - true``.
    """
    true = np.asarray(true_deg, dtype=float)
    est = (np.full_like(true, target_deg) if estimated_deg is None
           else np.asarray(estimated_deg, dtype=float))
    ok = np.isfinite(true) & np.isfinite(est)
    true, est = true[ok], est[ok]
    err = np.mod(est - true + 180.0, 360.0) - 180.0
    m_err, sd_err, _ = circular_mean_sd(err)
    m_ph, sd_ph, _ = circular_mean_sd(true)
    dist = np.abs(np.mod(true - target_deg + 180.0, 360.0) - 180.0)
    frac = float(np.mean(dist < 90.0)) if true.size else float("nan")
    return PhaseScore(n=int(true.size), mean_error_deg=m_err, sd_error_deg=sd_err,
                      mean_phase_deg=m_ph, sd_phase_deg=sd_ph, fraction_in_target_half=frac)


def as_float(v: object) -> float:
    """A float from a record field; JSON ``null`` (how NaN is written) is NaN."""
    return float("nan") if v is None else float(v)  # type: ignore[arg-type]


def intervals(events: Iterable) -> list[Interval]:
    """Intervals from any records with ``onset_s``, ``offset_s`` and ``peak_s`` (e.g. the
    simulator's ``TruthEvent``) or dicts with those keys."""
    out = []
    for e in events:
        get = e.get if isinstance(e, dict) else (lambda k, _e=e: getattr(_e, k))
        out.append(Interval(as_float(get("onset_s")), as_float(get("offset_s")),
                            as_float(get("peak_s"))))
    return out


def replay(stages: Sequence, samples: np.ndarray, timestamps: np.ndarray, rate_hz: float,
           channels: tuple[str, ...], chunk_samples: int = 10,
           nonfinite: list | None = None) -> list:
    """Feed a recorded signal through detector stages chunk by chunk.

    Parameters
    ----------
    stages : sequence of objects with ``process(chunk) -> list[Event]``
    samples : ndarray, shape (n_samples, n_channels), volts
    timestamps : ndarray, shape (n_samples,), seconds
    rate_hz : float
    channels : tuple of str
    chunk_samples : int
        Samples per chunk.
    nonfinite : list, optional
        Receives one dict per stretch of non-finite samples (``start_s``, ``end_s``,
        ``duration_s``, ``channels``, ``nonfinite_samples``; ``end_s`` NaN when the
        signal ends inside one).

    Returns
    -------
    list of Event
        Every event of every stage, in the order they were produced.

    Non-finite samples are screened as in the live loop
    (:class:`controller.nonfinite.NonFiniteGuard`): the stages reading a bad channel do
    not see it, restart after it, and their events while settling are dropped -- one NaN
    used to end all detection for the rest of the signal.
    """
    samples = np.ascontiguousarray(samples, dtype=np.float64)
    events: list = []
    n = samples.shape[0]
    step = max(1, int(chunk_samples))
    guard = NonFiniteGuard(stages)
    episodes: list = []
    for i in range(0, n, step):
        c = Chunk(samples[i:i + step], timestamps[i:i + step], rate_hz, channels,
                  float(timestamps[min(i + step, n) - 1]), first_index=i)
        feed = guard.screen(c)
        if feed is None:
            for st in stages:
                events.extend(st.process(c))
            continue
        for k, st in enumerate(stages):
            if feed[k]:
                events.extend(guard.keep(k, st.process(c)))
        episodes.extend(guard.ended)
        guard.started.clear()
        guard.ended.clear()
    if guard.episode is not None:
        episodes.append(guard.episode)
    if nonfinite is not None:
        nonfinite.extend(ep.to_dict() for ep in episodes)
    return events


#: cosine phase (deg) at the simulator's slow-oscillation landmarks: descending zero
#: crossing, trough, rising zero crossing, up-state peak, end of the cycle
_SO_KNOT_DEG = np.array([90.0, 180.0, 270.0, 360.0, 450.0])


def so_phase_from_events(events: Sequence[dict], t_s: np.ndarray) -> np.ndarray:
    """True slow-oscillation phase (deg) at ``t_s`` from truth "so" records.

    Each record (dict with ``onset_s``, ``peak_s``, ``offset_s`` and ``meta`` holding
    ``trough_s`` and ``rise_s``, as the simulator writes them) is one cycle whose phase is
    piecewise linear through its landmarks (90, 180, 270, 360, 450 deg). NaN outside cycles.
    """
    t = np.asarray(t_s, dtype=float)
    out = np.full(t.shape, np.nan)
    for e in events:
        m = e.get("meta", {}) or {}
        if "trough_s" not in m or "rise_s" not in m:
            continue
        knots = np.array([as_float(e["onset_s"]), as_float(m["trough_s"]), as_float(m["rise_s"]),
                          as_float(e["peak_s"]), as_float(e["offset_s"])])
        sel = (t >= knots[0]) & (t < knots[-1])
        if sel.any():
            out[sel] = np.interp(t[sel], knots, _SO_KNOT_DEG)
    return np.mod(out + 180.0, 360.0) - 180.0


def score_recording(detections: Sequence[dict], truth: Sequence[dict], duration_s: float,
                    *, so_phase=None, tolerances: dict | None = None,
                    stages: Sequence[tuple[float, float, str]] = (),
                    span: tuple[float, float] = (-math.inf, math.inf),
                    also: Sequence[str] = ()) -> dict:
    """Score every detected kind that has truth of the same kind (:func:`score_kind`).

    Parameters
    ----------
    detections : sequence of dict
        ``Event.to_dict()`` records (kind, detect_s, predicted_s, ...).
    truth : sequence of dict
        Truth records (kind, onset_s, peak_s, offset_s, optional meta).
    duration_s : float
        Scored span (seconds) for false positives per minute.
    so_phase : callable, optional
        ``so_phase(t_s) -> deg``: true SO phase; defaults to :func:`so_phase_from_events`
        on the truth "so" records. Used to score ``predicted_s`` of "so" detections
        against the up-state (0 deg).
    tolerances : dict, optional
        ``{kind: seconds or (before_s, after_s)}`` instead of :data:`MATCH_TOLERANCE_S`.
    stages : sequence of (onset_s, offset_s, label), optional
        The hypnogram: each kind's result then has ``per_stage``, ``{label: {"minutes",
        "detected_per_min", "truth_per_min"}}`` over ``span``.
    span : (float, float)
        The scored span (seconds) for the per-stage densities.
    also : sequence of str
        Kinds scored whenever the truth has them, even without a detection (recall 0).

    Returns
    -------
    dict
        ``{kind: DetectionScore.to_dict(), ..., "so_phase": PhaseScore.to_dict()}``.
    """
    tol = dict(tolerances or {})
    rejected = {(d.get("channel"), d.get("onset_s")) for d in detections
                if d.get("kind") == "spindle_rejected"}
    out: dict = {}
    truth_kinds = {e.get("kind") for e in truth}
    kinds = sorted(({d.get("kind") for d in detections} | set(also)) & truth_kinds)
    for kind in kinds:
        det = [d for d in detections if d.get("kind") == kind
               and (d.get("channel"), d.get("onset_s")) not in rejected]
        tr = [e for e in truth if e.get("kind") == kind]
        out[kind] = score_kind(kind, det, tr, duration_s, tolerance=tol.get(kind)).to_dict()
        if stages:
            dd = stage_density([as_float(d.get("detect_s")) for d in det], stages, *span)
            td = stage_density([as_float(e.get("onset_s")) for e in tr], stages, *span)
            out[kind]["per_stage"] = {
                label: {"minutes": v["minutes"], "detected_per_min": v["per_min"],
                        "truth_per_min": td[label]["per_min"]} for label, v in dd.items()}
    so_det = [d for d in detections if d.get("kind") == "so"
              and math.isfinite(as_float(d.get("predicted_s")))]
    if so_det:
        pred = np.array([as_float(d["predicted_s"]) for d in so_det])
        if so_phase is None:
            so_truth = [e for e in truth if e.get("kind") == "so"]
            if so_truth:
                out["so_phase"] = score_phase(so_phase_from_events(so_truth, pred)).to_dict()
        else:
            out["so_phase"] = score_phase(np.asarray(so_phase(pred), dtype=float)).to_dict()
    return out


def score_session(detections: Sequence[dict], truth: Sequence[dict], duration_s: float,
                  *, so_phase=None, also: Sequence[str] = (),
                  start_s: float = math.nan) -> dict:
    """Score one session as ``engramloop score`` reports it: only what the detectors could
    see counts.

    Detections and truth events before the last ``calibration_done`` detection are left
    out (the detectors were still learning their baselines), and the scored span shrinks
    accordingly; truth events that begin after the signal's end (``start_s`` +
    ``duration_s``) are left out too. Records that are not detections (no finite
    ``detect_s``) or not events (no ``onset_s``/``offset_s``, e.g. recall scores in a
    truth stream) are ignored.

    Parameters
    ----------
    detections : sequence of dict
        ``Event.to_dict()`` records, host-clock seconds.
    truth : sequence of dict
        Truth records (kind, onset_s, offset_s, peak_s), the same clock.
    duration_s : float
        Span of the signal, seconds; NaN: from the last truth offset / detection.
    so_phase : callable, optional
        As in :func:`score_recording`.
    also : sequence of str
        As in :func:`score_recording`.
    start_s : float, optional
        Time of the signal's first sample (same clock). Without it the start is taken
        as the earliest truth onset, which is the signal's start only when the truth
        has an event there (the simulator's does; expert annotations rarely do).

    Returns
    -------
    dict
        :func:`score_recording`'s result plus ``duration_s`` (the scored span) and
        ``calibration_end_s`` (None without a calibration record).
    """
    truth = [e for e in truth if isinstance(e, dict) and "onset_s" in e and "offset_s" in e]
    # a hypnogram in the truth (the simulator's stage segments): densities per stage
    stages = [(as_float(e["onset_s"]), as_float(e["offset_s"]), str(e.get("stage", "")))
              for e in truth if e.get("kind") == "stage"]
    truth = [e for e in truth if e.get("kind") != "stage"]
    detections = [d for d in detections if isinstance(d, dict)
                  and math.isfinite(as_float(d.get("detect_s")))]
    cal = [as_float(d["detect_s"]) for d in detections if d.get("kind") == "calibration_done"]
    start = max(cal) if cal else -math.inf
    scored_det = [d for d in detections if as_float(d["detect_s"]) >= start]
    scored_truth = [e for e in truth if as_float(e["onset_s"]) >= start]
    duration = float(duration_s)
    if not math.isfinite(duration):
        times = [as_float(e["offset_s"]) for e in truth] + [as_float(d["detect_s"])
                                                         for d in detections]
        duration = max(times) - (start if math.isfinite(start) else 0.0)
    else:
        onsets = [as_float(e["onset_s"]) for e in truth]
        t0 = (float(start_s) if math.isfinite(start_s)
              else min(onsets + ([start] if math.isfinite(start) else []), default=math.nan))
        # truth that begins after the signal's last sample was never seen either (a
        # replay of part of a night against the whole night's annotations)
        end = t0 + duration
        scored_truth = [e for e in scored_truth if not as_float(e["onset_s"]) >= end]
        if math.isfinite(start):
            duration = max(0.0, duration - (start - t0))
    lo = start if math.isfinite(start) else min(
        [as_float(e["onset_s"]) for e in truth] + [as_float(d["detect_s"]) for d in detections],
        default=0.0)
    result = score_recording(scored_det, scored_truth, duration, so_phase=so_phase,
                             stages=stages, span=(lo, lo + duration), also=also)
    result["duration_s"] = duration
    result["calibration_end_s"] = start if math.isfinite(start) else None
    return result
