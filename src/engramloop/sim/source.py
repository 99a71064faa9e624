"""``SimSource``: the simulated hippocampus and sleeping cortex as a Source.

The signal is background (precomputed in one-second blocks: 1/f^a activity, amplifier
noise, mains, theta/gamma) plus transient events rendered lazily as additive waveforms
(slow oscillations, spindles, ripples, artefacts). The source renders a little ahead of
what it has handed out (``RENDER_AHEAD_S``); a delivered pulse edits the affected events
and discards the rendered-but-undelivered samples, so the very next chunk reflects it.

Without pulses, every sample is a pure function of the seed and its index: the output is
bit-identical for any chunk size.
"""
from __future__ import annotations

import heapq
import math
import threading

import numpy as np

from engramloop.core.chunk import Chunk, EndOfStream, SourceError
from engramloop.core.clock import Clock, HostClock, SimClock
from engramloop.core.pulse import PulseSpec
from engramloop.sim.effects import TARGETS, apply_pulse
from engramloop.sim.hypnogram import Hypnogram
from engramloop.sim.memory import Memory
from engramloop.sim.noise import Background
from engramloop.sim.rhythms import Geometry, Planner, Ripple, SimEvent, Streams
from engramloop.sim.settings import SimSettings
from engramloop.sim.truth import EventRecord, Truth

PLAN_AHEAD_S = 3.0        # events are planned this far beyond the rendered samples
RENDER_AHEAD_S = 0.05     # samples rendered ahead of the reader (re-rendered after a pulse)
MEMORY_DELAY_S = 1.0      # memory events are applied in time order this long after they end
BG_BLOCK_S = 1.0


