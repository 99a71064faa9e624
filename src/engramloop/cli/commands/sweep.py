"""engramloop sweep CONFIG 'nights/*.edf' --set KEY=V1,V2 [--truth-dir DIR] [--workers N]"""
from __future__ import annotations

import argparse
import sys

from engramloop.analysis import fanout
from engramloop.analysis.fanout import Job, best, pooled, run_jobs, tidy, write_table
from engramloop.analysis.sweep import SweepError, config_with, fmt_number, grid, parse_sweep
from engramloop.analysis.trial import DETECTED_KINDS
from engramloop.cli.paths import check_output_file
from engramloop.controller.progress import progress
from engramloop.controller.stop_signals import SignalsInterrupt, interrupt_code, interrupt_name
from engramloop.core.errors import UserError

HELP = ("replay many recordings once per setting, in parallel (a local Dask pool on all "
        "cores, or a cluster), and write one table of per-recording and pooled scores")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="config file (TOML); its [source] is replaced by each file")
    p.add_argument("recordings", nargs="+", metavar="RECORDING",
                   help="recordings to replay (XDF/EDF/BDF/CSV/npz); quote glob patterns "
                        "such as 'nights/*.edf'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2,...",
                   dest="sweep",
                   help="a config key and the values to try (repeat for a grid); without "
                        "--set each recording is replayed once with the config as it is")
    p.add_argument("--truth-dir", metavar="DIR",
                   help="folder of truth files named after each recording: "
                        "DIR/<stem><suffix>.csv (onset,duration annotations) or "
                        ".json/.xdf/.npz (default: the truth each recording carries)")
    p.add_argument("--truth-suffix", default="", metavar="TEXT",
                   help="with --truth-dir: text between the recording's stem and the "
                        "extension, e.g. _expert1 for excerpt1_expert1.csv")
    p.add_argument("--kind", default="spindle",
                   help="event kind CSV annotations are (default: spindle); with a label "
                        "column (onset,duration,label), the rows whose label names it")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes (default: one per core; 1 runs here, in "
                        "order, without Dask)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786, instead of a "
                        "local pool")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="replay only the first SECONDS of each recording")
    p.add_argument("--channels", metavar="A,B", help="channels to keep, in order")
    p.add_argument("--stream", metavar="NAME", help="XDF stream to replay")
    p.add_argument("--out", metavar="PATH",
                   help="write the table here: .csv, or .parquet (needs pyarrow)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def expand(patterns: list[str]) -> list[str]:
    """Glob patterns and plain paths to a sorted list of files, each once: one file named
    twice (``a.edf ./a.edf``, a symbolic or hard link to it) is replayed once -- it would
    be pooled twice, its scores counting double -- with a note on stderr.

    Raises
    ------
    UserError
        A pattern that matches nothing, or a path that does not exist.
    """
    import glob
    import os
    from pathlib import Path

    out: list[str] = []
    seen: dict[tuple[int, int], str] = {}     # (device, inode): the name kept
    for pat in patterns:
        hits = sorted(glob.glob(pat)) if glob.has_magic(pat) else [pat]
        hits = [h for h in hits if Path(h).is_file()]
        if not hits:
            raise UserError(f"{pat}: no such recording (check the path; quote glob patterns)")
        for h in hits:
            st = os.stat(h)
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen[key] = h
                out.append(h)
            elif h != (first := seen[key]):
                print(f"note: {h} is the file {first} again: replayed once", file=sys.stderr)
    return out


def truth_for(recording: str, truth_dir: str | None, suffix: str) -> str | None:
    """The truth file for a recording in ``truth_dir`` (None without --truth-dir).

    Raises
    ------
    UserError
        When --truth-dir is given and no file for this recording is in it.
    """
    from pathlib import Path

    if not truth_dir:
        return None
    stem = Path(recording).stem
    for ext in (".csv", ".json", ".xdf", ".npz"):
        cand = Path(truth_dir) / f"{stem}{suffix}{ext}"
        if cand.is_file():
            return str(cand)
    raise UserError(f"--truth-dir {truth_dir}: no {stem}{suffix}.csv (or .json/.xdf/.npz) "
                    f"for {recording}")


def same_stem(recordings: list[str], truth_dir: str) -> None:
    """--truth-dir finds truth by a recording's stem: two recordings with one stem would
    both be scored against one file.

    Raises
    ------
    UserError
        Naming the recordings that share a stem.
    """
    from pathlib import Path

    by: dict[str, list[str]] = {}
    for r in recordings:
        by.setdefault(Path(r).stem, []).append(r)
    dup = {s: rs for s, rs in by.items() if len(rs) > 1}
    if dup:
        stem, rs = next(iter(dup.items()))
        raise UserError(f"--truth-dir {truth_dir}: {' and '.join(rs)} have one name "
                        f"({stem}), so both would be scored against the same truth file; "
                        "rename one, or sweep them with separate --truth-dir runs")


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.duration is not None and not 0 < args.duration < float("inf"):
        raise UserError(f"--duration must be a finite number of seconds > 0, got "
                        f"{args.duration} (leave it out to run until the source ends)")
    try:
        axes = parse_sweep(args.sweep) if args.sweep else []
    except SweepError as exc:
        raise UserError(str(exc)) from None
    keys = [k for k, _ in axes]
    points = grid(axes) if axes else [{}]
    recordings = expand(args.recordings)
    # every setting is checked here before a worker starts: a typo fails at once
    for pt in points:
        config_with(args.config, {k: v for k, (_, v) in pt.items()})
    if args.truth_dir:
        same_stem(recordings, args.truth_dir)
    truths = {r: truth_for(r, args.truth_dir, args.truth_suffix) for r in recordings}
    channels = tuple(c.strip() for c in args.channels.split(",") if c.strip()) \
        if args.channels else None
    jobs = [Job(index=len(recordings) * i + j, config=args.config, recording=rec,
                setting=tuple((k, t) for k, (t, _) in pt.items()),
                values=tuple((k, v) for k, (_, v) in pt.items()), truth=truths[rec],
                kind=args.kind, duration_s=args.duration, stream=args.stream,
                channels=channels)
            for i, pt in enumerate(points) for j, rec in enumerate(recordings)]
    if args.out and not args.out.lower().endswith((".csv", ".parquet")):
        raise UserError(f"--out {args.out}: use a .csv or .parquet file name")
    if args.out:   # before the replays, not after them

        check_output_file(args.out, "--out", [args.config, *recordings])
    done: list = []
    try:
        # SIGTERM (kill) and SIGHUP (terminal closed) stop it as Ctrl-C does
        with SignalsInterrupt(sigint=True) as signals, progress(len(jobs), "sweep", unit="replays",
                                                     quiet=args.quiet) as bar:
            try:
                # a signal a replay swallowed (in its shutdown) stops the sweep here
                results = run_jobs(jobs, workers=args.workers, address=args.scheduler,
                                   on_done=lambda r: (done.append(r), bar.advance(),
                                                      signals.check()))
            except fanout.EngineError as exc:
                raise UserError(str(exc)) from None
    except KeyboardInterrupt as exc:
        print(f"sweep: {interrupt_name(exc)} after {len(done)} of {len(jobs)} replay(s); "
              "nothing is kept: no table" + (f", {args.out} not written" if args.out else "")
              + " (a pooled score of some replays would read as the sweep's)",
              file=sys.stderr)
        return interrupt_code(exc)
    rows = tidy(results)
    pool = pooled(rows, keys)
    errors = [r for r in rows if r["error"]]
    for r in errors:
        print(f"error: {r['recording']} {dict((k, r[k]) for k in keys)}: {r['error']}")
    for r in rows:   # once per recording: every setting replays the same samples
        if r.get("nonfinite_stretches") and r is next(
                q for q in rows if q["recording"] == r["recording"] and not q["error"]):
            print(f"note: {r['recording']}: {r['nonfinite_stretches']} stretch(es) of "
                  "non-finite samples; the detectors reading them were paused there "
                  "(the 'nonfinite_stretches' column)")
    kinds = sorted({c[:-3] for r in pool for c in r if c.endswith(".f1")
                    and not c.endswith("_mean")})
    if kinds:
        head = keys + ["recordings"] + [f"{k} {m}" for k in kinds
                                        for m in ("P", "R", "F1", "F1 mean")]
        table = [head]
        for r in pool:
            n = (str(r["recordings"]) if r["scored"] == r["recordings"]
                 else f"{r['scored']} of {r['recordings']}")
            table.append([str(r[k]) for k in keys] + [n]
                         + [fmt_number(r[f"{k}.{m}"]) for k in kinds
                            for m in ("precision", "recall", "f1", "f1_mean")])
        what = "micro P/R/F1; F1 mean = mean of per-recording F1"
    else:
        # nothing scored (no recording carries truth of a kind detected): the detections
        # are what the sweep found; an empty table would look like a sweep that did nothing
        # detections, not the detectors' state events (so_gate_closed, spindle_rejected:
        # those stay in --out)
        found = [k for k in DETECTED_KINDS if any(f"{k}.detections" in r for r in pool)]
        head = keys + ["recordings"] + [f"{k} {m}" for k in found for m in ("det", "det/min")]
        table = [head]
        for r in pool:
            minutes = r["duration_s"] / 60.0
            table.append([str(r[k]) for k in keys] + [str(r["recordings"])]
                         + [c for k in found for c in (
                             str(r.get(f"{k}.detections", 0)),
                             fmt_number(r.get(f"{k}.detections", 0) / minutes
                                        if minutes > 0 else None, 1, 2))])
        what = ("no truth to score against: detections only; give --truth-dir, or "
                "recordings that carry their truth"
                + ("" if found else "; there was no detection in any replay"))
    width = [max(len(row[i]) for row in table) for i in range(len(head))]
    print(f"# sweep: {len(recordings)} recording(s) x {len(points)} setting(s), "
          f"pooled over recordings ({what})")
    for row in table:
        print("  ".join(c.rjust(w) for c, w in zip(row, width, strict=True)).rstrip())
    bare = sorted({r["recording"] for r in rows if not r["error"]
                   and not any(c.endswith(".true_positives") for c in r)})
    if kinds and bare:
        print(f"note: no truth for {', '.join(bare)}: replayed, not in the scores above "
              "('N of M' recordings scored)")
    top = best(pool)
    if top is not None and keys:
        kind = kinds[0]
        print(f"# best {kind} F1 {top[f'{kind}.f1']:.3f}: "
              + ", ".join(f"{k}={top[k]}" for k in keys))
    if args.out:
        pooled_rows = [{"recording": "(pooled)", **r} for r in pool]
        try:
            write_table(rows + pooled_rows, args.out)
        except (OSError, ValueError) as exc:
            raise UserError(f"--out {args.out}: {exc}") from None
        print(f"wrote {args.out}: {len(rows)} per-recording rows + {len(pool)} pooled rows")
    return 1 if errors else 0
