"""The loop's side of the forecaster: feeding the worker, recording its forecasts, the
forecast gate's notes, state and end-of-run summary.

The worker (:class:`controller.forecast_worker.ForecastWorker`) runs the model on its own
thread; the policy's gate reads the newest forecast from it directly. This module keeps
the loop class to the loop: it hands the worker each chunk, the events and the times of
the pulses that reached the tissue, and records what comes back.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from engramloop.controller.forecast_worker import ForecasterError
from engramloop.core.chunk import Chunk

#: On the simulated clock the loop waits this long (wall seconds) at most for the
#: forecaster worker to finish an epoch before calling it stalled.
SIM_FORECAST_WAIT_S = 60.0


class ForecastFeed:
    """Feeds a ForecastWorker from the loop thread and records its forecasts.

    Parameters
    ----------
    worker : ForecastWorker
    policy : Policy
        Its ``gate`` (if any) is told of every forecast; its state changes are noted.
    simulated : bool
        On the simulated clock each epoch's forecast is waited for (reproducible runs).
    note : callable(msg, t)
        Logs, shows and records a line (the loop's ``_note``).
    forecasts : list
        Where the forecasts made during the run are kept (the run result's list).
    keep : int
        Most forecasts kept in ``forecasts`` (the recording has them all).
    """

    def __init__(self, worker: Any, policy: Any, *, simulated: bool,
                 note: Callable[..., None], forecasts: list, keep: int) -> None:
        self.worker, self.policy, self.simulated = worker, policy, simulated
        self._note = note
        self.forecasts, self._keep = forecasts, keep
        #: times the pulses reached the tissue since the last chunk fed
        self._pulse_times: list[float] = []
        self._gate_open: bool | None = None
        #: forecasts that opened the gate
        self.n_gate_open = 0
        self._late_next = 1       # note again when this many are reached

    def pulse_delivered(self, t0_s: float) -> None:
        """A pulse reached the tissue at ``t0_s`` (counted with the next chunk)."""
        self._pulse_times.append(t0_s)

    def feed(self, chunk: Chunk, events: list, recorder: Any) -> None:
        """Hand over one chunk (a deque append and one comparison; the rest only at block
        boundaries, when an epoch may have ended)."""
        if self.worker.feed(chunk, events, self._pulse_times):
            self._due(recorder)
        if self._pulse_times:
            self._pulse_times = []

    def kick(self) -> None:
        """Let the worker run while the loop thread waits for the next chunk."""
        self.worker.kick()

    def check(self, recorder: Any, now: float | None = None) -> None:
        """Raise the worker's (and the uplift gate's prediction thread's) failure, if any;
        record its new forecasts; note the uplift gate's late decisions."""
        self.worker.check()
        gate = self.policy.gate
        gate_check = getattr(gate, "check", None)
        if gate_check is not None:
            gate_check()
        self.take(recorder)
        n_late = getattr(gate, "n_late", 0)
        if n_late >= self._late_next:
            # at 1, 10, 100, ...: a recorded, visible event (the summary has the count)
            while self._late_next <= n_late:
                self._late_next *= 10
            self._note(f"uplift gate: {n_late} ripple(s) not stimulated because their "
                       f"predicted gain was not back within forecaster.uplift_max_wait_s "
                       f"= {gate.max_wait_s * 1e3:g} ms (uplift_late)", now)

    def _due(self, recorder: Any) -> None:
        """The data reached a new block: an epoch may have ended."""
        fw = self.worker
        if self.simulated:
            # unpaced: wait for the epoch's forecast as if the worker took no simulated
            # time (in real time it lags its epoch by milliseconds); reproducible runs
            if not fw.wait_idle(SIM_FORECAST_WAIT_S) and not fw.failed:
                raise ForecasterError(f"forecaster worker did not finish an epoch within "
                                      f"{SIM_FORECAST_WAIT_S:g} s")
        self.take(recorder)

    def take(self, recorder: Any) -> None:
        """Record the worker's new forecasts (in real time at most 1 s after they are made;
        the gate reads the newest one from the worker directly)."""
        for fc in self.worker.drain():
            if recorder is not None:
                recorder.write_marker("forecasts", fc.time_s, fc)
            if len(self.forecasts) < self._keep:
                self.forecasts.append(fc)
            gate = self.policy.gate
            if gate is not None and hasattr(gate, "opens"):
                is_open = gate.opens(fc)
                self.n_gate_open += is_open
                if is_open != self._gate_open:
                    self._gate_open = is_open
                    self._note(f"forecast gate {'open' if is_open else 'closed'}: p_below_median "
                               f"{fc.p_below_median:.3f} (opens at {gate.describe()})", fc.time_s)


def forecast_status(worker: Any, policy: Any, now: float) -> tuple[dict, float, str]:
    """The newest forecast (values, age in seconds) and the forecast gate's state, for the
    live view (``worker`` None: no forecaster)."""
    fc = worker.latest() if worker is not None else None
    values: dict[str, float] = {}
    age = math.nan
    if fc is not None:
        values = {"p_below_median": fc.p_below_median, "delta_strength": fc.delta_strength}
        values.update({f"delta_strength[{i}]": v for i, v in enumerate(fc.per_memory)})
        age = now - fc.time_s
    gate = getattr(policy, "gate", None)
    state = ""
    if gate is not None and hasattr(gate, "status"):
        state = gate.status(now)        # the uplift gate: asking must not spend budget
    elif gate is not None:
        # the policy reads last_reason right after its own allows(); this call comes
        # later on the same thread, so it cannot mix up the policy's refusal counts
        state = "open" if gate.allows(now) else \
            f"closed ({getattr(gate, 'last_reason', '') or 'closed'})"
    return values, age, state


def gate_summary(policy: Any, n_gate_open: int, n_forecasts: int) -> dict | None:
    """The forecast gate over the run: ``rule``, ``allowed`` (proposals let through),
    ``held_back`` (refused, by reason), ``open_forecasts``, ``forecasts``; None without a
    gate."""
    gate = policy.gate
    if gate is None or not hasattr(gate, "describe"):
        return None
    # the uplift gate is not opened by forecasts (it decides each ripple): None
    return {"rule": gate.describe(), "allowed": policy.gate_allowed,
            "held_back": dict(policy.gate_refusals),
            "open_forecasts": n_gate_open if hasattr(gate, "opens") else None,
            "forecasts": n_forecasts}


def gate_summary_message(g: dict) -> str:
    """One line for the recording's log stream."""
    held = sum(g["held_back"].values())
    opened = (f"; {g['open_forecasts']} of {g['forecasts']} forecasts opened it"
              if g["open_forecasts"] is not None else "")
    return (f"forecast gate ({g['rule']}): let {g['allowed']} detections through, held back "
            f"{held} {g['held_back'] or ''}{opened}")


__all__ = ["ForecastFeed", "forecast_status", "gate_summary", "gate_summary_message",
           "SIM_FORECAST_WAIT_S"]
