"""engramloop sim --duration 600 --out night.xdf|night.npz"""
from __future__ import annotations

import argparse

from engramloop.cli.paths import check_output_file
from engramloop.controller.config import Config, dump_config, load_config
from engramloop.controller.progress import progress
from engramloop.controller.recorder import Recorder, RecordingError
from engramloop.controller.stop_signals import SignalsInterrupt, interrupt_code, interrupt_name
from engramloop.core.chunk import EndOfStream
from engramloop.core.errors import UserError
from engramloop.sim import generate
from engramloop.sim.source import SimSource

HELP = "write a simulated recording (CA1 LFP + EEG) with its ground truth to .xdf or .npz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=600.0, metavar="SECONDS",
                   help="length of the recording in seconds (default 600)")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="output file: .xdf (through the recorder; truth in the "
                        "engramloop.truth stream) or .npz (samples, timestamps, channels, "
                        "rate_hz, truth JSON)")
    p.add_argument("--config", metavar="TOML", help="config file whose [sim] section and "
                   "seed are used (default: built-in defaults)")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--chunk", type=int, default=2000, metavar="SAMPLES",
                   help="samples per chunk while generating (does not change the output)")
    p.add_argument("--quiet", action="store_true", help="no progress")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    cfg = load_config(args.config) if args.config else Config()
    seed = cfg.seed if args.seed is None else args.seed
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    if not 0 < args.duration < float("inf"):
        raise UserError(f"--duration must be a finite number of seconds > 0, got "
                        f"{args.duration}")
    if args.chunk < 1:
        raise UserError(f"--chunk must be >= 1 sample, got {args.chunk}")
    out = Path(args.out)
    ext = out.suffix.lower()
    if ext not in (".xdf", ".npz"):
        raise UserError(f"--out {out}: use a .xdf or .npz file name")

    check_output_file(out, "--out", [args.config] if args.config else [])
    try:
        # SIGTERM (kill) and SIGHUP (terminal closed) as Ctrl-C: the partial file goes
        with SignalsInterrupt(sigint=True), progress(args.duration, "sim", unit="s",
                                          quiet=args.quiet) as bar:
            if ext == ".xdf":
                n = _write_xdf(cfg, seed, args.duration, args.chunk, out, dump_config(cfg),
                               bar)
            else:
                n = _write_npz(cfg, seed, args.duration, args.chunk, out)
    except KeyboardInterrupt as exc:
        # a recording without its truth looks complete and is not: never leave one
        out.unlink(missing_ok=True)
        print(f"sim: {interrupt_name(exc)}; removed the partial {out} (its truth was not "
              "written)")
        return interrupt_code(exc)
    except OSError as exc:   # disk full, folder removed meanwhile: nothing half-written
        out.unlink(missing_ok=True)
        raise UserError(f"--out {out}: writing failed ({exc.strerror or exc}); nothing "
                        "was kept") from None
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    print(f"wrote {out}: {n} samples x {len(cfg.sim.channels)} channels at "
          f"{cfg.sim.rate_hz:g} Hz, seed {seed}")
    return 0


def _write_npz(cfg, seed: int, duration: float, chunk: int, out) -> int:
    import numpy as np

    x, t, truth = generate.simulate(cfg.sim, seed=seed, duration_s=duration, chunk_samples=chunk)
    np.savez_compressed(out, samples=x, timestamps=t,
                        channels=np.array(truth.channels, dtype=str),
                        rate_hz=np.float64(truth.rate_hz), truth=np.array(truth.to_json()))
    return x.shape[0]


def _write_xdf(cfg, seed: int, duration: float, chunk: int, out, config_text: str,
               bar) -> int:
    src = SimSource(cfg.sim, seed=seed, chunk_samples=chunk, duration_s=duration)
    rec = Recorder(out, config_text)
    n = 0
    try:
        rec.add_signal_stream(src, name="engramloop.raw")
        rec.start()
        src.start()
        while True:
            try:
                c = src.read(0.0)
            except EndOfStream:
                break
            rec.write_chunk(c, stream="engramloop.raw")
            n += c.n_samples
            bar.update(n / cfg.sim.rate_hz)
        src.stop()
        for ev in src.truth.events():
            rec.write_marker("truth", ev.onset_s, ev)
        # the whole truth document (phases, stages, memory) as the last truth marker
        rec.write_marker("truth", src.truth.t0_s + src.truth.until_s,
                         {"kind": "truth_document", "truth": src.truth.to_json()})
        rec.close()
    except RecordingError as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        src.stop()
        # stop the writer thread before the caller removes the file, without writing the
        # up to 128 MB still queued (under load that took over a minute after Ctrl-C)
        rec.discard()
        raise
    return n
