"""Stimulator settings (``[stimulators]``): which outputs the scheduler sends every
approved pulse to, and how each device is reached.

Kinds: ``pulsepal`` (Sanworks Pulse Pal), ``stimbox`` (the engramloop stim box),
``lsl-markers`` (LSL string markers), ``brainflow-marker`` (in-band BrainFlow marker),
``sham`` (logs only). Several may be listed; the default is a single ``sham`` output, so a
config that says nothing stimulates nothing. :mod:`engramloop.controller.build_outputs`
turns these settings into outputs; a serial port of ``"emulator"`` starts the matching
device emulator (``sim/emulators``, through :class:`engramloop.sim.loopback.EmulatedOutput`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engramloop.core.schema import setting

Kind = Literal["pulsepal", "stimbox", "lsl-markers", "brainflow-marker", "sham"]
EMULATOR = "emulator"


@dataclass(frozen=True)
class PulsePalSettings:
    """``[stimulators.pulsepal]``: a Sanworks Pulse Pal on a serial port."""

    port: str = setting("", doc="serial port, e.g. /dev/ttyACM0 or COM3 (override with "
                                "--stim-port); \"emulator\" starts the built-in emulator")
    handshake_timeout_s: float = setting(0.5, gt=0, le=10, unit="s",
                                         doc="wait this long for the op 72 handshake reply")
    reply_timeout_s: float = setting(0.5, gt=0, le=10, unit="s",
                                     doc="wait this long for confirm bytes and other replies")
    confirm_trigger: bool = setting(
        True, doc="follow each soft trigger with a handshake to confirm the device took it "
                  "(adds one round trip per pulse)")
    ttl_max_v: float = setting(
        0.0, ge=0, le=5.0, unit="V",
        doc="declared mapping for policy.pulse.modality = \"ttl\": the output drives a "
            "logic (trigger) input, so TTL pulses are monophasic and at most this many volts;"
            " 0 = not declared, and a ttl spec is refused at start (Pulse Pal makes +-10 V "
            "analog output, so a ttl spec alone says nothing about what reaches the tissue)")
    opto_mw_per_v: float = setting(
        0.0, ge=0, le=1000, unit="mW/V",
        doc="calibration for policy.pulse.modality = \"optogenetic\": light power at the "
            "fibre tip per volt of Pulse Pal output into the LED/laser driver's analog input"
            " (measure with a power meter); pulses in mW are sent as mW / this; 0 = not "
            "calibrated, and an optogenetic spec is refused at start")


@dataclass(frozen=True)
class StimBoxSettings:
    """``[stimulators.stimbox]``: the engramloop stim box on a serial port."""

    port: str = setting("", doc="serial port, e.g. /dev/ttyACM0 (override with --stim-port);"
                                " \"emulator\" starts the built-in emulator")
    handshake_timeout_s: float = setting(0.5, gt=0, le=10, unit="s",
                                         doc="wait this long for the STATUS reply at open")
    ack_timeout_s: float = setting(0.1, gt=0, le=5, unit="s",
                                   doc="a command without ACK/NACK after this long means "
                                       "the device is gone")
    heartbeat_interval_s: float = setting(
        0.02, gt=0, le=0.05, unit="s",
        doc="HEARTBEAT period; the device disarms after 100 ms without one")
    click_full_scale_db_spl: float = setting(
        90.0, gt=0, le=140, unit="dB SPL",
        doc="sound level of the click output at full scale (measure with a sound-level "
            "meter at the subject's ear)")
    opto_mw_when_high: float = setting(
        0.0, ge=0, le=1000, unit="mW",
        doc="for policy.pulse.modality = \"optogenetic\": the light power at the fibre tip "
            "while a TTL line is high (set on the LED/laser driver, measured with a power "
            "meter); the pulse amplitude must equal it; 0 = not declared, and an "
            "optogenetic spec is refused at start")


@dataclass(frozen=True)
class LslMarkerSettings:
    """``[stimulators.lsl_markers]``: an LSL outlet of JSON string markers."""

    stream_name: str = setting("engramloop-pulses", doc="LSL stream name")
    source_id: str = setting("engramloop-pulses", doc="LSL source_id")


@dataclass(frozen=True)
class BrainFlowMarkerSettings:
    """``[stimulators.brainflow_marker]``: markers into the BrainFlow source's board."""

    marker_offset: float = setting(1.0, gt=0, doc="marker value = pulse_id + marker_offset "
                                                  "(BrainFlow markers must be non-zero)")


@dataclass(frozen=True)
class StimulatorsSettings:
    """``[stimulators]``: which outputs receive approved pulses."""

    kinds: tuple[Kind, ...] = setting(
        ("sham",), doc="outputs to drive, several allowed: pulsepal, stimbox, lsl-markers, "
                       "brainflow-marker, sham (the default stimulates nothing)")
    pulsepal: PulsePalSettings = field(default_factory=PulsePalSettings)
    stimbox: StimBoxSettings = field(default_factory=StimBoxSettings)
    lsl_markers: LslMarkerSettings = field(default_factory=LslMarkerSettings)
    brainflow_marker: BrainFlowMarkerSettings = field(default_factory=BrainFlowMarkerSettings)
    fault_rearm_after_s: float = setting(
        0.0, ge=0, le=3600, unit="s",
        doc="after a device fault (a refused pulse, a device that disarmed itself), re-arm "
            "once the device has reported healthy for this long (logged; at most "
            "fault_max_rearms times a run); 0 = never: a device fault ends the run with "
            "one line and exit status 2 (the default)")
    fault_max_rearms: int = setting(
        3, ge=0, le=100, unit="re-arms",
        doc="with fault_rearm_after_s > 0: re-arms allowed per run; the next fault ends it")

    def validate(self) -> None:
        if not self.kinds:
            raise ValueError("kinds: list at least one output (\"sham\" stimulates nothing)")
        dup = sorted({k for k in self.kinds if self.kinds.count(k) > 1})
        if dup:
            raise ValueError(f"kinds: {', '.join(dup)} listed twice")


__all__ = ["StimulatorsSettings", "PulsePalSettings", "StimBoxSettings", "LslMarkerSettings",
           "BrainFlowMarkerSettings", "EMULATOR"]
