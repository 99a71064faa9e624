"""Scoring detections against truth: matching, precision/recall/F1, false positives per
minute, detection latency, and circular statistics of trigger phase.

Pure functions of arrays and small records, shared by the tests, ``bench/`` and
``engramloop score``. Times are host-clock seconds; phases are degrees in the project's
cosine convention (0 = positive peak, +-180 = trough).

Matching: a detection matches a truth event when its detection time lies in
``[onset - tol_before_s, offset + tol_after_s]``; each truth event and each detection is
used at most once, detections taken in time order, each paired with the earliest
still-unmatched truth event whose window holds it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Interval", "DetectionScore", "PhaseScore", "match_events", "score_detections",
           "circular_mean_sd", "score_phase", "intervals", "replay", "so_phase_from_events",
           "score_recording", "score_session", "as_float"]


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


def match_events(detect_s: Sequence[float], truth: Sequence[Interval], *,
                 tol_before_s: float = 0.05, tol_after_s: float = 0.05
                 ) -> list[tuple[int, int]]:
    """Pair detections with truth events.

    Parameters
    ----------
    detect_s : sequence of float
        Detection times (seconds).
    truth : sequence of Interval
    tol_before_s, tol_after_s : float
        How far before the onset and after the offset a detection still counts (seconds).

    Returns
    -------
    list of (detection index, truth index)
        In detection-time order.
    """
    det = np.asarray(detect_s, dtype=float)
    order = np.argsort(det, kind="stable")
    on = np.array([e.onset_s for e in truth], dtype=float) - tol_before_s
    off = np.array([e.offset_s for e in truth], dtype=float) + tol_after_s
    t_order = np.argsort(on, kind="stable")
    on_sorted = on[t_order]
    used = np.zeros(len(truth), dtype=bool)
    pairs: list[tuple[int, int]] = []
    for di in order:
        d = det[di]
        # truth events with on <= d: the candidates are those whose off >= d
        hi = int(np.searchsorted(on_sorted, d, side="right"))
        for k in range(hi):
            ti = int(t_order[k])
            if not used[ti] and off[ti] >= d:
                used[ti] = True
                pairs.append((int(di), ti))
                break
    return pairs


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def score_detections(detect_s: Sequence[float], truth: Sequence[Interval], duration_s: float,
                     *, tol_before_s: float = 0.05, tol_after_s: float = 0.05
                     ) -> DetectionScore:
    """Precision, recall, F1, false positives per minute and latency.

    Parameters
    ----------
    detect_s : sequence of float
        Detection times (seconds).
    truth : sequence of Interval
        Truth events in the scored span.
    duration_s : float
        Length of the scored span (seconds), for the false-positive rate.
    """
    pairs = match_events(detect_s, truth, tol_before_s=tol_before_s, tol_after_s=tol_after_s)
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
    return DetectionScore(
        n_truth=nt, n_detected=nd, true_positives=tp, false_positives=fp, false_negatives=fn,
        precision=precision, recall=recall, f1=f1,
        fp_per_min=fp / (duration_s / 60.0) if duration_s > 0 else float("nan"),
        duration_s=float(duration_s),
        latency_onset_median_s=_pct(lat_on, 50), latency_onset_p90_s=_pct(lat_on, 90),
        latency_peak_median_s=_pct(lat_pk, 50), latency_peak_p90_s=_pct(lat_pk, 90))


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
           channels: tuple[str, ...], chunk_samples: int = 10) -> list:
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

    Returns
    -------
    list of Event
        Every event of every stage, in the order they were produced.
    """
    from engramloop.core.chunk import Chunk

    samples = np.ascontiguousarray(samples, dtype=np.float64)
    events: list = []
    n = samples.shape[0]
    step = max(1, int(chunk_samples))
    for i in range(0, n, step):
        c = Chunk(samples[i:i + step], timestamps[i:i + step], rate_hz, channels,
                  float(timestamps[min(i + step, n) - 1]), first_index=i)
        for st in stages:
            events.extend(st.process(c))
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
                    *, so_phase=None, tolerances: dict | None = None) -> dict:
    """Score every detected kind that has truth of the same kind.

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
        ``{kind: (tol_before_s, tol_after_s)}``; default 0.05 s each, 0.3 s before an SO.

    Returns
    -------
    dict
        ``{kind: DetectionScore.to_dict(), ..., "so_phase": PhaseScore.to_dict()}``.
    """
    tol = {"so": (0.3, 0.05)}
    tol.update(tolerances or {})
    rejected = {(d.get("channel"), d.get("onset_s")) for d in detections
                if d.get("kind") == "spindle_rejected"}
    out: dict = {}
    kinds = sorted({d.get("kind") for d in detections} & {e.get("kind") for e in truth})
    for kind in kinds:
        det = [d for d in detections if d.get("kind") == kind
               and (d.get("channel"), d.get("onset_s")) not in rejected]
        tr = intervals([e for e in truth if e.get("kind") == kind])
        before, after = tol.get(kind, (0.05, 0.05))
        out[kind] = score_detections([as_float(d.get("detect_s")) for d in det], tr, duration_s,
                                     tol_before_s=before, tol_after_s=after).to_dict()
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
                  *, so_phase=None) -> dict:
    """Score one session as ``engramloop score`` reports it: only what the detectors could
    see counts.

    Detections and truth events before the last ``calibration_done`` detection are left
    out (the detectors were still learning their baselines), and the scored span shrinks
    accordingly. Records that are not detections (no finite ``detect_s``) or not events
    (no ``onset_s``/``offset_s``, e.g. recall scores in a truth stream) are ignored.

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

    Returns
    -------
    dict
        :func:`score_recording`'s result plus ``duration_s`` (the scored span) and
        ``calibration_end_s`` (None without a calibration record).
    """
    truth = [e for e in truth if isinstance(e, dict) and "onset_s" in e and "offset_s" in e]
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
    elif math.isfinite(start):
        t0 = min([as_float(e["onset_s"]) for e in truth] + [start])
        duration = max(0.0, duration - (start - t0))
    result = score_recording(scored_det, scored_truth, duration, so_phase=so_phase)
    result["duration_s"] = duration
    result["calibration_end_s"] = start if math.isfinite(start) else None
    return result
