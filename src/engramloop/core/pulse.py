"""What a stimulator is asked to do, and what came back. Shared by the controller (which
decides), the outputs (which send) and the simulator (which feels them)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Protocol

Shape = Literal["monophasic", "biphasic"]
Modality = Literal["electrical", "auditory", "optogenetic", "ttl"]


@dataclass(frozen=True)
class PulseSpec:
    """The waveform of one stimulus.

    Attributes
    ----------
    modality : "electrical" | "auditory" | "optogenetic" | "ttl"
    shape : "monophasic" | "biphasic"
    amplitude : float
        Volts at the stimulator output (electrical/ttl), dB SPL for auditory clicks,
        mW for optogenetic light.
    phase_width_s : float
        Duration of one phase, seconds.
    interphase_s : float
        Gap between the two phases of a biphasic pulse, seconds.
    train_count : int
        Pulses in the train (1 = single pulse).
    train_interval_s : float
        Onset-to-onset interval inside a train, seconds.
    channel : int
        Output channel on the device (1-based as printed on Pulse Pal / stim box).
    """

    modality: Modality = "ttl"
    shape: Shape = "monophasic"
    amplitude: float = 5.0
    phase_width_s: float = 0.0001
    interphase_s: float = 0.0
    train_count: int = 1
    train_interval_s: float = 0.0
    channel: int = 1

    @property
    def duration_s(self) -> float:
        """From the first pulse's onset to the last pulse's end, seconds."""
        return self.last_onset_s + self.pulse_duration_s

    @property
    def pulse_duration_s(self) -> float:
        """One pulse of the train, first phase onset to last phase end, seconds."""
        return self.phase_width_s * (2 if self.shape == "biphasic" else 1) + (
            self.interphase_s if self.shape == "biphasic" else 0.0)

    @property
    def n_pulses(self) -> int:
        """Pulses the device plays for this spec (a train counts every pulse)."""
        return max(int(self.train_count), 1)

    @property
    def last_onset_s(self) -> float:
        """Onset of the train's last pulse after its first, seconds."""
        return (self.n_pulses - 1) * self.train_interval_s

    def onsets_s(self) -> tuple[float, ...]:
        """Onset of every pulse of the train after the first pulse's onset, seconds
        (``(0.0,)`` for a single pulse)."""
        return tuple(k * self.train_interval_s for k in range(self.n_pulses))

    def phases(self) -> tuple[tuple[float, float, float], ...]:
        """The phases of one pulse as the device plays them: ``(start_s, width_s, level)``
        with ``start_s`` after the pulse onset and ``level`` signed in the spec's unit
        (V, dB SPL or mW). Monophasic: one phase at ``+amplitude``. Biphasic: ``+amplitude``
        then, after ``interphase_s``, ``-amplitude`` (charge balanced), as Pulse Pal plays
        a biphasic pulse (``drivers.pulsepal.spec_to_params``)."""
        w, a = self.phase_width_s, self.amplitude
        if self.shape == "biphasic":
            return ((0.0, w, a), (w + self.interphase_s, w, -a))
        return ((0.0, w, a),)


@dataclass(frozen=True)
class Pulse:
    """An approved stimulus with its timing, as handed to outputs and recorded.

    All times are host-clock seconds.

    Attributes
    ----------
    pulse_id : int
        Sequence number within the run.
    target : str
        Why it fires: "ripple", "so_upstate", "spindle", "theta_peak", ...
    spec : PulseSpec
    detect_s : float
        Time of the sample on which the triggering detection was made.
    intended_s : float
        When the pulse should leave the process.
    deadline_s : float
        Latest acceptable send time; later means cancel, never send late.
    condition : str
        "stim", "sham" or "yoked-random".
    """

    pulse_id: int
    target: str
    spec: PulseSpec
    detect_s: float
    intended_s: float
    deadline_s: float
    condition: str = "stim"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Delivery:
    """What happened to one pulse at one output.

    Attributes
    ----------
    pulse_id : int
    output : str
        Output name, e.g. "stimbox", "pulsepal", "sham".
    status : "sent" | "acked" | "nacked" | "cancelled" | "failed"
    sent_s : float
        When the command left the process (host clock, seconds); NaN if never sent.
    ack_s : float
        When the acknowledgement arrived (host clock); NaN if none.
    device_edge_s : float
        The device's output-edge time mapped onto the host clock; NaN if unknown.
    reason : str
        NACK reason, cancellation cause or error text; empty when fine.
    """

    pulse_id: int
    output: str
    status: str
    sent_s: float = float("nan")
    ack_s: float = float("nan")
    device_edge_s: float = float("nan")
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class DeviceError(RuntimeError):
    """A stimulator or board failed: names the device and port and what to do."""


class DeviceFault(DeviceError):
    """A stimulator refused a pulse, disarmed itself or stopped answering during a run;
    the run stopped stimulating at once and ends with this error."""


class Output(Protocol):
    """A stimulator or marker sink. Outputs never decide to stimulate on their own: they
    send exactly the approved pulses they are handed, and are off (disarmed, outputs low)
    after ``close()`` whatever happened before.

    ``send`` must return quickly (it runs on the scheduler thread at the pulse's time); it
    returns a Delivery whose status says what happened and raises DeviceError only when
    the device is gone (port closed, no answer), which stops stimulation.
    """

    name: str

    def open(self) -> None: ...

    def arm(self) -> None: ...

    def disarm(self) -> None: ...

    def send(self, pulse: Pulse) -> Delivery: ...

    def close(self) -> None: ...
