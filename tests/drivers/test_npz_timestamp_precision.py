"""An .npz whose timestamps were saved as float32 (``t.astype(np.float32)``) holds
Unix-epoch seconds (1.7e9 s) only to 128 s: the stamps stood still for 32000 samples and
then jumped 128 s. The replay took it silently -- the rate check skipped a median step of
0, and the jumps were five 'gaps' -- so every detection time was off by up to two
minutes. Stamps stored more coarsely than a tenth of a sample period are a one-line
error naming the type and its resolution; float32 seconds from 0 of a short file, fine
to a few microseconds, still replay."""
from __future__ import annotations

import numpy as np
import pytest

from engramloop.cli import main
from engramloop.core.chunk import SourceError
from engramloop.drivers.files import open_blocks


def _npz(path, t):
    x = np.random.default_rng(0).normal(0, 1e-5, (t.size, 2))
    np.savez(path, samples=x, timestamps=t, rate_hz=250.0, channels=np.array(["a", "b"]))
    return path


def test_float32_epoch_stamps_are_refused(tmp_path) -> None:
    n = 250 * 600
    path = _npz(tmp_path / "f32.npz", (1.7e9 + np.arange(n) / 250).astype(np.float32))
    with pytest.raises(SourceError, match=r"float32.*128 s") as exc:
        open_blocks(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_the_replay_says_so_in_one_line(tmp_path, capsys) -> None:
    n = 250 * 60
    path = _npz(tmp_path / "f32.npz", (1.7e9 + np.arange(n) / 250).astype(np.float32))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nchannels = ["a"]\n[detectors.spindle]\n'
                   'channels = ["a"]\n[policy]\ntarget = "spindle"\n')
    assert main(["replay", str(cfg), str(path), "--speed", "max", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "float32" in err[0], err


def test_float32_stamps_fine_enough_for_the_rate_still_replay(tmp_path) -> None:
    n = 250 * 60
    t = (np.arange(n) / 250).astype(np.float32)
    b = open_blocks(_npz(tmp_path / "ok.npz", t))
    assert b.n_samples == n and b.gaps.size == 0
    assert b.t_last == pytest.approx(float(t[-1]))


def test_stamps_that_stand_still_for_most_of_the_file_are_refused(tmp_path) -> None:
    """float64 stamps that stop advancing for 60 % of the file (a writer that stamped
    with a stale clock), then move on: the rate check's median step was 0 and was
    skipped, so the file replayed with 90 s of samples at one instant."""
    n = 250 * 150
    t = np.arange(n) / 250
    t[int(n * 0.2):int(n * 0.8)] = t[int(n * 0.2)]
    with pytest.raises(SourceError, match="do not advance") as exc:
        open_blocks(_npz(tmp_path / "stuck.npz", t))
    assert "\n" not in str(exc.value)
