"""engramloop forecaster make-dataset | train | evaluate | make-uplift-dataset | train-uplift |
fit-opportunity | experiment"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engramloop._version import __version__
from engramloop.analysis import training as ft
from engramloop.analysis.training import experiment as ex
from engramloop.analysis.training.opportunity_train import fit_opportunity
from engramloop.analysis.training.uplift_train import make_uplift_dataset, train_uplift
from engramloop.cli.paths import check_output_file, prepare_output_dir
from engramloop.controller.config import load_config
from engramloop.controller.progress import progress
from engramloop.core.errors import UserError
from engramloop.decoders.features import FeatureSettings
from engramloop.decoders.pulse_features import CANDIDATE_NAMES
from engramloop.decoders.uplift import UpliftModel

HELP = ("build training data, train and evaluate the memory-decay forecaster and the "
        "pulse-uplift model; run the fixed pulse-budget experiment")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    m = sub.add_parser("make-dataset", help="simulate nights in parallel and save their epoch "
                                            "features and memory strengths (.npz)")
    m.add_argument("--out", required=True, help="output .npz path")
    m.add_argument("--nights", type=int, default=24, help="number of nights (default 24)")
    m.add_argument("--seed-start", type=int, default=0, help="first seed (seeds are "
                                                             "consecutive; default 0)")
    m.add_argument("--duration-s", type=float, default=2700.0,
                   help="length of each simulated night, seconds (default 2700)")
    m.add_argument("--rate-hz", type=float, default=1000.0,
                   help="simulated sampling rate, Hz (default 1000: fast enough for ripples)")
    m.add_argument("--conditions", default="none,ungated,random",
                   help="stimulation conditions to cycle through: none, ungated "
                        "(ripple-locked), random (default: all three)")
    m.add_argument("--shifted", action="store_true",
                   help="use the 'unseen simulator parameters' set (weaker ripples, more "
                        "noise, faster decay and drift) for out-of-distribution tests")
    m.add_argument("--randomize", action="store_true",
                   help="domain randomisation: draw each night's simulator parameters "
                        "(ripple size/rate, LFP noise, SO-spindle coupling, forgetting, "
                        "drift) from ranges that exclude the --shifted values")
    m.add_argument("--synthetic", action="store_true",
                   help="use the fast synthetic generator instead of the simulator (tests)")
    m.add_argument("--workers", type=int, default=0,
                   help="worker processes of the local Dask pool (default: all cores; 1 "
                        "runs here without Dask)")
    m.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler (tcp://host:8786) instead of a local pool")
    m.add_argument("--config", help="TOML config whose [forecaster.features] to use")
    m.add_argument("--quiet", action="store_true",
                   help="no progress (only the final line)")

    t = sub.add_parser("train", help="train a checkpoint (and its model card)")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", nargs="+", help="dataset .npz files from make-dataset")
    src.add_argument("--outcomes", help="CSV of per-session memory outcomes naming XDF "
                                        "recordings (columns recording,time_s,memory,recall)")
    t.add_argument("--out", required=True, help="checkpoint path (.pt)")
    t.add_argument("--card", help="also write a model card (Markdown) here")
    t.add_argument("--test-data", help="held-out dataset .npz for the card's metrics")
    t.add_argument("--shifted-data", help="dataset .npz with unseen simulator parameters")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=60, help="max training epochs")
    t.add_argument("--window-epochs", type=int, default=10)
    t.add_argument("--horizon-epochs", type=int, default=10)
    t.add_argument("--hidden", type=int, default=16)
    t.add_argument("--threshold", type=float, default=None,
                   help="decay threshold in strength units (default: training median)")
    t.add_argument("--per-memory", action="store_true", help="add per-memory heads")
    t.add_argument("--members", type=int, default=5,
                   help="seed-ensemble size: members trained from seeds seed, seed+1000, "
                        "... and averaged (default 5)")
    t.add_argument("--weight-decay", type=float, default=1e-3,
                   help="Adam weight decay (default 1e-3)")
    t.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3)")
    t.add_argument("--input-noise", type=float, default=0.0,
                   help="std of Gaussian noise on the normalised inputs while training "
                        "(regulariser; default 0)")
    t.add_argument("--patience", type=int, default=8,
                   help="early stopping: epochs without validation improvement (default 8)")
    t.add_argument("--max-seconds", type=float, default=1800.0,
                   help="stop training after this long (default 1800)")
    t.add_argument("--model-version", default="", help="version string (default: "
                                                         "engramloop version + seed)")
    t.add_argument("--config", help="TOML config whose [forecaster.features] to use "
                                    "(with --outcomes)")
    t.add_argument("--quiet", action="store_true",
                   help="no progress (only the results)")

    e = sub.add_parser("evaluate", help="score a checkpoint and the baselines on held-out "
                                        "nights")
    e.add_argument("--checkpoint", default="", help="checkpoint (default: the shipped one)")
    e.add_argument("--train-data", nargs="+", required=True,
                   help="dataset(s) the baselines are fitted on")
    e.add_argument("--test-data", required=True, help="held-out dataset .npz")
    e.add_argument("--json", help="also write the metrics as JSON here")
    e.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="also print 95 %% intervals of the model's margins over the "
                        "baselines from N resamples of whole test nights (default 0: off)")


    u = sub.add_parser("make-uplift-dataset",
                       help="label every ripple candidate of simulated nights with its exact "
                            "counterfactual recall gain (sham and all-pulsed twins)")
    u.add_argument("--out", required=True, help="output .npz path")
    u.add_argument("--nights", type=int, default=30)
    u.add_argument("--seed-start", type=int, default=100,
                   help="first seed (default 100; the experiment uses 3000 on)")
    u.add_argument("--duration-s", type=float, default=1200.0)
    u.add_argument("--workers", type=int, default=2)
    u.add_argument("--cache-dir", help="keep each night's twin data here (re-used)")

    tu = sub.add_parser("train-uplift", help="train the uplift MLP (JSON weights)")
    tu.add_argument("--data", required=True, help=".npz from make-uplift-dataset")
    tu.add_argument("--out", required=True, help="output .json")
    tu.add_argument("--seed", type=int, default=0)
    tu.add_argument("--hidden", type=int, default=16)

    fo = sub.add_parser("fit-opportunity",
                        help="fit the allocator's opportunity forecast (JSON) on the "
                             "candidates of a make-uplift-dataset file")
    fo.add_argument("--data", required=True, help=".npz from make-uplift-dataset")
    fo.add_argument("--out", required=True, help="output .json")
    fo.add_argument("--gap-s", type=float, default=5.0, help="the allocator's spacing")

    x = sub.add_parser("experiment", help="the fixed pulse-budget experiment at equal pulses "
                                          "(issue 21): conditions x 10/20/30/60 pulses, "
                                          "paired intervals, targets A and B")
    x.add_argument("--seeds", type=int, default=20, help="held-out seeds (>= 20 for the "
                                                         "targets; default 20)")
    x.add_argument("--seed-start", type=int, default=3000,
                   help="first seed (default 3000; training seeds start at 100)")
    x.add_argument("--duration-s", type=float, default=1200.0,
                   help="night length, seconds (>= 1200 for the targets)")
    x.add_argument("--doses", default="10,20,30,60", help="pulse counts N (comma-separated)")
    x.add_argument("--gap-s", type=float, default=5.0, help="minimum time between pulses")
    x.add_argument("--model", default="", help="uplift model JSON (default: the shipped one; "
                                               "'none': leave out learned and allocator)")
    x.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    x.add_argument("--no-allocator", action="store_true",
                   help="leave out the online allocator condition")
    x.add_argument("--json", help="also write per-seed results here")
    x.add_argument("--checks", type=int, default=5,
                   help="seeds whose counterfactual re-run is checked against a real "
                        "stimulated night (default 5)")
    x.add_argument("--cache-dir", help="keep each seed's twin nights here and re-use them "
                                       "(then only the scoring re-runs)")


@contextmanager
def _shown(description: str, total: int | None, unit: str, quiet: bool
           ) -> Iterator[Callable]:
    """A progress display with ETA (a bar on a terminal, occasional lines otherwise,
    nothing when quiet) and the callback that feeds it from
    :class:`engramloop.analysis.training.Progress` updates."""
    with progress(total, description, unit=unit, quiet=quiet) as bar:
        def update(p) -> None:
            if p.note:
                bar.note(p.message)
            bar.update(p.done, total=p.total, info="" if p.note else p.message)
        yield update


def _features(config: str | None):
    if not config:
        return FeatureSettings()

    return load_config(config).forecaster.features


def run(args: argparse.Namespace) -> int:
    out = getattr(args, "out", None)
    if args.action in ("make-dataset", "train") and out:
        # checked before hours of simulation or training: the folder (made if missing)
        # must take the file, and the output must not be an input

        prepare_output_dir(Path(out).parent, "--out")
        inputs = [getattr(args, "config", None), getattr(args, "outcomes", None),
                  *(getattr(args, "data", None) or [])]
        check_output_file(out, "--out", [p for p in inputs if isinstance(p, str)])
    try:
        if args.action == "make-dataset":
            return _make_dataset(args)
        if args.action == "train":
            return _train(args)
        if args.action == "make-uplift-dataset":
            return _make_uplift_dataset(args)
        if args.action == "train-uplift":
            return _train_uplift(args)
        if args.action == "fit-opportunity":
            return _fit_opportunity(args)
        if args.action == "experiment":
            return _experiment(args)
        return _evaluate(args)
    except ValueError as exc:
        if type(exc).__name__ == "ConfigError":
            raise
        raise UserError(str(exc)) from None


def _make_uplift_dataset(args: argparse.Namespace) -> int:
    if args.nights < 1 or args.workers < 1 or not args.duration_s > 0:
        raise UserError("make-uplift-dataset: --nights, --workers and --duration-s must be "
                        "> 0")
    if args.seed_start < ex.EVAL_SEED_START <= args.seed_start + args.nights - 1:
        raise UserError(f"make-uplift-dataset: seeds {args.seed_start}.."
                        f"{args.seed_start + args.nights - 1} reach the experiment's "
                        f"evaluation seeds ({ex.EVAL_SEED_START} on); pick others")
    path = make_uplift_dataset(range(args.seed_start, args.seed_start + args.nights),
                               args.duration_s, args.out, workers=args.workers,
                               progress=lambda m: print(m, flush=True),
                               cache_dir=args.cache_dir)
    print(f"uplift dataset: {path}")
    return 0


def _train_uplift(args: argparse.Namespace) -> int:
    m = train_uplift(args.data, args.out, seed=args.seed, hidden=args.hidden)
    print(f"uplift model: {args.out}; held-out nights: R^2 {m['val_r2']:.3f}, Spearman "
          f"{m['val_spearman']:.3f} ({m['n_train']} training / {m['n_val']} held-out "
          "candidates)")
    return 0


def _fit_opportunity(args: argparse.Namespace) -> int:
    import numpy as np

    try:
        z = np.load(args.data)
        names = tuple(str(n) for n in z["names"])
        t, xs, seeds, night_s = z["t"], z["x"], z["seed"], float(z["duration_s"])
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"fit-opportunity: {args.data} is not a make-uplift-dataset file "
                        f"({exc})") from None
    if names != CANDIDATE_NAMES:
        raise UserError(f"fit-opportunity: {args.data} has another feature set; regenerate "
                        "it with make-uplift-dataset")
    nights = [{"seed": int(s), "t": t[seeds == s], "x": xs[seeds == s]}
              for s in np.unique(seeds)]
    try:
        m = fit_opportunity(nights, night_s, gap_s=args.gap_s)
    except ValueError as exc:
        raise UserError(f"fit-opportunity: {exc}") from None
    m.save(args.out)
    print(f"opportunity model: {args.out}; {len(nights)} training nights, "
          f"{m.info['candidates']} eligible candidates")
    return 0


def _experiment(args: argparse.Namespace) -> int:
    try:
        doses = tuple(int(d) for d in args.doses.split(",") if d.strip())
    except ValueError:
        raise UserError(f"--doses: use whole pulse counts like 10,20,30,60, got "
                        f"{args.doses!r}") from None
    if not doses or min(doses) < 1:
        raise UserError(f"--doses: use whole pulse counts >= 1, got {args.doses!r}")
    if args.seeds < 2 or args.workers < 1 or not args.duration_s > 0 or args.gap_s < 0:
        raise UserError("experiment: --seeds >= 2, --workers >= 1, --duration-s > 0 and "
                        "--gap-s >= 0 are needed")
    if args.seed_start < ex.EVAL_SEED_START:
        raise UserError(f"--seed-start {args.seed_start}: evaluation seeds start at "
                        f"{ex.EVAL_SEED_START} (lower ones train the uplift model)")
    st = ex.ExperimentSettings(seeds=args.seeds, seed_start=args.seed_start,
                               duration_s=args.duration_s, doses=doses, gap_s=args.gap_s,
                               model=args.model, workers=args.workers,
                               allocator=not args.no_allocator, checks=args.checks,
                               cache_dir=args.cache_dir)
    if st.model and st.model != "none":
        UpliftModel.load(st.model)      # a bad path is one line, before any simulation
    import sys

    rows = ex.run_experiment(st, progress=lambda m: print(m, file=sys.stderr, flush=True))
    for line in ex.report(rows, st):
        print(line)
    if args.seeds < 20 or args.duration_s < 1200:
        print("note: fewer than 20 seeds or nights shorter than 1200 s: not the fixed "
              "configuration of issue 21")
    if args.json:
        import json

        def keyed(d: dict) -> dict:     # (condition, N) keys as "condition@N"
            return {f"{c}@{n}": v for (c, n), v in d.items()}

        Path(args.json).write_text(json.dumps(
            [{**{k: v for k, v in r.items() if k not in ("rows", "inexact")},
              "rows": keyed(r["rows"]), "inexact": keyed(r.get("inexact", {}))}
             for r in rows], indent=1), encoding="utf-8")
    return 0


def _make_dataset(args: argparse.Namespace) -> int:
    if args.nights < 1:
        raise UserError(f"--nights must be >= 1, got {args.nights}")
    if args.seed_start < 0:
        raise UserError(f"--seed-start must be >= 0, got {args.seed_start}")
    if not 0 < args.duration_s < float("inf"):
        raise UserError(f"--duration-s must be a finite number of seconds > 0, got "
                        f"{args.duration_s}")
    if not 0 < args.rate_hz < float("inf"):
        raise UserError(f"--rate-hz must be a finite rate in Hz > 0, got {args.rate_hz}")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be >= 0 (0: one per core), got {args.workers}")
    conds = [c.strip() for c in args.conditions.split(",") if c.strip()]
    bad = [c for c in conds if c not in ("none", "ungated", "random")]
    if bad or not conds:
        raise UserError(f"--conditions: unknown {bad}; use none, ungated, random")
    seeds = range(args.seed_start, args.seed_start + args.nights)
    if args.synthetic:
        jobs = [("synthetic", {"seed": s, "n_epochs": max(2, int(args.duration_s // 30)),
                               "stim": 0.1 if conds[i % len(conds)] != "none" else 0.0})
                for i, s in enumerate(seeds)]
    else:
        jobs = [("sim", ft.night_spec(s, args.duration_s, conds[i % len(conds)],
                                      shifted=args.shifted, randomize=args.randomize,
                                      rate_hz=args.rate_hz,
                                      feature_settings=_features(args.config)))
                for i, s in enumerate(seeds)]
    with _shown("dataset", len(jobs), "nights", args.quiet) as shown:
        nights = ft.make_dataset(jobs, workers=args.workers or None, progress=shown,
                                  address=args.scheduler)
    info = {"seeds": [args.seed_start, args.seed_start + args.nights - 1],
            "duration_s": args.duration_s, "conditions": conds, "shifted": args.shifted,
            "randomize": args.randomize, "synthetic": args.synthetic, "rate_hz": args.rate_hz}
    out = ft.save_dataset(args.out, nights, info)
    n_ep = sum(len(n.t_end_s) for n in nights)
    print(f"wrote {out}: {len(nights)} nights, {n_ep} epochs")
    return 0


def _load_many(paths: list[str]):
    nights, infos = [], []
    for p in paths:
        n, info = ft.load_dataset(p)
        nights.extend(n)
        infos.append(info)
    return nights, infos


def _train(args: argparse.Namespace) -> int:
    if args.outcomes:
        fs = _features(args.config)
        with _shown("recordings", None, "recordings", args.quiet) as shown:
            nights = ft.nights_from_recordings(args.outcomes, fs, progress=shown)
        infos = [{"outcomes": str(args.outcomes)}]
    else:
        fs = _features(args.config)
        nights, infos = _load_many(args.data)
    settings = ft.TrainSettings(window_epochs=args.window_epochs,
                                horizon_epochs=args.horizon_epochs,
                                decay_threshold=args.threshold, hidden=args.hidden,
                                per_memory=args.per_memory, members=args.members,
                                epochs=args.epochs, seed=args.seed,
                                weight_decay=args.weight_decay, lr=args.lr,
                                input_noise=args.input_noise, patience=args.patience,
                                max_seconds=args.max_seconds)
    version = args.model_version or f"{__version__}+seed{args.seed}"
    with _shown("training", settings.members * settings.epochs, "epochs",
                args.quiet) as shown:
        ck = ft.train(nights, settings, epoch_s=fs.epoch_s, hop_s=fs.hop_s,
                      model_version=version, metadata={"datasets": infos}, progress=shown)
    evaluation = {}
    if args.test_data:
        test, _ = ft.load_dataset(args.test_data)
        evaluation["test"] = ft.evaluate(ck, nights, test)
    if args.shifted_data:
        shifted, _ = ft.load_dataset(args.shifted_data)
        evaluation["shifted"] = ft.evaluate(ck, nights, shifted)
    if evaluation:
        ck.metadata["evaluation"] = json.loads(json.dumps(evaluation))
    out = ck.save(args.out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB), model version {version}")
    for key, ev in evaluation.items():
        _print_eval(key, ev)
    if args.card:
        desc = "; ".join(json.dumps(i) for i in infos)
        card = ft.write_model_card(args.card, ck, evaluation,
                                   f"{len(nights)} training nights. Dataset info: {desc}",
                                   checkpoint_name=Path(args.out).name)
        print(f"wrote {card}")
    return 0


def _print_eval(title: str, ev: dict) -> None:
    print(f"{title}: {ev['n_nights']} nights, {ev['n_windows']} windows, "
          f"{100 * ev['positive_fraction']:.1f} % decay")
    print(f"  {'predictor':<12} {'AUROC':>7} {'Brier':>8} {'R^2':>7} {'ECE':>6}")
    for name in ("model", "persistence", "linear"):
        m = ev[name]
        print(f"  {name:<12} {m['auroc']:7.3f} {m['brier']:8.4f} {m['r2']:7.3f} "
              f"{m['ece']:6.3f}")


def _evaluate(args: argparse.Namespace) -> int:
    from engramloop.decoders.forecaster import Checkpoint, default_checkpoint_path

    path = Path(args.checkpoint) if args.checkpoint else default_checkpoint_path()
    ck = Checkpoint.load(path)
    train_nights, _ = _load_many(args.train_data)
    test, _ = ft.load_dataset(args.test_data)
    ev = ft.evaluate(ck, train_nights, test)
    _print_eval(f"{path.name} on {Path(args.test_data).name}", ev)
    if args.bootstrap > 0:
        ci = ft.margin_intervals(ck, train_nights, test, n_boot=args.bootstrap)
        ev["margin_intervals"] = ci
        print(f"  model minus baseline, 95 % interval over {args.bootstrap} resamples of "
              "whole nights:")
        for name, m in ci.items():
            print(f"  vs {name:<12} AUROC [{m['auroc'][0]:+.3f}, {m['auroc'][1]:+.3f}]  "
                  f"Brier [{m['brier'][0]:+.4f}, {m['brier'][1]:+.4f}]  "
                  f"R^2 [{m['r2'][0]:+.3f}, {m['r2'][1]:+.3f}]")
    if args.json:
        Path(args.json).write_text(json.dumps(ev, indent=2), encoding="utf-8")
    return 0
