"""BrainFlow loads where setuptools has no pkg_resources (setuptools >= 81), without
engramloop capping the user's setuptools (drivers/brainflow_lib.py).

The real BrainFlow package is used; setuptools >= 81 is stood in for by an import hook
that refuses ``pkg_resources`` in a child interpreter (this venv keeps an older setuptools
for other tools, and the test must not change it)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent("""
    import sys
    class NoPkgResources:  # what an environment with setuptools >= 81 looks like
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "pkg_resources":
                raise ModuleNotFoundError("No module named 'pkg_resources'",
                                          name="pkg_resources")
    sys.meta_path.insert(0, NoPkgResources())
""")


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_synthetic_board_streams_without_pkg_resources():
    r = _child("""
        from engramloop.drivers.brainflow_lib import load_brainflow
        bs = load_brainflow()
        board = bs.BoardShim(bs.BoardIds.SYNTHETIC_BOARD.value, bs.BrainFlowInputParams())
        board.prepare_session()
        board.release_session()
        from brainflow.data_filter import DataFilter
        DataFilter.get_version()
        assert "pkg_resources" not in sys.modules, "the stand-in must not stay behind"
        print("ok", bs.BoardShim.get_sampling_rate(bs.BoardIds.SYNTHETIC_BOARD.value))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "250"]  # BrainFlow docs: synthetic board, 250 Hz


def test_without_the_loader_brainflow_needs_pkg_resources_on_this_python():
    """The reason the loader exists: drop it when this starts passing on every Python we
    support (BrainFlow fixed, or Python >= 3.12 only)."""
    r = _child("""
        from brainflow.board_shim import BoardShim, BoardIds
        BoardShim.get_sampling_rate(BoardIds.SYNTHETIC_BOARD.value)
    """)
    if sys.version_info >= (3, 12):
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode != 0 and "pkg_resources" in r.stderr
