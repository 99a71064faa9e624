"""Stimulator settings (``[stimulators]``) and :func:`make_outputs`, which turns a Config
into the list of outputs the scheduler sends every approved pulse to.

Kinds: ``pulsepal`` (Sanworks Pulse Pal), ``stimbox`` (the engramloop stim box),
``lsl-markers`` (LSL string markers), ``brainflow-marker`` (in-band BrainFlow marker),
``sham`` (logs only). Several may be listed; the default is a single ``sham`` output, so a
config that says nothing stimulates nothing.

A serial port of ``"emulator"`` starts the matching emulator (``sim/``) on a
pseudo-terminal when the output opens, and stops it when it closes; with a ``sim_source``
every emulated output edge is handed back to ``sim_source.stimulate`` so a closed-loop
simulation feels the pulses the device actually produced.

This module stays light: pyserial, pylsl, BrainFlow and the emulators are imported only
when an output of that kind is made or opened.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from engramloop.core.pulse import Delivery, Output, Pulse
from engramloop.core.schema import ConfigError, setting

if TYPE_CHECKING:  # pragma: no cover
    from engramloop.controller.config import Config

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


def _serial_port(cfg_port: str, stim_port: str | None, key: str) -> str:
    port = stim_port or cfg_port
    if not port:
        raise ConfigError("", key, "empty: set the stimulator's serial port, pass --stim-port "
                                   "PORT, or use \"emulator\"")
    return port


def make_outputs(cfg: Config, *, stim_port: str | None = None, sim_source: Any = None,
                 source: Any = None) -> list[Output]:
    """Build (not open) the outputs listed in ``cfg.stimulators.kinds``, in that order.

    Parameters
    ----------
    cfg : Config
    stim_port : str, optional
        Overrides the serial port of the one serial stimulator (pulsepal or stimbox)
        configured (``--stim-port``).
    sim_source : SimSource, optional
        For emulated stimulators: receives every delivered pulse (closed-loop simulation).
    source : Source, optional
        The running source; a ``brainflow-marker`` output marks its BrainFlow board.

    Raises
    ------
    ConfigError
        A serial stimulator without a port, ``--stim-port`` with two serial stimulators.
    """
    st = cfg.stimulators
    serial_kinds = [k for k in st.kinds if k in ("pulsepal", "stimbox")]
    if stim_port and len(serial_kinds) > 1:
        raise ConfigError("", "stimulators.kinds", "--stim-port is ambiguous with both "
                                                   "pulsepal and stimbox; set each port in "
                                                   "the config instead")
    if stim_port and not serial_kinds:
        raise ConfigError("", "stimulators.kinds", "--stim-port given but no serial "
                                                   "stimulator (pulsepal or stimbox) listed")
    outputs: list[Output] = []
    for kind in st.kinds:
        if kind == "pulsepal":
            from engramloop.drivers.pulsepal import PulsePal

            s = st.pulsepal
            port = _serial_port(s.port, stim_port, "stimulators.pulsepal.port")
            pp = PulsePal(port, handshake_timeout_s=s.handshake_timeout_s,
                          reply_timeout_s=s.reply_timeout_s, confirm_trigger=s.confirm_trigger,
                          ttl_max_v=s.ttl_max_v, opto_mw_per_v=s.opto_mw_per_v)
            if port == EMULATOR:
                from engramloop.sim.emulators.pulsepal_emulator import PulsePalEmulator

                outputs.append(EmulatedOutput(
                    pp, lambda on_edge: PulsePalEmulator(on_edge=on_edge), sim_source))
            else:
                outputs.append(pp)
        elif kind == "stimbox":
            from engramloop.drivers.stimbox.host import StimBox

            s = st.stimbox
            port = _serial_port(s.port, stim_port, "stimulators.stimbox.port")
            sb = StimBox(port, handshake_timeout_s=s.handshake_timeout_s,
                         ack_timeout_s=s.ack_timeout_s,
                         heartbeat_interval_s=s.heartbeat_interval_s,
                         click_full_scale_db_spl=s.click_full_scale_db_spl,
                         opto_mw_when_high=s.opto_mw_when_high)
            if port == EMULATOR:
                from engramloop.sim.emulators.stimbox_emulator import StimBoxEmulator

                outputs.append(EmulatedOutput(
                    sb, lambda on_edge: StimBoxEmulator(on_edge=on_edge), sim_source))
            else:
                outputs.append(sb)
        elif kind == "lsl-markers":
            from engramloop.drivers.markers import LslMarkerOutput

            outputs.append(LslMarkerOutput(st.lsl_markers.stream_name,
                                           st.lsl_markers.source_id))
        elif kind == "brainflow-marker":
            from engramloop.drivers.markers import BrainFlowMarkerOutput

            outputs.append(BrainFlowMarkerOutput(_brainflow_board(cfg, source),
                                                 marker_offset=st.brainflow_marker.marker_offset))
        else:
            from engramloop.drivers.markers import ShamOutput

            outputs.append(ShamOutput())
    return outputs


def check_outputs_can_play(cfg: Config) -> None:
    """Refuse at start a pulse spec a configured stimulator cannot play as the governor
    counts it; each device's own encoder is the judge.

    Raises
    ------
    ConfigError
        One line naming the key to set: ``stimulators.pulsepal.ttl_max_v`` for a ttl spec
        into Pulse Pal's analog output without a declared logic level,
        ``stimulators.pulsepal.opto_mw_per_v`` for an optogenetic spec (mW) without the
        light source's calibration, else ``policy.pulse`` with the device's reason.
    """
    spec = cfg.policy.pulse.spec()
    st = cfg.stimulators
    if "pulsepal" in st.kinds:
        from engramloop.drivers.pulsepal import spec_to_params

        key = "policy.pulse"
        if spec.modality == "ttl" and not st.pulsepal.ttl_max_v > 0:
            key = "stimulators.pulsepal.ttl_max_v"
        elif spec.modality == "optogenetic" and not st.pulsepal.opto_mw_per_v > 0:
            key = "stimulators.pulsepal.opto_mw_per_v"
        try:
            spec_to_params(spec, ttl_max_v=st.pulsepal.ttl_max_v,
                           opto_mw_per_v=st.pulsepal.opto_mw_per_v)
        except ValueError as exc:
            raise ConfigError("", key, f"Pulse Pal cannot deliver this pulse: {exc}") from None
    if "stimbox" in st.kinds:
        from engramloop.drivers.stimbox.host import spec_to_command

        key = "policy.pulse"
        if spec.modality == "optogenetic" and not st.stimbox.opto_mw_when_high > 0:
            key = "stimulators.stimbox.opto_mw_when_high"
        try:
            spec_to_command(spec, click_full_scale_db_spl=st.stimbox.click_full_scale_db_spl,
                            opto_mw_when_high=st.stimbox.opto_mw_when_high)
        except ValueError as exc:
            raise ConfigError("", key, f"the stim box cannot deliver this pulse: "
                                       f"{exc}") from None


def _brainflow_board(cfg: Config, source: Any) -> Any:
    """A callable giving the BoardShim to mark, resolved when the output opens."""
    if source is not None:
        # drivers.brainflow_source.BrainFlowSource keeps its session in ``_board``.
        return lambda: getattr(source, "_board", None)
    if cfg.source.kind != "brainflow":
        raise ConfigError("", "stimulators.kinds", "brainflow-marker needs source.kind = "
                                                   "\"brainflow\" (markers go into the board's "
                                                   "own stream)")

    def build() -> Any:
        # BrainFlow routes calls by (board id, input params): a handle with the same params
        # as the source's (drivers.brainflow_source.BrainFlowSource.start) reaches its
        # prepared session.
        from brainflow.board_shim import BrainFlowInputParams

        from engramloop.drivers.brainflow_source import board_id
        from engramloop.drivers.markers import BrainFlowBoardRef

        s = cfg.source.brainflow
        params = BrainFlowInputParams()
        params.serial_port = s.serial_port
        params.ip_address = s.ip_address
        params.ip_port = s.ip_port
        params.other_info = s.other_info
        params.timeout = s.timeout_s
        params.file = s.file
        if s.master_board:
            params.master_board = board_id(s.master_board)
        return BrainFlowBoardRef(board_id(s.board), params)

    return build


__all__ = ["StimulatorsSettings", "PulsePalSettings", "StimBoxSettings", "LslMarkerSettings",
           "BrainFlowMarkerSettings", "make_outputs", "EmulatedOutput",
           "check_outputs_can_play"]
