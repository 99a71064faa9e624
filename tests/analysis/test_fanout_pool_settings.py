"""The local Dask pool as sweeps use it, run for real (worker processes, a scheduler).

- Dask's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536``; glibc then stops
  adapting its mmap threshold (mallopt(3)) and every buffer of 128 KiB or more becomes a
  fresh, zero-filled mapping: a replay in such a worker took ~1.3x the CPU time of the
  same replay in a plain process (bench/sweep.py --breakdown). Our workers start without
  it, and still with Dask's one-thread BLAS settings; and without the worker threads
  that woke every 10-100 ms to sample, time or measure it.
- The workers are forked from a server process that imported Dask and the job's module
  once (a new interpreter per worker imported both itself: ~1.5 s each before any work).
- The costliest items start first (longest-processing-time order), so a long replay
  does not start last while the other workers sit idle; results stay in item order.
"""
from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from engramloop.analysis.fanout import Job, dask_client, job_cost, map_ordered, run_on


def worker_env(_x: int) -> tuple[str | None, str | None]:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")


def worker_config(_x: int) -> tuple:
    import dask

    return (dask.config.get("distributed.worker.profile.enabled"),
            dask.config.get("distributed.admin.tick.interval"),
            dask.config.get("distributed.worker.memory.monitor-interval"))


def started(x: int) -> tuple[int, float]:
    """The item and when it started (CLOCK_MONOTONIC is one clock for every process)."""
    return x, time.monotonic()


@pytest.mark.skipif("MALLOC_TRIM_THRESHOLD_" in os.environ,
                    reason="this process already has MALLOC_TRIM_THRESHOLD_ (workers inherit it)")
def test_workers_start_without_malloc_trim_threshold() -> None:
    assert map_ordered(worker_env, [0, 1], workers=2) == [(None, "1"), (None, "1")]


def test_workers_do_not_sample_their_replays_every_few_ms() -> None:
    """The profiler (every 10 ms), the event-loop tick (20 ms) and the memory monitor
    (100 ms) each took the GIL from the replay: 0.09-0.45 s of CPU per 2 s replay."""
    assert map_ordered(worker_config, [0, 1], workers=2) == [(False, "1s", "1s")] * 2


def parent_pid(_x: int) -> int:
    return os.getppid()


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(),
                    reason="no fork server on this platform: Dask's spawn is used")
def test_workers_are_forked_from_a_server_not_started_by_this_process() -> None:
    parents = map_ordered(parent_pid, [0, 1], workers=2)
    assert os.getpid() not in parents


def test_costliest_items_start_first_and_results_stay_in_item_order() -> None:
    items = [1, 5, 3, 2, 6, 4]
    with dask_client(workers=1) as client:
        out = run_on(client, started, items, cost=lambda x: x)
    assert [x for x, _ in out] == items
    assert [x for x, _ in sorted(out, key=lambda r: r[1])] == [6, 5, 4, 3, 2, 1]


def test_a_replay_costs_its_duration_then_its_file_size(tmp_path) -> None:
    small, big = tmp_path / "small.edf", tmp_path / "big.edf"
    small.write_bytes(b"x" * 10)
    big.write_bytes(b"x" * 1000)

    def job(rec, duration=None):
        return Job(index=0, config="c.toml", recording=str(rec), setting=(), values=(),
                   duration_s=duration)

    assert job_cost(job(big)) > job_cost(job(small))
    assert job_cost(job(small)) > job_cost(job(big, 60.0))       # whole file vs 60 s
    assert job_cost(job(tmp_path / "missing.edf")) < job_cost(job(small))


def test_a_pool_started_from_another_thread_runs() -> None:
    """Signal handlers can only be changed from the main thread (the pool's start sets
    SIGINT aside for its workers there); from another thread the pool still runs."""
    import threading

    out: list = []
    t = threading.Thread(target=lambda: out.append(map_ordered(worker_env, [0, 1],
                                                               workers=2)))
    t.start()
    t.join()
    assert len(out) == 1 and len(out[0]) == 2
