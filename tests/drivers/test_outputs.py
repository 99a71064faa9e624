"""make_outputs and the [stimulators] section: defaults are off (sham), config errors are
one line naming the key, --stim-port overrides the serial port, emulated stimulators hand
delivered pulses to the simulator, and every output is off after close() on every path."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from engramloop.controller.build_outputs import make_outputs
from engramloop.controller.config import SHIPPED_DIR, Config, load_config, loads_config
from engramloop.core.pulse import DeviceError, Pulse, PulseSpec
from engramloop.core.schema import ConfigError
from engramloop.drivers.markers import LslMarkerOutput, ShamOutput
from engramloop.drivers.pulsepal import PulsePal
from engramloop.drivers.stimbox import StimBox
from engramloop.drivers.stimbox.protocol import DisarmCause
from engramloop.sim.loopback import EmulatedOutput

ROOT = Path(__file__).resolve().parents[2]


def pulse(i: int, **spec) -> Pulse:
    t = time.monotonic()
    return Pulse(i, "ripple", PulseSpec(**spec), t, t, t + 1.0)


def stop_confirmed(ops: list[int]) -> bool:
    """The last stop-all (op 80) was followed by a handshake (op 72) the driver read."""
    if 80 not in ops:
        return False
    i = len(ops) - 1 - ops[::-1].index(80)
    return ops[i + 1:i + 2] == [72]


def wait_for(cond, timeout_s: float = 5.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


class FeltPulses:
    """Stand-in for sim.source.SimSource.stimulate (records what the emulator delivered);
    the simulator's own feedback is tested with the simulator."""

    def __init__(self) -> None:
        self.calls = []

    def stimulate(self, t_s, spec, target):
        self.calls.append((t_s, spec, target))


def cfg(text: str) -> Config:
    return loads_config(text)


def test_default_is_a_single_sham_output():
    outs = make_outputs(Config())
    assert len(outs) == 1 and isinstance(outs[0], ShamOutput)


def test_kinds_build_in_order_and_stim_port_overrides():
    c = cfg('[stimulators]\nkinds = ["stimbox", "lsl-markers", "sham"]\n'
            '[stimulators.stimbox]\nport = "/dev/ttyACM0"\nack_timeout_s = 0.2\n')
    outs = make_outputs(c)
    assert [type(o) for o in outs] == [StimBox, LslMarkerOutput, ShamOutput]
    assert outs[0].port == "/dev/ttyACM0" and outs[0].ack_timeout_s == 0.2
    assert make_outputs(c, stim_port="/dev/ttyACM7")[0].port == "/dev/ttyACM7"
    pp = make_outputs(cfg('[stimulators]\nkinds = ["pulsepal"]\n'), stim_port="COM3")[0]
    assert isinstance(pp, PulsePal) and pp.port == "COM3"


@pytest.mark.parametrize("text,stim_port,match", [
    ('[stimulators]\nkinds = ["stimbox"]\n', None, "stimulators.stimbox.port: empty"),
    ('[stimulators]\nkinds = ["pulsepal", "stimbox"]\n', "/dev/x", "ambiguous"),
    ('[stimulators]\nkinds = ["sham"]\n', "/dev/x", "no serial stimulator"),
    ('[stimulators]\nkinds = ["brainflow-marker"]\n', None, "source.kind"),
])
def test_make_outputs_errors_name_the_key(text, stim_port, match):
    with pytest.raises(ConfigError, match=match):
        make_outputs(cfg(text), stim_port=stim_port)


@pytest.mark.parametrize("text,match", [
    ('[stimulators]\nkinds = []\n', "stimulators.kinds: list at least one"),
    ('[stimulators]\nkinds = ["laser"]\n', "stimulators.kinds\\[0\\]: must be one of"),
    ('[stimulators.stimbox]\nheartbeat_interval_s = 0.2\n',
     "stimulators.stimbox.heartbeat_interval_s: must be <= 0.05"),
    ('[stimulators.pulsepal]\nbaud = 9600\n', "stimulators.pulsepal.baud: unknown key"),
])
def test_schema_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        cfg(text)


@pytest.mark.parametrize("name", ["pulsepal-rig.toml", "stimbox-rig.toml"])
def test_example_configs_load(name):
    c = load_config(SHIPPED_DIR / name)
    outs = make_outputs(c, stim_port=None) if "pulsepal" in name else None
    assert c.stimulators.kinds[0] in ("pulsepal", "stimbox")
    if outs:
        assert outs[0].port == "/dev/ttyACM0"


