"""An .npz whose samples are integers (int16 counts, or microvolts stored as integers)
was replayed with ``units = "auto"`` as volts: a 50 uV spindle read as 50 V, every
threshold and amplitude wrong, without a word. Integers are never volts: with units
"auto" it is a one-line error asking for source.file.units; with units given, the values
read equal NumPy's own reading of the file times that unit."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from engramloop.drivers.files import load_npz

RATE = 250.0


def _int_npz(path) -> np.ndarray:
    t = np.arange(int(30 * RATE)) / RATE
    x = np.round(50 * np.sin(2 * np.pi * 12 * t)).astype(np.int16)[:, None]   # uV
    np.savez(path, samples=x, timestamps=t, rate_hz=RATE, channels=np.array(["Cz"]))
    return x


def _replay(tmp_path, npz, units: str | None) -> subprocess.CompletedProcess:
    cfg = tmp_path / f"cfg-{units}.toml"
    cfg.write_text('[source]\nkind = "file"\n'
                   + (f'[source.file]\nunits = "{units}"\n' if units else "")
                   + '[detectors.ripple]\nenabled = false\n[detectors.so]\nenabled = false\n'
                   '[detectors.spindle]\nchannels = ["Cz"]\n[policy]\ntarget = "spindle"\n')
    return subprocess.run([sys.executable, "-m", "engramloop", "replay", str(cfg), str(npz),
                           "--speed", "max", "--quiet"], capture_output=True, text=True,
                          timeout=300)


def test_integer_samples_without_units_are_a_one_line_error(tmp_path) -> None:
    npz = tmp_path / "counts.npz"
    _int_npz(npz)
    proc = _replay(tmp_path, npz, None)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "integers (int16)" in lines[0] and "source.file.units" in lines[0]
    assert _replay(tmp_path, npz, "uV").returncode == 0


def test_integer_samples_with_units_are_scaled(tmp_path) -> None:
    npz = tmp_path / "counts.npz"
    _int_npz(npz)
    with np.load(npz) as z:      # the reference: NumPy's reading of the same file
        ref = z["samples"].astype(float) * 1e-6
    got = load_npz(npz, "uV")
    np.testing.assert_allclose(np.asarray(got.samples, dtype=float), ref, rtol=1e-6)
