"""A polysomnography EDF whose first signal is not the EEG (respiration at 32 Hz listed
before C3 at 256 Hz): a replay runs at the first signal's rate, so asking for C3
(source.channels / --channels) said "no channel(s) 'C3'; the file has Resp" -- the file
has C3, at another rate, and could not be replayed at all. The channels asked for choose
the rate; asking for channels at two rates is a one-line error naming them. Samples
compared with pyedflib's reading (the counterpart)."""
from __future__ import annotations

import numpy as np
import pytest

from engramloop.core.chunk import SourceError
from engramloop.drivers.files import FileSource


def _psg(path):
    pyedflib = pytest.importorskip("pyedflib")
    rates = {"Resp": 32, "C3": 256, "C4": 256}
    w = pyedflib.EdfWriter(str(path), 3, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders([dict(label=k, dimension="uV", sample_frequency=r, physical_max=500,
                             physical_min=-500, digital_max=32767, digital_min=-32768)
                        for k, r in rates.items()])
    rng = np.random.default_rng(0)
    w.writeSamples([rng.normal(0, 50, r * 20) for r in rates.values()])
    w.close()
    return path


def test_the_channels_asked_for_choose_the_rate(tmp_path) -> None:
    import pyedflib

    path = _psg(tmp_path / "psg.edf")
    src = FileSource(path, speed="max", channels=["C4", "C3"])
    assert src.rate_hz == 256 and src.channels == ("C4", "C3")
    r = pyedflib.EdfReader(str(path))
    ref = np.column_stack([r.readSignal(2), r.readSignal(1)]) * 1e-6
    r.close()
    np.testing.assert_allclose(src.data.samples, ref, rtol=0, atol=1e-12)
    assert src.notes == ()    # nothing asked for was left out


def test_channels_at_two_rates_are_one_line_error(tmp_path) -> None:
    path = _psg(tmp_path / "psg.edf")
    with pytest.raises(SourceError, match=r"Resp \(32 Hz\).*C3 \(256 Hz\)") as exc:
        FileSource(path, speed="max", channels=["Resp", "C3"])
    assert "\n" not in str(exc.value)


def test_without_channels_the_first_signal_still_sets_the_rate(tmp_path) -> None:
    src = FileSource(_psg(tmp_path / "psg.edf"), speed="max")
    assert src.rate_hz == 32 and src.channels == ("Resp",)
    assert len(src.notes) == 1 and "C3 (256 Hz)" in src.notes[0]


def test_a_replay_of_the_eeg_of_a_psg_runs_at_its_rate(tmp_path, capsys) -> None:
    """End to end: source.channels = ["C3"] and the detectors on C3; the config check
    (Nyquist of the spindle band) judges the rate of C3, not that of Resp."""
    from engramloop.cli import main

    path = _psg(tmp_path / "psg.edf")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[source]\nkind = "file"\nchannels = ["C3"]\n[detectors.ripple]\n'
                   'enabled = false\n[detectors.so]\nchannels = ["C3"]\n'
                   '[detectors.spindle]\nchannels = ["C3"]\n[policy]\ntarget = "spindle"\n')
    assert main(["replay", str(cfg), str(path), "--speed", "max", "--quiet"]) == 0, \
        capsys.readouterr().err
