"""Load BrainFlow's native libraries without setuptools' ``pkg_resources``.

BrainFlow (5.23) finds its shared libraries with ``importlib.resources.files(__name__)``
where ``__name__`` is a module (``brainflow.board_shim``); Python accepts a module there
only from 3.12 on. On 3.10 and 3.11 the call raises TypeError and BrainFlow falls back to
``pkg_resources.resource_filename(__name__, "lib/...")``, and setuptools 81 removed
``pkg_resources``. Instead of capping the user's setuptools, :func:`load_brainflow`
creates BrainFlow's library singletons once, with a stand-in ``pkg_resources`` that
answers exactly that call, and removes the stand-in again. For an installed package
``resource_filename(module, rel)`` is the module's folder joined with ``rel``, which is
what the stand-in returns.

Call :func:`load_brainflow` before the first BrainFlow call that touches a board or the
data handler; it is idempotent and cheap after the first time.
"""
from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

__all__ = ["load_brainflow"]

#: (module, singleton class) that BrainFlow loads a shared library for.
_LIBRARIES = (("brainflow.board_shim", "BoardControllerDLL"),
              ("brainflow.data_filter", "DataHandlerDLL"))
_loaded = False


def _resource_filename(package: str, resource: str) -> str:
    """``pkg_resources.resource_filename`` for a module or package on the file system."""
    mod = sys.modules.get(package) or importlib.import_module(package)
    base = (list(mod.__path__)[0] if hasattr(mod, "__path__")
            else os.path.dirname(mod.__file__ or ""))
    return os.path.join(base, *resource.replace("\\", "/").split("/"))


@contextmanager
def _stand_in() -> Iterator[None]:
    """Provide ``pkg_resources.resource_filename`` while BrainFlow loads its libraries,
    unless the real module is already imported (then BrainFlow uses that)."""
    if "pkg_resources" in sys.modules:
        yield
        return
    shim = ModuleType("pkg_resources", "engramloop stand-in: resource_filename only")
    shim.resource_filename = _resource_filename  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim
    try:
        yield
    finally:
        if sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]


def load_brainflow() -> ModuleType:
    """Import ``brainflow.board_shim`` with BrainFlow's shared libraries loaded.

    Returns
    -------
    module
        ``brainflow.board_shim``.

    Raises
    ------
    FileNotFoundError
        BrainFlow's own error when its shared library is missing from the installation.
    """
    global _loaded
    if not _loaded:
        with _stand_in():
            for module, singleton in _LIBRARIES:
                cls = getattr(importlib.import_module(module), singleton, None)
                if cls is not None:
                    cls.get_instance()
        _loaded = True
    return importlib.import_module("brainflow.board_shim")