@pytest.mark.parametrize("kind", ["stimbox", "pulsepal"])
def test_emulated_stimulator_hands_pulses_to_the_simulator(kind):
    felt = FeltPulses()
    c = cfg(f'[stimulators]\nkinds = ["{kind}"]\n[stimulators.{kind}]\nport = "emulator"\n')
    (out,) = make_outputs(c, sim_source=felt)
    assert isinstance(out, EmulatedOutput)
    out.open()
    try:
        out.arm()
        spec = dict(modality="electrical", amplitude=3.0 if kind == "pulsepal" else 5.0,
                    phase_width_s=0.0001, train_count=3, train_interval_s=0.01, channel=2)
        d = out.send(pulse(7, **spec))
        assert d.status == "acked"
        wait_for(lambda: len(out.emulator.edges) == 3, what="3 edges")
        # one stimulate() per pulse (the train's first edge), at the device's edge time
        assert len(felt.calls) == 1
        t, got_spec, target = felt.calls[0]
        assert got_spec == PulseSpec(**spec) and target == "ripple"
        # the stim box acks after its edge; Pulse Pal confirms the trigger on receipt and
        # plays it on its next 50 us cycle (its 20 kHz update loop), so its edge may come
        # up to one cycle after the ack reached the host
        cycle_s = 50e-6 if kind == "pulsepal" else 0.0
        assert t == out.emulator.edges[0][0] and d.sent_s <= t <= d.ack_s + cycle_s
    finally:
        out.close()
    assert out.emulator is None


def _open_armed(kind: str):
    c = cfg(f'[stimulators]\nkinds = ["{kind}"]\n' + (
        f'[stimulators.{kind}]\nport = "emulator"\n' if kind in ("stimbox", "pulsepal")
        else ""))
    (out,) = make_outputs(c)
    out.open()
    out.arm()
    return out


@pytest.mark.parametrize("kind", ["sham", "lsl-markers", "stimbox", "pulsepal"])
def test_off_after_close_on_the_normal_path(kind):
    out = _open_armed(kind)
    dev = out.emulator.device if isinstance(out, EmulatedOutput) else None
    out.close()
    out.close()  # idempotent
    with pytest.raises(DeviceError):
        out.send(pulse(1))
    if kind == "stimbox":
        assert not dev.armed and dev.disarm_cause == DisarmCause.HOST
        assert dev.all_outputs_low()
    if kind == "pulsepal":
        assert stop_confirmed(dev.ops)  # stop all, confirmed by a handshake


@pytest.mark.parametrize("kind", ["sham", "stimbox", "pulsepal"])
def test_off_after_close_when_the_run_raised(kind):
    dev = None
    with pytest.raises(RuntimeError, match="boom"):
        out = _open_armed(kind)
        dev = out.emulator.device if isinstance(out, EmulatedOutput) else None
        try:
            out.send(pulse(1, modality="electrical", amplitude=2.0))
            raise RuntimeError("boom")
        finally:
            out.close()
    if kind == "stimbox":
        assert not dev.armed and dev.all_outputs_low()
    if kind == "pulsepal":
        assert stop_confirmed(dev.ops)


def test_disarm_blocks_sends_without_closing():
    out = _open_armed("stimbox")
    try:
        out.disarm()
        assert not out.emulator.device.armed
        assert out.send(pulse(1)).status == "failed"
        assert out.emulator.device.edges_fired == 0
    finally:
        out.close()


@pytest.mark.parametrize("kind", ["stimbox", "pulsepal"])
def test_simulator_errors_from_the_emulator_thread_surface_on_the_next_send(kind):
    class Refuses:
        def stimulate(self, t_s, spec, target):
            raise ValueError(f"unknown target {target!r}")

    c = cfg(f'[stimulators]\nkinds = ["{kind}"]\n[stimulators.{kind}]\nport = "emulator"\n')
    (out,) = make_outputs(c, sim_source=Refuses())
    out.open()
    try:
        out.arm()
        assert out.send(pulse(1, modality="electrical", amplitude=2.0)).status == "acked"
        wait_for(lambda: out.emulator.callback_errors, what="callback error")
        with pytest.raises(ValueError, match="unknown target 'ripple'"):
            out.send(pulse(2, modality="electrical", amplitude=2.0))
    finally:
        out.close()


def test_emulated_stimbox_click_reaches_the_simulator():
    felt = FeltPulses()
    c = cfg('[stimulators]\nkinds = ["stimbox"]\n[stimulators.stimbox]\nport = "emulator"\n')
    (out,) = make_outputs(c, sim_source=felt)
    out.open()
    try:
        out.arm()
        d = out.send(pulse(3, modality="auditory", amplitude=50.0, phase_width_s=0.05))
        assert d.status == "acked"
        wait_for(lambda: felt.calls, what="click fed back")
        (_, e), = out.emulator.edges
        assert e.channel == 5 and e.params["shape"] == "click"
        assert felt.calls[0][1].modality == "auditory"
    finally:
        out.close()
