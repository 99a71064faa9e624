"""Issue 18 points 2, 7, 8 and 9: bad configs, files and output paths end in one line on
stderr naming the thing and what to do, a non-zero exit, no traceback and no half-written
output; an output never overwrites an input; recordings stay readable by pyxdf."""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from engramloop.cli import main

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" if (ROOT / "configs").is_dir() else ROOT / "src/engramloop/configs"


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str, *needles: str) -> str:
    """The failure is exactly one stderr line, non-zero exit, naming each needle."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder nobody can write in: mode 555 for a user; for root (who ignores mode
    bits) /sys, where the kernel refuses new files."""
    if os.geteuid() == 0:
        return Path("/sys")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


def npz(path: Path, **arrays) -> Path:
    base = dict(samples=np.random.default_rng(0).normal(0, 20e-6, (2000, 2)),
                rate_hz=np.float64(200.0), channels=np.array(["C3", "Cz"]))
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def cfg(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


EEG = ('[detectors.ripple]\nenabled = false\n[detectors.so]\nchannels = ["C3"]\n'
       '[detectors.spindle]\nchannels = ["{sp}"]\n[policy]\ntarget = "spindle"\n')


# ------------------------------------------------------------- point 2: channels
def test_replay_with_a_typo_in_detector_channels_names_detector_and_close_match(
        tmp_path, capsys) -> None:
    rec = npz(tmp_path / "rec.npz")
    c = cfg(tmp_path, EEG.format(sp="cz"))
    rc, out, err = cli(capsys, "replay", c, rec, "--speed", "max")
    line = one_line_error(rc, err, "c.toml: detectors.spindle.channels",
                          "'cz' (did you mean 'Cz'?)",
                          "it has C3, Cz", "detectors.spindle.enabled = false")
    assert line.startswith("ConfigError:")


def test_partial_channel_match_is_the_same_one_line_error(tmp_path, capsys) -> None:
    rec = npz(tmp_path / "rec.npz")
    c = cfg(tmp_path, '[detectors.spindle]\nenabled = false\n[detectors.so]\nenabled = false\n'
                      '[detectors.ripple]\nchannels = ["C3", "CA1"]\npool_weights = [1.0, 1.0]\n')
    rc, _, err = cli(capsys, "replay", c, rec, "--speed", "max")
    one_line_error(rc, err, "detectors.ripple.channels", "'CA1'", "it has C3, Cz")


def test_edf_label_with_reference_suffix_is_suggested(tmp_path, capsys) -> None:
    """The DREAMS excerpts label their channel C3-A1 (real file)."""
    from shared_data import DATA

    c = cfg(tmp_path, EEG.format(sp="C3").replace('["C3"]\n[detectors.spindle]',
                                                   '["C3"]\nenabled = false\n'
                                                   '[detectors.spindle]'))
    rc, _, err = cli(capsys, "replay", c, DATA / "dreams_dev" / "excerpt1.edf",
                     "--speed", "max", "--duration", "5")
    one_line_error(rc, err, "'C3' (did you mean 'C3-A1'?)")


def test_source_channel_selection_typo_has_a_hint(tmp_path, capsys) -> None:
    rec = npz(tmp_path / "rec.npz")
    c = cfg(tmp_path, EEG.format(sp="Cz"))
    rc, _, err = cli(capsys, "replay", c, rec, "--speed", "max", "--channels", "c3,Cz")
    one_line_error(rc, err, "rec.npz", "'c3' (did you mean 'C3'?)", "--channels")
    rc, _, err = cli(capsys, "run", CONFIGS / "sim-ripple.toml", "--speed", "max",
                     "--duration", "1", "--channels", "CA1,CAlb")
    one_line_error(rc, err, "simulator", "'CAlb' (did you mean 'CA1b'?)")


def test_disabled_detector_is_not_checked(tmp_path, capsys) -> None:
    rec = npz(tmp_path / "rec.npz")
    c = cfg(tmp_path, EEG.format(sp="Cz"))
    rc, out, err = cli(capsys, "replay", c, rec, "--speed", "max", "--quiet")
    assert rc == 0, err


def test_validate_knows_sim_and_file_channels(tmp_path, capsys) -> None:
    c = cfg(tmp_path, '[detectors.ripple]\nchannels = ["ca1"]\n')
    rc, _, err = cli(capsys, "validate", c)
    one_line_error(rc, err, "c.toml", "'ca1' (did you mean 'CA1'?)")
    rec = npz(tmp_path / "rec.npz")
    c = cfg(tmp_path, f'[source]\nkind = "file"\n[source.file]\npath = "{rec}"\n'
            + EEG.format(sp="Pz"))
    rc, _, err = cli(capsys, "validate", c)
    one_line_error(rc, err, "'Pz'", "it has C3, Cz")
    # a BrainFlow board's channel names come from BrainFlow's board description
    c = cfg(tmp_path, '[source]\nkind = "brainflow"\n[source.brainflow]\nboard = "cyton"\n'
            + EEG.format(sp="Cz"))
    rc, _, err = cli(capsys, "validate", c)
    one_line_error(rc, err, "'Cz'", "it has Fp1, Fp2, C3, C4, P7, P8, O1, O2")
    c = cfg(tmp_path, '[source]\nkind = "lsl"\n')   # not knowable before the stream
    rc, out, err = cli(capsys, "validate", c)
    assert rc == 0 and "not known before a lsl source starts" in out


# ------------------------------------------------------------- point 8: Nyquist
def test_band_above_nyquist_is_caught_by_validate_and_run(tmp_path, capsys) -> None:
    rec = npz(tmp_path / "rec.npz")                   # 200 Hz: ripple band 150-250 Hz
    det = ('[detectors.so]\nchannels = ["C3"]\n[detectors.spindle]\nchannels = ["Cz"]\n'
           '[detectors.ripple]\nchannels = ["C3"]\n')
    c = cfg(tmp_path, f'[source]\nkind = "file"\n[source.file]\npath = "{rec}"\n' + det)
    rc, _, err = cli(capsys, "validate", c)
    one_line_error(rc, err, "detectors.ripple.band_hz", "Nyquist frequency (100 Hz)")
    rc, _, err = cli(capsys, "replay", cfg(tmp_path, det, "r.toml"), rec, "--speed", "max")
    one_line_error(rc, err, "detectors.ripple.band_hz", "Nyquist frequency (100 Hz)")


def test_real_50_hz_excerpt_replays_and_a_band_that_cannot_fit_is_named(tmp_path,
                                                                        capsys) -> None:
    """DREAMS excerpt 3 is stored at 50 Hz: the spindle detector caps its broadband
    reference at 0.9 x Nyquist (3-22.5 Hz), so at the defaults validate and replay run (the
    check before the run refused the uncapped 3-30 Hz, although the detector would have
    run). A sigma band whose top the capped broadband cannot reach above is named before
    the run."""
    from shared_data import DATA

    edf = DATA / "dreams_dev" / "excerpt3.edf"
    det = ('[detectors.ripple]\nenabled = false\n[detectors.so]\nchannels = ["C3-A1"]\n'
           '[detectors.spindle]\nchannels = ["C3-A1"]\n[policy]\ntarget = "spindle"\n')
    c = cfg(tmp_path, f'[source]\nkind = "file"\n[source.file]\npath = "{edf}"\n' + det)
    assert cli(capsys, "validate", c)[0] == 0
    rc, out, _ = cli(capsys, "replay", cfg(tmp_path, det, "r.toml"), edf, "--speed", "max",
                     "--quiet")
    assert rc == 0 and "spindle" in out
    wide = det.replace('[detectors.spindle]\n', '[detectors.spindle]\nsigma_band_hz = [11, 24]\n')
    c = cfg(tmp_path, f'[source]\nkind = "file"\n[source.file]\npath = "{edf}"\n' + wide)
    rc, _, err = cli(capsys, "validate", c)
    one_line_error(rc, err, "detectors.spindle.broad_band_hz", "50 Hz source")
    rc, _, err = cli(capsys, "replay", cfg(tmp_path, wide, "w.toml"), edf, "--speed", "max")
    one_line_error(rc, err, "w.toml: detectors.spindle.broad_band_hz", "50 Hz source")


# ------------------------------------------------------------- points 7/8: files
BAD_NPZ = {
    "rate zero": dict(rate_hz=np.float64(0.0)),
    "rate negative": dict(rate_hz=np.float64(-200.0)),
    "rate NaN": dict(rate_hz=np.float64(np.nan)),
    "rate inf": dict(rate_hz=np.float64(np.inf)),
    "rate string": dict(rate_hz=np.array("fast")),
    "duplicate channels": dict(channels=np.array(["C3", "C3"])),
    "complex samples": dict(samples=np.ones((2000, 2)) * (1 + 1j)),
    "all NaN": dict(samples=np.full((2000, 2), np.nan)),
    "NaN timestamps": dict(timestamps=np.r_[np.arange(1999) / 200.0, np.nan]),
    "non-monotonic": dict(timestamps=np.r_[np.arange(1000), np.arange(1000)] / 200.0),
    "constant timestamps": dict(timestamps=np.full(2000, 3.0)),
    "rate mismatch": dict(timestamps=np.arange(2000) / 500.0),
}
NEEDLE = {"rate zero": "rate_hz", "rate negative": "rate_hz", "rate NaN": "rate_hz",
          "rate inf": "rate_hz", "rate string": "rate_hz", "duplicate channels": "duplicate",
          "complex samples": "complex", "all NaN": "no finite sample",
          "NaN timestamps": "NaN", "non-monotonic": "backwards",
          "constant timestamps": "constant", "rate mismatch": "does not match"}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_is_one_line_and_nothing_written(case, tmp_path, capsys) -> None:
    rec = npz(tmp_path / "rec.npz", **BAD_NPZ[case])
    c = cfg(tmp_path, EEG.format(sp="Cz"))
    out = tmp_path / "out.xdf"
    rc, _, err = cli(capsys, "replay", c, rec, "--speed", "max", "--record", out)
    one_line_error(rc, err, "rec.npz", NEEDLE[case])
    assert not out.exists()


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-1", "0"])
def test_duration_must_be_finite_and_positive(value, tmp_path, capsys) -> None:
    """Found by the exploratory fuzz run: --duration inf was an OverflowError."""
    rc, _, err = cli(capsys, "run", CONFIGS / "sim-ripple.toml", "--speed", "max",
                     "--duration", value)
    one_line_error(rc, err, "--duration", "finite number of seconds > 0")
    rc, _, err = cli(capsys, "sim", "--duration", value, "--out", tmp_path / "s.npz")
    one_line_error(rc, err, "--duration", "finite number of seconds > 0")
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("flag,value", [("--duration-s", "inf"), ("--duration-s", "nan"),
                                        ("--rate-hz", "0"), ("--rate-hz", "inf"),
                                        ("--seed-start", "-5"), ("--workers", "-1")])
def test_forecaster_make_dataset_numbers(flag, value, tmp_path, capsys) -> None:
    rc, _, err = cli(capsys, "forecaster", "make-dataset", "--out", tmp_path / "d.npz",
                     "--synthetic", "--quiet", flag, value)
    one_line_error(rc, err, flag)
    assert not (tmp_path / "d.npz").exists()


def test_deeply_nested_toml(tmp_path, capsys) -> None:
    c = cfg(tmp_path, "a = " + "[" * 100000 + "]" * 100000 + "\n")
    rc, _, err = cli(capsys, "validate", c)
    one_line_error(rc, err, "c.toml", "nested too deeply")


def test_report_on_truncated_xdf(tmp_path, capsys) -> None:
    full = tmp_path / "s.xdf"
    assert cli(capsys, "sim", "--duration", "3", "--out", full)[0] == 0
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(full.read_bytes()[:30000])
    rc, _, err = cli(capsys, "report", cut, "--out", tmp_path / "rep", "--quiet")
    one_line_error(rc, err, "cut.xdf", "truncated XDF file", "byte offset")
    rc, _, err = cli(capsys, "report", cut, "--out", tmp_path / "rep")  # with progress
    one_line_error(rc, err, "truncated XDF file")
    assert not (tmp_path / "rep").exists()


def test_outputs_into_unwritable_folder(tmp_path, capsys) -> None:
    ro = unwritable_folder(tmp_path)
    rc, _, err = cli(capsys, "sim", "--duration", "1", "--out", ro / "x.xdf")
    one_line_error(rc, err, "--out", "cannot write in folder")
    rc, _, err = cli(capsys, "run", CONFIGS / "sim-ripple.toml", "--duration", "1",
                     "--speed", "max", "--report", ro / "rep")
    one_line_error(rc, err, "--report", str(ro / "rep"))
    rc, _, err = cli(capsys, "run", CONFIGS / "sim-ripple.toml", "--duration", "1",
                     "--speed", "max", "--record", ro / "r.xdf")
    one_line_error(rc, err, "--record", "cannot write in folder")
    rc, _, err = cli(capsys, "report", tmp_path / "none.xdf", "--out", ro / "rep")
    one_line_error(rc, err, "--out")
    rc, _, err = cli(capsys, "demo", "--out", ro / "demo", "--quiet")
    one_line_error(rc, err, "--out", str(ro / "demo"))


def test_forecaster_outputs_checked_before_the_work(tmp_path, capsys) -> None:
    ro = unwritable_folder(tmp_path)
    rc, _, err = cli(capsys, "forecaster", "make-dataset", "--out", ro / "d.npz",
                     "--nights", "1", "--duration-s", "60", "--synthetic", "--quiet")
    one_line_error(rc, err, "--out", "cannot write in folder")
    data = npz(tmp_path / "data.npz")
    rc, _, err = cli(capsys, "forecaster", "train", "--data", data, "--out", data)
    one_line_error(rc, err, "--out", "input file")


def test_sweep_out_checked_before_the_replays(tmp_path, capsys) -> None:
    ro = unwritable_folder(tmp_path)
    rec = npz(tmp_path / "rec.npz")
    c = cfg(tmp_path, EEG.format(sp="Cz"))
    rc, out, err = cli(capsys, "sweep", c, rec, "--set", "detectors.spindle.threshold_sd=3,4",
                       "--out", ro / "t.csv", "--quiet")
    one_line_error(rc, err, "--out", "cannot write in folder")
    assert "threshold_sd" not in out                  # no replay ran


def test_sim_out_is_never_half_written(tmp_path, capsys, monkeypatch) -> None:
    """A failure while generating leaves no file (written under a temporary name)."""
    import engramloop.sim.generate as gen

    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(gen, "simulate", boom)      # a fault injected where disks fail
    out = tmp_path / "x.npz"
    rc, _, err = cli(capsys, "sim", "--duration", "1", "--out", out)
    assert rc != 0 and not out.exists() and not list(tmp_path.iterdir())


def test_forecaster_worker_failure_is_one_line_and_keeps_the_recording(
        tmp_path, capsys, monkeypatch) -> None:
    """The worker's inference fails mid-run (injected: a fake fault in the real worker
    thread, as a GPU/torch error would); the loop stops, says so in one line, exits
    non-zero and the recording up to then is readable."""
    pytest.importorskip("torch")
    from engramloop.decoders import forecaster as fc

    def broken(self, *a, **k):
        raise RuntimeError("injected inference failure")
    monkeypatch.setattr(fc.Forecaster, "predict", broken)
    rec = tmp_path / "f.xdf"
    rc, _, err = cli(capsys, "run", CONFIGS / "sim-ripple-forecast.toml", "--duration",
                     "70", "--speed", "max", "--record", rec, "--quiet")
    one_line_error(rc, err, "forecaster worker failed", "injected inference failure",
                   f"the recording so far is in {rec}")
    streams, _ = pyxdf.load_xdf(str(rec))
    raw = next(s for s in streams if s["info"]["name"][0] == "engramloop.raw")
    assert len(raw["time_stamps"]) > 30 * 2000    # the first 30 s epoch and more


# ------------------------------------------------------------- point 9
def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_replay_refuses_to_overwrite_its_input(tmp_path, capsys, monkeypatch) -> None:
    src = tmp_path / "s.xdf"
    assert cli(capsys, "sim", "--duration", "2", "--out", src)[0] == 0
    before = _digest(src)
    c = CONFIGS / "sim-ripple.toml"
    monkeypatch.chdir(tmp_path)   # undone after the test: later tests keep their cwd
    for target in (src, Path("s.xdf"), tmp_path / "." / "s.xdf"):
        rc, _, err = cli(capsys, "replay", c, src, "--speed", "max", "--record", target)
        one_line_error(rc, err, "--record", "input file")
    (tmp_path / "rep").mkdir()
    link = tmp_path / "rep" / "session.xdf"
    link.symlink_to(src)                             # --report DIR/session.xdf is the input
    rc, _, err = cli(capsys, "replay", c, link, "--speed", "max", "--report", tmp_path / "rep")
    one_line_error(rc, err, "input file")
    assert _digest(src) == before


def test_config_name_with_control_characters_is_refused(tmp_path, capsys) -> None:
    c = cfg(tmp_path, 'name = "rig\\u0001\\u001b[2J"\n')
    rc, _, err = cli(capsys, "validate", c)
    one_line_error(rc, err, "name", "control character", "U+001B")


def test_channel_label_with_control_characters_stays_readable_by_pyxdf(tmp_path,
                                                                       capsys) -> None:
    rec = npz(tmp_path / "rec.npz", channels=np.array(["C3\x01", "Cz"]))
    c = cfg(tmp_path, EEG.format(sp="Cz").replace('["C3"]', '["C3\\u0001"]'))
    out = tmp_path / "out.xdf"
    rc, _, err = cli(capsys, "replay", c, rec, "--speed", "max", "--record", out, "--quiet")
    assert rc == 0, err
    streams, _ = pyxdf.load_xdf(str(out))
    raw = next(s for s in streams if s["info"]["name"][0] == "engramloop.raw")
    labels = [ch["label"][0] for ch in raw["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels == ["C3\\u0001", "Cz"]
