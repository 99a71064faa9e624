"""Recordings of sensible size (issue 23): float32 where the source's resolution allows,
and a stored timestamp only where a reader could not deduce it -- checked by reading the
files back with pyxdf (the LSL ecosystem's reader, not ours), against the samples and
timestamps the sources handed out."""
from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest
import pyxdf

from engramloop.controller.recorder import DEFAULT_TIMESTAMP_TOLERANCE, Recorder
from engramloop.core.chunk import Chunk, EndOfStream
from engramloop.core.sample_format import for_adc_bits, for_dtype, for_range
from engramloop.recording import reader, schema, xdf


def tol(rate_hz: float) -> float:
    """The recorder's default timestamp tolerance at this rate, seconds."""
    return DEFAULT_TIMESTAMP_TOLERANCE / rate_hz


def _load(path, **kw):
    streams, _ = pyxdf.load_xdf(str(path), **kw)
    return {s["info"]["name"][0]: s for s in streams}


def _stored_stamps(path, stream_id: int) -> tuple[int, int]:
    """(samples, samples carrying a timestamp) of one numeric stream, by walking the
    file's Samples chunks byte by byte as the XDF specification lays them out."""
    data = path.read_bytes()
    off, n_all, n_stamped, fmt, nch = 4, 0, 0, None, None
    while off < len(data):
        nb = data[off]
        length = int.from_bytes(data[off + 1: off + 1 + nb], "little")
        body = off + 1 + nb
        tag = struct.unpack("<H", data[body: body + 2])[0]
        content = data[body + 2: body + length]
        if tag == 2 and struct.unpack("<I", content[:4])[0] == stream_id:
            text = content[4:].decode()
            fmt = text.split("<channel_format>")[1].split("<")[0]
            nch = int(text.split("<channel_count>")[1].split("<")[0])
        if tag == 3 and struct.unpack("<I", content[:4])[0] == stream_id:
            size = {"float32": 4, "double64": 8}[fmt] * nch
            k = content[4]
            n = int.from_bytes(content[5: 5 + k], "little")
            p = 5 + k
            for _ in range(n):
                stamped = content[p]
                assert stamped in (0, 8)
                n_stamped += stamped == 8
                p += 1 + stamped + size
            assert p == len(content)
            n_all += n
        off = body + length
    return n_all, n_stamped


# --------------------------------------------------------------- the timestamp rule
def _record(path, chunks, rate, fmt="float64", **kw):
    with Recorder(path, "", flush_interval_s=0.05, **kw) as rec:
        rec.add_signal_stream(name="sig", channels=[f"c{i}" for i in
                                                    range(chunks[0][0].shape[1])],
                              rate_hz=rate, sample_format=fmt)
        for x, t in chunks:
            rec.write_chunk(Chunk(x, t, rate, tuple(f"c{i}" for i in range(x.shape[1])),
                                  0.0), stream="sig")


def _pieces(x, t, size):
    return [(np.ascontiguousarray(x[i:i + size]), t[i:i + size])
            for i in range(0, len(t), size)]


