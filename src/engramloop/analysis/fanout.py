"""Run many (recording x setting) replays at once: a local Dask pool on all cores, a Dask
cluster by address, or one after another in this process.

Why Dask: its ``distributed`` scheduler is pure Python from PyPI, starts a local pool of
worker *processes* in about a second (each replay is CPU-bound Python, so threads would
share one core), and the same ``Client`` talks to a cluster started with
``dask scheduler`` / ``dask worker`` on other machines. Ray does the same with a larger
native install and its own object store that replays do not need.

The local pool is Dask's ``LocalCluster`` with some of its worker settings changed
(:data:`LOCAL_POOL_CONFIG`, :func:`_forkserver`), because with its defaults a 2-worker sweep
took 0.70 of the serial time where 0.5 is the ideal (bench/sweep.py --breakdown): workers
start without ``MALLOC_TRIM_THRESHOLD_`` (it made every replay ~1.3x slower) and without
threads that interrupt the replay every 10-100 ms, and they are forked from one server
process that imported Dask and engramloop while the pool was being set up, instead of
each being a new interpreter importing both before its first replay. The longest replays
start first (:func:`job_cost`), so none starts last.

A job is plain data (:class:`Job`): the config file, the swept keys' values, the recording
and its truth. :func:`run_job` is what a worker runs -- exactly what one
``engramloop replay CONFIG FILE --speed max`` with those settings does, scored by
:func:`engramloop.analysis.sweep.run_point` -- so a row of a parallel sweep equals the
serial row bit for bit (tests compare them).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from engramloop.analysis.sweep import config_with, find_truth, run_point
from engramloop.controller.stop_signals import (
    DeferredSignals,
    raise_interrupt,
    sigint_ignored_for_children,
)
from engramloop.core.chunk import SourceError
from engramloop.core.pulse import DeviceError
from engramloop.core.schema import ConfigError


class EngineError(RuntimeError):
    """The parallel engine could not be reached or started (one line: where and what to do)."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One replay of a sweep: ``recording`` replayed with ``config`` and ``setting``."""

    index: int
    config: str
    recording: str
    setting: tuple[tuple[str, str], ...]      # (key, value as the user typed it)
    values: tuple[tuple[str, Any], ...]       # (key, parsed value)
    truth: str | None = None
    kind: str = "spindle"
    duration_s: float | None = None
    stream: str | None = None
    channels: tuple[str, ...] | None = None


def sham_replay(cfg: Any) -> Any:
    """The config as a sweep replays it: the file source, and sham pulses (a sweep decides
    and scores, it never stimulates)."""
    src = dataclasses.replace(cfg.source, kind="file")
    return dataclasses.replace(cfg, source=src,
                               policy=dataclasses.replace(cfg.policy, condition="sham"))


def run_job(job: Job) -> dict:
    """Replay and score one job (what a worker runs); plain, picklable data:
    ``{"index", "recording", "setting", "error", "point"}`` where ``point`` is
    :class:`~engramloop.analysis.sweep.PointResult` as a dict (None after an error).

    Errors a user can fix (a bad file, a bad setting) come back as ``error`` (one line)
    rather than as an exception, so one bad night does not lose the others.
    """
    out: dict[str, Any] = {"index": job.index, "recording": job.recording,
                           "setting": dict(job.setting), "error": "", "point": None}
    try:
        cfg = sham_replay(config_with(job.config, dict(job.values)))
        truth = find_truth(job.recording, job.truth, job.kind)
        res = run_point(cfg, job.recording, duration_s=job.duration_s, truth=truth,
                        setting=dict(job.setting), stream=job.stream,
                        channels=list(job.channels) if job.channels else None)
    except (SourceError, DeviceError, ConfigError, OSError, ValueError) as exc:
        out["error"] = (str(exc).splitlines() or [type(exc).__name__])[0]
        return out
    # the loop took Ctrl-C (or SIGTERM/SIGHUP) as its stop: the sweep stops too, not on to
    # the next replay with a cut one among its rows
    raise_interrupt(res.stop_reason)
    out["point"] = res.to_dict()
    return out


