"""engramloop report RECORDING.xdf --out DIR"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engramloop.cli.paths import prepare_output_dir, remove_if_empty
from engramloop.controller.stop_signals import SignalsInterrupt, interrupt_code, interrupt_name
from engramloop.core.errors import UserError

HELP = "write an HTML report with figures (index.html + PNGs) from one XDF recording"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="the .xdf file written by engramloop run or replay")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for index.html and the PNG figures (created if needed)")
    p.add_argument("--twin", metavar="XDF",
                   help="the sham twin's recording, whose memory trajectory is drawn beside "
                        "this one's (default: NAME-sham-twin.xdf beside NAME.xdf, as a "
                        "simulated trial with --report writes it)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress, print nothing on success")


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # never needs a display (SSH, CI)
    from engramloop.analysis.report import ReportError, write_report

    if args.twin:
        from engramloop.analysis.report import load_twin_memory

        try:  # a twin asked for by name must be there, not a note inside the HTML
            track, _ = load_twin_memory(args.twin)
        except ReportError as exc:
            raise UserError(f"--twin: {exc}") from None
        if track is None:
            raise UserError(f"--twin {args.twin}: no engramloop.memory stream (give the sham "
                            "twin's recording of a simulated trial)")
    created = prepare_output_dir(args.out, "--out")
    try:
        # SIGTERM (kill) and SIGHUP (terminal closed) stop it as Ctrl-C does
        with SignalsInterrupt(sigint=True):
            result = write_report(args.recording, args.out, quiet=args.quiet,
                                  twin=args.twin)
    except ReportError as exc:
        remove_if_empty(created)
        raise UserError(str(exc)) from None
    except KeyboardInterrupt as exc:
        remove_if_empty(created)
        page = Path(args.out) / "index.html"
        if not Path(args.out).exists():
            left = "nothing was written (the folder it made is removed)"
        elif page.exists():
            left = f"{args.out}'s index.html is the previous report's, untouched"
        else:
            left = (f"{args.out} has no index.html (the page is written last; the figures "
                    "made so far are left)")
        print(f"report: {interrupt_name(exc)}; the report was not finished: {left}; run "
              "the command again", file=sys.stderr)
        return interrupt_code(exc)
    if result.unclosed:   # even with --quiet: the page alone would look like a whole night
        print(f"report: {args.recording}: {result.unclosed}", file=sys.stderr)
    if not args.quiet:
        missing = [s.title for s in result.sections if s.missing]
        print(f"wrote {result.index} ({len(result.figures)} figures)")
        if missing:
            print("sections without data: " + "; ".join(missing))
    return 0