def test_regular_drifting_and_gapped_stamps_read_back_within_tolerance(tmp_path):
    """A 250 Hz stream on a clock running 50 ppm fast, with 0.3 s of samples lost and a
    jittered stretch: pyxdf (no clock sync, no dejitter: the stamps as stored) gives
    every sample's time within the tolerance, the gap where it was, and only a few
    samples carry a stored stamp."""
    rate, n = 250.0, 250 * 60
    rng = np.random.default_rng(4)
    k = np.arange(n, dtype=np.float64)
    k[n // 2:] += 75                                       # 75 samples never arrived
    t = 123456.789 + k / rate * (1 + 50e-6)
    jit = slice(3 * n // 4, 3 * n // 4 + 100)
    t[jit] += rng.uniform(-2e-3, 2e-3, 100)                # stamped on arrival for 0.4 s
    x = rng.normal(0, 50e-6, (n, 3))
    path = tmp_path / "g.xdf"
    _record(path, _pieces(x, t, 37), rate)
    got = _load(path, synchronize_clocks=False, dejitter_timestamps=False)["sig"]
    np.testing.assert_array_equal(got["time_series"], x)   # double64 declared: exact
    assert np.abs(got["time_stamps"] - t).max() <= tol(rate)
    gaps = np.flatnonzero(np.diff(got["time_stamps"]) > 0.1) + 1
    assert gaps.tolist() == [n // 2]
    # every step of the source's (also the jittered ones) is the file's
    np.testing.assert_allclose(np.diff(got["time_stamps"]), np.diff(t), rtol=0,
                               atol=2 * tol(rate))
    total, stamped = _stored_stamps(path, 8)   # 7 marker streams come first
    assert total == n
    # the flushes' first samples, one a second, the gap, the 100 jittered ones (and the
    # one after them), and where the 50 ppm drift outgrows the tolerance (~0.8 s)
    assert 100 < stamped < 0.05 * n, stamped


def test_stamp_mask_is_what_a_reader_deduces(tmp_path):
    """stamp_mask's choice, written and read back by pyxdf, is within tolerance for
    stamps a simulated clock (index / rate) and a host clock give; a stream declared
    irregular (rate 0) keeps every stamp."""
    rate = 2000.0
    t = 1e6 + np.arange(20000) / rate
    keep = xdf.stamp_mask(t, rate, tolerance_s=tol(rate), max_run=2000)
    assert keep[0] and keep.sum() <= 20 and keep[::2000].all()
    assert xdf.stamp_mask(t, 0.0, tolerance_s=tol(rate), max_run=2000).all()
    t_nan = t.copy()
    t_nan[5] = np.nan
    assert xdf.stamp_mask(t_nan, rate, tolerance_s=tol(rate), max_run=2000)[5]
    path = tmp_path / "m.xdf"
    with open(path, "wb") as f:
        f.write(xdf.file_header())
        f.write(xdf.stream_header(1, name="s", stream_type="EEG", channels=["a"],
                                  rate_hz=rate, channel_format="float32"))
        f.write(xdf.numeric_samples(1, np.zeros((t.size, 1)), t, dtype="<f4", keep=keep))
    got = _load(path, synchronize_clocks=False, dejitter_timestamps=False)["s"]
    assert np.abs(got["time_stamps"] - t).max() <= tol(rate)


def test_samples_chunk_bytes_follow_the_specification():
    """numeric_samples with some stamps left out gives, byte for byte, the layout the
    XDF specification describes sample by sample: [TimestampBytes 0 or 8][stamp][values]
    (few stamps and many take different code paths)."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        n, c = int(rng.integers(1, 300)), int(rng.integers(1, 4))
        x, t = rng.normal(size=(n, c)), 7.0 + np.arange(n) / 100.0
        keep = rng.uniform(size=n) < (0.02 if trial % 2 else 0.7)
        keep[0] = trial % 5 != 0
        body = b"".join((struct.pack("<Bd", 8, t[i]) if keep[i] else b"\x00")
                        + x[i].astype("<f4").tobytes() for i in range(n))
        want = xdf.chunk(3, struct.pack("<I", 1) + xdf.varlen_int(n) + body)
        assert xdf.numeric_samples(1, x, t, dtype="<f4", keep=keep) == want


# ------------------------------------------------------------ the simulator, float32
def test_sim_recording_is_float32_small_and_reads_back(tmp_path):
    """8 channels at 2 kHz from the simulator (declared float32): pyxdf finds a float32
    stream whose values are the float32 of what was recorded and whose times are the
    source's within the tolerance -- also with pyxdf's defaults (clock sync, dejitter),
    as a LabRecorder user loads a file; the file is under 1.5x the float32 size of the
    samples; our reader and a replay give the same."""
    from engramloop.drivers.files import FileSource
    from engramloop.sim.settings import SimSettings
    from engramloop.sim.source import SimSource

    src = SimSource(SimSettings(), seed=1, chunk_samples=40, duration_s=30.0)
    assert src.sample_format == "float32"
    path = tmp_path / "sim.xdf"
    xs, ts = [], []
    with Recorder(path, "", flush_interval_s=0.2) as rec:
        rec.add_signal_stream(src)
        src.start()
        while True:
            try:
                c = src.read(0.0)
            except EndOfStream:
                break
            xs.append(c.samples)
            ts.append(c.timestamps)
            rec.write_chunk(c)
    x, t = np.concatenate(xs), np.concatenate(ts)
    for kw in ({"synchronize_clocks": False, "dejitter_timestamps": False}, {}):
        got = _load(path, **kw)[schema.RAW]
        assert got["info"]["channel_format"] == ["float32"]
        np.testing.assert_array_equal(got["time_series"], x.astype(np.float32))
        np.testing.assert_allclose(got["time_series"], x, rtol=2 ** -24, atol=0)
        assert np.abs(got["time_stamps"] - t).max() <= tol(src.rate_hz)
    size = path.stat().st_size
    assert size <= 1.5 * x.size * 4, size / (x.size * 4)
    rc = reader.read(path)
    assert rc.schema_version == schema.SCHEMA_VERSION == 2
    np.testing.assert_array_equal(rc.signals[0].x, x.astype(np.float32))
    assert np.abs(rc.signals[0].t - t).max() <= tol(src.rate_hz)
    replay = FileSource(path, speed="max")
    assert replay.sample_format == "float32"   # a recording of the replay stays float32
    np.testing.assert_array_equal(replay.data.samples, x.astype(np.float32))


# ------------------------------------------------------- what each source declares
def test_resolution_rules():
    assert for_adc_bits(24) == "float32" and for_adc_bits(32) == "float64"
    step = 4.5 / 24 / 2 ** 23                        # ADS1299 at gain 24: +-187.5 mV
    assert for_range(2 ** 23 * step, step) == "float32"
    k = np.random.default_rng(0).integers(-2 ** 23, 2 ** 23, 10 ** 5)
    err = np.abs((k * step).astype(np.float32).astype(np.float64) - k * step)
    assert err.max() <= step / 2                     # what the rule promises
    assert for_range(262144.0, 524287 / 16777215) == "float32"   # BioSemi BDF, uV
    assert for_range(1e6, 1e-3) == "float64"         # an offset far above the span
    assert for_dtype(np.float32) == for_dtype(np.int16) == "float32"
    assert for_dtype(np.float64) == for_dtype(np.int32) == "float64"


def test_edf_and_npz_replays_declare_their_resolution(tmp_path):
    """An EDF written by pyedflib (16-bit) replays as float32, a float64 .npz as float64,
    a float32 .npz as float32; and the recording of the EDF replay holds the EDF's values
    (as pyedflib reads them) to float32 precision."""
    pyedflib = pytest.importorskip("pyedflib")
    from engramloop.drivers.files import FileSource

    rate, n = 256, 256 * 10
    x = np.random.default_rng(2).normal(0, 40, (2, n))
    edf = tmp_path / "a.edf"
    w = pyedflib.EdfWriter(str(edf), 2, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders([{"label": lab, "dimension": "uV", "sample_frequency": rate,
                         "physical_max": 500.0, "physical_min": -500.0,
                         "digital_max": 32767, "digital_min": -32768}
                        for lab in ("C3", "C4")])
    w.writeSamples(list(x))
    w.close()
    r = pyedflib.EdfReader(str(edf))
    truth = np.column_stack([r.readSignal(i) for i in range(2)]) * 1e-6
    r.close()
    src = FileSource(edf, speed="max", chunk_samples=100)
    assert src.sample_format == "float32"
    path = tmp_path / "edf.xdf"
    with Recorder(path, "", flush_interval_s=0.05) as rec:
        rec.add_signal_stream(src)
        src.start()
        while True:
            try:
                rec.write_chunk(src.read(0.0))
            except EndOfStream:
                break
    got = _load(path)[schema.RAW]
    assert got["info"]["channel_format"] == ["float32"]
    np.testing.assert_allclose(got["time_series"], truth, rtol=2 ** -24, atol=0)
    for dtype, fmt in ((np.float64, "float64"), (np.float32, "float32")):
        npz = tmp_path / f"{fmt}.npz"
        np.savez(npz, samples=x.T.astype(dtype) * 1e-6, rate_hz=rate,
                 channels=np.array(["C3", "C4"]))
        assert FileSource(npz, speed="max").sample_format == fmt


def test_a_stream_declared_from_a_chunk_or_an_unknown_source_stays_float64(tmp_path):
    path = tmp_path / "c.xdf"
    x = np.random.default_rng(1).normal(size=(100, 2))
    _record(path, [(x, np.arange(100) / 100.0)], 100.0)
    assert _load(path)["sig"]["info"]["channel_format"] == ["double64"]
    rec = Recorder(tmp_path / "d.xdf", "")
    with pytest.raises(ValueError, match="sample_format must be one of float32, float64"):
        rec.add_signal_stream(name="s", channels=["a"], rate_hz=1.0, sample_format="int8")


OUTLET = textwrap.dedent("""
    import sys, time, pylsl
    name, fmt = sys.argv[1], sys.argv[2]
    rate = 500.0
    info = pylsl.StreamInfo(name, "EEG", 2, rate, fmt, name)
    chans = info.desc().append_child("channels")
    for lab in ("C3", "C4"):
        ch = chans.append_child("channel")
        ch.append_child_value("label", lab)
        ch.append_child_value("unit", "microvolts")
    out = pylsl.StreamOutlet(info)
    print("up", flush=True)
    start, sent = pylsl.local_clock(), 0
    while True:   # as pylsl's SendData example: every sample due, stamped at its push
        due = int(rate * (pylsl.local_clock() - start))
        while sent < due:
            out.push_sample([0.1 * (sent % 1000), -0.37 * (sent % 777)])
            sent += 1
        time.sleep(0.01)
""")


@pytest.mark.parametrize("fmt, stored", [("float32", "float32"), ("double64", "double64")])
def test_live_lsl_stream_recorded_in_its_own_resolution(tmp_path, fmt, stored):
    """A real outlet in another process, stamping each sample at its push (bursty): a
    float32 stream is recorded as float32, a double one as double64, and every recorded
    time is the source's (those the LslSource handed out) within the tolerance."""
    pytest.importorskip("pylsl")
    from engramloop.drivers.lsl_source import LslSource
    from engramloop.drivers.sources import LslSettings

    name = f"engramloop-size-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-c", OUTLET, name, fmt],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        src = LslSource(LslSettings(name=name, resolve_timeout_s=10))
        src.start()
        path = tmp_path / "lsl.xdf"
        xs, ts = [], []
        try:
            with Recorder(path, "", flush_interval_s=0.1) as rec:
                rec.add_signal_stream(src)
                while sum(len(t) for t in ts) < 1000:
                    c = src.read(1.0)
                    if c is not None and c.n_samples:
                        xs.append(c.samples)
                        ts.append(c.timestamps)
                        rec.write_chunk(c)
        finally:
            src.stop()
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert src.sample_format == ("float32" if fmt == "float32" else "float64")
    got = _load(path, synchronize_clocks=False, dejitter_timestamps=False)[schema.RAW]
    assert got["info"]["channel_format"] == [stored]
    x, t = np.concatenate(xs), np.concatenate(ts)
    np.testing.assert_allclose(got["time_series"], x, rtol=2 ** -24 if fmt == "float32"
                               else 0, atol=0)
    assert np.abs(got["time_stamps"] - t).max() <= tol(500.0)


def test_version_1_recordings_still_read(tmp_path):
    """A file as schema 1 wrote it (double64, a stamp on every sample) reads as before."""
    from engramloop.drivers.files import FileSource

    path = tmp_path / "v1.xdf"
    x = np.random.default_rng(3).normal(size=(500, 2)) * 1e-5
    t = 50.0 + np.arange(500) / 250.0
    with open(path, "wb") as f:
        f.write(xdf.file_header("<engramloop><schema_version>1</schema_version><config>a = 1"
                                "</config></engramloop>"))
        f.write(xdf.stream_header(1, name=schema.RAW, stream_type="EEG", channels=["a", "b"],
                                  rate_hz=250.0, channel_format="double64", units="V"))
        f.write(xdf.numeric_samples(1, x, t))
        f.write(xdf.stream_footer(1, first_timestamp=t[0], last_timestamp=t[-1],
                                  sample_count=500))
    rc = reader.read(path)
    assert rc.schema_version == 1
    np.testing.assert_array_equal(rc.signals[0].x, x)
    np.testing.assert_array_equal(rc.signals[0].t, t)
    src = FileSource(path, speed="max")
    assert src.sample_format == "float64"
    np.testing.assert_array_equal(src.data.samples, x)


@pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")
def test_cyton_through_brainflow_recorded_in_float32_with_its_gaps(tmp_path):
    """BrainFlow's own Cyton driver reading the Cyton emulator on a pseudo-terminal (24-bit
    ADS1299 counts, host timestamps stamped per packet, 3 and then 300 samples lost):
    the board declares float32, and pyxdf reads every value back within half an ADC
    count of what BrainFlow gave, every time within the tolerance, the losses where
    they were; a board of unknown resolution stays float64."""
    from engramloop.drivers.brainflow_source import BrainFlowSource, board_id, board_sample_format
    from engramloop.drivers.sources import BrainFlowSettings
    from engramloop.sim.emulators.cyton_emulator import CytonEmulator

    count_v = 4.5 / 24 / (2 ** 23 - 1)       # ADS1299 at gain 24 (datasheet)
    rng = np.random.default_rng(5)
    sig = rng.normal(0, 80e-6, (900, 8))
    sig[:4] = 0.18                           # near the rail: the largest float32 rounding
    dropped = [5, 6, 7, *range(400, 700)]
    path = tmp_path / "cyton.xdf"
    xs, ts = [], []
    with CytonEmulator(sig, drop=dropped) as emu:
        src = BrainFlowSource(BrainFlowSettings(board="cyton", serial_port=emu.port))
        assert src.sample_format == "float32"
        try:
            src.start()
            with Recorder(path, "", flush_interval_s=0.05) as rec:
                rec.add_signal_stream(src)
                for _ in range(2000):
                    c = src.read(0.5)
                    if c is not None and c.n_samples:
                        xs.append(c.samples)
                        ts.append(c.timestamps)
                        rec.write_chunk(c)
                    if sum(len(t) for t in ts) >= 590:
                        break
        finally:
            src.stop()
    x, t = np.concatenate(xs), np.concatenate(ts)
    got = _load(path, synchronize_clocks=False, dejitter_timestamps=False)[schema.RAW]
    assert got["info"]["channel_format"] == ["float32"]
    assert np.abs(got["time_series"] - x).max() <= count_v / 2
    assert np.abs(got["time_stamps"] - t).max() <= tol(250.0)
    # the 300 lost samples (1.2 s) are a step in the file's times as in the source's
    assert (np.diff(got["time_stamps"]) > 1.0).sum() == (np.diff(t) > 1.0).sum() == 1
    assert board_sample_format(board_id("muse_2")) == "float64"
