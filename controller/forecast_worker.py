"""The forecaster in the loop: a worker thread at the epoch rate and the policy's gate.

The loop thread calls :meth:`ForecastWorker.feed` with every chunk, the events detected in
it and the times of pulses delivered since the last call. ``feed`` only appends to a
queue (never blocks, never computes); the worker thread runs the epoch feature stage
(:class:`decoders.features.EpochFeatures`) and, at each epoch boundary, the torch
forecaster, and publishes the newest :class:`~decoders.features.Forecast`. The policy asks
:class:`ForecastGate` ``allows(t_s)`` before proposing a pulse: True only while a fresh
forecast says the decay risk is at or above the threshold.

Errors: an exception in the worker is kept and re-raised in the loop thread by
:meth:`ForecastWorker.check` (called by the loop once per iteration, like
``Recorder.check``), and the gate refuses every pulse from then on -- a background thread
never swallows an error.

Torch is imported only in :meth:`ForecastWorker.start` (through ``decoders.forecaster``),
so importing this module -- which ``controller.config`` does for the settings -- stays
cheap.
"""
from __future__ import annotations

import math
import queue
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.schema import setting
from decoders.events import Event
from decoders.features import EpochFeatures, FeatureSettings, FeatureVector, Forecast

__all__ = ["ForecasterSettings", "ForecastWorker", "ForecastGate", "ForecasterError"]


class ForecasterError(RuntimeError):
    """The forecaster worker failed (bad checkpoint, inference error, queue overflow)."""


@dataclass(frozen=True)
class ForecasterSettings:
    """``[forecaster]``: the memory-decay forecaster and the forecast gate."""

    enabled: bool = setting(False, doc="run the forecaster (imports torch) and gate pulses "
                                       "on its decay risk")
    checkpoint: str = setting("", doc="path of a forecaster checkpoint (.pt); empty means "
                                      "the one shipped in the package")
    gate_threshold: float = setting(0.5, ge=0, le=1,
                                    doc="pulses are allowed while the forecast decay "
                                        "probability p_decay is at or above this")
    gate_when: Literal["risk_high", "risk_low"] = setting(
        "risk_high", doc="risk_high: allow pulses while p_decay >= gate_threshold (stimulate "
        "memories about to fade); risk_low: while p_decay < gate_threshold (stimulate while "
        "consolidation runs well -- the rule that did better in the simulator experiment, "
        "see decoders/data/MODEL_CARD.md)")
    max_age_s: float = setting(90.0, gt=0, unit="s",
                               doc="a forecast older than this no longer opens the gate "
                                   "(e.g. the worker stalled)")
    before_first: Literal["block", "allow"] = setting(
        "block", doc="gate state before the first forecast exists (the first epoch)")
    threads: int = setting(1, ge=1, le=64, doc="torch intra-op threads for inference "
                                               "(1 keeps the loop's cores free)")
    queue_chunks: int = setting(100000, ge=10, unit="chunks",
                                doc="chunks the worker may fall behind before it fails "
                                    "(a stalled worker is an error, not silent data loss)")
    features: FeatureSettings = field(default_factory=FeatureSettings)


