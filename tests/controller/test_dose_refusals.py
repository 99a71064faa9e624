"""Issue 19 points 2-5: what the governor cannot bound is refused at start with one line
naming the key to set, and the floors cannot be configured away. Each test here passed
the old code's checks (it started, or accepted the config)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engramloop.cli import main
from engramloop.controller.build import build_loop
from engramloop.controller.build_outputs import check_outputs_can_play, make_outputs
from engramloop.controller.config import SHIPPED_DIR, load_config, loads_config
from engramloop.controller.governor import (
    REFRACTORY_FLOOR_S,
    SESSION_CAP_CEILING,
    Governor,
    SafetySettings,
    max_charge_rate_uc_s,
)
from engramloop.core.pulse import Pulse, PulseSpec
from engramloop.core.schema import ConfigError

ROOT = Path(__file__).resolve().parents[2]

PULSEPAL_EMULATOR = '[stimulators]\nkinds = ["pulsepal"]\n[stimulators.pulsepal]\n' \
                    'port = "emulator"\n'
STIMBOX_EMULATOR = PULSEPAL_EMULATOR.replace("pulsepal", "stimbox")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """A real ``engramloop`` process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-m", "engramloop", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------ points 2 and 3
@pytest.mark.parametrize("pulse,key", [
    # the issue's spec: ttl, biphasic, 10 V, 10 ms (the old code played +-10 V pulses)
    ('modality = "ttl"\nshape = "biphasic"\namplitude = 10.0\nphase_width_s = 0.01\n',
     "stimulators.pulsepal.ttl_max_v"),
    # 10 mW of light (the old code programmed +10 V, DAC 65535)
    ('modality = "optogenetic"\namplitude = 10.0\nphase_width_s = 0.01\n',
     "stimulators.pulsepal.opto_mw_per_v"),
    # the stim box gates a light source: its power must be declared (the old code sent
    # 3 mW as a 3 V TTL line, whatever the light source was set to)
    ('modality = "optogenetic"\namplitude = 3.0\nphase_width_s = 0.01\n',
     "stimulators.stimbox.opto_mw_when_high"),
])
def test_spec_without_declared_mapping_is_refused_at_start(tmp_path, pulse, key):
    cfg = tmp_path / "c.toml"
    device = STIMBOX_EMULATOR if "stimbox" in key else PULSEPAL_EMULATOR
    cfg.write_text(f"[policy.pulse]\n{pulse}{device}")
    r = cli("run", str(cfg), "--duration", "2", "--quiet")
    assert r.returncode == 2
    line = one_line(r.stderr)
    # the config file is named first (a check made while building the run)
    assert line.startswith(f"ConfigError: {cfg}: {key}: ") and f"set {key}" in line


def test_declared_mappings_reach_the_emulator_converted_and_bounded():
    """With the keys set, the Pulse Pal emulator plays 10 mW as 2.5 V (4 mW/V) and a ttl
    pulse as a monophasic logic level; a biphasic ttl spec is still refused at start."""
    c = loads_config(PULSEPAL_EMULATOR + "ttl_max_v = 5.0\nopto_mw_per_v = 4.0\n")
    (out,) = make_outputs(c)
    out.open()
    try:
        out.arm()
        t = time.monotonic()
        light = PulseSpec(modality="optogenetic", amplitude=10.0, phase_width_s=0.01)
        assert out.send(Pulse(1, "ripple", light, t, t, t + 1)).status == "acked"
        ttl = PulseSpec(modality="ttl", amplitude=3.3, phase_width_s=0.001, channel=2)
        assert out.send(Pulse(2, "ripple", ttl, t, t, t + 1)).status == "acked"
        end = time.monotonic() + 5
        while len(out.emulator.edges) < 2 and time.monotonic() < end:
            time.sleep(0.005)
        by_ch = {e.channel: e.params for _, e in out.emulator.edges}
    finally:
        out.close()
    assert by_ch[1]["phase1_v"] == pytest.approx(2.5, abs=1e-3) and not by_ch[1]["biphasic"]
    assert by_ch[2]["phase1_v"] == pytest.approx(3.3, abs=1e-3) and not by_ch[2]["biphasic"]
    bad = dataclasses.replace(c, policy=dataclasses.replace(c.policy, pulse=dataclasses.replace(
        c.policy.pulse, modality="ttl", shape="biphasic", amplitude=5.0)))
    with pytest.raises(ConfigError, match=r"^policy\.pulse: .*monophasic"):
        build_loop(bad)


def test_stimbox_light_must_be_the_declared_power():
    base = loads_config('[policy.pulse]\nmodality = "optogenetic"\namplitude = 3.0\n'
                        'phase_width_s = 0.01\n' + STIMBOX_EMULATOR + "opto_mw_when_high = 3.0\n")
    check_outputs_can_play(base)
    wrong = dataclasses.replace(base, stimulators=dataclasses.replace(
        base.stimulators, stimbox=dataclasses.replace(base.stimulators.stimbox,
                                                      opto_mw_when_high=8.0)))
    with pytest.raises(ConfigError, match=r"^policy\.pulse: .*set to 8 mW"):
        check_outputs_can_play(wrong)


