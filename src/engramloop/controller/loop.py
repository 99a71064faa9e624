"""The real-time closed loop: one thread owns the clock and wires

    source -> detectors (+ phase estimator) -> policy -> governor -> scheduler -> outputs

and hands every chunk, event, decision and delivery to the recorder.

Guarantees
----------
- The governor is the only way to a pulse: the scheduler accepts only pulses the governor
  issued, and outputs are reachable only through the scheduler.
- Sham runs make and record every decision; the scheduler calls no output for them and
  outputs are never armed.
- Outputs are disarmed and closed on every exit path (end of run, exception anywhere,
  Ctrl-C, source failure, recorder failure, scheduler/device failure), before the error
  surfaces. The first thing done on the way out is disarming the governor. A stop
  signal (SIGTERM/SIGHUP/SIGINT, :mod:`controller.stop_signals`) calls :meth:`Loop.halt`;
  an exception escaping any thread (``threading.excepthook``) ends the run.
- Device faults: a device that refused a pulse, reported itself disarmed or stopped
  answering is marked in the governor at once (rule ``device_fault``, from the
  scheduler's thread), recorded (stream ``engramloop.log``, ``"kind": "fault"``), shown,
  and ends the run with :class:`~core.pulse.DeviceFault`. The simulated output is a
  loopback: it gets only pulses the devices delivered.
- The recorder is checked every chunk: a failed or blocked recording (back-pressure,
  :class:`controller.recorder.Recorder`) ends the run before anything more is stimulated.
- No unbounded queues: a backlog of more than one chunk (a paced source delivering old
  data because the loop fell behind) is detected, logged, decoded for continuity without
  decisions, and the loop acts only on the newest chunk.
- Per-stage timing of every chunk goes into fixed-size histograms
  (:mod:`controller.latency`); ``gc.freeze()`` after start-up keeps start-up objects out
  of the collector's scans.

``--speed max`` runs use exactly this code with a :class:`~drivers.clock.SimClock`: the
clock jumps to each chunk's newest sample and to each pulse's intended time, and the
scheduler fires synchronously instead of from its thread.
"""
from __future__ import annotations

import gc
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engramloop.controller.forecast_feed import (
    ForecastFeed,
    forecast_status,
    gate_summary,
    gate_summary_message,
)
from engramloop.controller.governor import Decision, Governor
from engramloop.controller.latency import Histogram, StageTimes
from engramloop.controller.nonfinite import NonFiniteGuard
from engramloop.controller.policy import Policy
from engramloop.controller.realtime_tuning import RealtimeTuning
from engramloop.controller.scheduler import Scheduler
from engramloop.controller.status import LoopStatus, channel_quality
from engramloop.controller.stop_signals import interrupt_label
from engramloop.core.chunk import Chunk, EndOfStream
from engramloop.core.clock import SimClock
from engramloop.core.events import Event
from engramloop.core.pulse import Delivery, DeviceFault, Pulse
from engramloop.decoders.phase import PhaseEstimate
from engramloop.sim.loopback import SimRecords

STAGES = ("read", "intake", "decode", "policy", "governor", "schedule", "record",
          "chunk_total", "pulse_total")
#: bound on the in-memory lists kept for the end-of-run summary
MAX_KEPT = 200_000
#: status snapshots for the dashboard, seconds apart: of loop time in a paced run, of
#: wall-clock time on the simulated clock (``--speed max`` runs thousands of times faster
#: than real time; a snapshot per 0.25 s of signal cost a quarter of a replay)
STATUS_EVERY_S = 0.25
#: most chunks decoded without decisions in one backlog catch-up
MAX_BACKLOG_CHUNKS = 1000
#: ``--speed max`` replays of a file are decoded in blocks of about this many seconds of
#: signal (decisions stay on the ``chunk_samples`` grid, :meth:`Loop._act_on_grid`).
#: Per-block costs (a detector call, the baseline's and the loop's bookkeeping) fall with
#: the block: CPU of the 1-h, 8-channel bench night (bench/night_replay.py) 6.5 s at 2 s,
#: 5.6 s at 10 s, 5.5 s at 30 and 60 s; peak RSS 69, 76, 87, 104 MB. 30 s keeps most of
#: the gain at a small, night-length-independent memory
BLOCK_S = 30.0


class ThreadFailure(RuntimeError):
    """A thread of the process died of an uncaught exception during a run."""


#: Longest wait (wall seconds) for a pending uplift answer between chunks; the loop waits
#: at most half a chunk period, the time it would otherwise spend waiting for the next one.
UPLIFT_YIELD_S = 0.001


@dataclass
class RunResult:
    """What a run did (kept in memory for the end-of-run summary; the recording is the
    full record). Times in seconds on the run's clock."""

    duration_s: float = 0.0
    n_chunks: int = 0
    n_samples: int = 0
    events: list[Event] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    deliveries: list[tuple[Pulse, Delivery]] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)
    n_backlog: int = 0
    n_backlog_chunks: int = 0
    n_failed: int = 0
    gate_refusals: dict[str, int] = field(default_factory=dict)
    n_gaps: int = 0
    #: stretches of non-finite samples the detectors were paused for
    n_artefacts: int = 0
    #: detections a detector passed over or left without a prediction, by detector kind
    #: and reason (its ``passed_over``, e.g. ``{"so": {"sws_gate": 37}}``; nonzero only)
    detector_skips: dict[str, dict[str, int]] = field(default_factory=dict)
    n_timeouts: int = 0
    stages: StageTimes | None = None
    lateness: Histogram | None = None
    condition: str = "stim"
    target: str = ""
    stop_reason: str = ""
    error: str = ""
    t0_s: float = math.nan
    t_end_s: float = math.nan
    #: forecasts made during the run (None when the forecaster is off)
    forecasts: list | None = None
    #: the forecast gate: ``rule`` (e.g. "p_below_median >= 0.5"), ``allowed`` (proposals let
    #: through), ``held_back`` (refused, by reason), ``open_forecasts`` (forecasts that
    #: opened it); empty without a gate
    forecast_gate: dict = field(default_factory=dict)

    @property
    def pulses_sent(self) -> list[tuple[Pulse, Delivery]]:
        """First delivery of every pulse that left the process (or was sham-'sent')."""
        seen, out = set(), []
        for p, d in self.deliveries:
            if d.status in ("sent", "acked", "sham") and p.pulse_id not in seen:
                seen.add(p.pulse_id)
                out.append((p, d))
        return out


