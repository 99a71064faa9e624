import os
import shutil
import sys
from pathlib import Path

import pytest

# tests import their helpers (twins, shared_data, ...) and a few of each other's fixtures
# (test_loop.ripple_cfg, test_lsl.Outlet, ...) as top-level modules, across the package
# folders tests/core, tests/decoders, ... (none has an __init__.py)
sys.path.insert(0, str(Path(__file__).parent))
sys.path[1:1] = sorted(str(d) for d in Path(__file__).parent.iterdir()
                       if d.is_dir() and (d / "__init__.py").exists() is False
                       and any(d.glob("test_*.py")))


def pytest_sessionstart(session: pytest.Session) -> None:
    """BrainFlow's libraries loaded the way the product loads them
    (``drivers.brainflow_lib``: on Python 3.11 BrainFlow 5.23 falls back to
    ``pkg_resources``, which setuptools 81 removed), before any test imports BrainFlow
    directly to write a reference file. Which test ran first decided it: under xdist a
    worker whose first BrainFlow test wrote a Cyton file failed with "No module named
    'pkg_resources'" (59 errors in one CI run, none in the next)."""
    try:
        from engramloop.drivers.brainflow_lib import load_brainflow

        load_brainflow()
    except ImportError:     # BrainFlow not installed: its tests skip on their own
        pass


def require_tool(tool: str, *, package: str) -> str:
    """The path of ``tool`` -- an executable on PATH, or an absolute file or directory
    path (a header, a library's data) -- or skip the calling test with a reason that
    names the distribution ``package`` to install.

    Under ``CI=true`` a missing tool is a failure, not a skip: CI installs every package
    a test needs (``.ci/run``), so a skip there would hide a test that never ran.
    """
    found = (tool if Path(tool).exists() else None) if "/" in tool else shutil.which(tool)
    if found is None:
        reason = f"{tool} not found: install the package {package} (apt-get install {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``), every test marked
    ``realtime`` (paced by the wall clock: LSL outlets, emulated devices on ptys, speed-1
    runs) goes to one group, which one worker runs one test after another, while the
    other worker takes the offline tests. Real-time tests then never compete with each
    other for the cores (they must still hold on a busy machine: they run next to the
    other worker's load). Every LSL test names its streams uniquely (uuid or pid), so an
    outlet of the other worker is never taken for a test's own."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("realtime") is not None:
            item.add_marker(pytest.mark.xdist_group("realtime"))
