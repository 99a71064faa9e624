"""The forecaster in the loop: a worker thread at the epoch rate and the policy's gate.

The loop thread calls :meth:`ForecastWorker.feed` with every chunk, the events detected in
it and the times of pulses delivered since the last call. ``feed`` only appends to a
deque (lock-free: ``deque.append`` is atomic in CPython) and compares the chunk's last
timestamp with the next block boundary -- no lock, no condition variable, no computing.
The worker thread wakes when the data reach a new ``hop_s`` block (a forecast is due) and
otherwise every ``wake_s`` seconds -- in the loop, when the loop kicks it (:meth:`kick`)
right after finishing a chunk, so its work falls in the loop's wait for the next chunk;
it drains everything queued, joins the chunks into one block and runs the epoch feature
stage (:class:`decoders.features.EpochFeatures`) once on it, then the torch forecaster for
each finished epoch, and publishes the newest :class:`~decoders.features.Forecast`.
Batching keeps the worker's share of the GIL small: a few hundred microseconds of Python
every ``wake_s`` instead of some every chunk, which with the loop's 50 us switch interval
would interrupt the loop thread all the time.

Batches are cut after every chunk that reaches a new block, so the feature stage sees,
at each epoch boundary, exactly the events and pulses it would have seen chunk by chunk:
batched and per-chunk feeding give the same vectors (up to float summation order in the
band powers) and the same forecasts (``tests/controller/test_forecast_worker.py``).

On the simulated clock (``--speed max``) the loop waits at each block boundary until the
worker has caught up (:meth:`ForecastWorker.wait_idle`): in real time the forecast comes
milliseconds after its epoch ends, so that is the faithful model of an unpaced run, and
it makes the run reproducible.

The policy asks :class:`ForecastGate` ``allows(t_s)`` before proposing a pulse: True only
while a fresh forecast says the decay risk is at or above the threshold.

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
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from engramloop.core.chunk import Chunk
from engramloop.core.events import Event
from engramloop.core.extras import check
from engramloop.core.schema import setting
from engramloop.decoders.features import EpochFeatures, FeatureSettings, FeatureVector, Forecast

__all__ = ["ForecasterSettings", "ForecastWorker", "ForecastGate", "ForecasterError"]


class ForecasterError(RuntimeError):
    """The forecaster worker failed (bad checkpoint, inference error, queue overflow)."""


@dataclass(frozen=True)
class ForecasterSettings:
    """``[forecaster]``: the memory-decay forecaster and the forecast gate."""

    enabled: bool = setting(False, doc="run the forecaster (imports torch) and gate pulses "
                                       "(see gate)")
    checkpoint: str = setting("", doc="path of a forecaster checkpoint (.pt); empty means "
                                      "the one shipped in the package")
    gate: Literal["p_below_median_high", "p_below_median_low", "uplift_budget"] = setting(
        "p_below_median_high",
        doc="which pulses go ahead. p_below_median_high / _low: while the forecast "
            "P(below-median consolidation over the next 300 s without stimulation) is at or "
            "above / below p_below_median_threshold (in the issue-21 experiment _high did "
            "worse than ungated stimulation and _low only slightly better). uplift_budget: "
            "each ripple's predicted recall gain from a pulse now (the uplift model) is "
            "spent against budget_pulses over night_s, with uplift_after_spindle_only among "
            "ripples that follow a spindle only (see docs/uplift.md for what this achieved "
            "against the one-line spindle rule)")
    p_below_median_threshold: float = setting(
        0.5, ge=0, le=1, doc="p_below_median_* gates: threshold on P(below-median "
                             "consolidation) (was gate_threshold)")
    uplift_model: str = setting("", doc="uplift_budget: uplift model weights (.json); empty "
                                        "means the one shipped in the package")
    budget_pulses: int = setting(30, ge=1, le=100000, unit="pulses",
                                 doc="uplift_budget: pulses to spend over the night")
    night_s: float = setting(1200.0, gt=0, unit="s",
                             doc="uplift_budget: planned session length the budget is spread "
                                 "over")
    min_gap_s: float = setting(5.0, ge=0, le=3600, unit="s",
                               doc="uplift_budget: the allocator spaces its pulses at least "
                                   "this far apart (the governor's limits apply on top)")
    uplift_after_spindle_only: bool = setting(
        False, doc="uplift_budget: offer the allocator only ripples detected within 1 s after "
                   "a spindle detection (others are refused as not_after_spindle); the "
                   "allocator of the issue-21 experiment's final run (docs/uplift.md)")
    uplift_slack: float = setting(
        3.0, ge=0, le=1000, unit="pulses",
        doc="uplift_budget: how many pulses ahead of (or behind) the even pace over night_s "
            "the allocator may get before it waits (or takes anything above the recent "
            "median); the issue-21 experiment's allocator used 6 (docs/uplift.md)")
    uplift_opportunity: Literal["rate", "forecast"] = setting(
        "rate",
        doc="uplift_budget: the allocator's forecast of the spaced candidates still to come "
            "in the night, which sets its threshold (the pace stays over night_s). rate: the "
            "rate so far times the seconds left; forecast: the opportunity model "
            "(uplift_opportunity_model), fitted to 1200 s simulated nights (on training "
            "seeds the two tied; docs/uplift.md)")
    uplift_endgame: float = setting(
        0.0, ge=0, le=100,
        doc="uplift_budget: take every candidate once fewer than this many times the pulses "
            "left are expected in the rest of the night (spends the budget; 0 or 1: only when "
            "fewer candidates than pulses are expected). The issue-21 experiment's allocator "
            "used 1.5 (docs/uplift.md)")
    uplift_opportunity_model: str = setting(
        "", doc="uplift_opportunity = forecast: opportunity model (.json); empty means the "
                "one shipped in the package (fitted on 1200 s simulated nights)")
    uplift_max_wait_s: float = setting(
        0.02, gt=0, le=0.2, unit="s",
        doc="uplift_budget: the gain is predicted off the loop thread; a ripple whose "
            "prediction is not back this long after its detection is not stimulated and "
            "counted as uplift_late (summary, recording, live view). Keep it inside a "
            "ripple's duration (50-100 ms, Buzsaki 2015 Hippocampus 25:1073). Runs on the "
            "simulated clock (--speed max) wait for every answer instead")
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
    wake_s: float = setting(0.5, gt=0, le=60, unit="s",
                            doc="the worker processes what is queued at least this often "
                                "(and whenever the data reach a new hop_s block); larger "
                                "means fewer, bigger batches")
    features: FeatureSettings = field(default_factory=FeatureSettings)


#: Chunks joined into one block at most (bounds the worker's memory after a backlog).
_MAX_BATCH = 4096


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
        if forecaster is None:  # fail while the loop is being built, before anything runs
            check("torch", "forecaster", "[forecaster] enabled = true")
        self.settings = settings
        self.features = EpochFeatures(settings.features)
        self._forecaster = forecaster
        self._hop_s = float(settings.features.hop_s)
        self._max_queued = int(settings.queue_chunks)
        # loop -> worker: (chunk, events, pulses) tuples and wait_idle markers; appended by
        # the loop thread, popped by the worker (both atomic on a deque)
        self._q: deque = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._next_boundary_s = -math.inf   # loop side: start of the next hop_s block
        self._next_wake_s = -math.inf       # loop side: data time of the next routine wake
        self._due = False                   # loop side: work waits for the next kick()
        self._kicked = False                # the loop calls kick(): wake only when kicked
        self._open_block: int | None = None  # worker side: block the features have open
        self._latest: Forecast | None = None
        self._new: deque[Forecast] = deque()   # worker appends, drain() pops
        self._vectors: deque[FeatureVector] = deque(maxlen=1)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.n_forecasts = 0
        #: feature-stage calls the worker made (one per batch; for tests and benches)
        self.n_batches = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load the checkpoint (if not given) and start the thread.

        Raises
        ------
        decoders.forecaster.CheckpointError
            If the checkpoint is missing or does not match ``[forecaster.features]``.
        """
        if self._forecaster is None:
            from engramloop.decoders.forecaster import Forecaster, torch

            torch.set_num_threads(self.settings.threads)
            f = self.settings.features
            self._forecaster = Forecaster.load(self.settings.checkpoint or None,
                                               epoch_s=f.epoch_s, hop_s=f.hop_s)
        self._vectors = deque(maxlen=max(1, int(getattr(self._forecaster, "window", 1))))
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="engramloop-forecaster",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the queued work and stop the thread (waits up to ``timeout_s`` seconds)."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    # ------------------------------------------------------------------ loop side
    def feed(self, chunk: Any, events: Iterable[Event] = (),
             pulses: Iterable[float] = ()) -> bool:
        """Hand over one chunk (non-blocking, lock-free).

        Parameters
        ----------
        chunk : drivers.chunk.Chunk
            Not modified afterwards by the caller (sources never reuse a chunk).
        events : sequence of Event
            Detections from this chunk.
        pulses : sequence of float
            Host-clock times (s) of pulses delivered since the previous call.

        Returns
        -------
        bool
            True when this chunk reached a new ``hop_s`` block of the data, i.e. an epoch
            may have finished and the worker was woken to forecast.
        """
        q = self._q
        if len(q) >= self._max_queued:
            self._fail(ForecasterError(
                f"forecaster worker fell {self.settings.queue_chunks} chunks behind the "
                "loop; raise [forecaster] queue_chunks or threads, or disable it"))
            return False
        q.append((chunk, tuple(events) if events else (), tuple(pulses) if pulses else ()))
        ts = chunk.timestamps
        if ts.shape[0]:
            last = ts[-1]
            if last >= self._next_wake_s:
                self._next_wake_s = float(last) + self.settings.wake_s
                self._due = True
            if last >= self._next_boundary_s:
                self._next_boundary_s = (math.floor(float(last) / self._hop_s) + 1) \
                    * self._hop_s
                self._due = True
                if not self._kicked:
                    self._wake.set()
                return True
        return False

    def kick(self) -> None:
        """Wake the worker if work is due (a new block, or ``wake_s`` of data since the
        last wake). The loop calls this after it has finished a chunk, so the worker's
        share of the GIL falls in the loop's wait for the next chunk instead of in the
        middle of decoding one. Once called, the worker wakes only when kicked (and, as
        a safety net, every ten ``wake_s``)."""
        self._kicked = True
        if self._due:
            self._due = False
            self._wake.set()

    def check(self) -> None:
        """Re-raise the worker's error in the calling (loop) thread, if any."""
        if self._error is not None:
            raise ForecasterError(f"forecaster worker failed: "
                                  f"{type(self._error).__name__}: {self._error}") \
                from self._error

    def latest(self) -> Forecast | None:
        """The newest forecast, or None before the first one."""
        return self._latest   # one attribute read: atomic, no lock needed

    def drain(self) -> list[Forecast]:
        """Forecasts made since the last call (for the recorder's ``forecasts`` stream)."""
        new = self._new
        if not new:
            return []
        out = []
        while new:
            out.append(new.popleft())
        return out

    @property
    def failed(self) -> bool:
        return self._error is not None

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until everything fed so far is processed (simulated runs, tests).

        Returns False if that took longer than ``timeout_s`` seconds or the thread is
        not running.
        """
        if self._thread is None or not self._thread.is_alive():
            return False
        done = threading.Event()
        self._q.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    # ------------------------------------------------------------------ worker side
    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def _run(self) -> None:
        while True:
            self._wake.wait(self.settings.wake_s * (10.0 if self._kicked else 1.0))
            self._wake.clear()
            stopping = self._stopping
            self._work()
            if stopping:
                return

    def _work(self) -> None:
        """Drain the deque: batches cut at block boundaries, format changes and markers."""
        q = self._q
        hop = self._hop_s
        batch: list[tuple] = []
        while True:
            try:
                item = q.popleft()
            except IndexError:
                break
            if isinstance(item, threading.Event):
                self._process(batch)
                batch = []
                item.set()
                continue
            if self._error is not None:
                continue                         # failed: drop data, still answer markers
            chunk = item[0]
            if batch and (chunk.rate_hz != batch[0][0].rate_hz
                          or chunk.channels != batch[0][0].channels):
                self._process(batch)             # the feature stage resets on a new format
                batch = []
                self._open_block = None
            batch.append(item)
            ts = chunk.timestamps
            cut = len(batch) >= _MAX_BATCH
            if ts.shape[0]:
                # the same block arithmetic as EpochFeatures.process
                last = int(math.floor(ts[-1] / hop))
                if self._open_block is None:
                    self._open_block = int(math.floor(ts[0] / hop))
                if last > self._open_block:
                    # this chunk seals a block: process up to here, so the sealed block
                    # sees the events and pulses it would have seen chunk by chunk
                    self._open_block = last
                    cut = True
            if cut:
                self._process(batch)
                batch = []
        self._process(batch)

    def _process(self, batch: list[tuple]) -> None:
        if not batch or self._error is not None:
            return
        try:
            if len(batch) == 1:
                chunk, events, pulses = batch[0]
            else:
                first, last = batch[0][0], batch[-1][0]
                chunk = Chunk(np.concatenate([it[0].samples for it in batch]),
                              np.concatenate([it[0].timestamps for it in batch]),
                              first.rate_hz, first.channels, arrival_s=last.arrival_s,
                              first_index=first.first_index)
                events = [e for it in batch for e in it[1]]
                pulses = [t for it in batch for t in it[2]]
            self.n_batches += 1
            for fv in self.features.process(chunk, events, pulses):
                self._vectors.append(fv)
                fc = self._forecaster.predict(list(self._vectors))
                self._latest = fc
                self._new.append(fc)
                self.n_forecasts += 1
        except BaseException as exc:  # surfaced to the loop by check()
            self._fail(exc)


class ForecastGate:
    """The policy's forecast gate: ``allows(t_s)`` while P(below-median consolidation) is
    high (``gate = "p_below_median_high"``) or low (``"p_below_median_low"``).

    Parameters
    ----------
    worker : ForecastWorker
        Anything with ``latest() -> Forecast | None`` and ``failed``.
    settings : ForecasterSettings
    """

    def __init__(self, worker: Any, settings: ForecasterSettings) -> None:
        self.worker = worker
        self.threshold = settings.p_below_median_threshold
        self.when_high = settings.gate != "p_below_median_low"
        self.max_age_s = settings.max_age_s
        self.before_first = settings.before_first
        self.last_reason = ""

    def opens(self, forecast: Forecast) -> bool:
        """Does this forecast open the gate (threshold rule only, ignoring its age)?"""
        return (forecast.p_below_median >= self.threshold) == self.when_high

    def describe(self) -> str:
        """The rule in words, e.g. ``P(below-median) >= 0.5``."""
        return f"P(below-median) {'>=' if self.when_high else '<'} {self.threshold:g}"

    def allows(self, t_s: float) -> bool:
        """May a pulse planned at host-clock time ``t_s`` go ahead?

        False (with :attr:`last_reason`) when the worker failed, when the newest forecast
        is older than ``max_age_s``, or when its ``p_below_median`` is on the wrong side of the
        threshold (below it for ``p_below_median_high``, at or above it for
        ``p_below_median_low``).
        """
        if getattr(self.worker, "failed", False):
            self.last_reason = "forecaster_failed"
            return False
        fc = self.worker.latest()
        if fc is None:
            self.last_reason = "no_forecast"
            return self.before_first == "allow"
        if not (t_s - fc.time_s <= self.max_age_s) or math.isnan(fc.p_below_median):
            self.last_reason = "stale_forecast"
            return False
        if (fc.p_below_median >= self.threshold) != self.when_high:
            self.last_reason = ("p_below_median_low" if self.when_high
                                else "p_below_median_high")
            return False
        self.last_reason = ""
        return True
