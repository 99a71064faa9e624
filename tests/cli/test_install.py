"""The built wheel installs into a fresh venv and works like a library (issue 22).

Offline and fast: the wheel is built from a copy of the source tree without build
isolation (setuptools and wheel come from the running environment, so no index is asked),
and the fresh venv sees the *dependencies* through one ``.pth`` line pointing at the
running environment's site-packages -- the same thing ``venv --system-site-packages``
does, but pointed at the environment that holds the dependencies rather than at the base
interpreter's. pip installs the wheel with ``--no-index``, resolving every declared
dependency against those packages, so a dependency missing from the metadata or a
version bound they do not meet fails here. Only ``.pth`` lines of the venv's own
site-packages are processed, so an editable engramloop in the running environment is not
visible inside the venv; the tests check that ``engramloop`` is the installed copy.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    # no PYTHONPATH: a checkout's src/ must not stand in for the installed package
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _run(args: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"{args}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the built wheel installed; returns the venv folder."""
    tmp = tmp_path_factory.mktemp("install")
    tree = tmp / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns(
        "*.so", "*.pyd", "__pycache__", "*.egg-info", "build"))
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
          "--no-build-isolation", "-w", dist, tree], cwd=tmp)
    wheels = list(dist.glob("engramloop-*.whl"))
    assert len(wheels) == 1, wheels

    env = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    py = env / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_engramloop_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-index",
          wheels[0]], cwd=tmp)
    return env


def _package_files(env: Path) -> dict[str, float]:
    pkg = next((env / "lib").glob("python*/site-packages/engramloop"))
    return {str(p.relative_to(pkg)): p.stat().st_mtime_ns for p in pkg.rglob("*")
            if "__pycache__" not in p.parts}


def test_installed_package_is_the_wheel_with_its_data(installed, tmp_path):
    py = installed / "bin" / "python"
    r = _run([py, "-c", "import engramloop, engramloop.decoders._filters as f; "
                        "print(engramloop.__file__); print(f.__file__)"], cwd=tmp_path)
    for line in r.stdout.split():
        assert line.startswith(str(installed)), line
    files = _package_files(installed)
    for needed in ("configs/sim-ripple-forecast.toml", "configs/cyton-rig.toml",
                   "decoders/data/forecaster.pt", "decoders/_filters.pyi", "py.typed",
                   "drivers/stimbox/PROTOCOL.md"):
        assert needed in files, needed
    r = _run([installed / "bin" / "engramloop", "configs"], cwd=tmp_path)
    assert "sim-ripple-forecast" in r.stdout and "stimbox-rig" in r.stdout


def test_demo_runs_from_a_folder_that_shadows_old_top_level_names(installed, tmp_path):
    """`engramloop demo --duration 30` from a working folder holding a user's own
    ``drivers/`` package and ``sim.py`` (names that were once top-level packages here)."""
    (tmp_path / "drivers").mkdir()
    (tmp_path / "drivers" / "__init__.py").write_text("raise ImportError('user drivers')\n")
    (tmp_path / "sim.py").write_text("raise ImportError('user sim.py')\n")
    (tmp_path / "decoders").mkdir()
    before = _package_files(installed)
    r = _run([installed / "bin" / "engramloop", "demo", "--duration", "30", "--out", "out"],
             cwd=tmp_path)
    assert "uplift-allocated closed-loop ripple trial" in r.stdout
    out = tmp_path / "out"
    for name in ("session.xdf", "summary.json", "index.html"):
        assert (out / name).is_file(), name
    rep = json.loads((out / "summary.json").read_text())
    # the forecaster loaded the checkpoint shipped as package data (the worker loads it
    # at start; its first forecast would come after the first 30 s epoch, so none yet)
    ckpt = next(installed.glob("lib/python*/site-packages/engramloop/decoders/data/"
                               "forecaster.pt"))
    assert f"the checkpoint shipped in the package, {ckpt}" in r.stdout
    # and the uplift model the demo's allocator spends its budget with, also package data
    model = next(installed.glob("lib/python*/site-packages/engramloop/decoders/data/"
                                "uplift.json"))
    assert f"the uplift model shipped in the package, {model}" in r.stdout
    assert "gate_held_back" in rep["run"]["forecaster"]
    # `python -m engramloop` puts the working folder first on sys.path: still ours
    r = _run([installed / "bin" / "python", "-m", "engramloop", "config-reference"],
             cwd=tmp_path)
    assert r.stdout.startswith("# Configuration reference")
    assert _package_files(installed) == before, "something wrote into the installed package"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoders", "drivers", "out",
                                                          "sim.py"]
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(out / "session.xdf"))
    raw = {s["info"]["name"][0]: s for s in streams}["engramloop.raw"]
    rate = float(raw["info"]["nominal_srate"][0])
    assert len(raw["time_series"]) == round(30 * rate)  # every simulated sample recorded