def test_a_train_the_governor_always_refuses_is_refused_at_start(tmp_path):
    """A 1000-pulse train at 1 kHz against 3 pulses/s can never be delivered; the old code
    started and approved it as one pulse (issue 19 point 1)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[policy.pulse]\nmodality = "electrical"\nshape = "biphasic"\n'
                   'amplitude = 1.0\nphase_width_s = 0.0001\ntrain_count = 1000\n'
                   'train_interval_s = 0.001\n')
    r = cli("run", str(cfg), "--duration", "2", "--quiet")
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert line.startswith(f"ConfigError: {cfg}: policy.pulse: every stimulus would be "
                           "refused (rate")
    assert "safety.rate_max_pulses" in line


# ------------------------------------------------------------------ point 4
def test_replay_stimulate_refuses_speeds_other_than_1(tmp_path):
    """The old code replayed at N x and let N x the rate reach the device (the issue: 9
    pulses in one wall-clock second against 3/s)."""
    rec = tmp_path / "s.npz"
    assert main(["sim", "--duration", "3", "--out", str(rec), "--config",
                 str(SHIPPED_DIR / "sim-ripple.toml")]) == 0
    cfg = tmp_path / "c.toml"
    text = (SHIPPED_DIR / "sim-ripple.toml").read_text()
    for a, b in (('kinds = ["sham"]', 'kinds = ["stimbox"]'),       # 5 V TTL into the box
                 ('modality = "optogenetic"', 'modality = "ttl"'),
                 ("amplitude = 10.0            # mW at the fibre tip", "amplitude = 5.0")):
        assert a in text
        text = text.replace(a, b)
    cfg.write_text(text + '\n[stimulators.stimbox]\nport = "emulator"\n')
    assert load_config(cfg).stimulators.kinds == ("stimbox",)
    for speed in ("4", "0.5", "max"):
        r = cli("replay", str(cfg), str(rec), "--stimulate", "--speed", speed, "--quiet")
        assert r.returncode == 2, r.stderr
        assert one_line(r.stderr).startswith(f"error: --stimulate needs --speed 1 (got "
                                             f"{speed})")
    # the loop refuses on its own too (a Python caller bypassing the CLI)
    c = load_config(cfg)
    c = dataclasses.replace(c, source=dataclasses.replace(c.source, kind="file"))
    with pytest.raises(ConfigError, match=r"stimulators\.kinds: stimbox .* 2 x real time"):
        build_loop(c, speed=2, path=str(rec))
    build_loop(c, speed=1, path=str(rec))   # real time: limits hold in wall-clock seconds
    # sham at N x is fine: nothing is sent
    sham = dataclasses.replace(c, policy=dataclasses.replace(c.policy, condition="sham"))
    build_loop(sham, speed=2, path=str(rec))


# ------------------------------------------------------------------ point 5
@pytest.mark.parametrize("toml,match", [
    ("rate_window_s = []\nrate_max_pulses = []\nrefractory_s = 1e-9\n",
     r"safety\.refractory_s: must be >= 0\.05"),
    ("rate_window_s = []\nrate_max_pulses = []\n",
     r"safety\.rate_window_s: at least one rate window is required"),
    ("rate_window_s = [0.5]\nrate_max_pulses = [1]\n",
     r"safety\.rate_window_s: at least one window must be >= 1\.0 s"),
    (f"max_pulses_per_session = {SESSION_CAP_CEILING + 1}\n",
     r"safety\.max_pulses_per_session: must be <= 1000000"),
    ("max_charge_per_s_uc = 1000.0\n", r"safety\.max_charge_per_s_uc: 1000\.0 uC/s exceeds"),
])
def test_floors_cannot_be_configured_away(toml, match):
    with pytest.raises(ConfigError, match=match) as exc:
        loads_config("[safety]\n" + toml)
    assert "\n" not in str(exc.value)


def test_floors_hold_for_settings_made_in_code():
    for bad in (dict(rate_window_s=(), rate_max_pulses=()),
                dict(refractory_s=1e-9),
                dict(max_pulses_per_session=SESSION_CAP_CEILING + 1),
                dict(max_charge_per_s_uc=2 * max_charge_rate_uc_s(0.01))):
        with pytest.raises(ValueError):
            Governor(SafetySettings(**bad))
    assert Governor(SafetySettings(refractory_s=REFRACTORY_FLOOR_S)).settings.refractory_s \
        == REFRACTORY_FLOOR_S


def test_cli_refuses_the_issue_config_in_one_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[safety]\nrate_window_s = []\nrate_max_pulses = []\nrefractory_s = 1e-9\n")
    r = cli("run", str(cfg), "--duration", "1", "--quiet")
    assert r.returncode == 2
    assert one_line(r.stderr).startswith("ConfigError: ") and "refractory_s" in r.stderr