def tidy(results: Sequence[dict]) -> list[dict]:
    """One flat row per job: recording, the setting's keys, error, duration, stop reason,
    detections per kind and every score field as ``kind.field``."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"recording": r["recording"], **r["setting"],
                               "error": r["error"]}
        pt = r["point"] or {}
        if pt:
            row["duration_s"] = pt["duration_s"]
            row["stop_reason"] = pt["stop_reason"]
            row["nonfinite_stretches"] = pt.get("nonfinite_stretches", 0)
            row["gaps"] = pt.get("gaps", 0)
            for kind, n in sorted(pt["counts"].items()):
                row[f"{kind}.detections"] = n
            for kind, why in sorted((pt.get("detector_skips") or {}).items()):
                for reason, n in sorted(why.items()):
                    row[f"{kind}.passed_over.{reason}"] = n
            for kind, sc in sorted((pt["score"] or {}).items()):
                if isinstance(sc, dict):
                    for key, v in sc.items():
                        row[f"{kind}.{key}"] = v
        rows.append(row)
    return rows


def lost_job(job: Job, why: str) -> dict:
    """The result row of a job the engine could not run to an end (its worker process
    kept dying): :func:`run_job`'s shape, with ``why`` as the error."""
    return {"index": job.index, "recording": job.recording, "setting": dict(job.setting),
            "error": why, "point": None}


