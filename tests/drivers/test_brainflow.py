"""BrainFlow source: the real Cyton driver against the pty emulator, the synthetic board,
counter-gap arithmetic, stale-stream errors and the FTDI latency-timer check."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
pytestmark = [pytest.mark.realtime,
              pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")]

from engramloop.core.chunk import SourceError  # noqa: E402
from engramloop.drivers.brainflow_source import BrainFlowSource, CounterGapDetector, board_id  # noqa: E402
from engramloop.drivers.ftdi import check_latency_timer, read_latency_timer_ms  # noqa: E402
from engramloop.drivers.sources import BrainFlowSettings  # noqa: E402
from engramloop.sim.emulators.cyton_emulator import CytonEmulator, decode_packet, encode_packet  # noqa: E402

# ADS1299 at gain 24: 4.5 V full scale over 2^23 - 1 counts (datasheet / OpenBCI docs)
UV_PER_COUNT = 4.5 / 24 / (2 ** 23 - 1) * 1e6


def _read_n(src: BrainFlowSource, n: int, max_reads: int = 2000):
    chunks = []
    for _ in range(max_reads):
        c = src.read(0.5)
        if c is not None:
            chunks.append(c)
        if sum(x.n_samples for x in chunks) >= n:
            return chunks
    raise AssertionError("source stopped delivering")


def test_packet_codec_matches_protocol():
    counts = np.array([0, 1, -1, 2 ** 23 - 1, -(2 ** 23), 123456, -654321, 42])
    pkt = encode_packet(300, counts)
    assert len(pkt) == 33 and pkt[0] == 0xA0 and pkt[-1] == 0xC0 and pkt[1] == 300 % 256
    assert pkt[2:5] == b"\x00\x00\x00" and pkt[8:11] == b"\xff\xff\xff"  # -1, big-endian
    assert pkt[11:14] == b"\x7f\xff\xff" and pkt[14:17] == b"\x80\x00\x00"
    counter, back = decode_packet(pkt)
    assert counter == 44
    np.testing.assert_array_equal(back, counts)


def test_cyton_end_to_end_samples_and_gaps_across_wrap():
    """Real BrainFlow Cyton driver on a pty: values, names, host timestamps, and lost
    samples both short (counter) and longer than one counter wrap (counter + host time)."""
    rng = np.random.default_rng(7)
    n_total = 1100
    sig = rng.normal(0, 80e-6, (n_total, 8))
    sig[:, 2] = np.sin(2 * np.pi * 10 * np.arange(n_total) / 250) * 100e-6
    dropped = [5, 6, 7] + list(range(400, 700))  # 3 lost, then 300 lost (> 256 wrap)
    kept = [i for i in range(n_total) if i not in set(dropped)]
    with CytonEmulator(sig, drop=dropped) as emu:
        src = BrainFlowSource(BrainFlowSettings(board="cyton", serial_port=emu.port))
        try:
            src.start()
            chunks = _read_n(src, 780)
        finally:
            src.stop()
        assert emu.commands[:3] == [b"v", b"d", b"b"]
    assert src.channels == ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")
    assert src.rate_hz == 250.0
    x = np.concatenate([c.samples for c in chunks])[:780]
    # independent reference: quantise to ADS1299 counts, scale with the datasheet formula
    ref = np.round(sig[kept[:780]] / (UV_PER_COUNT * 1e-6)) * UV_PER_COUNT * 1e-6
    np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-12)
    t = np.concatenate([c.timestamps for c in chunks])
    assert np.all(np.diff(t) >= 0)
    assert all(c.timestamps[-1] <= c.arrival_s + 1e-3 for c in chunks)  # host clock
    assert src.lost_samples == 303
    lost = [c.meta["lost_samples"] for c in chunks]
    assert sorted(v for v in lost if v) == [3, 300]
    assert all(c.gap_before == bool(c.meta["lost_samples"]) for c in chunks)
    # the chunk after each loss starts exactly at the first sample that arrived
    starts = [c.first_index for c in chunks if c.gap_before]
    assert starts == [8, 700]
    first = np.concatenate([[c.first_index + i for i in range(c.n_samples)] for c in chunks])
    np.testing.assert_array_equal(first[:780], kept[:780])
    assert src._board is None  # released


def test_cyton_channel_selection_and_stale_then_error():
    sig = np.zeros((50, 8))
    sig[:, 3] = 50e-6
    settings = BrainFlowSettings(board="cyton", stale_after_s=0.05, error_after_s=0.3)
    with CytonEmulator(sig) as emu:
        src = BrainFlowSource(settings, serial_port=emu.port, channels=("C4", "Fp1"))
        try:
            src.start()
            c = _read_n(src, 5)[0]
            assert c.channels == ("C4", "Fp1")
            np.testing.assert_allclose(c.samples[0], [50e-6, 0.0], atol=UV_PER_COUNT * 1e-6)
            emu.streaming = False  # the board goes silent
            with pytest.raises(SourceError, match=r"cyton on /dev/pts/\d+: no data for"):
                for _ in range(200):
                    src.read(0.05)
            assert src.stale
        finally:
            src.stop()


def test_synthetic_board():
    src = BrainFlowSource(BrainFlowSettings(board="synthetic"), channels=("Cz", "C3"))
    try:
        src.start()
        chunks = _read_n(src, 100)
    finally:
        src.stop()
    c = chunks[-1]
    assert c.channels == ("Cz", "C3") and c.rate_hz == 250.0
    assert c.samples.dtype == np.float64 and c.samples.flags.c_contiguous
    assert np.all(np.abs(np.concatenate([k.samples for k in chunks])) < 0.01)  # volts, not uV
    assert not any(k.gap_before for k in chunks)
    with pytest.raises(SourceError, match="before start"):
        src.read(0.01)


def test_bad_port_is_a_clear_error_and_session_released(tmp_path):
    src = BrainFlowSource(BrainFlowSettings(board="cyton", serial_port=str(tmp_path / "nope")))
    with pytest.raises(SourceError, match="nope"):
        src.start()
    assert src._board is None


def test_board_names():
    assert board_id("cyton") == board_id("CYTON_BOARD") == board_id("0") == 0
    assert board_id("cyton-daisy") == 2
    with pytest.raises(SourceError, match="known boards: .*cyton"):
        board_id("cytonn")


def test_counter_gaps_wrap_daisy_and_host_time():
    rate = 250.0
    g = CounterGapDetector(rate)
    c = np.arange(250, 262) % 256
    t = np.arange(12) / rate
    assert g.update(c, t).sum() == 0  # wrap 255 -> 0 is not a gap
    c2 = np.array([262 % 256 + 2, 9])  # 2 lost, then 1 lost... counters 8, 9
    lost = g.update(c2, np.array([14, 15]) / rate)
    assert lost.tolist() == [2, 0]
    # 600 samples lost: the counter alone would say 600 % 256 = 88
    c3 = np.array([(9 + 601) % 256])
    assert g.update(c3, np.array([(15 + 601) / rate])).tolist() == [600]
    d = CounterGapDetector(125.0, step=2)  # Cyton+Daisy: odd counters, 128 values
    dc = np.array([251, 253, 255, 1, 3, 7])
    assert d.update(dc, np.arange(6) / 125.0).tolist() == [0, 0, 0, 0, 0, 1]


def test_ftdi_latency_timer(tmp_path):
    # A fake sysfs tree: the real one only exists with an FTDI adapter plugged in.
    dev = tmp_path / "ttyUSB0"
    dev.mkdir()
    (dev / "latency_timer").write_text("16\n")
    ok, msg = check_latency_timer("/dev/ttyUSB0", sysfs_root=tmp_path)
    assert not ok and "16 ms" in msg and f"echo 1 | sudo tee {dev}/latency_timer" in msg
    (dev / "latency_timer").write_text("1\n")
    assert check_latency_timer("/dev/ttyUSB0", sysfs_root=tmp_path) == (True, "")
    assert read_latency_timer_ms("/dev/pts/0", sysfs_root=tmp_path) is None


def test_playback_file_board_with_master_board(tmp_path):
    """BrainFlow's playback board replays a CSV recorded from a Cyton (master board)."""
    from brainflow.board_shim import BoardShim
    from brainflow.data_filter import DataFilter

    descr = BoardShim.get_board_descr(0)
    n = 500
    data = np.zeros((descr["num_rows"], n))
    data[0] = np.arange(n) % 256
    data[descr["eeg_channels"]] = np.arange(n)[None, :] * np.arange(1, 9)[:, None]  # uV
    data[descr["timestamp_channel"]] = 1.7e9 + np.arange(n) / 250.0
    path = tmp_path / "cyton.csv"
    DataFilter.write_file(data, str(path), "w")
    settings = BrainFlowSettings(board="playback_file", master_board="cyton", file=str(path),
                                 other_info="")
    src = BrainFlowSource(settings, channels=("Fp2",))
    try:
        src.start()
        chunks = _read_n(src, 100)
    finally:
        src.stop()
    assert src.rate_hz == 250.0 and src.channels == ("Fp2",)
    x = np.concatenate([c.samples for c in chunks])[:, 0]
    k = np.round(x / 2e-6).astype(int)  # Fp2 row holds 2 * index microvolts
    np.testing.assert_array_equal(np.diff(k), 1)
    np.testing.assert_allclose(x, k * 2e-6, atol=1e-12)


