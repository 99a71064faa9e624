"""Fuzz / bad-input suite (issue 18): generated cases over configs, files and command
lines, run through ``engramloop.cli.main`` in-process (plus a few real subprocesses).

For every case: no traceback and no "internal error" (a bug), no hang (each case has a
deadline), a failure is exactly ONE stderr line with a non-zero exit that names the thing
(the config file, the input file or the flag), and a run that fails leaves no output file
behind unless it is a readable recording of what ran (nothing half-written).

The cases are generated from fixed seeds, so a failure reproduces; the case id says
which mutation of which input it was.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from engramloop.cli import main

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
pytestmark = pytest.mark.filterwarnings("ignore")   # library warnings are not our output

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" if (ROOT / "configs").is_dir() else ROOT / "src/engramloop/configs"
CASE_DEADLINE_S = 30      # generous on a busy machine; a hang is minutes, not seconds


class Hang(BaseException):
    """Raised by the deadline alarm (a BaseException: main() must not swallow it)."""


def _alarm(signum, frame):
    raise Hang("case did not finish before its deadline")


def run_case(capsys, argv: list, names: tuple[str, ...], outputs: tuple[Path, ...] = ()):
    """Run one command line; check the rules above. ``names``: any of these must appear
    in an error line (the thing that is wrong). Returns (rc, err line or '')."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_DEADLINE_S)
    try:
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:          # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if rc == 0:
        return rc, ""
    assert len(lines) == 1, (argv, err)
    assert any(n in lines[0] for n in names), (argv, names, lines[0])
    for o in outputs:   # nothing half-written: absent, or a recording pyxdf reads whole
        if o.exists():
            pyxdf.load_xdf(str(o))
    return rc, lines[0]