class Loop:
    """The closed loop. Build with :func:`controller.build.build_loop`, then call :meth:`run`.

    Parameters
    ----------
    source : Source
    detectors : list
        Stages with ``process(chunk) -> list[Event]`` (and optionally ``calibrating``).
    policy : Policy
    governor : Governor
    scheduler : Scheduler
        Its outputs are this loop's outputs.
    clock : HostClock or SimClock
    recorder : Recorder, optional
    phase_estimator : object, optional
        ``process(chunk) -> PhaseEstimate``; required when ``policy.needs_phase``.
    arm_on_start : bool
        Arm the governor (and, for non-sham runs, the outputs) at start.
    status_board : StatusBoard, optional
        Receives a :class:`controller.status.LoopStatus` every 0.25 s of loop time.
    description : str
        Source description for the status snapshot.
    """

    def __init__(self, source: Any, detectors: list | None, policy: Policy,
                 governor: Governor, scheduler: Scheduler, clock: Any, *,
                 recorder: Any = None, phase_estimator: Any = None,
                 arm_on_start: bool = False, status_board: Any = None,
                 description: str = "", read_timeout_s: float = 0.05, log: Any = None,
                 sim_source: Any = None, forecaster: Any = None,
                 make_detectors: Any = None, check_stages: Any = None,
                 fault_rearm_after_s: float = 0.0, fault_max_rearms: int = 0) -> None:
        self.source = source
        #: ``make_detectors(channels) -> list``: with ``detectors=None``, the detectors are
        #: built once the source has started (a stream source such as LSL knows its
        #: channels only after it resolved the stream)
        self._make_detectors = make_detectors
        if detectors is None and make_detectors is None:
            raise ValueError("Loop: give detectors or make_detectors")
        self.detectors = list(detectors) if detectors is not None else []
        #: ``check_stages(source)``: raises a one-line error when the started source
        #: cannot feed the stages (a phase channel it lacks, an irregular rate)
        self._check_stages = check_stages
        self._built_note = ""
        #: detectors that blank stimulation artefacts (told of every delivered pulse)
        self._blankers = [d for d in self.detectors if hasattr(d, "blank")]
        self.policy = policy
        self.governor = governor
        self.scheduler = scheduler
        self.outputs = scheduler.outputs
        self.clock = clock
        self.recorder = recorder
        self.phase_estimator = phase_estimator
        self.arm_on_start = arm_on_start
        self.status_board = status_board
        self.sim_source = sim_source
        #: ForecastWorker (``[forecaster] enabled``): fed every chunk, checked like the
        #: recorder, its forecasts recorded; the policy's gate reads it
        self.forecaster = forecaster
        self.description = description
        self.read_timeout_s = float(read_timeout_s)
        self.simulated = isinstance(clock, SimClock)
        self.sham = policy.settings.condition == "sham"
        self.stages = StageTimes(STAGES)
        self._log = log or (lambda msg: None)
        self._stop_requested = ""
        #: an uncaught exception of another thread (threading.excepthook), re-raised here
        self._thread_error: tuple[str, BaseException] | None = None
        self._saved_excepthook: Any = None
        #: outputs that report their device's health between pulses (``health() -> str``)
        self._health = [o for o in self.outputs if callable(getattr(o, "health", None))]
        self._faults_recorded: set[str] = set()
        #: re-arm after a device fault ([stimulators] fault_rearm_after_s; 0 = never)
        self.fault_rearm_after_s = float(fault_rearm_after_s)
        self.fault_max_rearms = int(fault_max_rearms)
        self._n_rearms = 0
        self._fault_hold = False               # outputs disarmed, waiting for health
        self._healthy_since = math.nan
        self._arm_requested = False
        self._disarm_requested = False
        self._outputs_armed = False
        self._outputs_wanted = False
        self._calibrated = False
        self._immediate: dict[int, float] = {}
        self._pending: Chunk | None = None
        #: wall-clock seconds that pace the status snapshots on the simulated clock
        self.wall_clock = time.monotonic
        #: ``--speed max`` block decoding: the decision grid in samples (0 = off), and
        #: grid-sized pieces of a block that must take the per-chunk path
        self._grid = 0
        self._split: deque = deque()
        self._last_chunk: Chunk | None = None
        self._messages: deque = deque(maxlen=6)
        #: switch interval, SCHED_FIFO, PM QoS: taken for real-time runs, undone at the end
        self._tuning = RealtimeTuning(self._note, self._log)
        self._source_ended = False
        self._next_backlog_note = -math.inf
        #: chunks since the last status snapshot (their signal quality is shown); None
        #: while no status board watches
        self._period: list[Chunk] | None = [] if status_board is not None else None
        #: what the simulator adds to the recording (memory states, truth, recall)
        self._sim_records = SimRecords(sim_source) \
            if recorder is not None and sim_source is not None else None
        self.result = RunResult(condition=policy.settings.condition,
                                target=policy.settings.target)
        #: the loop's side of the forecaster (feeding, recording, the gate's notes)
        self._feed: ForecastFeed | None = None
        if forecaster is not None:
            self.result.forecasts = []
            self._feed = ForecastFeed(forecaster, policy, simulated=self.simulated,
                                      note=self._note, forecasts=self.result.forecasts,
                                      keep=MAX_KEPT)
        #: non-finite samples: screened before every decoding stage (built at start,
        #: when the detectors exist)
        self._guard: NonFiniteGuard | None = None
        self._phase_now: Any = None
        #: the source's link ("ok", "stale", "lost") as last seen, and since when
        self._link = "ok"
        self._link_since = math.nan
        #: gaps since the last gap line (the lines are rate-limited and summarised)
        self._gaps_unreported = 0
        self._missing_unreported = 0
        self._next_gap_note = -math.inf
        if policy.needs_phase and phase_estimator is None:
            raise ValueError(f"policy.target = {policy.settings.target!r} needs a phase "
                             "estimator (config section [phase])")

    # ------------------------------------------------------- LoopControls API
    def arm(self) -> None:
        """Request arming (done on the loop thread; the governor still decides)."""
        self._arm_requested = True

    def disarm(self) -> None:
        """Disarm now: the governor refuses from this instant, outputs follow."""
        self.governor.disarm()
        self._disarm_requested = True

    def stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to finish after the current chunk."""
        self._stop_requested = reason or "stop requested"

    def halt(self, reason: str) -> None:
        """Stop now, from a signal handler or another thread: the governor refuses (and
        the scheduler cancels) from this instant; the loop disarms the outputs, closes
        the recording and returns after the current chunk."""
        self.governor.disarm()
        self._stop_requested = reason or "halted"

    def _on_thread_exception(self, args: Any) -> None:
        """threading.excepthook during a run: no thread may die unnoticed. Stimulation
        stops at once; the loop raises the error after the current chunk."""
        self.governor.disarm()
        if self._thread_error is None and args.exc_value is not None:
            name = getattr(args.thread, "name", "?")
            self._thread_error = (name, args.exc_value)

    # ------------------------------------------------------------------ run
    def run(self, duration_s: float | None = None) -> RunResult:
        """Run until ``duration_s`` seconds of data (or the source ends, or stop()).

        Returns
        -------
        RunResult
            Also on a clean stop; on failure the error is raised after the outputs are
            off (``self.result.error`` holds its text).
        """
        res = self.result
        try:
            self._start()
            try:
                self._main(duration_s)
            except KeyboardInterrupt as exc:
                # Ctrl-C is a stop, not a failure: outputs off, recording closed, summary
                # (so are SIGTERM/SIGHUP raised as it by stop_signals.SignalsInterrupt)
                res.stop_reason = f"interrupted ({interrupt_label(exc)})"
                res.t_end_s = self.clock.now()
        except BaseException as exc:
            res.error = f"{type(exc).__name__}: {exc}"
            res.stop_reason = res.stop_reason or (
                "interrupted" if isinstance(exc, KeyboardInterrupt) else "error")
            self._shutdown(f"loop stopped: {res.error}")
            raise
        else:
            self._shutdown("end of run")
            try:
                self._close_recorder(raise_errors=True)
            except BaseException as exc:  # the recording failed at its last flush
                res.error = f"{type(exc).__name__}: {exc}"
                res.stop_reason = "error"
                raise
            return res
        finally:
            self._tuning.release_cpu()   # also when _shutdown itself was interrupted
            self._close_recorder(raise_errors=False)
            if self._saved_excepthook is not None:
                threading.excepthook = self._saved_excepthook
                self._saved_excepthook = None

    def _close_recorder(self, raise_errors: bool) -> None:
        rec = self.recorder
        if rec is None or getattr(self, "_rec_closed", False):
            return
        self._rec_closed = True
        try:
            if self._sim_records is not None:
                self._sim_records.end(rec, self.clock.now)
            rec.close()
        except BaseException as exc:
            if raise_errors:
                raise
            self._log(f"closing the recording failed: {exc}")

    def _start(self) -> None:
        self._saved_excepthook = threading.excepthook
        threading.excepthook = self._on_thread_exception
        # The source first: an output may need its session (a BrainFlow marker goes into
        # the board's own stream), and a source that cannot start (no board, no stream)
        # must stop the run before a device is opened or a recording file is created.
        # Data arriving meanwhile waits in the source's buffer (BrainFlow ring, LSL inlet).
        self.source.start()
        # its channels and rate are known now: the detectors it can feed, checked, before
        # any device or recording file is opened
        self._stages_for_source()
        stages = list(self.detectors)
        if self.phase_estimator is not None:
            stages.append(self.phase_estimator)
        self._guard = NonFiniteGuard(stages)
        self._use_blocks()
        # the collection's pause comes before any device thread runs: a stim box's
        # heartbeat thread waiting on the GIL during it would look like a lost device
        gc.collect()
        if self.forecaster is not None:
            self.forecaster.start()   # loads its checkpoint: a bad one fails before any file
        start = getattr(self.policy.gate, "start", None)
        if start is not None:
            start()                   # the uplift gate's prediction thread
        for out in self.outputs:
            out.open()
        if self.recorder is not None:
            self.recorder.start()  # marker streams are writable from here on
        if self.arm_on_start:
            self._do_arm()
        if not self.simulated:
            self._tuning.apply(self.scheduler.settings.realtime_priority,
                               self.scheduler.settings.cpu_wakeup_latency_us)
            self.scheduler.start()  # a thread inherits its creator's scheduling policy
        # everything allocated so far lives for the whole run: keep it out of GC scans
        gc.freeze()
        if self._built_note:
            self._note(self._built_note)
        for msg in getattr(self.source, "notes", ()):   # what a file source left out
            self._note(msg, fields={"kind": "signals_left_out"})
        if self.recorder is not None:
            # declared once the source started: a stream source (LSL) learns its channels
            # and rate only when it resolves the stream
            self.recorder.add_signal_stream(self.source)

    def _stages_for_source(self) -> None:
        """Build the detectors for the started source's channels (when deferred) and
        check that it can feed every stage; the run stops with the error otherwise."""
        if self._check_stages is not None:
            self._check_stages(self.source)
        if self._make_detectors is not None and not self.detectors:
            self.detectors = list(self._make_detectors(tuple(self.source.channels)))
            self._blankers = [d for d in self.detectors if hasattr(d, "blank")]
            names = ", ".join(type(d).__name__ for d in self.detectors) or "none"
            # noted once the recording exists
            self._built_note = (f"source channels {', '.join(self.source.channels)} at "
                                f"{self.source.rate_hz:g} Hz: detectors {names}")

    def _use_blocks(self) -> None:
        """On the simulated clock, ask a file source for blocks of ~BLOCK_S seconds.

        The detectors are chunk-size independent, so decoding a block at once gives the
        events decoding it chunk by chunk gives; what must stay on the ``chunk_samples``
        grid is when the loop acts on them (:meth:`_act_on_grid`). Blocks are used only
        where nothing the loop does feeds back into decoding within a block: no phase
        estimator (its estimate is read at every chunk), no forecaster, and no pulse
        that blanks a detector (sham runs deliver none)."""
        if not self.simulated or self.phase_estimator is not None or \
                self.forecaster is not None or self.sim_source is not None or \
                not (self.sham or not self._blankers):
            return
        use = getattr(self.source, "use_blocks", None)
        if callable(use):
            self._grid = int(use(BLOCK_S))
            for d in self.detectors:
                # a detector whose releases depend on when its events are acted on (the
                # slow-oscillation fire-time check) releases on the grid, not the block
                if hasattr(d, "act_every_samples"):
                    d.act_every_samples = self._grid

    def _split_block(self, chunk: Chunk) -> list[Chunk]:
        """A block cut on the decision grid: the chunks a per-chunk replay would read."""
        g, out = self._grid, []
        for a in range(0, chunk.n_samples, g):
            b = min(a + g, chunk.n_samples)
            out.append(Chunk(chunk.samples[a:b].copy(), chunk.timestamps[a:b],
                             chunk.rate_hz, chunk.channels, chunk.arrival_s,
                             chunk.first_index + a, chunk.gap_before and a == 0, chunk.units,
                             chunk.meta if a == 0 else {}))
        return out

    def _block_or_split(self, chunk: Chunk, t0: float,
                        duration_s: float | None) -> tuple[Chunk, bool]:
        """A block, cut after the grid chunk where a run of ``duration_s`` ends (as a
        per-chunk run stops there), and decoded at once -- or, when it holds non-finite
        samples or follows them (the guard pauses detectors per chunk), cut on the grid
        and fed chunk by chunk. Returns (chunk to process now, decoded as a block)."""
        g, t = self._grid, chunk.timestamps
        if duration_s is not None:
            i = int(np.searchsorted(t, t0 + duration_s, side="left"))
            if i < chunk.n_samples:
                e = min((i // g + 1) * g, chunk.n_samples)
                meta = chunk.meta
                if e < chunk.n_samples and meta.get("annotations"):
                    # the file's annotations the cut-off samples carried were never read
                    # by a per-chunk run: not recorded after the run's end
                    meta = dict(meta, annotations=[a for a in meta["annotations"]
                                                   if a[0] < t[e]])
                chunk = Chunk(chunk.samples[:e], t[:e], chunk.rate_hz, chunk.channels,
                              chunk.arrival_s, chunk.first_index, chunk.gap_before,
                              chunk.units, meta)
        guard = self._guard
        if chunk.n_samples > g and (guard is None or not guard.busy) and \
                math.isfinite(float(np.add.reduce(chunk.samples, axis=None))):
            return chunk, True
        pieces = self._split_block(chunk)
        self._split.extend(pieces[1:])
        return pieces[0], False

    def _on_calibrated(self, now: float) -> None:
        """Every detector is calibrated: the governor may approve, the outputs arm."""
        self._calibrated = True
        self._arm_outputs()
        self.governor.set_calibrated(True)
        self._note("detectors calibrated", now)

    def _act_on_grid(self, chunk: Chunk, events: list[Event], h_gov: Histogram,
                     h_sch: Histogram, cal_s: float = math.nan) -> list[Event]:
        """Everything the loop does between decoding and recording, for a block decoded
        at once, at the times a per-chunk replay (chunks of ``self._grid`` samples) does
        it: the clock moves to the end of each grid chunk holding a detection, the
        governor sees the data up to there, deliveries due are fired and drained, and
        the policy decides on that grid chunk's events at its newest sample; the
        detectors count as calibrated (``cal_s``, when they calibrated in this block)
        from the grid chunk holding that time on. Stretches
        without detections are observed by the governor as one piece (the block's first
        grid chunk apart: a gap's block is timed from it). Returns the events
        in the order a per-chunk replay meets them (by grid chunk, then detector)."""
        res, gov, clock, sched = self.result, self.governor, self.clock, self.scheduler
        t, n, rate, g = chunk.timestamps, chunk.n_samples, chunk.rate_hz, self._grid
        pos = 0

        def observe(b: int) -> None:
            nonlocal pos
            if b <= pos:
                return
            if pos == 0 and b > g:
                # the block's first grid chunk alone: after a gap the governor blocks
                # pulses until that chunk's last sample + the refractory, as in a
                # per-chunk replay (one piece to b held them until b + the refractory)
                observe(g)
                return observe(b)
            if gov.observe_chunk(float(t[pos]), float(t[b - 1]), b - pos, rate,
                                 chunk.gap_before and pos == 0):
                res.n_gaps += 1
                self._gap_noted(chunk, float(t[b - 1]))   # when a chunk replay notes it
            pos = b

        def bound(e: int) -> float:
            """The per-chunk replay's scheduler bound after the grid chunk ending at e."""
            return float(t[e - 1]) + (e - (e - 1) // g * g) / rate

        def reach(x: int) -> None:
            """Move to the end of the grid chunk ending at sample x; a pulse due on the
            way fires after the grid chunk where a per-chunk replay fires it."""
            while True:
                due = sched.next_due_s()
                if not math.isfinite(due):
                    break
                i = int(np.searchsorted(t, due - g / rate, side="left"))
                e = min((i // g + 1) * g, n)
                while e < n and bound(e) < due:   # irregular stamps: the next grid ends
                    e = min(e + g, n)
                if e >= x:
                    break
                clock.sleep_until(float(t[e - 1]))
                observe(e)
                sched.advance_to(bound(e))
            clock.sleep_until(float(t[x - 1]))
            observe(x)

        groups: dict[int, list[Event]] = {}
        if events:
            idx = np.searchsorted(t, [e.detect_s for e in events], side="right") - 1
            for e, i in zip(events, np.clip(idx, 0, n - 1) // g, strict=True):
                groups.setdefault(int(i), []).append(e)
        k_cal = -1
        if cal_s == cal_s:
            k_cal = int(np.clip(np.searchsorted(t, cal_s, side="right") - 1, 0, n - 1)) // g
            groups.setdefault(k_cal, [])
        for k in sorted(groups):
            a, b = k * g, min(k * g + g, n)
            if a > 0:   # the grid chunk before ended here: pulses due by then fire
                reach(a)
                sched.advance_to(bound(a))
            reach(b)
            now = clock.now()
            self._after_chunk(now)
            if k == k_cal:
                self._on_calibrated(now)
            intents = self.policy.step(groups[k], clock.now())
            if intents:
                self._decide(intents, now, h_gov, h_sch)
            sched.advance_to(bound(b))
        reach(n)
        self._after_chunk(clock.now())
        sched.advance_to(bound(n))
        return [e for k in sorted(groups) for e in groups[k]]

    def _do_arm(self) -> None:
        """Arm the governor now; the outputs when the detectors are calibrated (no pulse
        can be approved before that anyway, and the first chunks, which allocate the
        detectors' state, may hold the GIL long enough to starve a stimulator's
        heartbeat thread and trip its watchdog)."""
        self._arm_requested = False
        self.governor.arm()
        self._outputs_wanted = not self.sham
        if self._calibrated:
            self._arm_outputs()
        self._note("armed" + (" (sham: outputs stay disarmed)" if self.sham else
                              "" if self._calibrated else
                              " (outputs follow when the detectors are calibrated)"))

    def _arm_outputs(self) -> None:
        if self._outputs_wanted and not self._outputs_armed:
            with self.scheduler.exclusive():
                for out in self.outputs:
                    out.arm()
            self._outputs_armed = True

    def _disarm_outputs(self) -> None:
        self._disarm_requested = False
        self._outputs_wanted = False
        with self.scheduler.exclusive():
            for out in self.outputs:
                out.disarm()
        self._outputs_armed = False

    def _note(self, msg: str, t: float | None = None, fields: dict | None = None) -> None:
        """Log ``msg``, show it on the live view and record it in the log stream (with
        ``fields``, e.g. ``kind``, for events a reader picks out)."""
        t = self.clock.now() if t is None else t
        self._log(msg)
        self._messages.append(msg)
        if self.recorder is not None and not self.recorder.failed:
            self.recorder.write_marker("log", t, {"t_s": t, "message": msg, **(fields or {})})

    def _gap_noted(self, chunk: Chunk, now: float) -> None:
        """One line for the first gap, then at most one summary per 10 s (a source that
        loses samples all the time must not flood the log); each gap is still a
        ``kind: gap`` record in the log stream."""
        res = self.result
        missing = self.governor.last_missing
        self._gaps_unreported += 1
        self._missing_unreported += missing
        what = f"{missing} samples missing" if missing else "the source reports lost samples"
        if now >= self._next_gap_note:
            self._next_gap_note = now + 10.0
            n, m = self._gaps_unreported, self._missing_unreported
            msg = (f"gap before sample {chunk.first_index} ({what}): pulses blocked for one "
                   "refractory period" if n == 1 else
                   f"{n} gaps ({m} samples missing) in the last 10 s, the latest before "
                   f"sample {chunk.first_index}; {res.n_gaps} so far")
            self._gaps_unreported = self._missing_unreported = 0
            self._note(msg, now, {"kind": "gap", "missing_samples": missing,
                                  "first_index": chunk.first_index,
                                  "t_first_s": float(chunk.timestamps[0])})
        elif self.recorder is not None and not self.recorder.failed:
            self.recorder.write_marker("log", now, {
                "t_s": now, "kind": "gap", "missing_samples": missing,
                "first_index": chunk.first_index, "t_first_s": float(chunk.timestamps[0])})

    def _watch_link(self, now: float) -> None:
        """The source's own view of its link (LSL: data flowing, stale, lost): each
        change is an event in the recording and the live view's state; the governor
        refuses pulses while the source reports no data."""
        state = getattr(self.source, "link_state", None)
        if state is None or state == self._link:
            return
        prev, self._link = self._link, state
        silent = float(getattr(self.source, "silent_s", 0.0) or 0.0)
        if state == "ok":
            outage = now - self._link_since if self._link_since == self._link_since else 0.0
            self.governor.set_source_stale(False)
            self._note(f"source recovered after {outage:.1f} s without data ({prev}); "
                       "stimulation resumes after the gap rule's block", now,
                       {"kind": "source_recovered", "outage_s": outage,
                        "since_s": self._link_since, "from": prev})
            self._link_since = math.nan
            return
        if prev == "ok":
            self._link_since = now - silent
        self.governor.set_source_stale(True)
        self._note(f"source {state}: no data for {silent:.1f} s"
                   + (" (the outlet is gone; waiting for it to come back)"
                      if state == "lost" else "") + "; stimulation inhibited", now,
                   {"kind": f"source_{state}", "since_s": self._link_since,
                    "silent_s": silent})

    def _artefact_notes(self, now: float) -> None:
        g = self._guard
        for ep in g.started:
            self.result.n_artefacts += 1
            chs = ", ".join(sorted(ep.channels))
            self._note(f"artefact: non-finite samples on {chs} from {ep.start_s:.3f} s; the "
                       "detectors reading them are paused, stimulation inhibited", now,
                       {"kind": "artefact_start", "start_s": ep.start_s,
                        "channels": sorted(ep.channels)})
        for ep in g.ended:
            d = ep.to_dict()
            self._note(f"artefact over: {', '.join(d['channels'])} non-finite for "
                       f"{d['duration_s'] * 1e3:.0f} ms ({d['nonfinite_samples']} samples); "
                       f"detectors restarted, pulses inhibited up to {g.settle_s:g} s more", now,
                       {"kind": "artefact_end", **d})
        g.started.clear()
        g.ended.clear()

    def _state_text(self, now: float, calibrated: bool) -> str:
        """The live view's state: the worst of a source outage, an artefact, calibrating."""
        if self._link != "ok":
            since = self._link_since
            return f"source {self._link}: no data for {now - since:.1f} s" \
                if since == since else f"source {self._link}"
        g = self._guard
        if g is not None and g.episode is not None:
            return (f"artefact: non-finite on {', '.join(sorted(g.episode.channels))} "
                    f"since {g.episode.start_s:.1f} s")
        return "running" if calibrated else "calibrating"

    def _main(self, duration_s: float | None) -> None:
        res, src, clock, gov = self.result, self.source, self.clock, self.governor
        st = self.stages
        h_read, h_dec, h_pol, h_gov = st["read"], st["decode"], st["policy"], st["governor"]
        h_in = st["intake"]
        h_sch, h_rec, h_tot = st["schedule"], st["record"], st["chunk_total"]
        perf = time.perf_counter
        wall = self.wall_clock
        rec = self.recorder
        t_start = clock.now()
        t_end = math.inf
        next_status = -math.inf
        next_check = -math.inf
        calibrated = False
        first = True
        # periodic snapshots only for a board someone reads during the run (not a quiet
        # progress bar at --speed max): faults and the end of the run are published anyway
        board = self.status_board
        snapshots = board is not None and getattr(board, "watched", True)
        if not snapshots:
            self._period = None      # no chunks kept for a snapshot nobody reads
        while not self._stop_requested:
            if self._disarm_requested:
                self._disarm_outputs()
            if self._arm_requested:
                self._do_arm()
            if self._source_ended:
                res.stop_reason = "end of source"
                break
            p0 = perf()
            try:
                if self._split:
                    chunk = self._split.popleft()
                elif self._pending is not None:
                    chunk, self._pending = self._pending, None
                else:
                    chunk = src.read(self.read_timeout_s)
            except EndOfStream:
                res.stop_reason = "end of source"
                break
            p1 = perf()
            if chunk is None:
                res.n_timeouts += 1
                now = clock.now()
                self._watch_link(now)
                tick = wall() if self.simulated else now
                if snapshots and tick >= next_status and self._last_chunk is not None:
                    # no data: the live view must still show the outage
                    next_status = tick + STATUS_EVERY_S
                    self._publish(now, self._last_chunk, self._state_text(now, calibrated))
                self._watch(now)
                if rec is not None:
                    rec.check()
                if now >= t_end or (duration_s is not None and not self.simulated
                                    and now - t_start >= duration_s):
                    res.stop_reason = "duration reached"
                    break
                self._after_chunk(now)
                continue
            h_read.record(p1 - p0)
            if not self.simulated:
                chunk = self._catch_up(chunk)
            blocky = False
            if self._grid and chunk.n_samples > self._grid:
                chunk, blocky = self._block_or_split(
                    chunk, chunk.timestamps[0] if first else res.t0_s, duration_s)
            if self.simulated and not blocky:
                clock.sleep_until(chunk.last_time_s)
            now = clock.now()
            if first:
                first = False
                res.t0_s = float(chunk.timestamps[0]) if chunk.n_samples else now
                if duration_s is not None:
                    t_end = (res.t0_s + duration_s) if self.simulated else t_start + duration_s
            if self._link != "ok":
                self._watch_link(now)
            # ---- safety bookkeeping, record raw data
            if not blocky and gov.observe_chunk(float(chunk.timestamps[0]),
                                                chunk.last_time_s, chunk.n_samples,
                                                chunk.rate_hz, chunk.gap_before):
                res.n_gaps += 1
                self._gap_noted(chunk, now)
            res.n_chunks += 1
            res.n_samples += chunk.n_samples
            # deliveries since the last chunk, before decoding: their artefacts are blanked
            if not blocky:
                self._after_chunk(now)
            p2 = perf()
            # intake: from arrival (real time; from the read's return when simulated) to
            # here -- the source's hand-over, backlog check, safety bookkeeping, deliveries
            # (on the run's clock, as arrival_s: perf_counter is another clock off Linux)
            h_in.record((p2 - p1) if self.simulated else (clock.now() - chunk.arrival_s))
            # ---- decode
            events = self._decode(chunk)
            phase = self._phase_now
            cal_s = math.nan
            if not calibrated:
                calibrated = all(not getattr(d, "calibrating", False) for d in self.detectors)
                if calibrated and blocky:
                    # a block: at the grid chunk where the last detector calibrated
                    # (_act_on_grid), not before its events earlier in the block
                    done = [e.detect_s for e in events if e.kind == "calibration_done"]
                    cal_s = max(done) if done else float(chunk.timestamps[0])
                elif calibrated:
                    self._on_calibrated(now)
            p3 = perf()
            h_dec.record(p3 - p2)
            if blocky:
                # ---- policy, governor and scheduler on the chunk_samples grid
                events = self._act_on_grid(chunk, events, h_gov, h_sch, cal_s)
                now = clock.now()
                p5 = perf()
                h_pol.record(p5 - p3)
            else:
                # ---- policy
                # the decision time is now, after decoding (the simulated clock does not
                # move)
                t_dec = clock.now()
                intents = self.policy.step(events, t_dec, phase) \
                    if self.policy.needs_phase else self.policy.step(events, t_dec)
                p4 = perf()
                h_pol.record(p4 - p3)
                # ---- governor and scheduler
                if intents:
                    self._decide(intents, chunk.arrival_s, h_gov, h_sch)
                p5 = perf()
            # ---- record
            if rec is not None:
                rec.write_chunk(chunk)
                for e in events:
                    rec.write_marker("events", e.detect_s, e)
            if len(res.events) < MAX_KEPT:
                res.events.extend(events)
            fw = self._feed
            if fw is not None:
                fw.feed(chunk, events, rec)
            self._last_chunk = chunk
            p6 = perf()
            h_rec.record(p6 - p5)
            if self.simulated:
                h_tot.record(p6 - p1)  # processing only: arrival is simulated time
                # fire what is due before the next chunk's newest sample
                if not blocky:
                    self.scheduler.advance_to(chunk.last_time_s
                                              + chunk.n_samples / chunk.rate_hz)
            else:
                h_tot.record(clock.now() - chunk.arrival_s)
            if fw is not None:
                fw.kick()   # the worker runs while this thread waits for the next chunk
            if self.policy.waiting:
                # the uplift prediction runs on its own thread: give it the GIL for at
                # most UPLIFT_YIELD_S of the time this thread would spend waiting for
                # the next chunk anyway, and decide now rather than at the next chunk
                # (real time only: --speed max has already decided, waiting for the answer)
                self.policy.gate.wait(min(UPLIFT_YIELD_S,
                                          0.5 * chunk.n_samples / chunk.rate_hz))
                intents = self.policy.resolve(clock.now())
                if intents:
                    self._decide(intents, chunk.arrival_s, h_gov, h_sch)
            if self.scheduler.error is not None:
                self._watch(now)   # records the device's fault before the error surfaces
                raise self.scheduler.error
            self._watch(now)
            if rec is not None:
                rec.check()   # a failed or blocked recording stops stimulation (cheap)
            if now >= next_check:
                next_check = now + 1.0
                if self._feed is not None:
                    self._feed.check(rec, now)
            if snapshots:
                tick = wall() if self.simulated else now
                if tick >= next_status:
                    next_status = tick + STATUS_EVERY_S
                    self._publish(now, chunk, self._state_text(now, calibrated))
            if chunk.last_time_s >= t_end if self.simulated else now >= t_end:
                res.stop_reason = "duration reached"
                break
        if self._stop_requested and not res.stop_reason:
            res.stop_reason = self._stop_requested
        res.t_end_s = clock.now()
        res.duration_s = (res.t_end_s - res.t0_s) if self.simulated else (res.t_end_s - t_start)

    def _watch(self, now: float) -> None:
        """Between chunks: a thread that died, a device that reports a problem (stim box
        disarmed itself, heartbeat unanswered) and a pulse a device refused (the scheduler
        marked it in the governor at once) each end the run; a device fault is first
        recorded as an event (stream ``engramloop.log``, ``"kind": "fault"``) and shown."""
        if self._thread_error is not None:
            name, exc = self._thread_error
            raise ThreadFailure(f"thread {name!r} failed: {type(exc).__name__}: {exc}") \
                from exc
        gov = self.governor
        for out in self._health:
            why = out.health()
            if why:
                gov.fault(out.name, why)
        if not gov.faulted:
            return
        self._after_chunk(now)   # the refused pulse's delivery goes in before the fault
        faults = gov.faults
        new = self._record_faults(now)
        if new and self.status_board is not None and self._last_chunk is not None:
            self._publish(now, self._last_chunk, "FAULT")
        name, why = next(iter(faults.items()))
        if (self.fault_rearm_after_s <= 0 or self._n_rearms >= self.fault_max_rearms
                or self.scheduler.error is not None or self.simulated):
            raise DeviceFault(f"device fault on output {name!r}: {why}")
        self._wait_to_rearm(now, faults)

    def _record_faults(self, now: float) -> bool:
        """Log and record (``"kind": "fault"``) every governor fault not recorded yet;
        True if there was one. Also called on the way out: a device that stopped
        answering a pulse the loop thread itself sent ends the run from inside the send,
        before any :meth:`_watch`, and its fault must still be in the recording."""
        new = False
        for name, why in self.governor.faults.items():
            if name not in self._faults_recorded:
                self._faults_recorded.add(name)
                new = True
                msg = f"FAULT {name}: {why}; stimulation stopped"
                self._log(msg)
                self._messages.append(msg)
                if self.recorder is not None and not self.recorder.failed:
                    self.recorder.write_marker("log", now, {
                        "t_s": now, "kind": "fault", "output": name, "reason": why,
                        "message": msg})
        return new

    def _wait_to_rearm(self, now: float, faults: dict[str, str]) -> None:
        """``fault_rearm_after_s`` > 0: outputs disarmed at once, then re-armed once every
        output has reported healthy for that long (each step logged and recorded); a device
        that is still unhealthy right after being disarmed (gone) ends the run."""
        gov = self.governor
        if not self._fault_hold:
            self._fault_hold = True
            self._healthy_since = math.nan
            with self.scheduler.exclusive():
                for out in self.outputs:
                    out.disarm()
            self._outputs_armed = False
            for out in self.outputs:
                reset = getattr(out, "reset_fault", None)
                if callable(reset):
                    reset()
            self._event(now, "fault_hold", f"outputs disarmed; re-arming after "
                        f"{self.fault_rearm_after_s:g} s of device health (re-arm "
                        f"{self._n_rearms + 1} of {self.fault_max_rearms})")
        sick = [f"{o.name}: {o.health()}" for o in self._health if o.health()]
        if sick:
            if self._healthy_since != self._healthy_since:   # never healthy since the hold
                raise DeviceFault(f"device fault that does not clear: {sick[0]}")
            self._healthy_since = math.nan
            return
        if self._healthy_since != self._healthy_since:
            self._healthy_since = now
        if now - self._healthy_since < self.fault_rearm_after_s or not gov.armed:
            return
        with self.scheduler.exclusive():
            for out in self.outputs:
                out.arm()
        self._outputs_armed = True
        for name in faults:
            gov.clear_fault(name)
            self._faults_recorded.discard(name)
        self._fault_hold = False
        self._n_rearms += 1
        self._event(now, "rearm", f"re-armed after {now - self._healthy_since:.2f} s of "
                    f"device health (re-arm {self._n_rearms} of {self.fault_max_rearms})")

    def _event(self, now: float, kind: str, msg: str) -> None:
        self._log(msg)
        self._messages.append(msg)
        if self.recorder is not None and not self.recorder.failed:
            self.recorder.write_marker("log", now, {"t_s": now, "kind": kind,
                                                    "message": msg})

    def _decode(self, chunk: Chunk) -> list[Event]:
        """Events of every detector (and the phase estimate, in ``_phase_now``) for one
        chunk; non-finite samples are screened here, the one place chunks enter the
        decoders (:class:`controller.nonfinite.NonFiniteGuard`)."""
        period = self._period
        if period is not None:  # kept for the next status snapshot (clipping, flat, RMS)
            period.append(chunk)
        dets = self.detectors
        pe = self.phase_estimator
        guard = self._guard
        feed = guard.screen(chunk) if guard is not None else None
        if feed is None:
            if pe is not None:
                self._phase_now = pe.process(chunk)
            if len(dets) == 1:
                return dets[0].process(chunk)
            events: list[Event] = []
            for d in dets:
                events.extend(d.process(chunk))
            return events
        events = []
        for i, d in enumerate(dets):
            if feed[i]:
                events.extend(guard.keep(i, d.process(chunk)))
        if len(dets) > 1:
            events.sort(key=lambda e: e.detect_s)
        if pe is not None:
            # a paused estimator gives no phase: NaN, which the policy does not act on
            self._phase_now = pe.process(chunk) if feed[-1] else _nan_phase(chunk)
        now = self.clock.now()
        if guard.started or guard.ended:
            self._artefact_notes(now)
        until = guard.inhibit_until()
        # the chunk clock and the governor's clock are the same host clock
        self.governor.set_artefact_until(until)
        return events

    def _read_now(self) -> Chunk | None:
        """A chunk that is already waiting, or None; notes the end of the source."""
        if self._source_ended:
            return None
        try:
            return self.source.read(0.0)
        except EndOfStream:
            self._source_ended = True
            return None

    def _catch_up(self, chunk: Chunk) -> Chunk:
        """Detect a backlog: one chunk waiting behind this one is ordinary jitter (it is
        processed next, decisions included); more than one means the loop fell behind.
        Then the older chunks are decoded for filter continuity (their events are
        recorded, never acted on) and the newest is returned."""
        if self._pending is not None:
            return chunk
        nxt = self._read_now()
        if nxt is None:
            return chunk
        newest = self._read_now()
        if newest is None:
            self._pending = nxt
            return chunk
        older = [chunk, nxt]
        while len(older) < MAX_BACKLOG_CHUNKS:
            more = self._read_now()
            if more is None:
                break
            older.append(newest)
            newest = more
        for c in older:
            if self.governor.observe_chunk(float(c.timestamps[0]), c.last_time_s,
                                           c.n_samples, c.rate_hz, c.gap_before):
                self.result.n_gaps += 1
                self._gap_noted(c, self.clock.now())
            stale = self._decode(c)
            if self.recorder is not None:
                self.recorder.write_chunk(c)
                for e in stale:
                    self.recorder.write_marker("events", e.detect_s, e)
            if len(self.result.events) < MAX_KEPT:
                self.result.events.extend(stale)
            self.result.n_chunks += 1
            self.result.n_samples += c.n_samples
        res = self.result
        res.n_backlog += 1
        res.n_backlog_chunks += len(older)
        now = self.clock.now()
        if now >= self._next_backlog_note:
            self._next_backlog_note = now + 10.0
            self._note(f"backlog: {len(older)} chunks behind (data "
                       f"{(now - newest.last_time_s) * 1e3:.1f} ms old); decoded without "
                       f"decisions, acting on the newest ({res.n_backlog} backlog(s) so far)",
                       now)
        return newest

    def _decide(self, intents: list, arrival_s: float, h_gov: Histogram,
                h_sch: Histogram) -> None:
        gov, rec, res = self.governor, self.recorder, self.result
        perf = time.perf_counter
        for k, intent in enumerate(intents):
            q0 = perf()
            now = self.clock.now()
            d = gov.review(intent, now)
            q1 = perf()
            h_gov.record(q1 - q0)
            if len(res.decisions) < MAX_KEPT:
                res.decisions.append(d)
            if rec is not None:
                rec.write_marker("governor", now, d)
            if not d.approved:
                if k == 0:
                    refused = getattr(self.policy, "governor_refused", None)
                    if refused is not None:
                        refused(intent)     # an uplift budget is spent on approved pulses
                if k + 1 < len(intents):
                    self._note(f"{len(intents) - k - 1} later stimulus(es) of the same "
                               f"sequence dropped after refusal ({d.rule})", now)
                return
            if intent.intended_s <= now:
                self._immediate[d.pulse.pulse_id] = arrival_s
            # a due pulse (ripple-locked) is sent from this thread at once: no hand-over
            self.scheduler.submit(d.pulse, fire_if_due=not self.simulated)
            h_sch.record(perf() - q1)

    def _after_chunk(self, now: float) -> None:
        """Record and account for what the scheduler did since the last chunk (and, when
        its period elapsed, the simulator's memory state)."""
        sr = self._sim_records
        if sr is not None and now >= sr.next_s:
            sr.memory(self.recorder)
        log = self.scheduler.drain()
        if not log:
            return
        res, rec = self.result, self.recorder
        h_pulse = self.stages["pulse_total"]
        for p, d in log:
            if d.status in ("failed", "nacked"):
                res.n_failed += 1
                if res.n_failed in (1, 10, 100, 1000):
                    self._note(f"{d.output} did not deliver pulse {p.pulse_id} ({d.status}: "
                               f"{d.reason}); {res.n_failed} so far", now)
            if len(res.deliveries) < MAX_KEPT:
                res.deliveries.append((p, d))
            if d.status in ("sent", "acked"):
                # the stimulus reached the tissue (at the device edge when known): blank its
                # artefact in the detectors and count it for the forecaster
                t0 = d.device_edge_s if d.device_edge_s == d.device_edge_s else d.sent_s
                for det in self._blankers:
                    det.blank(t0, t0 + p.spec.duration_s)
                if self._feed is not None:
                    self._feed.pulse_delivered(t0)
            arr = self._immediate.pop(p.pulse_id, None)
            if arr is not None and d.status in ("sent", "acked", "sham") \
                    and not self.simulated:
                h_pulse.record(d.sent_s - arr)
            if rec is not None:
                t = d.sent_s if d.sent_s == d.sent_s else now
                rec.write_marker("pulses", t, {"pulse": p.to_dict(), "delivery": d.to_dict()})

    def _period_quality(self, chunk: Chunk) -> tuple:
        """Signal quality of every chunk since the last snapshot (just ``chunk`` when none
        was collected): RMS, flat, and clipping against the source's input range
        (``full_scale_v``: a number or one per channel, volts; unknown = no clip check)."""
        period = self._period
        if period is not None:      # None: no periodic snapshots, nothing collected
            self._period = []
        if not period:
            period = [chunk]
        x = period[0].samples if len(period) == 1 else np.concatenate(
            [c.samples for c in period if c.samples.shape[1:] == chunk.samples.shape[1:]])
        full = np.asarray(getattr(self.source, "full_scale_v", math.inf), dtype=float)
        if full.ndim and full.shape != (x.shape[1],):
            full = np.asarray(math.inf)  # per-channel ranges that do not fit: no check
        return channel_quality(x, chunk.channels, clip_v=full)

    def _publish(self, now: float, chunk: Chunk, state: str) -> None:
        res = self.result
        refused = {k: v for k, v in self.governor.refusals.items() if v}
        counts: dict[str, int] = {}
        for e in res.events[-500:]:
            if now - e.detect_s <= 60.0 and e.kind != "calibration_done":
                counts[e.kind] = counts.get(e.kind, 0) + 1
        span = min(60.0, max(now - res.t0_s, 1e-9)) / 60.0
        forecast, forecast_age, gate = forecast_status(self.forecaster, self.policy, now)
        self.status_board.publish(LoopStatus(
            source=self.description, rate_hz=chunk.rate_hz, elapsed_s=now - res.t0_s,
            channels=self._period_quality(chunk),
            detections_per_min={k: v / span for k, v in counts.items()},
            pulses_sent=self.scheduler.n_sent, pulses_refused=refused,
            # a faulted output is not armed, whatever the governor was asked
            armed=self.governor.armed and not self.governor.faulted,
            lockouts=self.governor.lockouts(now),
            loop_latency_p99_s=self.stages["chunk_total"].percentile(99),
            scheduler_lateness_p99_s=self.scheduler.lateness.percentile(99),
            forecast=forecast, forecast_age_s=forecast_age, forecast_gate=gate,
            recording_path=str(getattr(self.recorder, "path", "") or ""),
            recording_bytes=_file_size(getattr(self.recorder, "path", None)),
            state=state, messages=tuple(self._messages),
            detector_states=tuple(n for n in (getattr(d, "status_note", "")
                                              for d in (*self.detectors, self.policy)) if n)))

    def _shutdown(self, reason: str) -> None:
        """Stimulation off first, then everything else; never raises past an error that
        is already on its way out (secondary errors are logged)."""
        self.governor.disarm()
        gc.unfreeze()
        self._tuning.restore()
        errors: list[str] = []
        with self.scheduler.exclusive():  # not while the scheduler thread is sending
            for out in self.outputs:
                try:
                    out.disarm()
                except BaseException as exc:  # keep going: every output must be tried
                    errors.append(f"{out.name}: disarm failed: {exc}")
        self._outputs_armed = False
        try:
            self._record_faults(self.clock.now())
        except BaseException as exc:
            errors.append(f"recording a device fault failed: {exc}")
        try:
            self.scheduler.stop(reason)
        except BaseException as exc:
            errors.append(f"scheduler stop failed: {exc}")
        for out in self.outputs:
            try:
                out.close()
            except BaseException as exc:
                errors.append(f"{out.name}: close failed: {exc}")
        try:
            self.source.stop()
        except BaseException as exc:
            errors.append(f"source stop failed: {exc}")
        gate_stop = getattr(self.policy.gate, "stop", None)
        if gate_stop is not None:
            try:
                gate_stop()
            except BaseException as exc:
                errors.append(f"uplift worker stop failed: {exc}")
        if self.forecaster is not None:
            try:
                self.forecaster.stop()
            except BaseException as exc:
                errors.append(f"forecaster stop failed: {exc}")
            try:
                self._feed.take(self.recorder)   # the last ones, from the queued chunks
            except BaseException as exc:
                errors.append(f"recording the last forecasts failed: {exc}")
        try:
            self._after_chunk(self.clock.now())
        except BaseException as exc:
            errors.append(f"recording the last deliveries failed: {exc}")
        res = self.result
        res.refusals = self.governor.refusals
        res.gate_refusals = dict(self.policy.gate_refusals)
        if self.policy.n_too_late:
            res.gate_refusals["ripple_too_late"] = self.policy.n_too_late
        g = gate_summary(self.policy, self._feed.n_gate_open if self._feed else 0,
                         len(res.forecasts or ()))
        if g is not None:
            res.forecast_gate = g
            try:
                if self.recorder is not None and not self.recorder.failed:
                    t = self.clock.now()
                    self.recorder.write_marker("log", t, {
                        "t_s": t, "forecast_gate": g, "message": gate_summary_message(g)})
            except BaseException as exc:
                errors.append(f"recording the forecast gate summary failed: {exc}")
        try:
            self._record_skips()
        except BaseException as exc:
            errors.append(f"recording the detectors' passed-over counts failed: {exc}")
        if self._gaps_unreported:
            try:   # the gaps since the last gap line, summed up at the end
                self._note(f"{self._gaps_unreported} more gap(s) ({self._missing_unreported} "
                           f"samples missing) since the last gap line; {res.n_gaps} in all")
            except BaseException as exc:
                errors.append(f"recording the gap summary failed: {exc}")
            self._gaps_unreported = self._missing_unreported = 0
        res.stages = self.stages
        res.lateness = self.scheduler.lateness
        for msg in errors:
            self._log(msg)
        if self.status_board is not None:
            try:
                state = "stopped" if not res.error else res.error
                if self._last_chunk is not None:
                    self._publish(self.clock.now(), self._last_chunk, state)
                else:
                    self.status_board.publish(LoopStatus(source=self.description,
                                                         state=state))
            except BaseException as exc:
                self._log(f"status: {exc}")


    def _record_skips(self) -> None:
        """Each detector's passed-over counts (``passed_over``: down states a gate or rule
        dropped, events without a prediction) into the result and, as a ``kind:
        detector_skips`` record, the recording's log stream -- a night the SO gate kept
        closed reads as that, not as a quiet night."""
        res = self.result
        for d in (*self.detectors, self.policy):    # the policy drops detections too
            counts = {k: int(v) for k, v in (getattr(d, "passed_over", None) or {}).items()
                      if v}
            if not counts:
                continue
            kind = str(getattr(d, "KIND", type(d).__name__))
            res.detector_skips[kind] = counts
            if self.recorder is not None and not self.recorder.failed:
                t = self.clock.now()
                self.recorder.write_marker("log", t, {
                    "t_s": t, "kind": "detector_skips", "detector": kind, "counts": counts,
                    "message": f"{kind} passed over: " + ", ".join(
                        f"{n} {k}" for k, n in counts.items())})


def _nan_phase(chunk: Chunk) -> Any:
    nan = math.nan
    return PhaseEstimate(chunk.last_time_s, nan, nan, nan, 0.0)


def _file_size(path: Any) -> int:
    try:
        return os.stat(path).st_size if path else 0
    except OSError:
        return 0



__all__ = ["Loop", "ThreadFailure", "RunResult", "STAGES"]
