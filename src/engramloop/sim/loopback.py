"""Loopback adapters: the outputs that hand delivered pulses back to the simulator, so a
closed-loop simulation feels the pulses the loop actually delivered. All of them live here.

- :class:`SimStimOutput`: the simulated stimulator for runs on the built-in simulator
  without stimulator hardware (and every ``--speed max`` run).
- :class:`EmulatedOutput`: a real serial driver (Pulse Pal, stim box) talking to its device
  emulator (``sim/emulators``) on a pseudo-terminal; every emulated output edge goes back
  to the simulator.
- :class:`SimRecords`: what the simulator adds to the run's recording (its memory model's
  state as the run goes, its truth and recall scores at the end).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from engramloop.core.pulse import Delivery, Pulse


class SimStimOutput:
    """The simulated stimulator for runs on the built-in simulator without stimulator
    hardware (and every ``--speed max`` run): hands each pulse straight back to
    ``SimSource.stimulate`` at the send time. Like every output it only sends what the
    scheduler gives it and does nothing while disarmed."""

    name = "sim"
    #: fed only pulses every device output delivered (the scheduler skips it otherwise)
    loopback = True

    def __init__(self, sim_source: Any, clock: Any) -> None:
        self._sim, self._clock, self._armed = sim_source, clock, False

    def open(self) -> None:
        self._armed = False

    def arm(self) -> None:
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    def close(self) -> None:
        self._armed = False

    def send(self, pulse: Pulse) -> Delivery:
        t = self._clock.now()
        if not self._armed:
            return Delivery(pulse.pulse_id, self.name, "failed", reason="output not armed")
        self._sim.stimulate(t, pulse.spec, pulse.target)
        return Delivery(pulse.pulse_id, self.name, "sent", sent_s=t, device_edge_s=t)


class EmulatedOutput:
    """A serial output whose device is an emulator started at ``open()`` and stopped at
    ``close()``; every first edge of a pulse goes to ``sim_source.stimulate``.

    Parameters
    ----------
    inner : PulsePal or StimBox
        The real driver (its ``port`` is set to the emulator's pty when opening).
    make_emulator : callable(on_edge) -> emulator
        Builds a started-on-``start()`` emulator with ``port`` and ``close()``.
    sim_source : SimSource, optional
        Receives ``stimulate(host_time_s, spec, target)`` for each delivered pulse.
    """

    def __init__(self, inner: Any, make_emulator: Any, sim_source: Any = None) -> None:
        self.inner = inner
        self.name = inner.name
        self._make = make_emulator
        self._sim = sim_source
        self._by_channel: dict[int, Pulse] = {}
        self.emulator: Any = None

    def _on_edge(self, t_s: float, channel: int, params: dict) -> None:
        pulse = self._by_channel.get(channel)
        if self._sim is not None and pulse is not None and params.get("index", 0) == 0:
            self._sim.stimulate(t_s, pulse.spec, pulse.target)

    def open(self) -> None:
        self.emulator = self._make(self._on_edge).start()
        self.inner.port = self.emulator.port
        try:
            self.inner.open()
        except BaseException:
            self.emulator.close()
            raise

    def arm(self) -> None:
        self.inner.arm()

    def disarm(self) -> None:
        self.inner.disarm()

    def send(self, pulse: Pulse) -> Delivery:
        """Send through the real driver; first re-raise any error the simulator raised
        when a previous pulse was handed to it (from the emulator's thread)."""
        if self.emulator is not None:
            self.emulator.check()
        channel = pulse.spec.channel
        status = getattr(self.inner, "status", None)  # a StimBox: clicks use its audio line
        if pulse.spec.modality == "auditory" and status is not None:
            channel = status.audio_channel
        before = self._by_channel.get(channel)
        self._by_channel[channel] = pulse
        d = self.inner.send(pulse)
        if d.status not in ("sent", "acked"):
            # refused: no edge of this pulse will come (an edge still due belongs to the
            # pulse before it)
            if before is None:
                self._by_channel.pop(channel, None)
            else:
                self._by_channel[channel] = before
        return d

    def reset_fault(self) -> None:
        reset = getattr(self.inner, "reset_fault", None)
        if callable(reset):
            reset()

    def health(self) -> str:
        """The device's health as its driver reports it ("" = fine), or the error the
        simulator raised when handed an edge."""
        if self.emulator is not None and self.emulator.callback_errors:
            exc = self.emulator.callback_errors[0]
            return f"{self.name}: the simulator failed on an output edge: {exc!r}"
        health = getattr(self.inner, "health", None)
        return health() if callable(health) else ""

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            if self.emulator is not None:
                self.emulator.close()
                self.emulator = None


class SimRecords:
    """What a closed-loop run on the simulator adds to its recording: the engram model's
    state (stream ``engramloop.memory``) every ``sim.memory.record_every_s`` of signal,
    and at the end the truth (every event, then the whole truth document, so the
    recording alone rebuilds the hypnogram and memory) and the simulated recall test.

    Parameters
    ----------
    sim_source : SimSource
        The simulator the loop reads (and stimulates).
    """

    def __init__(self, sim_source: Any) -> None:
        self._sim = sim_source
        #: period of the memory records, seconds of signal (inf: not recorded); the state
        #: is a projection of 0.1-0.3 ms, so only on chunks where the period elapsed
        self.every_s = math.inf
        #: loop time of the next memory record
        self.next_s = math.inf
        if callable(getattr(sim_source, "memory_state", None)):
            every = getattr(getattr(getattr(sim_source, "settings", None), "memory", None),
                            "record_every_s", None)
            if every:
                self.every_s = float(every)
                self.next_s = -math.inf

    def memory(self, recorder: Any, final: bool = False) -> None:
        """Write the simulator's engram-model state to ``engramloop.memory`` and schedule
        the next one at the next multiple of the period (seconds of signal from the start).
        ``final``: the end-of-run state, marked ``"final": true``."""
        state = self._sim.memory_state()
        every = self.every_s
        t0 = state["t_s"] - state["sim_t_s"]
        self.next_s = t0 + (math.floor(state["sim_t_s"] / every + 1e-9) + 1) * every
        if final:
            state["final"] = True
        if recorder is not None and not recorder.failed:
            recorder.write_marker("memory", state["t_s"], state)

    def end(self, recorder: Any, now: Callable[[], float]) -> None:
        """Before the recording closes: the final memory state, the truth, recall."""
        truth = getattr(self._sim, "truth", None)
        if math.isfinite(self.every_s) and not recorder.failed:
            self.memory(recorder, final=True)  # the end: every memory event applied
        if truth is not None and not recorder.failed:
            for ev in truth.events():
                recorder.write_marker("truth", ev.peak_s, ev)
            # the whole truth document (phases, stages, memory), as `engramloop sim`
            # writes it, so the recording alone rebuilds the hypnogram and memory
            recorder.write_marker("truth", now(),
                                  {"kind": "truth_document", "truth": truth.to_json()})
            recall = getattr(self._sim, "recall_scores", None)
            if callable(recall):  # the simulated memory test, for the report
                t = now()
                recorder.write_marker("truth", t, {"kind": "recall", "t_s": t,
                                                   "recall_scores": recall()})


__all__ = ["SimStimOutput", "EmulatedOutput", "SimRecords"]
