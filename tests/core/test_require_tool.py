"""tests/conftest.py::require_tool: a missing tool skips naming the package to install,
except under CI=true, where it fails (CI installs every package a test needs)."""
import pytest
from conftest import require_tool

MISSING = "engramloop-no-such-tool-x7"


def test_missing_tool_skips_naming_the_package(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install the package some-pkg"):
        require_tool(MISSING, package="some-pkg")


def test_missing_tool_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true.*some-pkg"):
        require_tool(f"/nonexistent/{MISSING}.h", package="some-pkg")


def test_present_tool_gives_its_path(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    assert require_tool("sh", package="dash").endswith("/sh")
    assert require_tool(str(tmp_path), package="x") == str(tmp_path)