def run_jobs(jobs: Sequence[Job], *, workers: int | None = None, address: str | None = None,
             on_done: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every sweep job (:func:`run_job`); results in job order, a job whose worker
    kept dying as an error row (:func:`lost_job`). Parameters as :func:`map_ordered`."""
    return map_ordered(run_job, jobs, workers=workers, address=address, on_done=on_done,
                       on_lost=lost_job, cost=job_cost)


def job_cost(job: Job) -> tuple[float, int]:
    """How long a replay takes, roughly, to start the long ones first: the seconds it is
    limited to, then the recording's size in bytes (0 when it cannot be read: such a job
    ends at once, with its error)."""
    try:
        size = os.path.getsize(job.recording)
    except OSError:
        size = 0
    return (job.duration_s if job.duration_s is not None else math.inf, size)


def _probe(address: str) -> None:
    """Open and close a TCP connection to a ``tcp://host:port`` scheduler address, so a
    port nobody listens on is refused at once (OSError); other schemes are left to Dask."""
    scheme, _, rest = address.partition("://")
    if scheme != "tcp" or ":" not in rest:
        return
    host, _, port = rest.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
        pass


#: Dask settings while the local pool starts; its workers get them too (a nanny hands its
#: config to the worker process it starts).
LOCAL_POOL_CONFIG: dict[str, Any] = {
    # Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536 so that freed memory
    # goes back to the OS at once. Setting any of glibc's malloc thresholds switches off its
    # dynamic mmap threshold (mallopt(3), M_MMAP_THRESHOLD), so every buffer of 128 KiB or
    # more -- each block a replay decompresses, converts or filters -- is a fresh mmap,
    # zero-filled page by page and unmapped again: ~50x the page faults of the same replay
    # in a plain process and ~1.3x its CPU time (bench/sweep.py --breakdown --dask-defaults).
    # A replay holds O(block) memory, so there is nothing to hand back; None leaves the
    # variable unset.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # A worker's own threads woke every 10 ms to sample the replay's stack (a profile for
    # a dashboard the pool does not have), every 20 ms to time its event loop and every
    # 100 ms to read its memory use; each wake-up takes the GIL from the replay: 0.1 s of
    # CPU per 2 s replay on a quiet machine, 0.2-0.45 s on a busy one, taken from the other
    # worker's core; 0.01-0.03 s with these (the memory limits are still enforced, checked
    # each second).
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def _forkserver(preload: Sequence[str]) -> dict[str, Any]:
    """Dask settings that start the workers from a fork server that imported Dask and
    ``preload`` once (the default, ``spawn``, starts a new interpreter per worker that
    imports Dask, then ours on its first job: 0.6 s per worker before any work on a quiet
    machine, 1.5 s and more on a busy one; and the pool with spawned workers took 0.1-0.9 s
    to close, 0.04 s with forked ones, which exit at once). The server is started here,
    so its imports run while this process sets the pool up. Empty where the platform has
    no fork server (Windows): Dask's default then.

    Call it with the pool's Dask config set: the server gets the environment a Dask nanny
    gives a worker it starts (``distributed.nanny.pre-spawn-environ``; variables such as
    ``OMP_NUM_THREADS`` only act when a process starts).
    """
    import multiprocessing
    from multiprocessing import forkserver

    import dask

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return {}
    # distributed and the module of the function the workers run; Dask's own list would
    # add pandas. A server already running (an earlier pool of this process) is kept.
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["distributed", *preload])
    env = {k: os.environ.get(k, str(v))
           for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
           if v is not None}
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = "6640"   # as Dask's nanny does: one str hash in every worker
    # the server and the workers it forks start with SIGINT ignored: a terminal's Ctrl-C
    # made each print a KeyboardInterrupt traceback; this process closes the pool
    with _environ(env), sigint_ignored_for_children():
        forkserver.ensure_running()
    return {"distributed.worker.multiprocessing-method": "forkserver"}


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` updated with ``env`` inside, as it was after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def dask_client(*, workers: int, address: str | None = None,
                preload: Sequence[str] = ()) -> Iterator[Any]:
    """A ``distributed.Client`` of a new local pool of ``workers`` processes (one thread
    each), or of the running scheduler at ``address``; closed, with the pool, on exit.
    ``preload``: modules the local pool's workers start with (imported once, in the fork
    server).

    Raises
    ------
    EngineError
        No scheduler answered at ``address`` (one line).
    """
    from distributed import Client, LocalCluster

    client = cluster = None
    try:
        # an interrupt while the pool starts is delivered once it stands, so the finally
        # below closes it (else its workers are left to an atexit hook that fails)
        with DeferredSignals():
            if address is not None:
                try:
                    _probe(address)  # a refused port fails now, not after 10 s of retries
                    client = Client(address, timeout="10s")
                except (OSError, TimeoutError, ValueError) as exc:
                    raise EngineError(
                        f"--scheduler {address}: no Dask scheduler answered ("
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                        "); start one with `dask scheduler` or leave --scheduler out "
                        "for a local pool") from None
            else:
                import dask

                # processes, one thread each: a replay or a simulated night holds the GIL.
                # The scheduler serves HTTP (health routes) even without a dashboard; on
                # Dask's fixed port 8787 a second pool or a user's own Dask printed "Port
                # 8787 is already in use" under the sweep's output: any free port instead
                with dask.config.set(LOCAL_POOL_CONFIG), \
                        dask.config.set(_forkserver(preload)):
                    cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                           processes=True, dashboard_address=":0",
                                           silence_logs=50)
                client = Client(cluster)
        yield client
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def map_ordered(fn: Callable[[Any], Any], items: Sequence[Any], *, workers: int | None = None,
                address: str | None = None,
                on_done: Callable[[Any], None] | None = None,
                on_lost: Callable[[Any, str], Any] | None = None,
                cost: Callable[[Any], Any] | None = None) -> list[Any]:
    """``[fn(x) for x in items]`` on the engine; results in item order.

    Parameters
    ----------
    fn : callable
        A module-level function (workers import it by name), plain data in and out.
    workers : int, optional
        Local worker processes (default: every core). 1 runs the items here, in order,
        without Dask.
    address : str, optional
        A running Dask scheduler (``tcp://host:8786``); ``workers`` is then ignored.
    on_done : callable, optional
        Called with each result as it finishes, in completion order (progress).
    on_lost : callable(item, why) -> result, optional
        The result of an item whose worker process died every time Dask ran it (a crash
        in native code, the out-of-memory killer; Dask retries on fresh workers first).
        Without it such an item is an :class:`EngineError` (one line).
    cost : callable(item) -> sortable, optional
        How long an item takes, roughly: on the engine the costliest items start first,
        so a long one does not start last and keep the run waiting while the other
        workers sit idle (longest-processing-time-first order). Without it, item order.
    """
    items = list(items)
    n = workers or os.cpu_count() or 1
    if address is None and (n <= 1 or len(items) <= 1):
        out = []
        for x in items:
            out.append(fn(x))
            if on_done is not None:
                on_done(out[-1])
        return out
    module = getattr(fn, "__module__", None)
    preload = (module,) if module and module != "__main__" else ()
    with dask_client(workers=min(n, len(items)), address=address, preload=preload) as client:
        return run_on(client, fn, items, on_done=on_done, on_lost=on_lost, cost=cost)


def run_on(client: Any, fn: Callable[[Any], Any], items: Sequence[Any], *,
           on_done: Callable[[Any], None] | None = None,
           on_lost: Callable[[Any, str], Any] | None = None,
           cost: Callable[[Any], Any] | None = None) -> list[Any]:
    """:func:`map_ordered` on a client you hold (:func:`dask_client`); results in item
    order."""
    import dask
    from distributed import KilledWorker, as_completed

    items = list(items)
    order = list(range(len(items)))
    if cost is not None:
        order.sort(key=lambda i: cost(items[i]), reverse=True)   # stable: ties in order
    # submitted costliest first, each with its rank as its priority (Dask starts higher
    # priorities first)
    index = {}
    futures = []
    for rank, i in enumerate(order):
        fut = client.submit(fn, items[i], pure=False, priority=len(order) - rank)
        index[fut.key] = i
        futures.append(fut)
    results: list[Any] = [None] * len(items)
    for fut in as_completed(futures):
        i = index[fut.key]
        try:
            results[i] = fut.result()
        except KilledWorker:
            tries = int(dask.config.get("distributed.scheduler.allowed-failures", 3)) + 1
            why = (f"its worker process died {tries} times running it (a crash in "
                   "native code, or out of memory)")
            if on_lost is None:
                raise EngineError(f"item {i} of {len(items)}: {why}; nothing of the "
                                  "run is kept") from None
            results[i] = on_lost(items[i], why)
        if on_done is not None:
            on_done(results[i])
    return results


def pooled(rows: Sequence[dict], keys: Sequence[str]) -> list[dict]:
    """Per setting, scores pooled over recordings: true/false positives and negatives
    summed, precision/recall/F1 from the sums (micro average), and the mean of the
    per-recording F1 (macro average); detections per kind and replayed seconds summed.
    Rows with an error are left out and counted; ``scored`` counts the rows with truth."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    out = []
    for setting, rs in groups.items():
        ok = [r for r in rs if not r.get("error")]
        row: dict[str, Any] = dict(zip(keys, setting, strict=True))
        row["recordings"] = len(ok)
        row["errors"] = len(rs) - len(ok)
        # replayed with truth of some kind: the rest add nothing to P/R/F1
        row["scored"] = sum(any(c.endswith(".true_positives") for c in r) for r in ok)
        # detections per kind and the replayed seconds, summed: all a sweep has to show
        # for recordings without truth
        row["duration_s"] = sum(float(r.get("duration_s", 0.0)) for r in ok)
        for kind in sorted({c[:-len(".detections")] for r in ok for c in r
                            if c.endswith(".detections")}):
            row[f"{kind}.detections"] = sum(int(r.get(f"{kind}.detections", 0)) for r in ok)
        kinds = sorted({c.split(".")[0] for r in ok for c in r if c.endswith(".true_positives")})
        for kind in kinds:
            tp = sum(int(r.get(f"{kind}.true_positives", 0)) for r in ok)
            fp = sum(int(r.get(f"{kind}.false_positives", 0)) for r in ok)
            fn = sum(int(r.get(f"{kind}.false_negatives", 0)) for r in ok)
            p = tp / (tp + fp) if tp + fp else math.nan
            rc = tp / (tp + fn) if tp + fn else math.nan
            row[f"{kind}.precision"] = p
            row[f"{kind}.recall"] = rc
            row[f"{kind}.f1"] = 2 * p * rc / (p + rc) if p + rc > 0 else math.nan
            f1s = [float(r[f"{kind}.f1"]) for r in ok
                   if isinstance(r.get(f"{kind}.f1"), (int, float))
                   and math.isfinite(float(r[f"{kind}.f1"]))]
            row[f"{kind}.f1_mean"] = sum(f1s) / len(f1s) if f1s else math.nan
        out.append(row)
    return out


def best(pooled_rows: Sequence[dict], kind: str | None = None) -> dict | None:
    """The pooled row with the highest pooled F1 of ``kind`` (the first scored kind when
    None); None when nothing was scored."""
    if not pooled_rows:
        return None
    if kind is None:
        kinds = sorted({c[:-3] for r in pooled_rows for c in r if c.endswith(".f1")})
        if not kinds:
            return None
        kind = kinds[0]
    scored = [r for r in pooled_rows
              if isinstance(r.get(f"{kind}.f1"), float) and math.isfinite(r[f"{kind}.f1"])]
    return max(scored, key=lambda r: r[f"{kind}.f1"]) if scored else None


def write_table(rows: Sequence[dict], path: str) -> None:
    """Rows to ``path``: CSV, or Parquet for a ``.parquet`` name (needs pyarrow). Written
    whole or not at all: into a file beside it, renamed over ``path`` once complete (an
    interrupt or a failure half-way left a partial table there that read as the sweep's,
    over the previous one)."""
    import csv
    import os

    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    parquet = path.lower().endswith(".parquet")
    if parquet:
        try:
            import pandas as pd
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: writing Parquet needs pandas and pyarrow "
                             "(pip install pyarrow), or use a .csv name") from None
    head, name = os.path.split(path)
    part = os.path.join(head, f".{name}.partial")
    try:
        if parquet:
            pd.DataFrame(list(rows), columns=cols).to_parquet(part, index=False)
        else:
            with open(part, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                for r in rows:
                    w.writerow(r)
        os.replace(part, path)
    except BaseException:
        try:
            os.unlink(part)
        except OSError:
            pass
        raise


__all__ = ["EngineError", "Job", "sham_replay", "run_job", "lost_job", "tidy", "run_jobs",
           "map_ordered", "dask_client", "run_on", "job_cost", "LOCAL_POOL_CONFIG",
           "pooled", "best", "write_table"]
