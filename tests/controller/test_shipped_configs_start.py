"""Every shipped config in configs/ starts against its emulated hardware (issue 18 point 5)
and runs its detectors for a few seconds:

- Cyton rigs: BrainFlow's real Cyton driver on a pty (sim/emulators/cyton_emulator.py)
  streaming real N2 sleep EEG, the stim box on its pty emulator and BrainFlow's own marker
  channel (stimbox-rig.toml failed at start: "brainflow-marker: no BrainFlow board session
  to mark", outputs were opened before the board session existed);
- LSL configs: a real pylsl outlet in another process (simulated CA1 LFP with ground-truth
  ripples for the Pulse Pal rig, real N2 EEG for lsl.toml), the Pulse Pal emulator;
- simulator configs at --speed max.

To see events within seconds, the tests shorten the detectors' calibration (a setting,
not the code path); everything else is the shipped file. Each real-time run stops once the
event it checks for has come (tests/run_until.py); its length is only a ceiling.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
from run_until import run_until
from shared_data import DATA

from engramloop.controller.build import build_loop
from engramloop.controller.config import load_config

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
pytestmark = [pytest.mark.realtime,
              pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
if not CONFIGS.is_dir():  # configs shipped as package data
    CONFIGS = Path(__file__).resolve().parents[2] / "src" / "engramloop" / "configs"


def _quick(cfg, calibration_s: float = 1.0):
    """The config with every detector calibrating for ``calibration_s`` only."""
    d = cfg.detectors
    det = dataclasses.replace(
        d, ripple=dataclasses.replace(d.ripple, calibration_s=calibration_s),
        spindle=dataclasses.replace(d.spindle, calibration_s=calibration_s),
        so=dataclasses.replace(d.so, calibration_s=calibration_s))
    return dataclasses.replace(cfg, detectors=det)


def _kinds(events) -> set[str]:
    return {e.kind for e in events}


def _run_until_event(loop, kind: str, ceiling_s: float = 40.0):
    """Run ``loop`` in real time until its detectors report a ``kind`` event (the check
    of these tests), at most ``ceiling_s`` seconds of data."""
    res, met = run_until(loop, lambda: any(e.kind == kind for e in list(loop.result.events)),
                         ceiling_s, reason=f"test: a {kind} event came")
    assert met, f"no {kind} event within {ceiling_s} s ({res.stop_reason}; {res.error})"
    return res


def _n2_eeg_v() -> tuple[np.ndarray, float]:
    """Real N2 sleep EEG with spindles (YASA example, 15 s at 200 Hz), volts, twice over,
    starting 7 s in: offline, the spindle detector (calibrating 1 s) finds its first
    spindle 6 s into this (scoring.replay), so a live run sees one ~6 s in (40 s is the
    ceiling for a busy machine that delivers the samples slowly)."""
    x = np.loadtxt(DATA / "data_N2_spindles_15sec_200Hz.txt") * 1e-6
    return np.roll(np.tile(x, 2), -7 * 200), 200.0


# ---------------------------------------------------------------- Cyton (BrainFlow)
@pytest.mark.parametrize("name", ["cyton-rig.toml", "stimbox-rig.toml"])
def test_cyton_rig_configs_start_on_brainflow_cyton_driver(name: str, tmp_path) -> None:
    pytest.importorskip("brainflow")
    import pyxdf

    from engramloop.sim.emulators.cyton_emulator import CytonEmulator, to_cyton_signal

    eeg, fs = _n2_eeg_v()
    one = to_cyton_signal(eeg, fs)[:, 0]             # 250 Hz, the Cyton's rate
    sig = np.zeros((one.size, 8))
    sig[:, 0] = one                                   # Fp1
    sig[:, 2] = one                                   # C3
    cfg = _quick(load_config(CONFIGS / name))
    rec = tmp_path / "rig.xdf"
    with CytonEmulator(sig) as emu:
        loop = build_loop(cfg, serial_port=emu.port, stim_port="emulator", record=str(rec))
        assert {type(d).__name__ for d in loop.detectors} == {"SpindleDetector",
                                                             "SlowOscDetector"}
        res = _run_until_event(loop, "spindle")   # the first spindle is 6 s in
    assert res.error == "" and res.n_samples > 1000
    assert "spindle" in _kinds(res.events)            # the N2 EEG carries spindles
    streams, _ = pyxdf.load_xdf(str(rec), dejitter_timestamps=False)
    raw = next(s for s in streams if s["info"]["name"][0] == "engramloop.raw")
    labels = [c["label"][0] for c in raw["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels == ["Fp1", "C3"]


# ---------------------------------------------------------------- LSL
OUTLET = textwrap.dedent("""
    import sys, time, json
    import numpy as np, pylsl
    path, name, stype, rate, labels, unit = (sys.argv[1], sys.argv[2], sys.argv[3],
                                             float(sys.argv[4]), json.loads(sys.argv[5]),
                                             sys.argv[6])
    x = np.load(path)
    info = pylsl.StreamInfo(name, stype, x.shape[1], rate, "float32", name + "-id")
    chans = info.desc().append_child("channels")
    for lab in labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", lab)
        ch.append_child_value("unit", unit)
    out = pylsl.StreamOutlet(info, chunk_size=10)
    print("up", flush=True)
    t0, k = pylsl.local_clock(), 0
    while True:
        due = t0 + (k + 10) / rate
        time.sleep(max(0.0, due - pylsl.local_clock()))
        i = np.arange(k, k + 10) % x.shape[0]
        out.push_chunk(x[i].astype(np.float32).tolist())
        k += 10
