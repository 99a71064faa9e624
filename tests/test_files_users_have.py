"""Issue 18 point 10: files users have. OpenBCI GUI recordings (OpenBCI-RAW-*.txt),
EDF+ annotations (into the recording and as --truth), EDF+D records at their real times,
and LSL streams without unit metadata (refused unless the config gives the unit)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from engramloop.core.chunk import SourceError
from engramloop.drivers.lsl_source import LslSource
from engramloop.drivers.sources import LslSettings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")


# ------------------------------------------------------------------ LSL units
def test_lsl_stream_without_units_is_refused_unless_configured() -> None:
    pytest.importorskip("pylsl")
    from test_lsl import Outlet, _name

    name = _name()
    out = Outlet(name, unit="")                     # a real outlet declaring no unit
    try:
        src = LslSource(LslSettings(name=name, resolve_timeout_s=5.0))
        with pytest.raises(SourceError, match=r"channel C3 declares no unit; set "
                                              r"\[source.lsl\] units = \"uV\""):
            src.start()
        src = LslSource(LslSettings(name=name, resolve_timeout_s=5.0, units="uV"))
        src.start()
        try:
            c = None
            for _ in range(200):
                c = src.read(0.5)
                if c is not None and c.n_samples:
                    break
        finally:
            src.stop()
    finally:
        out.kill()
    assert c is not None and c.channels == ("C3", "Cz")
    # the outlet counts up on C3 and down on Cz, in the unit we declared (uV)
    np.testing.assert_allclose(c.samples[:, 1], -c.samples[:, 0])
    np.testing.assert_allclose(np.diff(c.samples[:, 0]), 1e-6, rtol=1e-6)


# ------------------------------------------------------------------ OpenBCI GUI
def _openbci_v5(path, eeg_uv: np.ndarray, *, drop=(), t0=1_700_000_000.0):
    """An OpenBCI GUI v5 recording of a Cyton, written from the documented format (OpenBCI
    docs "GUI data format"; the GUI's DataWriterODF): %-header, a column line, one sample
    per line; EXG in microvolts, Sample Index a wrapping 0-255 counter, Timestamp Unix
    seconds stamped per packet batch by the host (here every 4 samples, as a 16 ms USB
    latency timer bunches them), Marker Channel, a formatted time last."""
    import datetime as dt

    cols = (["Sample Index"] + [f"EXG Channel {i}" for i in range(8)]
            + [f"Accel Channel {i}" for i in range(3)] + ["Not Used"]
            + [f"Digital Channel {i} (D{p})" for i, p in enumerate((11, 12, 13, 17))]
            + ["Not Used", "Digital Channel 4 (D18)"]
            + [f"Analog Channel {i}" for i in range(3)]
            + ["Timestamp", "Marker Channel", "Timestamp (Formatted)"])
    lines = ["%OpenBCI Raw EXG Data", "%Number of channels = 8", "%Sample Rate = 250 Hz",
             "%Board = OpenBCI_GUI$BoardCytonSerial", ", ".join(cols)]
    drop = set(drop)
    for k in range(eeg_uv.shape[0]):
        if k in drop:
            continue
        ts = t0 + (k // 4 * 4 + 3) / 250.0 + 0.0021      # stamped when the batch arrived
        when = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        row = ([f"{k % 256:.1f}"] + [f"{v:.6f}" for v in eeg_uv[k]] + ["0.0"] * 3
               + ["0.0"] * 7 + ["0.0"] * 3 + [f"{ts:.6f}", "0.0", when[:-3]])
        lines.append(", ".join(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_openbci_gui_v5_recording_reads_volts_cyton_names_and_gaps(tmp_path) -> None:
    from engramloop.drivers.files import FileSource

    rng = np.random.default_rng(4)
    eeg = rng.normal(0, 30, (1500, 8))                     # microvolts
    drop = list(range(700, 710))                          # 10 packets lost on the radio
    f = _openbci_v5(tmp_path / "OpenBCI-RAW-2024-01-01_22-00-00.txt", eeg, drop=drop)
    src = FileSource(f, speed="max", chunk_samples=32)
    # BrainFlow's Cyton names, as a live brainflow source gives them
    assert src.channels == ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")
    assert src.rate_hz == 250.0
    kept = [k for k in range(1500) if k not in set(drop)]
    np.testing.assert_allclose(src.data.samples, eeg[kept] * 1e-6, rtol=1e-9, atol=1e-12)
    assert list(src._gaps) == [700]                       # the sample after the loss


def test_openbci_gui_v4_recording_without_column_line(tmp_path) -> None:
    """Older GUIs: no column line, the header describes the columns; times from the
    counter, so a lost packet is a real gap in time."""
    from engramloop.drivers.files import load_file

    eeg = np.random.default_rng(5).normal(0, 30, (600, 8))
    lines = ["%OpenBCI Raw EEG Data", "%Number of channels = 8", "%Sample Rate = 250.0 Hz",
             "%First Column = SampleIndex", "%Last Column = Timestamp",
             "%Other Columns = EEG data in microvolts followed by Accel Data (in G) "
             "interleaved with Aux Data"]
    for k in range(600):
        if k in (300, 301, 302):
            continue
        lines.append(", ".join([str(k % 256)] + [f"{v:.2f}" for v in eeg[k]]
                               + ["0.000", "0.000", "0.000", "15:31:23.878"]))
    f = tmp_path / "OpenBCI-RAW-old.txt"
    f.write_text("\n".join(lines) + "\n")
    d = load_file(f)
    assert d.channels == tuple(f"EXG Channel {i}" for i in range(8))
    np.testing.assert_allclose(d.samples[:300], eeg[:300] * 1e-6, atol=0.006e-6)
    assert d.timestamps[300] - d.timestamps[299] == pytest.approx(4 / 250.0)
    assert list(d.gaps) == [300]


def test_openbci_gui_recording_replays_through_the_cli(tmp_path, capsys) -> None:
    """Real N2 EEG (YASA example) resampled to the Cyton's 250 Hz on C3: the replay finds
    the spindles that the same detector finds on the array (offline reference)."""
    from scipy.signal import resample_poly
    from shared_data import DATA

    from engramloop.analysis.scoring import replay
    from engramloop.cli import main
    from engramloop.decoders.spindle import SpindleDetector, SpindleSettings

    x = np.loadtxt(DATA / "data_N2_spindles_15sec_200Hz.txt")
    c3 = resample_poly(np.tile(x, 2), 5, 4)               # 30 s at 250 Hz, microvolts
    eeg = np.zeros((c3.size, 8))
    eeg[:, 2] = c3
    f = _openbci_v5(tmp_path / "OpenBCI-RAW-n2.txt", eeg)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[detectors.ripple]\nenabled = false\n[detectors.so]\nenabled = false\n'
                   '[detectors.spindle]\nchannels = ["C3"]\n[policy]\ntarget = "spindle"\n')
    out = tmp_path / "r.xdf"
    assert main(["replay", str(cfg), str(f), "--speed", "max", "--record", str(out),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    ref = replay([SpindleDetector(SpindleSettings(channels=("C3",)))],
                 np.round(c3, 6)[:, None] * 1e-6, np.arange(c3.size) / 250.0, 250.0,
                 ("C3",), 10)
    n_ref = sum(e.kind == "spindle" for e in ref)
    assert n_ref > 0 and f"'spindle': {n_ref}" in text
