"""Simulated closed-loop trials and their end-of-run scoring.

:func:`run_sim` runs one closed loop on the built-in simulator (``--speed max`` by
default: the same code path as a paced run, on a simulated clock) and :func:`score_run`
scores it against the simulator's ground truth:

- detection metrics per event kind (precision, recall, F1, detection latency from onset);
- ripple-locked pulses: fraction landing within +-50 ms of the true ripple peak (closed-
  loop ripple stimulation was reported effective only inside that window; target >= 99 %);
- slow-oscillation pulses: phase error against the noise-free SO phase at the pulse time
  (circular mean, circular SD, mean absolute error; first clicks only for two-click runs);
  theta-locked pulses likewise against the theta phase; spindle-locked pulses: fraction
  inside a true spindle;
- governor refusals by rule;
- the engram model's recall at the end.

:func:`run_trial` runs the configured condition and a sham twin with the same seed and
compares the memory outcome (stim minus sham recall) — the demo's entry point.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from engramloop.analysis import scoring as _scoring
from engramloop.analysis.scoring import Interval, circular_mean_sd, score_detections
from engramloop.controller.build import build_loop
from engramloop.controller.config import dump_config
from engramloop.controller.policy import Policy
from engramloop.core.angles import wrap_deg
from engramloop.core.jsonable import to_jsonable
from engramloop.decoders.ripple import RippleDetector
from engramloop.decoders.slow_osc import SlowOscDetector
from engramloop.decoders.spindle import SpindleDetector

#: +-50 ms around the sharp-wave-ripple peak (issue 5; closed-loop SWR stimulation studies)
RIPPLE_WINDOW_S = 0.050
#: the matching tolerances of the one scoring module (seconds per kind)
MATCH_TOLERANCE_S = _scoring.MATCH_TOLERANCE_S
DETECTED_KINDS = ("ripple", "spindle", "so")


def detection_metrics(detect_s: np.ndarray, truth: list, tol_s: float, t_lo: float,
                      t_hi: float) -> dict[str, float]:
    """Match detection times to true events with :func:`analysis.scoring.score_detections`
    (a helper for arrays of times; runs are scored with :func:`analysis.scoring.score_session`).

    Parameters
    ----------
    detect_s : ndarray, shape (n_detections,), seconds
        Detection times (``Event.detect_s``).
    truth : list of TruthEvent
        True events of the same kind (anything with onset_s, offset_s; peak_s optional).
    tol_s : float
        A detection matches an event if it lies in ``[onset - tol, offset + tol]``.
    t_lo, t_hi : float
        Only detections and events inside this span (seconds) count (excludes the
        calibration period and the run's tail).

    Returns
    -------
    dict
        n_true, n_detected, hits, precision, recall, f1, fp_per_min, latency_median_s
        (detect - onset of matched detections).
    """
    ev = [Interval(e.onset_s, e.offset_s, getattr(e, "peak_s", math.nan)) for e in truth
          if t_lo <= e.onset_s and e.offset_s <= t_hi]
    det = [float(t) for t in detect_s if t_lo <= t <= t_hi]
    sc = score_detections(det, ev, max(t_hi - t_lo, 0.0), tol_before_s=tol_s,
                          tol_after_s=tol_s)
    return {"n_true": sc.n_truth, "n_detected": sc.n_detected, "hits": sc.true_positives,
            "precision": sc.precision, "recall": sc.recall, "f1": sc.f1,
            "fp_per_min": sc.fp_per_min, "latency_median_s": sc.latency_onset_median_s}


def metrics_of(score: dict) -> dict[str, float]:
    """The trial summary's detection keys from a :func:`analysis.scoring.score_session`
    entry (``DetectionScore.to_dict()``)."""
    return {"n_true": score["n_truth"], "n_detected": score["n_detected"],
            "hits": score["true_positives"], "precision": score["precision"],
            "recall": score["recall"], "f1": score["f1"], "fp_per_min": score["fp_per_min"],
            "latency_median_s": score["latency_onset_median_s"]}


def _pulse_time(d: Any) -> float:
    return d.device_edge_s if d.device_edge_s == d.device_edge_s else d.sent_s


def ripple_timing(times_s: np.ndarray, truth: list) -> dict[str, float]:
    """Offsets of ripple-locked pulses from the nearest true ripple peak.

    Returns
    -------
    dict
        n_pulses, within_50ms (fraction with ``|offset| <= 50 ms``), offset_median_s,
        abs_offset_p95_s.
    """
    t = np.asarray(times_s, dtype=float)
    peaks = np.sort(np.asarray([e.peak_s for e in truth], dtype=float))
    if t.size == 0:
        return {"n_pulses": 0, "within_50ms": math.nan, "offset_median_s": math.nan,
                "abs_offset_p95_s": math.nan}
    if peaks.size == 0:
        return {"n_pulses": int(t.size), "within_50ms": 0.0, "offset_median_s": math.nan,
                "abs_offset_p95_s": math.nan}
    i = np.clip(np.searchsorted(peaks, t), 1, peaks.size) - 1
    j = np.clip(i + 1, 0, peaks.size - 1)
    a, b = t - peaks[i], t - peaks[j]
    off = np.where(np.abs(a) <= np.abs(b), a, b)
    return {"n_pulses": int(t.size),
            "within_50ms": float(np.mean(np.abs(off) <= RIPPLE_WINDOW_S + 1e-12)),
            "offset_median_s": float(np.median(off)),
            "abs_offset_p95_s": float(np.percentile(np.abs(off), 95))}


def phase_error(phases_deg: np.ndarray, target_deg: float) -> dict[str, float]:
    """Circular statistics of (true phase at the pulse - target phase), degrees (positive =
    the pulse came late in the cycle), via :func:`analysis.scoring.circular_mean_sd`.

    NaN phases (generator inactive at the pulse) are counted and excluded.
    """
    ph = np.asarray(phases_deg, dtype=float)
    ok = ph[np.isfinite(ph)]
    if ok.size == 0:
        return {"n_pulses": int(ph.size), "n_no_so": int(ph.size), "mean_error_deg": math.nan,
                "circular_sd_deg": math.nan, "mean_abs_error_deg": math.nan}
    err = wrap_deg(ok - target_deg)
    mean, sd, _ = circular_mean_sd(err)
    return {"n_pulses": int(ph.size), "n_no_so": int(ph.size - ok.size),
            "mean_error_deg": mean, "circular_sd_deg": sd,
            "mean_abs_error_deg": float(np.mean(np.abs(err)))}


def score_run(result: Any, truth: Any = None, policy: Any = None,
              memory: Any = None) -> dict:
    """Score one run (a :class:`controller.loop.RunResult`) against simulator truth.

    Parameters
    ----------
    result : RunResult
    truth : sim.truth.Truth, optional
        Without it only the counts and refusals are reported.
    policy : PolicySettings, optional
        For the SO target phase.
    memory : SimSource, optional
        Its ``recall_scores()`` (the simulator's next-day memory test) is read at the end.
    """
    sent = result.pulses_sent
    out: dict[str, Any] = {
        "condition": result.condition, "target": result.target,
        "duration_s": result.duration_s, "chunks": result.n_chunks,
        "stop_reason": result.stop_reason, "error": result.error,
        "events": {k: sum(1 for e in result.events if e.kind == k)
                   for k in sorted({e.kind for e in result.events})},
        "decisions": len(result.decisions),
        "approved": sum(1 for d in result.decisions if d.approved),
        "pulses_sent": len(sent),
        "pulses_cancelled": sum(1 for _, d in result.deliveries if d.status == "cancelled"),
        "pulses_failed": result.n_failed,
        "refusals": {k: v for k, v in result.refusals.items() if v},
        # detections the policy did not act on: forecast gate closed, late ripple detection
        "policy_skips": dict(getattr(result, "gate_refusals", {}) or {}),
        "backlog_events": result.n_backlog, "gaps": result.n_gaps,
        "nonfinite_stretches": getattr(result, "n_artefacts", 0),
        # what the detectors passed over or left without a prediction, by reason
        "detector_skips": {k: dict(v) for k, v in
                           (getattr(result, "detector_skips", {}) or {}).items()},
    }
    fcs = getattr(result, "forecasts", None)
    if fcs is not None:
        p = np.asarray([f.p_below_median for f in fcs], dtype=float)
        gate = dict(getattr(result, "forecast_gate", {}) or {})
        out["forecaster"] = {
            "model_version": fcs[0].model_version if fcs else "",
            "forecasts": len(fcs),
            "first_forecast_s": (fcs[0].time_s - result.t0_s) if fcs else math.nan,
            "p_below_median_min": float(p.min()) if p.size else math.nan,
            "p_below_median_median": float(np.median(p)) if p.size else math.nan,
            "p_below_median_max": float(p.max()) if p.size else math.nan,
            "gate_rule": gate.get("rule", ""),
            "gate_open_forecasts": gate.get("open_forecasts", 0),
            "gate_allowed": gate.get("allowed", 0),
            "gate_held_back": gate.get("held_back", {}),
        }
    lat = result.lateness
    if lat is not None and lat.count:
        out["lateness_p99_s"] = lat.percentile(99)
        out["lateness_max_s"] = lat.max_s
    if truth is not None:
        # scored as `engramloop score` and `report` score the recording of this run: the
        # one scoring module, from the detectors' calibration on
        sc = _scoring.score_session([e.to_dict() for e in result.events],
                                    [e.to_dict() for e in truth.events()],
                                    result.t_end_s - result.t0_s, also=("ripple",),
                                    start_s=result.t0_s)
        out["detection"] = {kind: metrics_of(sc[kind]) for kind in DETECTED_KINDS
                            if kind in sc}
        rip = [(p, d) for p, d in sent if p.target == "ripple"]
        if rip:
            out["ripple_timing"] = ripple_timing(
                np.asarray([_pulse_time(d) for _, d in rip]), truth.events("ripple"))
        so = [(p, d) for p, d in sent if p.target == "so_upstate"]
        if so:
            firsts = {d.pulse.pulse_id for d in result.decisions
                      if d.approved and d.intent.target == "so_upstate"
                      and (d.intent.ends_train is False
                           or getattr(policy, "so_mode", "phase") == "phase")}
            pts = np.asarray([_pulse_time(d) for p, d in so if p.pulse_id in firsts])
            target = getattr(policy, "so_phase_deg", 0.0)
            out["so_phase"] = phase_error(truth.phase("so", pts) if pts.size else pts, target)
        th = [(p, d) for p, d in sent if p.target in ("theta_peak", "theta_trough")]
        if th:
            pts = np.asarray([_pulse_time(d) for _, d in th])
            target = 0.0 if th[0][0].target == "theta_peak" else 180.0
            out["theta_phase"] = phase_error(truth.phase("theta", pts), target)
        sp = [(p, d) for p, d in sent if p.target == "spindle"]
        if sp:
            spans = [(e.onset_s, e.offset_s) for e in truth.events("spindle")]
            pts = [_pulse_time(d) for _, d in sp]
            out["spindle_timing"] = {
                "n_pulses": len(pts),
                "inside_spindle": float(np.mean([any(a <= t <= b for a, b in spans)
                                                 for t in pts]))}
    if memory is not None:
        # the simulator's memory test: recall at its next-day test (sim.memory.test_delay_s
        # after the last sample), after applying every pending memory event
        rs = memory.recall_scores()
        out["recall"] = rs
        out["recall_mean"] = float(np.mean(list(rs.values()))) if rs else math.nan
        mset = getattr(getattr(memory, "settings", None), "memory", None)
        out["recall_delay_s"] = float(getattr(mset, "test_delay_s", 0.0))
    return out


def run_sim(cfg: Any, duration_s: float | None, *, speed: Any = "max", condition: str | None = None,
            record: str | None = None, config_text: str = "", log: Any = None,
            on_built: Any = None, **overrides: Any) -> tuple[Any, dict]:
    """Run one closed loop on the simulator and score it.

    Parameters
    ----------
    cfg : Config
        ``source.kind`` must be ``"sim"``.
    duration_s : float or None
        Seconds of simulated data (None: until Ctrl-C; paced runs only).
    speed : "max" or 1
        ``"max"``: unpaced on a simulated clock; ``1``: real time.
    condition : str, optional
        Override ``policy.condition`` ("stim", "sham", "yoked-random").
    record : str, optional
        XDF path.
    on_built : callable(Loop), optional
        Called with the loop before it runs (e.g. to attach a dashboard).
    **overrides
        Passed to :func:`controller.build.build_loop` (stim_port, status_board, ...).

    Returns
    -------
    (RunResult, dict)
        The run and its score (:func:`score_run`).
    """
    if cfg.source.kind != "sim":
        raise ValueError(f"run_sim needs source.kind = 'sim', got {cfg.source.kind!r}")
    if condition is not None and condition != cfg.policy.condition:
        cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy,
                                                                  condition=condition))
    loop = build_loop(cfg, config_text=config_text, speed=speed, duration_s=duration_s,
                      record=record, log=log, **overrides)
    if on_built is not None:
        on_built(loop)
    result = loop.run(duration_s)
    sim = loop.sim_source
    score = score_run(result, getattr(sim, "truth", None), cfg.policy,
                      sim if callable(getattr(sim, "recall_scores", None)) else None)
    return result, score


def run_trial(cfg: Any, duration_s: float | None = 120.0, *, speed: Any = "max",
              record: str | None = None, report: str | None = None, sham_twin: bool = True,
              config_text: str = "", log: Any = None, on_built: Any = None,
              on_twin_built: Any = None, **overrides: Any) -> dict:
    """The simulated closed-loop trial: the configured condition, then (if it is not sham)
    a sham twin with the same seed at ``--speed max``, and the memory comparison.

    ``on_built`` is called with the run's loop before it runs, ``on_twin_built`` with the
    twin's (e.g. to attach a dashboard or a progress bar). When the run is recorded
    (``record``), the twin is recorded too, to :func:`sham_twin_path` (``x.xdf`` ->
    ``x-sham-twin.xdf``), where ``engramloop report`` finds it.

    Returns
    -------
    dict
        ``{"run": score, "sham": score or None, "memory_effect": stim - sham mean recall,
        "stages": per-stage latency summary}``; also written to ``report``/summary.json and
        summary.txt when ``report`` is given.
    """
    result, score = run_sim(cfg, duration_s, speed=speed, record=record,
                            config_text=config_text, log=log, on_built=on_built, **overrides)
    sham = None
    if sham_twin and cfg.policy.condition != "sham" and result.duration_s > 0 \
            and not result.stop_reason.startswith("stopped by signal"):
        twin_cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy,
                                                                       condition="sham"))
        twin_text = ""
        if config_text:
            twin_text = dump_config(twin_cfg)
        # exactly the run's samples: result.duration_s ends at the last sample (one sample
        # period short), and a simulation one sample shorter ends its memories differently
        twin_s = (result.n_samples / float(cfg.sim.rate_hz) if result.n_samples
                  else result.duration_s)
        # recorded beside the run (when it is recorded), so the report can put the two
        # memory trajectories side by side
        _, sham = run_sim(twin_cfg, twin_s, speed="max",
                          record=str(sham_twin_path(record)) if record else None,
                          config_text=twin_text, on_built=on_twin_built)
    rep = {"config": cfg.name, "seed": cfg.seed, "duration_s": duration_s,
           "speed": str(speed), "run": score, "sham": sham,
           "stages": result.stages.summary() if result.stages else {}}
    if sham is not None and "recall_mean" in score and "recall_mean" in sham:
        rep["memory_effect"] = score["recall_mean"] - sham["recall_mean"]
    if report:
        write_report(rep, report)
    return rep


def sham_twin_path(recording: str | Path) -> Path:
    """Where :func:`run_trial` records the sham twin of ``recording``:
    ``session.xdf`` -> ``session-sham-twin.xdf`` in the same folder."""
    p = Path(recording)
    return p.with_name(f"{p.stem}-sham-twin{p.suffix or '.xdf'}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.4g}"
    return str(v)


#: the stages whose ``passed_over`` counts reach ``RunResult.detector_skips``, by kind:
#: each words its reasons (``PASS_REASONS``) after the count and its noun (``PASS_NOUN``)
_SKIPPERS = {c.KIND: c for c in (SlowOscDetector, SpindleDetector, RippleDetector, Policy)}


def skip_lines(skips: dict) -> list[str]:
    """One line per detector that passed over detections (``RunResult.detector_skips``):
    ``so: 37 down states passed over outside slow-wave sleep (...); 5 ...``."""
    out = []
    for kind, counts in sorted(skips.items()):
        cls = _SKIPPERS.get(kind)
        noun = getattr(cls, "PASS_NOUN", "detections")
        why = getattr(cls, "PASS_REASONS", {})
        out.append(f"  {kind}: " + "; ".join(" ".join(w for w in (str(n), noun,
                                                                  why.get(k, k)) if w)
                                             for k, n in counts.items()))
    return out


def format_summary(rep: dict) -> str:
    """A short human-readable summary of :func:`run_trial`'s report."""
    r = rep["run"]
    lines = [f"{rep.get('config', '')}: {r['condition']} / {r['target']}, "
             f"{_fmt(r['duration_s'])} s, stop: {r['stop_reason']}"
             + (f", ERROR: {r['error']}" if r.get("error") else "")]
    lines.append(f"  events: {r['events']}")
    lines.append(f"  decisions {r['decisions']}, approved {r['approved']}, sent "
                 f"{r['pulses_sent']}, cancelled {r['pulses_cancelled']}, not delivered "
                 f"{r.get('pulses_failed', 0)}; refusals "
                 f"{r['refusals'] or '{}'}")
    if r.get("policy_skips"):
        lines.append(f"  detections not acted on by the policy: {r['policy_skips']}")
    if r.get("nonfinite_stretches"):
        lines.append(f"  non-finite samples: {r['nonfinite_stretches']} stretch(es); the "
                     "detectors reading them were paused and stimulation inhibited there "
                     "(times in the engramloop.log stream)")
    lines.extend(skip_lines(r.get("detector_skips") or {}))
    if "forecaster" in r:
        f = r["forecaster"]
        if f["forecasts"]:
            lines.append(f"  forecaster {f['model_version']}: {f['forecasts']} forecasts "
                         f"(first {_fmt(f['first_forecast_s'])} s in), p_below_median "
                         f"{f['p_below_median_min']:.2f}-{f['p_below_median_max']:.2f} (median "
                         f"{f['p_below_median_median']:.2f})"
                         + (f"; {f['gate_open_forecasts']} of them opened the gate "
                            f"({f['gate_rule']})" if f['gate_open_forecasts'] is not None
                            else f"; the gate decides each ripple: {f['gate_rule']}"))
        else:
            lines.append("  forecaster: no forecast yet (the first comes when the first "
                         "epoch ends)")
        held = f["gate_held_back"]
        lines.append(f"  forecast gate: let {f['gate_allowed']} detections through, held back "
                     f"{sum(held.values())} {held or ''}".rstrip())
    for kind, m in r.get("detection", {}).items():
        lines.append(f"  {kind} detection: precision {_fmt(m['precision'])}, recall "
                     f"{_fmt(m['recall'])}, F1 {_fmt(m['f1'])}, latency "
                     f"{_fmt(m['latency_median_s'] * 1e3)} ms (n_true {m['n_true']})")
    if "ripple_timing" in r:
        m = r["ripple_timing"]
        lines.append(f"  ripple pulses within +-50 ms of the true peak: "
                     f"{_fmt(100 * m['within_50ms'])} % of {m['n_pulses']} "
                     f"(median offset {_fmt(m['offset_median_s'] * 1e3)} ms)")
    if "so_phase" in r:
        m = r["so_phase"]
        lines.append(f"  SO phase error: mean {_fmt(m['mean_error_deg'])} deg, circular SD "
                     f"{_fmt(m['circular_sd_deg'])} deg, mean |err| "
                     f"{_fmt(m['mean_abs_error_deg'])} deg (n {m['n_pulses']})")
    if "theta_phase" in r:
        m = r["theta_phase"]
        lines.append(f"  theta phase error: mean {_fmt(m['mean_error_deg'])} deg, circular SD "
                     f"{_fmt(m['circular_sd_deg'])} deg (n {m['n_pulses']}, no theta "
                     f"{m['n_no_so']})")
    if "spindle_timing" in r:
        m = r["spindle_timing"]
        lines.append(f"  spindle pulses inside a true spindle: "
                     f"{_fmt(100 * m['inside_spindle'])} % of {m['n_pulses']}")
    if "lateness_p99_s" in r:
        lines.append(f"  scheduler lateness p99 {_fmt(r['lateness_p99_s'] * 1e6)} us, max "
                     f"{_fmt(r['lateness_max_s'] * 1e6)} us")
    if "recall_mean" in r:
        lines.append(f"  memory recall {r['recall_delay_s'] / 3600:.0f} h after the run "
                     f"({r['condition']}): {_fmt(r['recall_mean'])}")
    if rep.get("sham") is not None and "recall_mean" in rep["sham"]:
        lines.append(f"  memory recall (sham twin, same seed): "
                     f"{_fmt(rep['sham']['recall_mean'])}; effect "
                     f"{_fmt(rep.get('memory_effect', math.nan))}")
    return "\n".join(lines)


def write_report(rep: dict, folder: str) -> None:
    """Write ``summary.json`` and ``summary.txt`` into ``folder`` (created if needed)."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    (d / "summary.json").write_text(json.dumps(to_jsonable(rep), indent=2) + "\n",
                                    encoding="utf-8")
    (d / "summary.txt").write_text(format_summary(rep) + "\n", encoding="utf-8")


__all__ = ["run_sim", "run_trial", "sham_twin_path", "score_run", "detection_metrics",
           "ripple_timing", "phase_error", "format_summary", "write_report", "RIPPLE_WINDOW_S"]