""")


class Outlet:
    """A real pylsl outlet in another process streaming ``x`` (n, c) in real time."""

    def __init__(self, x: np.ndarray, tmp: Path, *, rate: float, labels: list[str],
                 stype: str = "EEG", unit: str = "microvolts") -> None:
        import json

        self.name = f"engramloop-cfg-{uuid.uuid4().hex[:10]}"
        path = tmp / f"{self.name}.npy"
        np.save(path, np.asarray(x, dtype=np.float64))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", OUTLET, str(path), self.name, stype, str(rate),
             json.dumps(labels), unit], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        assert self.proc.stdout.readline().strip() == "up"

    def __enter__(self) -> Outlet:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def test_lsl_config_starts_on_a_real_outlet(tmp_path) -> None:
    pytest.importorskip("pylsl")
    eeg, fs = _n2_eeg_v()
    x = np.column_stack([eeg, eeg * 0.5]) * 1e6       # microvolts, as the stream declares
    cfg = _quick(load_config(CONFIGS / "lsl.toml"))
    with Outlet(x, tmp_path, rate=fs, labels=["Cz", "Fz"]) as out:
        loop = build_loop(cfg, stream=out.name)
        res = _run_until_event(loop, "spindle")   # the first spindle is 6 s in
    assert res.error == ""
    assert [type(d).__name__ for d in loop.detectors] == ["SpindleDetector"]
    assert "spindle" in _kinds(res.events)


def test_pulsepal_rig_config_starts_on_a_real_outlet_and_the_emulator(tmp_path) -> None:
    pytest.importorskip("pylsl")
    from engramloop.controller.config import Config
    from engramloop.sim.generate import simulate

    sim = Config().sim
    sim = dataclasses.replace(sim, hypnogram=dataclasses.replace(sim.hypnogram,
                                                                 schedule=("N3:600",)))
    x, _, truth = simulate(sim, seed=3, duration_s=20.0)
    ca1 = x[:, list(truth.channels).index("CA1")] * 1e6
    cfg = _quick(load_config(CONFIGS / "pulsepal-rig.toml"))
    with Outlet(ca1[:, None], tmp_path, rate=truth.rate_hz, labels=["CA1"],
                stype="EEG") as out:
        loop = build_loop(cfg, stream=out.name, stim_port="emulator")
        res = _run_until_event(loop, "ripple")
    assert res.error == ""
    assert [type(d).__name__ for d in loop.detectors] == ["RippleDetector"]
    assert "ripple" in _kinds(res.events)             # the simulated LFP carries ripples


# ---------------------------------------------------------------- simulator
SIM = {"sim-ripple.toml": "ripple", "sim-ripple-laminar.toml": "ripple",
       "sim-ripple-forecast.toml": "ripple", "sim-so.toml": "so", "demo-uplift.toml": "ripple"}


def test_every_shipped_config_is_covered() -> None:
    covered = set(SIM) | {"cyton-rig.toml", "stimbox-rig.toml", "lsl.toml",
                          "pulsepal-rig.toml"}
    assert {p.name for p in CONFIGS.glob("*.toml")} == covered


@pytest.mark.parametrize("name", sorted(SIM))
def test_sim_configs_start_and_detect(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    loop = build_loop(cfg, speed="max", duration_s=15.0)
    assert loop.detectors
    res = loop.run(15.0)
    assert res.error == "" and SIM[name] in _kinds(res.events)
