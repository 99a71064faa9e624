"""Where the shared real recordings are: ``shared/data`` beside the checkout (as CI lays it
out), else the workplace copy; and :func:`require_data` for tests that read one."""
import os
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")


def require_data(path: Path) -> Path:
    """``path``, or skip the calling test naming it; under ``CI=true`` a missing recording
    fails instead (CI lays shared/ beside the clone, so a skip would hide a test that never
    ran)."""
    if not Path(path).exists():
        reason = f"{path} missing: the shared recordings belong in shared/data beside the checkout"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    return Path(path)
