"""`engramloop sweep`: many recordings x settings on a real local Dask pool (2 worker
processes) give exactly the rows of the serial run, and bad input is one line."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from engramloop.analysis.fanout import pooled
from engramloop.cli import main
from engramloop.controller.config import SHIPPED_DIR

ROOT = Path(__file__).resolve().parents[2]
CFG = SHIPPED_DIR / "sim-ripple.toml"


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("nights")
    for seed in (1, 2):
        assert main(["sim", "--duration", "25", "--out", str(d / f"n{seed}.npz"),
                     "--seed", str(seed), "--config", str(CFG)]) == 0
    return d


def read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_two_workers_equal_the_serial_run(nights, tmp_path, capsys):
    common = ["sweep", str(CFG), str(nights / "n*.npz"),
              "--set", "detectors.ripple.threshold_sd=3,4.5", "--quiet"]
    assert main(common + ["--workers", "1", "--out", str(tmp_path / "serial.csv")]) == 0
    assert main(common + ["--workers", "2", "--out", str(tmp_path / "dask.csv")]) == 0
    serial, dask = read(tmp_path / "serial.csv"), read(tmp_path / "dask.csv")
    assert serial == dask
    per = [r for r in serial if r["recording"] != "(pooled)"]
    assert len(per) == 4 and {Path(r["recording"]).name for r in per} == {"n1.npz", "n2.npz"}
    assert all(r["error"] == "" and int(r["ripple.true_positives"]) > 0 for r in per)
    out = capsys.readouterr().out
    assert "# best ripple F1" in out


def test_pooled_scores_are_sums_over_recordings():
    rows = [{"k": "1", "error": "", "ripple.true_positives": 8, "ripple.false_positives": 2,
             "ripple.false_negatives": 0, "ripple.f1": 0.889},
            {"k": "1", "error": "", "ripple.true_positives": 1, "ripple.false_positives": 0,
             "ripple.false_negatives": 9, "ripple.f1": 0.182},
            {"k": "1", "error": "no such file"}]
    (p,) = pooled(rows, ["k"])
    assert p["recordings"] == 2 and p["errors"] == 1
    assert p["ripple.precision"] == pytest.approx(9 / 11)
    assert p["ripple.recall"] == pytest.approx(9 / 18)
    f1 = 2 * (9 / 11) * 0.5 / (9 / 11 + 0.5)
    assert p["ripple.f1"] == pytest.approx(f1)
    assert p["ripple.f1_mean"] == pytest.approx((0.889 + 0.182) / 2)
    assert not math.isnan(p["ripple.f1"])


@pytest.mark.parametrize("extra, words", [
    (["nope/*.edf"], "no such recording"),
    (["{nights}/n1.npz", "--set", "detectors.ripple.nonsense=1,2"], "nonsense"),
    (["{nights}/n1.npz", "--truth-dir", "{empty}"], "no n1.csv"),
    (["{nights}/n1.npz", "--workers", "0"], "--workers"),
    (["{nights}/n1.npz", "--out", "{nights}/x.txt"], ".csv or .parquet"),
])
def test_bad_input_is_one_line(nights, tmp_path, capsys, extra, words):
    args = (["sweep", str(CFG)] + [a.format(nights=nights, empty=tmp_path) for a in extra]
            + ["--quiet"])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err


@pytest.mark.slow
def test_a_cluster_by_address_gives_the_serial_rows(nights, tmp_path):
    """`--scheduler ADDRESS`: a cluster started with Dask's own command-line programs
    (`dask scheduler`, `dask worker` with 2 worker processes), as a lab would start one."""
    import socket
    import subprocess
    import sys

    from distributed import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                               "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                       addr, "--nworkers", "2", "--nthreads", "1",
                                       "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(addr, timeout="120s") as c:
            c.wait_for_workers(2, timeout=300)
        common = ["sweep", str(CFG), str(nights / "n*.npz"),
                  "--set", "detectors.ripple.threshold_sd=3,4.5", "--quiet"]
        assert main(common + ["--workers", "1", "--out", str(tmp_path / "serial.csv")]) == 0
        assert main(common + ["--scheduler", addr, "--out", str(tmp_path / "cluster.csv")]) == 0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
    assert read(tmp_path / "serial.csv") == read(tmp_path / "cluster.csv")