class SimSource:
    """Simulated CA1 LFP + scalp EEG with ground truth, closed-loop effects and memory.

    Parameters
    ----------
    settings : SimSettings, optional
        Defaults to ``SimSettings()``.
    seed : int
        Everything stochastic derives from it.
    clock : Clock, optional
        Unpaced runs default to a fresh ``SimClock`` (timestamps start at 0.0); paced runs
        to ``HostClock``. Timestamps start at ``clock.now()`` when :meth:`start` is called.
    paced : bool
        If True, ``read`` sleeps until each chunk's last sample time (absolute deadlines on
        the clock, so no drift); otherwise it returns at once and advances a SimClock.
    chunk_samples : int
        Samples per chunk.
    duration_s : float, optional
        Length of the simulation; ``read`` raises ``EndOfStream`` after it. None = endless.

    Attributes
    ----------
    truth : Truth
    memory : Memory
    """

    def __init__(self, settings: SimSettings | None = None, seed: int = 0,
                 clock: Clock | None = None, paced: bool = False, chunk_samples: int = 10,
                 duration_s: float | None = None) -> None:
        s = settings if settings is not None else SimSettings()
        try:
            s.validate()
            s.hypnogram.validate()
        except ValueError as exc:
            raise ValueError(f"sim.{exc}") from None
        if int(chunk_samples) < 1:
            raise ValueError(f"SimSource: chunk_samples must be >= 1, got {chunk_samples}")
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"SimSource: duration_s must be > 0, got {duration_s}")
        self.settings = s
        self.seed = int(seed)
        self.rate_hz = float(s.rate_hz)
        self.channels = tuple(s.channels)
        #: recorded as float32: simulated values carry no resolution float32's 24-bit
        #: significand would lose (see engramloop.core.sample_format)
        self.sample_format = "float32"
        self.paced = bool(paced)
        self.chunk_samples = int(chunk_samples)
        self.duration_s = duration_s
        self._total = (None if duration_s is None
                       else int(round(float(duration_s) * self.rate_hz)))
        self._clock: Clock = clock if clock is not None else (HostClock() if paced
                                                              else SimClock(0.0))
        self._advance_clock = isinstance(self._clock, SimClock) and not paced
        # independent random streams: adding a pulse or a channel never reshuffles another
        # (the background and the hypnogram never depend on pulses, so one sequential
        # stream each; events and pulse effects draw from keyed streams, see Streams)
        ss = np.random.SeedSequence([self.seed, 0x51AB])
        r_bg, r_plan, r_hyp = (np.random.default_rng(c) for c in ss.spawn(3))
        self.truth = Truth(self.rate_hz, self.channels, 0.0)
        self.memory = Memory(s.memory, self.seed)
        self._geom = Geometry(s)
        self._hyp = Hypnogram(s.hypnogram, r_hyp)
        self._events: list[SimEvent] = []
        self._planner = Planner(s, self._geom, self.truth, r_plan, self._stage_at,
                                self._add_event, streams=Streams(self.seed))
        self._bg_block = int(round(BG_BLOCK_S * self.rate_hz))
        self._bg = Background(s.noise, s.theta, self.rate_hz, self._geom.lfp, self.truth,
                              r_bg, self._bg_block)
        self._bg_blocks: list[tuple[int, np.ndarray]] = []
        self._render_ahead = max(1, int(round(RENDER_AHEAD_S * self.rate_hz)))
        self._buf = np.empty((0, len(self.channels)))
        self._tbuf = np.empty(0)
        self._meta = {"source": "sim"}   # shared by every chunk (read-only by convention)
        self._buf_a = 0
        self._buf_b = 0
        self._read_ptr = 0
        self._mem_queue: list[tuple[float, int, str, tuple]] = []
        self._mem_seq = 0
        self._clip = s.artefacts.clip_v
        self._started = False
        self._next_due = -math.inf   # paced: when the next chunk can be read (host clock)
        self.t0_s = 0.0
        self._pulses: list[EventRecord] = []
        self._pending_pulses: list[tuple[float, PulseSpec, str]] = []
        # stimulate() may come from another thread (a stimulator emulator's edge callback)
        # while the loop thread reads; the lock is never held while sleeping
        self._lock = threading.Lock()

    @property
    def full_scale_v(self) -> float:
        """Amplifier input range, volts (``sim.artefacts.clip_v``): samples are clipped to
        +-this, so a sample there sits on the rail."""
        return float(self._clip)

    # ------------------------------------------------------------------ Source protocol
    def start(self) -> None:
        """Fix the time of sample 0 to the clock's current time."""
        if not self._started and self._read_ptr == 0:
            self.t0_s = float(self._clock.now())
            self.truth.t0_s = self.t0_s
        self._started = True

    def stop(self) -> None:
        """Stop reading; the truth and the memory stay available."""
        with self._lock:
            self._apply_pulses()
            self._retire(self._read_ptr)
            self._flush_memory(math.inf)
            self.memory.advance_to(self._read_ptr / self.rate_hz)
            self.truth.memory = self.memory.summary()
            self._started = False
            self._next_due = -math.inf

    def read(self, timeout_s: float = 0.05) -> Chunk | None:
        """Return the next chunk.

        Unpaced: immediately. Paced: when the chunk's last sample time has come on the
        clock, or None if that is more than ``timeout_s`` away.

        Raises
        ------
        SourceError
            If the source was not started.
        EndOfStream
            After ``duration_s`` of signal.
        """
        if timeout_s == 0.0 and self._clock.now() < self._next_due:
            return None   # the loop's backlog poll, every chunk: the next one is not due
        if not self._started:
            raise SourceError("SimSource: call start() before read()")
        p = self._read_ptr
        n = self.chunk_samples
        if self._total is not None:
            n = min(n, self._total - p)
            if n <= 0:
                raise EndOfStream(f"SimSource: end of the {self.duration_s} s simulation")
        end = p + n
        t_last = self.t0_s + (end - 1) / self.rate_hz
        if self.paced:
            now = self._clock.now()
            if t_last > now + timeout_s:
                if timeout_s > 0:
                    self._clock.sleep_until(now + timeout_s)
                return None     # (a zero-timeout poll -- the loop's backlog check -- is cheap)
            self._clock.sleep_until(t_last)
        elif self._advance_clock:
            self._clock.sleep_until(t_last)
        with self._lock:
            if self._pending_pulses:
                self._apply_pulses()
            if end > self._buf_b:
                self._refill(p, end)
            off = p - self._buf_a
            samples = self._buf[off:off + n].copy()
            # timestamps rendered with the block (t0 + index / rate, element by element)
            timestamps = self._tbuf[off:off + n].copy()
            self._read_ptr = end
            self.truth.until_s = end / self.rate_hz
        if self.paced:  # the next chunk's newest sample time (start() fixed t0_s)
            nxt = self.chunk_samples if self._total is None else min(
                self.chunk_samples, self._total - end)
            self._next_due = (self.t0_s + (end + nxt - 1) / self.rate_hz if nxt > 0
                              else -math.inf)   # at the end: read() raises EndOfStream
        # the arrays are this source's own C-contiguous float64 copies: no checks needed
        return Chunk.unchecked(samples, timestamps, self.rate_hz, self.channels,
                               arrival_s=self._clock.now(), first_index=p, meta=self._meta)

    # ------------------------------------------------------------------ closed loop
    @property
    def pulses(self) -> list[EventRecord]:
        """Every pulse stimulate() was given, as applied to the simulation (truth records
        with where each one landed)."""
        with self._lock:
            self._apply_pulses()
            return self._pulses

    def stimulate(self, t_s: float, spec: PulseSpec, target: str) -> None:
        """Feed back a pulse delivered at host-clock time ``t_s``.

        Parameters
        ----------
        t_s : float
            Host-clock time the pulse reached the tissue (seconds).
        spec : PulseSpec
            "auditory" = click; "electrical"/"optogenetic" = hippocampal pulse.
        target : str
            One of "ripple", "so_upstate", "spindle", "theta_peak", "theta_trough" (what
            the controller aimed at; recorded in the truth; the effect depends on when the
            pulse actually landed, not on the label).
        """
        if not self._started:
            raise SourceError("SimSource: call start() before stimulate()")
        if target not in TARGETS:
            raise ValueError(f"SimSource.stimulate: unknown target {target!r}; use one of "
                             f"{', '.join(TARGETS)}")
        t = float(t_s) - self.t0_s
        if t < 0:
            raise ValueError(f"SimSource.stimulate: pulse time {t_s} s is before the first "
                             f"sample ({self.t0_s} s)")
        with self._lock:
            # applied before anything reads the simulation again (the next chunk, the
            # memory, stop): the same result as applying it now, but the simulated
            # brain's response is not charged to the stimulator's send call -- on a rig
            # the tissue responds for free, and the loop's latency accounting should
            # measure the controller, not the simulator
            self._pending_pulses.append((t, spec, target))

    def _apply_pulses(self) -> None:
        """Apply the pulses stimulate() queued, in order (call with the lock held)."""
        pending = self._pending_pulses
        while pending:
            t, spec, target = pending[0]
            self._planner.plan_until(max(t, self._buf_b / self.rate_hz) + PLAN_AHEAD_S)
            self._pulses.append(apply_pulse(self, t, spec, target))
            # discard rendered-but-undelivered samples: the next read renders the new future
            keep = self._read_ptr - self._buf_a
            self._buf = self._buf[:keep]
            self._buf_b = self._read_ptr
            pending.pop(0)      # only once applied: a failure leaves it (and later ones) queued

    # ------------------------------------------------------------------ internals
    def _add_event(self, ev: SimEvent) -> None:
        self._events.append(ev)

    def _stage_at(self, t: float) -> str:
        """Stage at sim time ``t``, extending the hypnogram as needed."""
        tr = self.truth
        while not tr.seg_end or tr.seg_end[-1] <= t:
            stage, a, b = self._hyp.next_segment()
            tr.add_segment(stage, a, b)
            if stage in ("wake", "REM"):
                ch = self._geom.lfp_channels[0] if self._geom.lfp_channels else self.channels[0]
                tr.add(EventRecord("theta_burst", ch, a, 0.5 * (a + b), b, {"stage": stage}))
        return tr.stage_at(t)

    def _background(self, a: int, b: int) -> np.ndarray:
        """Background samples [a, b) as a fresh array."""
        while self._bg.next_index < b:
            blk_end = (self._bg.next_index + self._bg_block) / self.rate_hz
            self._stage_at(blk_end + 3.0)      # theta ramps need the stages ahead
            i0 = self._bg.next_index
            self._bg_blocks.append((i0, self._bg.next_block()))
        while self._bg_blocks and self._bg_blocks[0][0] + self._bg_block <= self._read_ptr:
            self._bg_blocks.pop(0)
        parts = []
        for i0, blk in self._bg_blocks:
            lo, hi = max(a, i0), min(b, i0 + self._bg_block)
            if lo < hi:
                parts.append(blk[lo - i0:hi - i0])
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)

    def _render(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b): background plus every event overlapping the range."""
        self._planner.plan_until(b / self.rate_hz + PLAN_AHEAD_S)
        out = self._background(a, b)
        t = np.arange(a, b, dtype=np.float64) / self.rate_hz
        post = []
        for ev in self._events:
            if ev.a < b and ev.b > a:
                if ev.post:
                    post.append(ev)
                else:
                    ev.render(a, t, out)
        for ev in post:
            ev.render(a, t, out)
        np.clip(out, -self._clip, self._clip, out=out)
        return out

    def _refill(self, p: int, need: int) -> None:
        """Make the buffer cover [p, max(need, p + render-ahead))."""
        self._retire(p)
        new_b = max(need, p + self._render_ahead)
        if self._total is not None:
            new_b = min(max(new_b, need), max(self._total, need))
        fresh = self._render(self._buf_b, new_b)
        keep = self._buf[p - self._buf_a:]
        self._buf = np.concatenate([keep, fresh]) if keep.shape[0] else fresh
        self._tbuf = self.t0_s + np.arange(p, new_b, dtype=np.float64) / self.rate_hz
        self._buf_a, self._buf_b = p, new_b

    def _retire(self, p: int) -> None:
        """Drop events that ended before sample ``p``; queue finished ripples for memory."""
        if not self._events or min(ev.b for ev in self._events) > p:
            self._flush_memory(p / self.rate_hz - MEMORY_DELAY_S)
            return
        keep = []
        for ev in self._events:
            if ev.b <= p:
                if isinstance(ev, Ripple):
                    self._queue_memory(ev.rec.offset, "replay", (ev,))
            else:
                keep.append(ev)
        self._events = keep
        self._flush_memory(p / self.rate_hz - MEMORY_DELAY_S)

    def _queue_memory(self, t: float, kind: str, args: tuple) -> None:
        heapq.heappush(self._mem_queue, (t, self._mem_seq, kind, args))
        self._mem_seq += 1

    def _flush_memory(self, until: float) -> None:
        """Apply queued memory events with time <= ``until`` in time order."""
        q = self._mem_queue
        while q and q[0][0] <= until:
            t, _, kind, args = heapq.heappop(q)
            self._apply_memory_event(self.memory, t, kind, args, record=True)

    def _apply_memory_event(self, mem: Memory, t: float, kind: str, args: tuple,
                            record: bool) -> None:
        """Hand one rhythm event to the engram model (``record``: note it in the truth)."""
        if kind == "replay":
            r = args[0].rec
            # coupling as the rhythms actually unfolded (after any pulse): in a spindle,
            # and in an SO up-state (phase within +-90 deg of the peak)
            in_spindle = not math.isnan(self.truth.phase_at("spindle", r.peak))
            so_ph = self.truth.phase_at("so", r.peak)
            coupling = 2 if in_spindle and abs(so_ph) < 90.0 else 1 if in_spindle else 0
            # a spindle a click enlarged raises the coupling bonus of its ripples (Ngo et
            # al. 2013; sim.effects._scale_spindle); a shrunk one does not lower it
            # (out-of-phase clicks were ineffective there, not harmful)
            boost = 1.0
            if in_spindle:
                sp = self.truth.record_at("spindle", r.peak)
                boost = max(1.0, sp.meta.get("click_factor", 1.0)) if sp is not None else 1.0
            i = mem.replay(t, r.offset - r.onset, coupling, bool(r.meta.get("truncated")),
                           key=getattr(args[0], "key", None), boost=boost)
            if record:
                r.meta["coupling"] = coupling
                r.meta["memory"] = mem.names[i]
        else:
            phase, gain = args
            mem.theta_pulse(t, phase, gain)

    # ------------------------------------------------------------------ read-outs
    def _projected_memory(self) -> Memory:
        """A copy of the engram model with every pending memory event applied (call with
        the lock held)."""
        self._retire(self._read_ptr)
        mem = self.memory.copy()
        for t, _, kind, args in sorted(self._mem_queue, key=lambda e: (e[0], e[1])):
            self._apply_memory_event(mem, t, kind, args, record=False)
        return mem

    def recall_scores(self) -> dict[str, float]:
        """Recall per memory if the session ended now (next-day test, see
        ``MemorySettings.test_delay_s``).

        A projection: pending memory events are applied to a copy of the engram model, so
        calling this (say, once per epoch) never changes how the run itself unfolds.
        """
        with self._lock:
            self._apply_pulses()
            return self._projected_memory().recall_scores(self._read_ptr / self.rate_hz)

    def memory_state(self) -> dict:
        """The engram model after the samples handed out so far, JSON-ready.

        Like :meth:`recall_scores` a projection that never changes the run. Keys:
        ``t_s`` (host-clock time the state refers to: the end of the last sample handed
        out, seconds), ``sim_t_s`` (the same in simulator seconds), ``recall`` (per memory:
        :meth:`recall_scores`, the next-day test if the session ended now -- the quantity
        the forecaster forecasts), ``pooled`` (their mean), ``strength`` (per memory,
        labile + stable now, 0-1), ``stable`` (per memory, consolidated part) and
        ``replays`` (per memory, replays so far), ``encoding`` (per memory, labile
        strength at encoding: how well it was learned) and ``need`` (per memory, the
        probability that the next replay picks it: weaker memories first, sums to 1 --
        which memories are at risk).
        """
        with self._lock:
            self._apply_pulses()
            sim_t = self._read_ptr / self.rate_hz
            mem = self._projected_memory()
            recall = mem.recall_scores(sim_t)
            strength = mem.strengths(sim_t)
        return {"t_s": self.t0_s + sim_t, "sim_t_s": sim_t,
                "pooled": float(np.mean(list(recall.values()))), "recall": recall,
                "strength": strength,
                "stable": {n: float(v) for n, v in zip(mem.names, mem.stable, strict=True)},
                "replays": {n: int(v) for n, v in zip(mem.names, mem.replays, strict=True)},
                "encoding": {n: float(v) for n, v in zip(mem.names, mem.encoding, strict=True)},
                "need": {n: float(v) for n, v in zip(mem.names, mem.need(sim_t), strict=True)}}
