"""Build the outputs a Config's ``[stimulators]`` lists (:func:`make_outputs`) and refuse at
start a pulse a configured device cannot play (:func:`check_outputs_can_play`).

Part of the composition root (:mod:`engramloop.controller.build`): the one place that
knows both the drivers and the simulator's emulators. A serial port of ``"emulator"``
starts the matching emulator (``sim/emulators``) on a pseudo-terminal when the output
opens, and stops it when it closes; with a ``sim_source`` every emulated output edge is
handed back to ``sim_source.stimulate`` (:class:`engramloop.sim.loopback.EmulatedOutput`).
"""
from __future__ import annotations

from typing import Any

from engramloop.controller.config import Config
from engramloop.core.pulse import Output
from engramloop.core.schema import ConfigError
from engramloop.drivers.brainflow_source import board_id
from engramloop.drivers.markers import (
    BrainFlowBoardRef,
    BrainFlowMarkerOutput,
    LslMarkerOutput,
    ShamOutput,
)
from engramloop.drivers.outputs import EMULATOR
from engramloop.drivers.pulsepal import PulsePal, spec_to_params
from engramloop.drivers.stimbox.host import StimBox, spec_to_command
from engramloop.sim.emulators.pulsepal_emulator import PulsePalEmulator
from engramloop.sim.emulators.stimbox_emulator import StimBoxEmulator
from engramloop.sim.loopback import EmulatedOutput


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
            s = st.pulsepal
            port = _serial_port(s.port, stim_port, "stimulators.pulsepal.port")
            pp = PulsePal(port, handshake_timeout_s=s.handshake_timeout_s,
                          reply_timeout_s=s.reply_timeout_s, confirm_trigger=s.confirm_trigger,
                          ttl_max_v=s.ttl_max_v, opto_mw_per_v=s.opto_mw_per_v)
            if port == EMULATOR:
                outputs.append(EmulatedOutput(
                    pp, lambda on_edge: PulsePalEmulator(on_edge=on_edge), sim_source))
            else:
                outputs.append(pp)
        elif kind == "stimbox":
            s = st.stimbox
            port = _serial_port(s.port, stim_port, "stimulators.stimbox.port")
            sb = StimBox(port, handshake_timeout_s=s.handshake_timeout_s,
                         ack_timeout_s=s.ack_timeout_s,
                         heartbeat_interval_s=s.heartbeat_interval_s,
                         click_full_scale_db_spl=s.click_full_scale_db_spl,
                         opto_mw_when_high=s.opto_mw_when_high)
            if port == EMULATOR:
                outputs.append(EmulatedOutput(
                    sb, lambda on_edge: StimBoxEmulator(on_edge=on_edge), sim_source))
            else:
                outputs.append(sb)
        elif kind == "lsl-markers":
            outputs.append(LslMarkerOutput(st.lsl_markers.stream_name,
                                           st.lsl_markers.source_id))
        elif kind == "brainflow-marker":
            outputs.append(BrainFlowMarkerOutput(_brainflow_board(cfg, source),
                                                 marker_offset=st.brainflow_marker.marker_offset))
        else:
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


__all__ = ["make_outputs", "check_outputs_can_play"]