class ForecastWorker:
    """Epoch features + forecaster inference on a background thread.

    Parameters
    ----------
    settings : ForecasterSettings
    forecaster : object, optional
        Anything with ``predict(list[FeatureVector]) -> Forecast`` and ``window``; loaded
        from ``settings.checkpoint`` in :meth:`start` when omitted.
    """

    def __init__(self, settings: ForecasterSettings, forecaster: Any = None) -> None:
        self.settings = settings
        self.features = EpochFeatures(settings.features)
        self._forecaster = forecaster
        self._q: queue.Queue = queue.Queue(maxsize=settings.queue_chunks)
        self._lock = threading.Lock()
        self._latest: Forecast | None = None
        self._new: list[Forecast] = []
        self._vectors: deque[FeatureVector] = deque(maxlen=1)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.n_forecasts = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load the checkpoint (if not given) and start the thread.

        Raises
        ------
        decoders.forecaster.CheckpointError
            If the checkpoint is missing or does not match ``[forecaster.features]``.
        """
        if self._forecaster is None:
            import torch

            from decoders.forecaster import Forecaster

            torch.set_num_threads(self.settings.threads)
            f = self.settings.features
            self._forecaster = Forecaster.load(self.settings.checkpoint or None,
                                               epoch_s=f.epoch_s, hop_s=f.hop_s)
        self._vectors = deque(maxlen=max(1, int(getattr(self._forecaster, "window", 1))))
        self._thread = threading.Thread(target=self._run, name="engramloop-forecaster",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the queued work and stop the thread."""
        if self._thread is None:
            return
        self._q.put(None)
        self._thread.join(timeout_s)
        self._thread = None

    # ------------------------------------------------------------------ loop side
    def feed(self, chunk: Any, events: Iterable[Event] = (),
             pulses: Iterable[float] = ()) -> None:
        """Hand over one chunk (non-blocking).

        Parameters
        ----------
        chunk : drivers.chunk.Chunk
        events : iterable of Event
            Detections from this chunk.
        pulses : iterable of float
            Host-clock times (s) of pulses delivered since the previous call.
        """
        if self._error is not None:
            return
        try:
            self._q.put_nowait((chunk, list(events), list(pulses)))
        except queue.Full:
            self._fail(ForecasterError(
                f"forecaster worker fell {self.settings.queue_chunks} chunks behind the "
                "loop; raise [forecaster] queue_chunks or threads, or disable it"))

    def check(self) -> None:
        """Re-raise the worker's error in the calling (loop) thread, if any."""
        if self._error is not None:
            raise ForecasterError(f"forecaster worker failed: "
                                  f"{type(self._error).__name__}: {self._error}") \
                from self._error

    def latest(self) -> Forecast | None:
        """The newest forecast, or None before the first one."""
        with self._lock:
            return self._latest

    def drain(self) -> list[Forecast]:
        """Forecasts made since the last call (for the recorder's ``forecasts`` stream)."""
        with self._lock:
            out, self._new = self._new, []
        return out

    @property
    def failed(self) -> bool:
        return self._error is not None

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until everything fed so far is processed (tests, offline replay)."""
        done = threading.Event()
        try:
            self._q.put(done, timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    # ------------------------------------------------------------------ worker side
    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            if self._error is not None:
                continue
            try:
                chunk, events, pulses = item
                for fv in self.features.process(chunk, events, pulses):
                    self._vectors.append(fv)
                    fc = self._forecaster.predict(list(self._vectors))
                    with self._lock:
                        self._latest = fc
                        self._new.append(fc)
                        self.n_forecasts += 1
            except BaseException as exc:  # surfaced to the loop by check()
                self._fail(exc)


class ForecastGate:
    """The policy's forecast gate: ``allows(t_s)`` while decay risk is high (or, with
    ``gate_when = "risk_low"``, while it is low).

    Parameters
    ----------
    worker : ForecastWorker
        Anything with ``latest() -> Forecast | None`` and ``failed``.
    settings : ForecasterSettings
    """

    def __init__(self, worker: Any, settings: ForecasterSettings) -> None:
        self.worker = worker
        self.threshold = settings.gate_threshold
        self.when_high = settings.gate_when == "risk_high"
        self.max_age_s = settings.max_age_s
        self.before_first = settings.before_first
        self.last_reason = ""

    def allows(self, t_s: float) -> bool:
        """May a pulse planned at host-clock time ``t_s`` go ahead?

        False (with :attr:`last_reason`) when the worker failed, when the newest forecast
        is older than ``max_age_s``, or when its ``p_decay`` is on the wrong side of the
        threshold (below it for ``risk_high``, at or above it for ``risk_low``).
        """
        if getattr(self.worker, "failed", False):
            self.last_reason = "forecaster_failed"
            return False
        fc = self.worker.latest()
        if fc is None:
            self.last_reason = "no_forecast"
            return self.before_first == "allow"
        if not (t_s - fc.time_s <= self.max_age_s) or math.isnan(fc.p_decay):
            self.last_reason = "stale_forecast"
            return False
        if (fc.p_decay >= self.threshold) != self.when_high:
            self.last_reason = "low_decay_risk" if self.when_high else "high_decay_risk"
            return False
        self.last_reason = ""
        return True
