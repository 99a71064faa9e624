"""The uplift model off the loop thread: a worker that predicts each posted candidate.

The loop thread computes a ripple's causal candidate features (cheap, and they must see
the detections in order) and posts them here with :meth:`UpliftWorker.post` -- a deque
append and an ``Event.set``, no lock held while predicting. The worker thread runs
:meth:`decoders.uplift.UpliftModel.predict` on each candidate in the order posted and
appends ``(key, gain)`` to an answer deque that the loop thread drains with
:meth:`UpliftWorker.take` at its next chunk (the policy decides there: see
:class:`controller.allocator.UpliftGate`). Answers therefore come back in posting order,
whatever the machine's load; only *when* they come back depends on it.

On the simulated clock (``--speed max``) there is no wall-clock deadline: the loop posts and
then waits for the answer (:meth:`wait_answered`), so a replay makes the same decisions as
a synchronous prediction, on any machine, at any load.

Errors: an exception in the worker is kept, the worker stops answering, and
:meth:`check` re-raises it in the loop thread (the loop stops stimulating and reports); a
background thread never swallows an error. Each prediction's duration on the worker is
kept (``predict_s``, the newest ``keep`` of them) for the bench.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np

__all__ = ["UpliftWorker", "UpliftWorkerError"]


class UpliftWorkerError(RuntimeError):
    """The uplift worker failed (an exception in prediction, or it stopped answering)."""


class UpliftWorker:
    """Predicts posted candidate feature rows on its own thread, in posting order.

    Parameters
    ----------
    model : UpliftModel
        Anything with ``predict(x: ndarray shape (n_features,)) -> float``.
    keep : int
        Prediction durations kept for :attr:`predict_s` (seconds, newest last).
    """

    def __init__(self, model: Any, keep: int = 100000) -> None:
        self.model = model
        self._q: deque[tuple[float, np.ndarray]] = deque()      # loop -> worker
        self._answers: deque[tuple[float, float]] = deque()     # worker -> loop
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.n_posted = 0
        self.n_answered = 0
        #: wall seconds each prediction took on the worker (perf_counter), newest last
        self.predict_s: deque[float] = deque(maxlen=keep)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="engramloop-uplift",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Answer what is queued, then stop the thread (waits up to ``timeout_s``)."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def failed(self) -> bool:
        return self._error is not None

    def check(self) -> None:
        """Re-raise the worker's error in the calling (loop) thread, if any."""
        if self._error is not None:
            raise UpliftWorkerError(f"uplift worker failed: {type(self._error).__name__}: "
                                    f"{self._error}") from self._error

    # ------------------------------------------------------------------ loop side
    def post(self, key: float, x: np.ndarray) -> None:
        """Queue one candidate (non-blocking). ``key`` names it in the answer (the
        ripple's detection time, seconds); ``x`` shape (n_features,) is not modified
        afterwards by the caller."""
        self.n_posted += 1
        self._q.append((key, x))
        self._wake.set()

    def take(self) -> list[tuple[float, float]]:
        """Answers ``(key, predicted gain)`` that arrived since the last call, in posting
        order."""
        a = self._answers
        out = []
        while a:
            out.append(a.popleft())
        return out

    def wait_answered(self, timeout_s: float) -> bool:
        """Block until every candidate posted so far is answered (simulated clock, tests).

        Returns False after ``timeout_s`` wall seconds, when the worker failed or when its
        thread is not running.
        """
        target = self.n_posted
        with self._cond:
            return self._cond.wait_for(
                lambda: self.n_answered >= target or self._error is not None
                or not self.running, timeout_s) and self.n_answered >= target

    # ------------------------------------------------------------------ worker side
    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()       # a post after this sets it again: nothing is missed
            stopping = self._stopping
            self._drain()
            if stopping or self._error is not None:
                with self._cond:
                    self._cond.notify_all()
                return

    def _drain(self) -> None:
        q, perf = self._q, time.perf_counter
        while True:
            try:
                key, x = q.popleft()
            except IndexError:
                return
            t0 = perf()
            try:
                gain = float(self.model.predict(x))
            except BaseException as exc:    # surfaced to the loop by check()
                self._error = exc
                return
            self.predict_s.append(perf() - t0)
            with self._cond:
                self._answers.append((key, gain if math.isfinite(gain) else math.nan))
                self.n_answered += 1
                self._cond.notify_all()
