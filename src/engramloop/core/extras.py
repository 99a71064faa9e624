"""Optional dependencies: one error that names the extra to install.

torch (the forecaster), MNE (``Recording.to_mne``) and pandas (tables from the Python API)
are optional so that ``pip install engramloop`` stays small; see docs/install.md for why
torch in particular is not a hard dependency. Code that needs one of them calls
:func:`require` (imports the module) or :func:`check` (only looks it up, so a start-up
check does not pay for importing torch).
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["MissingExtraError", "available", "check", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra provides it."""

    def __init__(self, module: str, extra: str, needed_for: str) -> None:
        super().__init__(f"{needed_for} needs {module}, which is not installed; install it "
                         f"with: pip install 'engramloop[{extra}]'")
        self.module = module
        self.extra = extra


def available(module: str) -> bool:
    """Can ``module`` be imported? (Looks it up without importing it.)"""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check(module: str, extra: str, needed_for: str) -> None:
    """Raise :class:`MissingExtraError` if ``module`` cannot be found (does not import it)."""
    if not available(module):
        raise MissingExtraError(module, extra, needed_for)


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but one of its own imports is broken: show that
        raise MissingExtraError(module, extra, needed_for) from None
