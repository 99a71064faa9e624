"""engramloop replay CONFIG FILE [--sweep KEY=V1,V2,...]"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from engramloop.analysis.fanout import EngineError, Job, run_jobs
from engramloop.analysis.sweep import (
    PointResult,
    SweepError,
    config_with,
    find_truth,
    grid,
    parse_sweep,
    run_point,
    table,
)
from engramloop.cli.commands.run import add_arguments as run_arguments
from engramloop.cli.commands.run import run_loop
from engramloop.controller.forecast_worker import ForecasterError
from engramloop.controller.progress import progress
from engramloop.controller.recorder import RecordingError
from engramloop.controller.run_progress import ProgressBoard, run_length_s
from engramloop.controller.stop_signals import (
    SignalsInterrupt,
    interrupt_code,
    interrupt_name,
    raise_interrupt,
)
from engramloop.core.chunk import SourceError
from engramloop.core.errors import UserError
from engramloop.core.pulse import DeviceError
from engramloop.drivers.sources import parse_speed

HELP = ("run the closed loop on a recorded file (XDF/EDF/BDF/BrainFlow CSV/OpenBCI GUI "
        "txt/npz); pulses are sham "
        "unless --stimulate is given; --sweep replays it once per setting and scores each")


def add_arguments(p: argparse.ArgumentParser) -> None:
    run_arguments(p)
    p.add_argument("file", help="recording to replay (overrides source.file.path)")
    p.add_argument("--stimulate", action="store_true",
                   help="send pulses to the configured stimulators (default: sham, "
                        "everything decided and logged, nothing sent); only at --speed 1, "
                        "since the safety limits are in wall-clock seconds")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="replay the file at --speed max once per value of a config key "
                        "(e.g. detectors.ripple.threshold_sd=3,4,5; repeat for a grid of "
                        "several keys) and print one row per setting: precision, recall, "
                        "F1, false positives/min and latency against the truth, or "
                        "detection counts and rates without truth")
    p.add_argument("--truth", metavar="FILE",
                   help="with --sweep: truth to score against: a CSV of onset,duration "
                        "(expert annotations, seconds from the start of the file) or a "
                        "truth .json/.xdf/.npz (default: the truth the replayed file carries, "
                        "e.g. a simulated recording)")
    p.add_argument("--kind", default="spindle",
                   help="with --sweep --truth CSV: event kind the annotations are "
                        "(default: spindle); with a label column (onset,duration,label), "
                        "the rows whose label names it")
    p.add_argument("--json", action="store_true",
                   help="with --sweep: print one JSON object per setting instead of the table")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="with --sweep: replay N settings at once on a local Dask pool "
                        "(default 1: one after another here, with progress over signal "
                        "time); for many recordings see 'engramloop sweep'")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --sweep: run the settings on a running Dask scheduler "
                        "(tcp://host:8786)")


def _to_replay(args: argparse.Namespace):
    def to_replay(cfg):
        src = dataclasses.replace(cfg.source, kind="file")
        pol = cfg.policy if args.stimulate else dataclasses.replace(cfg.policy,
                                                                    condition="sham")
        return dataclasses.replace(cfg, source=src, policy=pol)
    return to_replay


def run(args: argparse.Namespace) -> int:
    if args.sweep:
        return run_sweep(args)

    for flag, given in (("--truth", args.truth), ("--json", args.json),
                        ("--workers", args.workers != 1), ("--scheduler", args.scheduler)):
        if given:
            raise UserError(f"{flag} goes with --sweep (to score a single replay, record it "
                            "with --record and run 'engramloop score')")
    refuse_fast_stimulation(args)
    return run_loop(args, replay_path=args.file, cfg_transform=_to_replay(args))


def refuse_fast_stimulation(args: argparse.Namespace) -> None:
    """``--stimulate`` only at ``--speed 1``: refractory, rate windows and dose windows are
    wall-clock seconds at the tissue, and a replay at N x real time would apply them in
    replayed time (N times too many pulses per real second). docs/safety.md."""
    if not args.stimulate:
        return
    try:
        speed = parse_speed(args.speed)
    except ValueError:
        return  # run_loop names the bad --speed
    if speed != 1.0:
        raise UserError(f"--stimulate needs --speed 1 (got {args.speed}): the safety limits "
                        "are wall-clock seconds at the tissue; replay faster without "
                        "--stimulate (sham), or stimulate in real time")


def run_sweep(args: argparse.Namespace) -> int:
    """Replay the file once per setting of the grid; one table row (or JSON line) each.
    SIGTERM (kill) and SIGHUP (terminal closed) stop it as Ctrl-C does."""
    try:
        with SignalsInterrupt(sigint=True) as signals:
            return _run_sweep(args, signals)
    except KeyboardInterrupt as exc:    # while the settings were checked: none replayed
        print(f"replay --sweep: {interrupt_name(exc)} before the first replay ended; "
              "nothing was replayed", file=sys.stderr)
        return interrupt_code(exc)


def _run_sweep(args: argparse.Namespace, signals: SignalsInterrupt | None = None) -> int:
    import json
    import math

    for flag, given in (("--record", args.record), ("--report", args.report)):
        if given:
            raise UserError(f"{flag} cannot be used with --sweep (it would record every "
                            "setting); replay the chosen setting once with it")
    refuse_fast_stimulation(args)
    if args.duration is not None and not 0 < args.duration < float("inf"):
        raise UserError(f"--duration must be a finite number of seconds > 0, got "
                        f"{args.duration} (leave it out to run until the source ends)")
    try:
        axes = parse_sweep(args.sweep)
    except SweepError as exc:
        raise UserError(str(exc)) from None
    keys = [k for k, _ in axes]
    to_replay = _to_replay(args)
    points = grid(axes)
    # every setting is checked before the first replay: a typo fails at once, not after hours
    cfgs = [to_replay(config_with(args.config, {k: v for k, (_, v) in pt.items()}))
            for pt in points]
    truth = find_truth(args.file, args.truth, args.kind)
    channels = [c.strip() for c in args.channels.split(",") if c.strip()] \
        if args.channels else None
    overrides = dict(stream=args.stream, channels=channels)
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if (args.workers > 1 or args.scheduler) and args.stimulate:
        raise UserError("--stimulate cannot be used with --workers/--scheduler: a worker "
                        "pool never drives stimulators; sweep sham, then replay the chosen "
                        "setting once with --stimulate")
    stop: BaseException | None = None     # the interrupt that ended the sweep early
    if args.workers > 1 or args.scheduler:
        try:
            results = _fan_out(args, points, channels)
        except KeyboardInterrupt as exc:
            print(f"replay --sweep: {interrupt_name(exc)}; nothing is kept (the settings "
                  "were replayed in parallel: no row was complete in order); run it again",
                  file=sys.stderr)
            return interrupt_code(exc)
    else:
        results, stop = _in_order(args, points, cfgs, truth, overrides, signals)
    code = interrupt_code(stop) if stop is not None else 0
    partial = bool(results) and results[-1].stop_reason.startswith("interrupted")
    rest = [", ".join(f"{k}={t}" for k, (t, _) in pt.items())
            for pt in points[len(results):]]
    how = interrupt_name(stop) if stop is not None else ""
    if stop is not None and not results:
        print(f"replay --sweep: {how} before the first replay ended; nothing to show "
              f"(not replayed: {'; '.join(rest)})", file=sys.stderr)
        return code
    if partial:
        last = results[-1]
        now = ", ".join(f"{k}={v}" for k, v in last.setting.items())
        note = (f"# {how}: the last row ({now}) is partial, scored over the first "
                f"{last.duration_s:.1f} s replayed")
    else:
        note = (f"# {how} between two replays: the {len(results)} row(s) above are "
                "complete")
    note += f"; not replayed: {'; '.join(rest)}" if rest else ""
    if args.json:
        for r in results:   # an interrupted row says so in its stop_reason
            print(json.dumps(r.to_dict(), default=float))
        if stop is not None:
            print(note.lstrip("# ").replace("row(s) above", "row(s)"), file=sys.stderr)
        return code
    what = (f"scored against {truth.origin}" if truth is not None
            else "no truth: detection counts and rates")
    dur = results[0].duration_s if results else math.nan
    print(f"# sweep of {args.file} ({dur:.1f} s per replay, {len(results)} setting(s)), "
          f"{what}")
    for line in table(results, keys):
        print(line)
    if stop is not None:
        print(note)
    return code


def _in_order(args: argparse.Namespace, points: list, cfgs: list, truth,
              overrides: dict, signals: SignalsInterrupt | None = None
              ) -> tuple[list, BaseException | None]:
    """The settings one after another in this process, one progress bar over signal time:
    the rows, and the interrupt (Ctrl-C, SIGTERM, SIGHUP) that ended them early if one did
    (the last row is then partial when it came during that replay)."""
    import math
    from contextlib import ExitStack

    results = []
    with ExitStack() as stack:
        bars: list = []    # opened once the first replay knows the file's length

        for i, (pt, cfg) in enumerate(zip(points, cfgs, strict=True)):
            board = ProgressBoard(bars[0] if bars else None)

            def on_built(loop, board=board, i=i) -> None:
                board.length_s = run_length_s(loop.source, args.duration)
                if not bars:
                    per = board.length_s if math.isfinite(board.length_s) else None
                    bars.append(stack.enter_context(progress(
                        per * len(points) if per else None, "sweep", unit="s",
                        quiet=args.quiet)))
                board.handle = bars[0]
                board.base_s = bars[0].completed
                bars[0].update(description=f"sweep {i + 1}/{len(points)}")
                if signals is not None:   # a signal now stops the loop, not raises in it
                    signals.attach(loop)

            setting = {k: text for k, (text, _) in pt.items()}
            try:
                res = run_point(cfg, args.file, duration_s=args.duration, truth=truth,
                                setting=setting, status_board=board, on_built=on_built,
                                **overrides)
            except (SourceError, DeviceError, RecordingError, ForecasterError) as exc:
                raise UserError(f"{exc} (sweep stopped at {setting})") from None
            except KeyboardInterrupt as exc:
                # between two replays (building the next, scoring the last): the rows so
                # far are complete; this setting was not replayed
                return results, exc
            results.append(res)
            try:       # the loop took the interrupt as its stop: this row is partial
                raise_interrupt(res.stop_reason)
                if signals is not None:   # one that came after the loop had stopped:
                    signals.detach()      # this row is complete, the sweep stops here
            except KeyboardInterrupt as exc:
                return results, exc      # the bar stays where the replay stopped
            board.finish()
    return results, None


def _fan_out(args: argparse.Namespace, points: list, channels: list | None) -> list:
    """The settings on the Dask engine (engramloop.analysis.fanout), rows as in order.
    Workers never drive stimulators: every setting is replayed sham."""
    jobs = [Job(index=i, config=args.config, recording=args.file,
                setting=tuple((k, t) for k, (t, _) in pt.items()),
                values=tuple((k, v) for k, (_, v) in pt.items()), truth=args.truth,
                kind=args.kind, duration_s=args.duration, stream=args.stream,
                channels=tuple(channels) if channels else None)
            for i, pt in enumerate(points)]
    with progress(len(jobs), "sweep", unit="replays", quiet=args.quiet) as bar:
        try:
            out = run_jobs(jobs, workers=args.workers, address=args.scheduler,
                           on_done=lambda _r: bar.advance())
        except EngineError as exc:
            raise UserError(str(exc)) from None
    for r in out:
        if r["error"]:
            raise UserError(f"{r['error']} (sweep stopped at {r['setting']})")
    return [PointResult(**r["point"]) for r in out]