def test_make_source_brainflow_overrides():
    from engramloop.controller.build_source import make_source
    from engramloop.controller.config import loads_config

    cfg = loads_config('[source]\nkind = "brainflow"\nchannels = ["C3"]\n'
                       '[source.brainflow]\nboard = "cyton"\nserial_port = "/dev/ttyUSB9"\n')
    src = make_source(cfg, serial_port="/dev/ttyUSB0", channels=["O1", "O2"])
    assert isinstance(src, BrainFlowSource)
    assert src.serial_port == "/dev/ttyUSB0" and src.channels == ("O1", "O2")
    assert make_source(cfg).channels == ("C3",)


def test_cyton_streams_replayed_real_eeg():
    """Real N2 sleep EEG (YASA example, 200 Hz, uV) resampled to the Cyton's 250 Hz,
    streamed by the emulator and read back through BrainFlow's Cyton driver."""

    from scipy.signal import resample_poly
    from shared_data import DATA

    from engramloop.sim.emulators.cyton_emulator import to_cyton_signal

    data = DATA / "data_N2_spindles_15sec_200Hz.txt"
    eeg_v = np.loadtxt(data)[:400] * 1e-6
    sig = to_cyton_signal(eeg_v, 200.0)
    ref = resample_poly(eeg_v, 5, 4)  # independent: scipy at 250/200 = 5/4
    np.testing.assert_allclose(sig[:, 0], ref, atol=1e-12)
    assert np.all(sig[:, 1:] == 0)
    with CytonEmulator(sig) as emu:
        src = BrainFlowSource(BrainFlowSettings(board="cyton"), serial_port=emu.port,
                              channels=("Fp1",))
        try:
            src.start()
            x = np.concatenate([c.samples for c in _read_n(src, 300)])[:300, 0]
        finally:
            src.stop()
    np.testing.assert_allclose(x, ref[:300], atol=UV_PER_COUNT * 1e-6)  # within one count
