"""engramloop: closed-loop neuromodulation controller.

Subpackages follow the data flow, and imports run one way:
``core`` <- ``drivers``, ``decoders``, ``sim`` <- ``controller`` <- ``analysis``, ``cli``.

The Python API for notebooks (:mod:`engramloop.api`, docs/api.md) is available from the
top level: ``engramloop.detect_spindles``, ``detect_ripples``,
``detect_slow_oscillations`` and ``read_recording``. It is imported on first use, so
``import engramloop`` (and the command line) stays fast.
"""
from engramloop._version import __version__

#: names re-exported from engramloop.api, imported when first used (PEP 562)
_API = ("detect_spindles", "detect_ripples", "detect_slow_oscillations", "read_recording",
        "Recording", "RecordingError")

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from engramloop import api

        return getattr(api, name)
    raise AttributeError(f"module 'engramloop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
