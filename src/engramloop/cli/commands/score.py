"""engramloop score RECORDING [--truth FILE] [--json]"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from engramloop.analysis.scoring import replay, score_session
from engramloop.analysis.sweep import fmt_number, shift_records
from engramloop.analysis.truth_files import (
    expanded_truth,
    npz_truth,
    read_truth,
    truth_t0,
    xdf_streams,
)
from engramloop.controller.config import Config, load_config
from engramloop.controller.stop_signals import SignalsInterrupt, interrupt_code, interrupt_name
from engramloop.core.errors import UserError
from engramloop.decoders.detectors import make_detectors
from engramloop.drivers.files import load_npz

HELP = ("score a recording's detections against truth (simulated) or expert annotations: "
        "precision/recall/F1, false positives per minute, latency, SO trigger phase")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="an XDF recording (detections in engramloop.events, "
                                     "truth in engramloop.truth) or an .npz from "
                                     "'engramloop sim' (detectors are run on it)")
    p.add_argument("--truth", metavar="FILE",
                   help="truth to score against instead of the recording's own: a CSV of "
                        "onset,duration (expert annotations, seconds from the recording's "
                        "first sample), a truth .json (sim.truth.Truth.save), or another "
                        ".xdf/.npz holding truth (its first sample is aligned with the "
                        "recording's, as when the recording is a replay of it)")
    p.add_argument("--kind", default="spindle",
                   help="event kind the CSV annotations are (default: spindle); with a "
                        "label column (onset,duration,label) or EDF+ annotations, the rows "
                        "whose label names it")
    p.add_argument("--events", metavar="FILE",
                   help="detections to score instead of the recording's own: an .xdf with "
                        "engramloop.events, or JSON lines of Event dicts")
    p.add_argument("--config", metavar="TOML",
                   help="config whose [detectors] run on an .npz (default: built-in)")
    p.add_argument("--chunk", type=int, default=10, metavar="SAMPLES",
                   help="chunk size when running detectors on an .npz (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _events_jsonl(path: Path) -> list[dict]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise UserError(f"--events {path}: line {i} is not a JSON object") from None
    return out


def _run_detectors(path: Path, config: str | None, chunk: int,
                   nonfinite: list | None = None) -> tuple[list[dict], float]:
    cfg = load_config(config) if config else Config()
    try:
        data = load_npz(path)
    except Exception as exc:
        raise UserError(f"{path}: {exc}") from None
    names = tuple(data.channels)
    # with --config, an enabled detector whose channels the file lacks is an error; the
    # built-in defaults run whichever of their detectors the file can feed
    stages = make_detectors(cfg, channels=names, missing="error" if config else "skip")
    if not stages:
        raise UserError(f"{path}: no enabled detector finds its channels in {list(names)}")
    events = replay(stages, data.samples, data.timestamps, data.rate_hz, names, chunk,
                    nonfinite=nonfinite)
    span = float(data.timestamps[-1] - data.timestamps[0]) if len(data.timestamps) else 0.0
    return [e.to_dict() for e in events], span


# ----------------------------------------------------------------------- command

def run(args: argparse.Namespace) -> int:
    # SIGTERM (kill) and SIGHUP (terminal closed) end it as Ctrl-C does: one line, 128+N
    try:
        with SignalsInterrupt(sigint=True):
            return score(args)
    except KeyboardInterrupt as exc:
        print(f"score: {interrupt_name(exc)}; nothing was scored (score writes no file)",
              file=sys.stderr)
        return interrupt_code(exc)


def score(args: argparse.Namespace) -> int:
    rec = Path(args.recording)
    if not rec.is_file():
        raise UserError(f"{rec}: file not found")
    ext = rec.suffix.lower()
    truth: list[dict] = []
    truth_obj = None
    rec_t0 = 0.0
    nonfinite: list[dict] = []     # stretches of non-finite samples the detectors skipped
    if ext == ".xdf":
        markers, duration, rec_t0 = xdf_streams(rec)
        detections = [obj for _, obj in markers.get("events", [])]
        truth = expanded_truth(markers)
    elif ext == ".npz":
        if args.events:
            detections, duration = [], math.nan
        else:
            detections, duration = _run_detectors(rec, args.config, args.chunk, nonfinite)
        truth, truth_obj = npz_truth(rec)
        rec_t0 = truth_t0(rec, None)
    else:
        raise UserError(f"{rec}: use an .xdf recording or an .npz from 'engramloop sim'")
    if args.events:
        ev = Path(args.events)
        if not ev.is_file():
            raise UserError(f"--events {ev}: file not found")
        if ev.suffix.lower() == ".xdf":
            detections = [obj for _, obj in xdf_streams(ev)[0].get("events", [])]
        else:
            detections = _events_jsonl(ev)
    shift = 0.0
    if args.truth:
        truth, truth_obj = read_truth(Path(args.truth), args.kind)
        # onto the recording's clock: the truth file's start is the recording's first
        # sample (a replay starts at the file's first sample; CSV onsets count from it)
        if math.isfinite(rec_t0):
            shift = rec_t0 - truth_t0(Path(args.truth), truth_obj)
    # the truth stream also carries non-event records (e.g. memory recall scores)
    truth = [e for e in truth if isinstance(e, dict) and "onset_s" in e and "offset_s" in e]
    if shift:
        truth = shift_records(truth, shift)
    if not truth:
        raise UserError(f"{rec}: no truth to score against (no engramloop.truth stream); "
                        "give --truth FILE (CSV of onset,duration or a truth file)")
    phase_fn = None
    if truth_obj is not None:
        phase_fn = lambda t: truth_obj.phase("so", t - shift)  # noqa: E731
    # the recording's first sample: its span ends there + duration (truth beyond is
    # not scored) and the span after calibration is measured from it
    result = score_session(detections, truth, duration, so_phase=phase_fn, start_s=rec_t0)
    if nonfinite:
        result["nonfinite"] = nonfinite
    if not any(isinstance(v, dict) and "f1" in v for v in result.values()):
        # the counts score_session looked at: what lies after the detectors' calibration
        start = result.get("calibration_end_s")
        start = -math.inf if start is None else float(start)

        def counts(rows: list, key: str, skip: set) -> str:
            kinds: dict[str, int] = {}
            for r in rows:
                if isinstance(r, dict) and r.get("kind") not in skip and \
                        float(r.get(key, math.nan)) >= start:
                    kinds[str(r.get("kind"))] = kinds.get(str(r.get("kind")), 0) + 1
            return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"

        det = counts(detections, "detect_s", {"calibration_done", "spindle_rejected"})
        raise UserError(f"{rec}: nothing to score: no kind has both detections and truth in "
                        f"the {fmt_number(result.get('duration_s'), 1, 1)} s after the "
                        f"detectors' calibration (detections: {det}; truth: "
                        f"{counts(truth, 'onset_s', set())}). A recording from `engramloop "
                        "sim` has no detections: replay it with --record first; --kind names "
                        "the kind of --truth CSV events")
    if args.json:
        print(json.dumps(result, default=float))
        return 0
    print_table(rec, result)
    return 0


def print_table(rec: Path, result: dict) -> None:
    print(f"# {rec}: {fmt_number(result['duration_s'], 1, 1)} s scored")
    eps = result.get("nonfinite") or []
    if eps:
        n = sum(e["nonfinite_samples"] for e in eps)
        chans = sorted({c for e in eps for c in e["channels"]})
        first = eps[0]
        print(f"# non-finite samples: {n} in {len(eps)} stretch(es) (first at "
              f"{fmt_number(first['start_s'], 1, 3)} s, {', '.join(chans)}); the detectors "
              "reading them paused there and restarted after")
    kinds = [k for k, v in result.items() if isinstance(v, dict) and "f1" in v]
    if kinds:
        print(f"{'kind':<10}{'truth':>7}{'det':>6}{'TP':>6}{'prec':>7}{'recall':>8}{'F1':>7}"
              f"{'FP/min':>8}{'lat onset med/p90 ms':>22}{'lat peak med/p90 ms':>21}")
        for k in kinds:
            r = result[k]
            on = (f"{fmt_number(r['latency_onset_median_s'], 1e3, 1)} / "
                  f"{fmt_number(r['latency_onset_p90_s'], 1e3, 1)}")
            pk = (f"{fmt_number(r['latency_peak_median_s'], 1e3, 1)} / "
                  f"{fmt_number(r['latency_peak_p90_s'], 1e3, 1)}")
            print(f"{k:<10}{r['n_truth']:>7}{r['n_detected']:>6}{r['true_positives']:>6}"
                  f"{fmt_number(r['precision']):>7}{fmt_number(r['recall']):>8}{fmt_number(r['f1']):>7}"
                  f"{fmt_number(r['fp_per_min'], 1, 2):>8}{on:>22}{pk:>21}")
        print(f"{'kind':<10}{'det/min':>9}{'truth/min':>11}   per sleep stage (det/min, "
              f"truth/min, minutes)")
        for k in kinds:
            r = result[k]
            stages = "; ".join(
                f"{label or '?'} {fmt_number(d['detected_per_min'], 1, 2)}/"
                f"{fmt_number(d['truth_per_min'], 1, 2)} ({fmt_number(d['minutes'], 1, 1)})"
                for label, d in sorted((r.get("per_stage") or {}).items()))
            print(f"{k:<10}{fmt_number(r['detected_per_min'], 1, 2):>9}"
                  f"{fmt_number(r['truth_per_min'], 1, 2):>11}   "
                  f"{stages or 'no hypnogram in the truth'}")
    else:
        print("no detected kind has truth of the same kind")
    ph = result.get("so_phase")
    if ph:
        print(f"SO up-state triggers: n={ph['n']}, phase at predicted up-state "
              f"{fmt_number(ph['mean_phase_deg'], 1, 1)} deg (circular SD "
              f"{fmt_number(ph['sd_phase_deg'], 1, 1)} deg), in up-phase "
              f"{fmt_number(ph['fraction_in_target_half'], 100, 1)} %")
