"""A sweep job whose worker process dies (a crash in a native library, the kernel's
out-of-memory killer) on a real local Dask pool: Dask retries it on fresh workers and
then raises ``KilledWorker``, which left `engramloop sweep` as 'internal error: KilledWorker
... (a bug in engramloop)' and threw away every other replay's result. The job is an
error row naming what happened; the others keep their results. A sweep whose worker is
killed once still completes (Dask re-runs the job)."""
from __future__ import annotations

import os

import pytest

from engramloop.analysis import fanout
from engramloop.analysis.fanout import EngineError, Job, map_ordered


def die_on_two(x: int) -> int:
    """What a worker runs: item 2 ends its process at once, as a segfault would."""
    if x == 2:
        os._exit(3)
    return x * 10


@pytest.mark.slow
def test_a_job_whose_worker_keeps_dying_is_an_error_row_and_the_others_stay() -> None:
    lost = []

    def on_lost(item, why):
        lost.append((item, why))
        return -1

    out = map_ordered(die_on_two, [0, 1, 2, 3], workers=2, on_lost=on_lost)
    assert out == [0, 10, -1, 30]
    assert [i for i, _ in lost] == [2]
    assert "died" in lost[0][1]


@pytest.mark.slow
def test_without_a_handler_a_dying_worker_is_one_line_engine_error() -> None:
    with pytest.raises(EngineError, match=r"worker process.*died") as exc:
        map_ordered(die_on_two, [0, 1, 2, 3], workers=2)
    assert "\n" not in str(exc.value)


def test_the_sweep_row_of_a_lost_job_says_so() -> None:
    job = Job(index=4, config="c.toml", recording="night.edf",
              setting=(("detectors.spindle.threshold_sd", "3"),),
              values=(("detectors.spindle.threshold_sd", 3.0),))
    row = fanout.lost_job(job, "its worker process died 4 times")
    assert row == {"index": 4, "recording": "night.edf",
                   "setting": {"detectors.spindle.threshold_sd": "3"},
                   "error": "its worker process died 4 times", "point": None}
    assert fanout.tidy([row])[0]["error"] == "its worker process died 4 times"
