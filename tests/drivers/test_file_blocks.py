"""Recorded files are read block by block (issue 23): the blocks of every format equal
what an independent reader gets from the whole file (pyedflib, numpy.load, BrainFlow's
own DataFilter.read_file), across block boundaries, and the checks and error locations
of a whole-file read hold when the problem is in a later block."""
from __future__ import annotations

import warnings

import numpy as np
import pyedflib
import pytest

from engramloop.core.chunk import EndOfStream, SourceError
from engramloop.core.clock import SimClock
from engramloop.drivers import file_blocks
from engramloop.drivers.files import FileSource

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")


def _drain(src):
    out = []
    src.start()
    while True:
        try:
            c = src.read(1.0)
        except EndOfStream:
            return out
        if c is not None:
            out.append(c)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few hundred samples, so every file below spans many."""
    monkeypatch.setattr(file_blocks, "BLOCK_SAMPLES", 300)
    monkeypatch.setattr(file_blocks, "TEXT_ROWS", 256)


@pytest.mark.parametrize("ext", ["edf", "bdf"])
def test_edf_blocks_equal_pyedflib_and_read_only_the_kept_channels(tmp_path, ext,
                                                                   small_blocks):
    rng = np.random.default_rng(7)
    n, rate = 5000, 250
    sig = rng.normal(0, 40, (4, n)).clip(-400, 400)
    path = tmp_path / f"night.{ext}"
    hdr = [pyedflib.highlevel.make_signal_header(c, dimension="uV", sample_frequency=rate,
                                                 physical_min=-500, physical_max=500)
           for c in ("Fp1", "C3", "Cz", "O2")]
    ft = pyedflib.FILETYPE_BDFPLUS if ext == "bdf" else pyedflib.FILETYPE_EDFPLUS
    pyedflib.highlevel.write_edf(str(path), sig, hdr, file_type=ft)
    ref = pyedflib.highlevel.read_edf(str(path))[0]       # the counterpart, whole file
    src = FileSource(path, speed="max", chunk_samples=64, channels=("O2", "C3"))
    chunks = _drain(src)
    assert chunks[0].samples.shape[1] == 2
    x = np.concatenate([c.samples for c in chunks])
    np.testing.assert_allclose(x, ref[[3, 1]].T * 1e-6, rtol=1e-12, atol=1e-18)
    t = np.concatenate([c.timestamps for c in chunks])
    np.testing.assert_allclose(np.diff(t), 1 / rate, rtol=1e-9)
    # only the kept channels come out of the reader
    b = src.reader
    assert all(xb.shape[1] == 1 for xb, _ in b.blocks([2]))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_stored_and_compressed_stream_the_same(tmp_path, save, small_blocks):
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1e-5, (4001, 3))
    t = 10.0 + np.arange(4001) / 1000.0
    t[2500:] += 0.5                                     # a gap after sample 2499
    path = tmp_path / "s.npz"
    save(path, samples=x, timestamps=t, rate_hz=1000.0, channels=np.array(["a", "b", "c"]))
    src = FileSource(path, speed="max", chunk_samples=50, channels=("c", "a"))
    assert len(list(src.reader.blocks([0]))) == 14     # 4001 samples, 300 at a time
    out = _drain(src)
    with np.load(path) as z:                           # numpy's own reader, whole file
        np.testing.assert_array_equal(np.concatenate([c.samples for c in out]),
                                      z["samples"][:, [2, 0]])
    assert [c.first_index for c in out if c.gap_before] == [2500]


def test_npz_checks_find_problems_in_a_later_block(tmp_path, small_blocks):
    x = np.random.default_rng(9).normal(0, 1e-5, (3000, 2))
    t = np.arange(3000) / 500.0
    t2 = t.copy()
    t2[2700] = np.nan
    np.savez(tmp_path / "nan.npz", samples=x, timestamps=t2, rate_hz=500.0)
    with pytest.raises(SourceError, match=r"1 timestamp\(s\) are NaN/Inf \(first at sample "
                                          r"2700\)"):
        FileSource(tmp_path / "nan.npz", speed="max")
    t3 = t.copy()
    t3[2600:] -= 1.0
    np.savez(tmp_path / "back.npz", samples=x, timestamps=t3, rate_hz=500.0)
    with pytest.raises(SourceError, match=r"step backwards at sample 2600 .*1 time\(s\)"):
        FileSource(tmp_path / "back.npz", speed="max")
    x2 = x.copy()
    x2[:, 1] = np.nan
    np.savez(tmp_path / "dead.npz", samples=x2, timestamps=t, rate_hz=500.0)
    with pytest.raises(SourceError, match="channel.*ch2 hold no finite sample"):
        FileSource(tmp_path / "dead.npz", speed="max")
    assert FileSource(tmp_path / "dead.npz", speed="max", channels=["ch1"]).channels == (
        "ch1",)


def test_brainflow_csv_in_blocks_equals_brainflows_reader(tmp_path, small_blocks):
    from brainflow.board_shim import BoardShim
    from brainflow.data_filter import DataFilter

    descr = BoardShim.get_board_descr(0)  # Cyton
    n = 2000
    data = np.zeros((descr["num_rows"], n))
    data[descr["eeg_channels"]] = np.random.default_rng(5).normal(0, 20, (8, n))
    data[descr["package_num_channel"]] = np.arange(n) % 256
    data[descr["timestamp_channel"]] = 1.7e9 + (np.arange(n) // 4 * 4 + 3) / 250.0
    data = np.ascontiguousarray(np.delete(data, np.arange(700, 710), axis=1))  # 10 lost
    path = tmp_path / "bf.csv"
    DataFilter.write_file(data, str(path), "w")
    ref = DataFilter.read_file(str(path))               # BrainFlow's reader, whole file
    src = FileSource(path, speed="max", board="cyton", chunk_samples=32)
    assert len(list(src.reader.blocks([0]))) == 8      # 1990 lines, 256 at a time
    out = _drain(src)
    np.testing.assert_allclose(np.concatenate([c.samples for c in out]),
                               ref[descr["eeg_channels"]].T * 1e-6, rtol=1e-12)
    assert [c.first_index for c in out if c.gap_before] == [700]
    lines = path.read_text().splitlines()
    lines[1500] = lines[1500].replace("\t", "\tx", 1)   # in the 6th block of 256 lines
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"bf.csv: malformed BrainFlow CSV at line 1501, "
                                          r"column 2 \(byte offset \d+\)"):
        FileSource(path, board="cyton")
    raw = path.read_bytes()
    cut = raw.index(b"\n", len(raw) // 2) + 1
    path.write_bytes(raw[:cut] + b"\xff" + raw[cut:])
    with pytest.raises(SourceError, match=rf"byte 0xff at byte offset {cut} is not UTF-8"):
        FileSource(path, board="cyton")


def test_sim_clock_only_moves_to_the_block_start_with_use_blocks(tmp_path):
    x = np.random.default_rng(1).normal(0, 1e-5, (1000, 1))
    np.savez(tmp_path / "s.npz", samples=x, rate_hz=100.0)
    clock = SimClock(0.0)
    src = FileSource(tmp_path / "s.npz", speed="max", clock=clock, chunk_samples=10)
    assert src.use_blocks(1.0) == 10 and src.block_samples == 100
    src.start()
    c = src.read(1.0)
    assert c.n_samples == 100 and clock.now() == c.timestamps[0]
    assert FileSource(tmp_path / "s.npz", speed=2.0).use_blocks(1.0) == 0


def test_npz_of_a_transposed_array_is_read(tmp_path, small_blocks):
    """numpy.savez of ``x.T`` stores a column-major member: read whole, same values."""
    x = np.random.default_rng(4).normal(0, 1e-5, (2, 1000))
    np.savez(tmp_path / "f.npz", samples=x.T, rate_hz=250.0)
    out = _drain(FileSource(tmp_path / "f.npz", speed="max", chunk_samples=64))
    np.testing.assert_array_equal(np.concatenate([c.samples for c in out]), x.T)


def test_edf_plus_d_with_an_unknown_record_count_is_a_one_line_error(tmp_path,
                                                                     capsys) -> None:
    """The EDF header may say -1 data records (unknown: the writer did not finish the
    file). pyedflib (the counterpart) refuses such an EDF+C file with a one-line error;
    the EDF+D reader (ours: pyedflib refuses EDF+D) stopped with an IndexError, printed
    as 'internal error ... a bug in engramloop'."""
    from engramloop.cli import main

    sig = np.random.default_rng(4).normal(0, 20, 2000)
    hdr = [pyedflib.highlevel.make_signal_header("C3", dimension="uV", sample_frequency=100,
                                                 physical_min=-500, physical_max=500)]
    c = tmp_path / "c.edf"
    assert pyedflib.highlevel.write_edf(str(c), [sig], hdr, pyedflib.highlevel.make_header(),
                                        file_type=pyedflib.FILETYPE_EDFPLUS)
    b = bytearray(c.read_bytes())
    b[236:244] = b"-1      "
    c.write_bytes(bytes(b))
    with pytest.raises(OSError):
        pyedflib.EdfReader(str(c))                         # the counterpart refuses it
    b[192:197] = b"EDF+D"
    d = tmp_path / "d.edf"
    d.write_bytes(bytes(b))
    for f in (c, d):
        with pytest.raises(SourceError, match=str(f.name)):
            FileSource(f, speed="max")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[detectors.ripple]\nenabled = false\n[detectors.so]\nchannels = ["C3"]\n'
                   '[detectors.spindle]\nchannels = ["C3"]\n[policy]\ntarget = "spindle"\n')
    assert main(["replay", str(cfg), str(d), "--speed", "max", "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "internal error" not in err and "-1 data records" in err
