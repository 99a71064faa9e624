"""An EDF+ file whose signals have different rates (pyedflib writes one, as a
polysomnograph stores EEG at 256 Hz beside respiration at 32 Hz): a replay uses the
first signal's rate and leaves the others out. That used to be a Python warning on
stderr only (two lines with a source line, and nothing in the recording): the recording
of the replay showed no trace that a signal of the file was never replayed. Read back
with pyxdf."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engramloop.cli import main


def _edf(path, rates):
    pyedflib = pytest.importorskip("pyedflib")
    w = pyedflib.EdfWriter(str(path), len(rates), file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders([dict(label=f"C{i}", dimension="uV", sample_frequency=r,
                             physical_max=500, physical_min=-500, digital_max=32767,
                             digital_min=-32768) for i, r in enumerate(rates)])
    rng = np.random.default_rng(0)
    w.writeSamples([rng.normal(0, 50, r * 20) for r in rates])
    w.close()


def test_signals_left_out_for_their_rate_are_noted_in_the_recording(tmp_path, capsys):
    import pyxdf

    edf = tmp_path / "psg.edf"
    _edf(edf, (256, 128, 32))
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nchannels = ["C0"]\n[detectors.spindle]\n'
                   'channels = ["C0"]\n[policy]\ntarget = "spindle"\n')
    rec = tmp_path / "r.xdf"
    assert main(["replay", str(cfg), str(edf), "--speed", "max",
                 "--record", str(rec)]) == 0
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if "C1" in ln]
    assert len(said) == 1 and "C2" in said[0] and "128" in said[0] and "32" in said[0], err
    assert "UserWarning" not in err
    streams, _ = pyxdf.load_xdf(str(rec))
    by = {s["info"]["name"][0]: s for s in streams}
    assert int(by["engramloop.raw"]["info"]["channel_count"][0]) == 1
    notes = [json.loads(v[0]) for v in by["engramloop.log"]["time_series"]]
    left = [n for n in notes if n.get("kind") == "signals_left_out"]
    assert len(left) == 1, notes
    assert "C1 (128 Hz)" in left[0]["message"] and "C2 (32 Hz)" in left[0]["message"]


def test_choosing_channels_at_the_replayed_rate_says_nothing(tmp_path, capsys):
    """--channels naming only signals at the first rate: nothing of what was asked for
    is left out, so no note."""
    import pyxdf

    edf = tmp_path / "psg.edf"
    _edf(edf, (256, 128))
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\nchannels = ["C0"]\n[detectors.ripple]\n'
                   'enabled = false\n[detectors.so]\nchannels = ["C0"]\n'
                   '[detectors.spindle]\nchannels = ["C0"]\n[policy]\ntarget = "spindle"\n')
    rec = tmp_path / "r.xdf"
    assert main(["replay", str(cfg), str(edf), "--speed", "max",
                 "--record", str(rec)]) == 0
    assert "C1" not in capsys.readouterr().err
    streams, _ = pyxdf.load_xdf(str(rec))
    by = {s["info"]["name"][0]: s for s in streams}
    notes = [json.loads(v[0]) for v in by["engramloop.log"]["time_series"]]
    assert not [n for n in notes if n.get("kind") == "signals_left_out"]
