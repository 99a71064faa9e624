import os
import shutil
import sys
from pathlib import Path

import pytest

# tests import their helpers (twins, ...) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))


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