# ----------------------------------------------------------------- inputs to mutate
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One small valid file of each kind the loop reads, and configs for them."""
    d = tmp_path_factory.mktemp("fuzz")
    from engramloop.cli import main as cli

    assert cli(["sim", "--duration", "3", "--out", str(d / "sim.npz")]) == 0
    assert cli(["sim", "--duration", "3", "--out", str(d / "sim.xdf")]) == 0
    import pyedflib
    from pyedflib import highlevel

    with np.load(d / "sim.npz") as z:
        x, names = z["samples"], [str(c) for c in z["channels"]]
    hdr = [highlevel.make_signal_header(n, dimension="uV", sample_frequency=2000,
                                        physical_min=-5000, physical_max=5000)
           for n in names]
    h = highlevel.make_header()
    h["annotations"] = [[1.0, 0.5, "spindle"]]
    highlevel.write_edf(str(d / "sim.edf"), [np.ascontiguousarray(c) for c in x.T * 1e6],
                        hdr, h, file_type=pyedflib.FILETYPE_EDFPLUS)
    # a Cyton recording as BrainFlow writes it (DataFilter.write_file) and as the GUI does
    from brainflow.board_shim import BoardShim
    from brainflow.data_filter import DataFilter

    descr = BoardShim.get_board_descr(0)
    n = 750
    bf = np.zeros((descr["num_rows"], n))
    bf[descr["eeg_channels"]] = np.random.default_rng(1).normal(0, 20, (8, n))
    bf[descr["package_num_channel"]] = np.arange(n) % 256
    bf[descr["timestamp_channel"]] = 1.7e9 + (np.arange(n) // 4 * 4 + 3) / 250.0
    DataFilter.write_file(np.ascontiguousarray(bf), str(d / "cyton.csv"), "w")
    from test_files_users_have import _openbci_v5

    _openbci_v5(d / "OpenBCI-RAW-x.txt", bf[descr["eeg_channels"]].T)
    sim_cfg = d / "sim.toml"
    sim_cfg.write_text("[policy]\ntarget = \"ripple\"\n")
    cyton_cfg = d / "cyton.toml"
    cyton_cfg.write_text('[source.file]\nboard = "cyton"\n[detectors.ripple]\nenabled = false\n'
                         '[detectors.spindle]\nchannels = ["C3"]\n[detectors.so]\n'
                         'channels = ["Fp1"]\n[policy]\ntarget = "spindle"\n')
    return {"dir": d, "sim.npz": sim_cfg, "sim.xdf": sim_cfg, "sim.edf": sim_cfg,
            "cyton.csv": cyton_cfg, "OpenBCI-RAW-x.txt": cyton_cfg}


# ----------------------------------------------------------------- configs (110 cases)
def _config_cases() -> list[tuple[str, int]]:
    names = sorted(p.name for p in CONFIGS.glob("*.toml"))
    return [(n, k) for n in names for k in range(14)][:110]


CONFIG_VALUES = ["-1", "0", "1e309", "nan", "inf", "-inf", '""', '"x"', "[]", "[1, 2]",
                 "{a = 1}", "true", "99999999999999999999", '"\\u0001"', "[[[[1]]]]",
                 '"' + "y" * 300 + '"', "1979-05-27"]


def _mutate_config(text: str, rng: np.random.Generator) -> str:
    lines = text.splitlines()
    kind = rng.integers(7)
    assigns = [i for i, ln in enumerate(lines) if "=" in ln and not ln.lstrip().startswith("#")]
    if kind == 0 and assigns:                               # a value of another type
        i = int(rng.choice(assigns))
        key = lines[i].split("=", 1)[0]
        lines[i] = f"{key}= {rng.choice(CONFIG_VALUES)}"
    elif kind == 1 and lines:                               # a line gone
        del lines[int(rng.integers(len(lines)))]
    elif kind == 2:                                         # an unknown key
        lines.insert(int(rng.integers(len(lines) + 1)), "bogus_key_s = 3")
    elif kind == 3:                                         # cut short
        return text[: int(rng.integers(len(text) + 1))]
    elif kind == 4:                                         # bytes flipped
        b = bytearray(text.encode())
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        return b.decode("utf-8", "replace")
    elif kind == 5:                                         # a table twice
        heads = [ln for ln in lines if ln.startswith("[")]
        if heads:
            lines.append(str(rng.choice(heads)))
    else:                                                   # channels nobody has
        lines.append('[detectors.spindle]' if "[detectors.spindle]" not in text else "")
        lines.append('channels = ["Xx1"]' if "[detectors.spindle]" not in text else "")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name,k", _config_cases())
def test_fuzz_config(name, k, tmp_path, capsys) -> None:
    rng = np.random.default_rng(1000 + k + 97 * (zlib.crc32(name.encode()) % 1000))
    text = _mutate_config((CONFIGS / name).read_text(encoding="utf-8"), rng)
    c = tmp_path / f"fuzz-{name}"
    c.write_text(text, encoding="utf-8", errors="replace")
    run_case(capsys, ["validate", c], names=(c.name, str(c)))


# ----------------------------------------------------------------- files (84 cases)
FILES = ["sim.npz", "sim.xdf", "sim.edf", "cyton.csv", "OpenBCI-RAW-x.txt"]


def _mutate_file(raw: bytes, kind: int, rng: np.random.Generator) -> bytes:
    n = len(raw)
    if kind == 0:                                            # truncated
        return raw[: int(rng.integers(1, n))]
    if kind == 1:                                            # bytes flipped
        b = bytearray(raw)
        for _ in range(int(rng.integers(1, 20))):
            b[int(rng.integers(n))] = int(rng.integers(256))
        return bytes(b)
    if kind == 2:                                            # a region zeroed
        a = int(rng.integers(n))
        return raw[:a] + bytes(min(n - a, int(rng.integers(1, 4096)))) + raw[a + 4096:]
    if kind == 3:                                            # garbage appended
        return raw + rng.integers(0, 256, int(rng.integers(1, 300))).astype(np.uint8).tobytes()
    return raw[: n // 2]                                     # half a file


def _semantic_npz(path: Path, k: int, src: Path) -> None:
    """npz files that are well-formed but wrong: rate, NaN/Inf, time going back."""
    with np.load(src) as z:
        arrays = {key: z[key] for key in z.files}
    x, t = arrays["samples"].copy(), arrays["timestamps"].copy()
    rng = np.random.default_rng(k)
    n, c = x.shape
    a = int(rng.integers(n - 1))
    case = k % 8
    if case == 0:                                                 # rate contradicts t
        arrays["rate_hz"] = np.float64(rng.choice([250.0, 500.0, 1000.0, 4000.0]))
    elif case == 1:                                               # an electrode pop
        x[a:a + int(rng.integers(1, 400)), int(rng.integers(c))] = rng.choice(
            [np.nan, np.inf, -np.inf])
    elif case == 2:                                               # a dead channel
        x[:, int(rng.integers(c))] = rng.choice([np.nan, np.inf])
    elif case == 3:                                               # time steps back
        t[a:] -= float(rng.uniform(0.001, 2.0))
    elif case == 4:                                               # constant time
        t[:] = float(rng.uniform(-1e3, 1e3))
    elif case == 5:
        t[a] = rng.choice([np.nan, np.inf])
    elif case == 6:
        arrays["rate_hz"] = np.array(["250"])                     # a string
    else:
        arrays["channels"] = np.array(["CA1"] * x.shape[1])       # duplicates
    arrays["samples"], arrays["timestamps"] = x, t
    np.savez(path, **arrays)


def _file_cases() -> list[tuple[str, int]]:
    cases = [(f, k) for f in FILES for k in range(12)]      # 60 byte-level mutations
    cases += [("semantic.npz", k) for k in range(24)]       # 24 well-formed but wrong
    return cases


@pytest.mark.parametrize("fname,k", _file_cases())
def test_fuzz_file(fname, k, base, tmp_path, capsys) -> None:
    rng = np.random.default_rng(k * 7919 + len(fname))
    if fname == "semantic.npz":
        target = tmp_path / "semantic.npz"
        _semantic_npz(target, k, base["dir"] / "sim.npz")
        cfg = base["sim.npz"]
    else:
        src = base["dir"] / fname
        target = tmp_path / fname
        target.write_bytes(_mutate_file(src.read_bytes(), k % 5, rng))
        cfg = base[fname]
    out = tmp_path / "out.xdf"
    run_case(capsys, ["replay", cfg, target, "--speed", "max", "--duration", "1",
                      "--record", out, "--quiet"], names=(target.name,), outputs=(out,))


# ----------------------------------------------------------------- command lines (60)
BAD_ARGS = ["-1", "0", "nan", "inf", "", "x", "-", "1e400", "/nonexistent/dir/f.xdf",
            "ä" * 50, "--", "--bogus"]


def _cli_cases() -> list[int]:
    return list(range(60))


@pytest.mark.parametrize("k", _cli_cases())
def test_fuzz_command_line(k, base, tmp_path, capsys, monkeypatch) -> None:
    # a corrupted output path ("x", "0.0") is relative: it must land in tmp_path, not in
    # the checkout the tests run from
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(5000 + k)
    d = base["dir"]
    sim_cfg = CONFIGS / "sim-ripple.toml"
    commands = [
        ["validate", sim_cfg],
        ["sim", "--duration", "1", "--out", tmp_path / "s.npz"],
        ["replay", base["sim.npz"], d / "sim.npz", "--speed", "max", "--duration", "1",
         "--record", tmp_path / "r.xdf"],
        ["run", sim_cfg, "--speed", "max", "--duration", "1", "--record", tmp_path / "r.xdf"],
        ["report", d / "sim.xdf", "--out", tmp_path / "rep", "--quiet"],
        ["score", d / "sim.xdf"],
        ["replay", base["sim.npz"], d / "sim.npz", "--sweep",
         "detectors.ripple.threshold_sd=3,4", "--duration", "1"],
    ]
    argv = list(commands[k % len(commands)])
    # corrupt one argument after the command name (never the command itself)
    i = int(rng.integers(1, len(argv)))
    bad = str(rng.choice(BAD_ARGS))
    flag = str(argv[i - 1]) if str(argv[i - 1]).startswith("--") else ""
    argv[i] = bad
    # a corrupted positional is named by what it is (config, file, recording)
    positional = () if flag else ("config", "file", "recording")
    names = tuple(x for x in (bad, flag, str(argv[0]), "argument", *positional) if x)
    outputs = tuple(Path(a) for a in argv if isinstance(a, Path) and a.suffix == ".xdf"
                    and tmp_path in a.parents)
    run_case(capsys, argv, names=names, outputs=outputs)


# ----------------------------------------------------------------- real processes (5)
SUBPROCESS = [
    ["validate", "/nonexistent/config.toml"],
    ["replay", "CFG", "TRUNC", "--speed", "max", "--record", "OUT"],
    ["run", "--duration", "x", "CFG"],
    ["report", "TRUNCXDF", "--out", "REP"],
    ["validate", "DEEP"],
]


@pytest.mark.parametrize("k", range(len(SUBPROCESS)))
def test_fuzz_real_process(k, base, tmp_path) -> None:
    d = base["dir"]
    trunc = tmp_path / "t.npz"
    trunc.write_bytes((d / "sim.npz").read_bytes()[:5000])
    txdf = tmp_path / "t.xdf"
    txdf.write_bytes((d / "sim.xdf").read_bytes()[:20000])
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100000 + "]" * 100000 + "\n")
    subst = {"CFG": str(base["sim.npz"]), "TRUNC": str(trunc), "OUT": str(tmp_path / "o.xdf"),
             "TRUNCXDF": str(txdf), "REP": str(tmp_path / "rep"), "DEEP": str(deep)}
    argv = [subst.get(a, a) for a in SUBPROCESS[k]]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    p = subprocess.run([sys.executable, "-m", "engramloop", *argv], capture_output=True,
                       text=True, timeout=120, env=env)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode != 0 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "o.xdf").exists() and not (tmp_path / "rep").exists()
