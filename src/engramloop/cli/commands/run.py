"""engramloop run CONFIG"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from engramloop.analysis.trial import format_summary, run_trial, score_run, write_report
from engramloop.cli.paths import check_output_file, prepare_output_dir, remove_if_empty
from engramloop.controller.build import build_loop
from engramloop.controller.config import dump_config, load_config
from engramloop.controller.dashboard import make_dashboard
from engramloop.controller.forecast_worker import ForecasterError
from engramloop.controller.loop import ThreadFailure
from engramloop.controller.progress import progress
from engramloop.controller.recorder import RecordingError
from engramloop.controller.run_progress import ProgressBoard, run_length_s
from engramloop.controller.status import StatusBoard
from engramloop.controller.stop_signals import StopSignals, exit_code
from engramloop.core.chunk import SourceError
from engramloop.core.errors import UserError
from engramloop.core.pulse import DeviceError
from engramloop.core.schema import ConfigError
from engramloop.drivers.sources import parse_speed

HELP = "run the closed loop (source -> detectors -> policy -> governor -> stimulators)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="path of a TOML config (`engramloop configs` lists "
                                  "and copies the shipped examples)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: until the source ends or Ctrl-C)")
    p.add_argument("--record", metavar="PATH", help="record everything to this XDF file")
    p.add_argument("--report", metavar="DIR",
                   help="write the HTML report (index.html + figures, from the recording; "
                        "records to DIR/session.xdf unless --record is given) and "
                        "summary.json / summary.txt here (for simulated runs: scored against "
                        "ground truth, plus a sham twin with the same seed)")
    p.add_argument("--speed", default="1", metavar="1|max",
                   help="1 = real time; max = as fast as possible on a simulated clock "
                        "(sim and file sources)")
    p.add_argument("--stim-port", metavar="PORT", help="serial port of the stimulator")
    p.add_argument("--serial-port", metavar="PORT", help="serial port of the board")
    p.add_argument("--stream", metavar="NAME", help="LSL stream name (or XDF stream to replay)")
    p.add_argument("--channels", metavar="A,B", help="comma-separated channel names to use")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")


def run(args: argparse.Namespace) -> int:
    return run_loop(args, replay_path=None)


def run_loop(args: argparse.Namespace, replay_path: str | None,
             cfg_transform=None) -> int:
    """Shared by ``run`` and ``replay``: build, run, summarise."""
    cfg = load_config(args.config)
    if cfg_transform is not None:
        cfg = cfg_transform(cfg)
    try:
        speed = parse_speed(args.speed)
    except ValueError as exc:
        raise UserError(f"--speed: {exc}") from None
    if speed == "max" and cfg.source.kind in ("brainflow", "lsl") and replay_path is None:
        raise UserError(f"--speed max needs a sim or file source; source.kind is "
                        f"{cfg.source.kind!r} (a live device runs in real time)")
    if args.duration is not None and not 0 < args.duration < float("inf"):
        raise UserError(f"--duration must be a finite number of seconds > 0, got "
                        f"{args.duration} (leave it out to run until the source ends)")
    if (cfg.source.kind == "sim" and replay_path is None and speed == "max"
            and args.duration is None):
        raise UserError("--speed max on the simulator needs --duration S (the simulator "
                        "never ends on its own)")
    channels = [c.strip() for c in args.channels.split(",") if c.strip()] \
        if args.channels else None
    from contextlib import ExitStack

    board = StatusBoard()
    dash_box: list = []
    stack = ExitStack()
    # SIGTERM, SIGHUP and SIGINT (once or twice) stop the run in order: outputs disarmed,
    # recording closed with its footers, exit status 128 + the signal number
    signals = stack.enter_context(StopSignals(log=lambda msg: log(msg)))
    bars: list = []      # the one progress bar of this command, opened by the first run
    runs: list = []      # the ProgressBoard of each run sharing it
    built: list = []     # the loop, once built (an error before it: nothing had started)
    twin = bool(args.report) and cfg.source.kind == "sim" and replay_path is None \
        and cfg.policy.condition != "sham"

    def attach_progress(loop, runs_on_bar: int, what: str) -> None:
        """--speed max (and the sham twin): a progress bar with ETA over the known length
        of the run(s) instead of the dashboard."""
        # the twin's simulated source is as long as the run it copies
        length = run_length_s(loop.source, None if what == "sham twin" else args.duration)
        if not bars:
            total = length * runs_on_bar if math.isfinite(length) else None
            bars.append(stack.enter_context(progress(total, what, unit="s",
                                                     quiet=args.quiet)))
        bar = bars[0]
        pb = ProgressBoard(bar, base_s=bar.completed, length_s=length)
        if runs:
            bar.update(description=f"{bar.description} + sham twin")
        loop.status_board = pb
        runs.append(pb)

    def on_built(loop) -> None:
        """Attach the live dashboard (keys arm/disarm/stop go to the loop), or at --speed
        max a progress bar; from here a stop signal stops this loop."""
        built.append(loop)
        signals.attach(loop)
        if speed == "max":
            attach_progress(loop, 2 if twin else 1, "replay" if replay_path else "run")
            return
        dash = make_dashboard(board, loop, quiet=args.quiet)
        if dash is not None:
            dash.start()
            dash_box.append(dash)

    def on_twin_built(loop) -> None:
        """The sham twin runs at max speed after the run: a bar over its length."""
        signals.attach(loop)
        if runs:
            runs[-1].finish()
        while dash_box:  # the run is over: its dashboard makes way for the twin's bar
            dash_box.pop().stop()
        attach_progress(loop, 1, "sham twin")

    def log(msg: str) -> None:
        # on a live terminal dashboard the messages show inside it (LoopStatus.messages);
        # otherwise one line each on stderr. Everything is in the recording's log stream.
        if args.quiet or (dash_box and dash_box[0].interactive):
            return
        print(f"[engramloop] {msg}", file=sys.stderr, flush=True)

    overrides = dict(stim_port=args.stim_port, serial_port=args.serial_port,
                     stream=args.stream, channels=channels, path=replay_path,
                     status_board=board)

    # outputs are checked before anything starts: a folder that takes no file, or an
    # output that is the very file being replayed, is a one-line error, not a lost input
    inputs = [p for p in (replay_path, cfg.source.file.path if cfg.source.kind == "file"
                          else "") if p]
    record = args.record
    if record:
        check_output_file(record, "--record", inputs)
    created: list = []
    if args.report:
        created = prepare_output_dir(args.report, "--report")
    if args.report and not record:
        # the HTML report is made from the recording alone, so --report implies one
        record = str(Path(args.report) / "session.xdf")
        try:
            check_output_file(record, "--report", inputs)
        except UserError:
            remove_if_empty(created)
            raise
    if record and Path(record).exists():
        # the recorder truncates its file: an earlier session would be lost
        remove_if_empty(created)
        raise UserError(f"{record} already exists; record to a new path (nothing was run)")
    try:
        if cfg.source.kind == "sim" and replay_path is None:
            rep = run_trial(cfg, args.duration,
                            speed=speed, record=record, report=args.report,
                            sham_twin=bool(args.report), config_text=dump_config(cfg),
                            log=log, on_built=on_built, on_twin_built=on_twin_built,
                            **overrides)
        else:
            loop = build_loop(cfg, config_text=dump_config(cfg), speed=speed,
                              duration_s=args.duration, record=record, log=log,
                              **overrides)
            on_built(loop)
            result = loop.run(args.duration)
            rep = {"config": cfg.name, "seed": cfg.seed, "speed": str(speed),
                   "run": score_run(result), "sham": None,
                   "stages": result.stages.summary()}
            if args.report:
                write_report(rep, args.report)
        # a run stopped early keeps its bar where it stopped (finish() fills it)
        if runs and signals.signum is None and \
                not str(rep["run"].get("stop_reason", "")).startswith("interrupted"):
            runs[-1].finish()
    except (SourceError, DeviceError, RecordingError, ForecasterError,
            ThreadFailure) as exc:
        remove_if_empty(created)   # a run that never started leaves no empty folder
        if not built:      # the source, config or a device failed before the run began
            raise UserError(str(exc)) from None
        kept = (f"; the recording so far is in {record}" if record and Path(record).is_file()
                else "")
        raise UserError(f"{exc} (stimulation stopped, outputs off{kept})") from None
    except ConfigError as exc:
        remove_if_empty(created)
        if exc.file:
            raise
        # a check against the started source (channels, rate): name the config it is in
        raise ConfigError(str(args.config), exc.key, exc.message) from None
    except BaseException:
        remove_if_empty(created)
        raise
    finally:
        for dash in dash_box:
            dash.stop()
        stack.close()
    print(format_summary(rep))
    if signals.signum is not None:
        # stopped by a signal: outputs are off and the recording is closed; no report
        # (the caller wants the process gone), a distinct exit status
        left = ""
        if args.report:
            skipped = "no HTML report" + (" and no sham twin" if twin else "")
            left = (f"; {skipped} (make the report of the run so far with: engramloop "
                    f"report {record} --out {args.report})")
        print(f"  {signals.reason}: outputs disarmed, recording closed"
              + (f" ({record})" if record else "") + left)
        return exit_code(signals.signum)
    if args.report:
        print(f"  report: {_html_report(record, args.report)}")
    interrupted = str(rep["run"].get("stop_reason", "")).startswith("interrupted")
    if not args.quiet:
        st = rep.get("stages") or {}
        if st:
            print("  per-chunk stage times (us): " + ", ".join(
                f"{k} p99 {v['p99_s'] * 1e6:.0f}" for k, v in st.items() if v["count"]))
    return 130 if interrupted else 0


def _html_report(recording: str, folder: str) -> str:
    """Write index.html + figures for ``recording`` into ``folder``; returns the page path."""
    import matplotlib

    matplotlib.use("Agg")  # never needs a display (SSH, CI)
    from engramloop.analysis.report import ReportError, write_report

    try:
        return str(write_report(recording, folder).index)
    except ReportError as exc:
        raise UserError(f"the run finished but its report failed: {exc}") from None
