"""Plain JSON values from the objects the loop records (events, decisions, pulses, numpy
scalars and arrays), shared by the XDF recorder and the LSL marker outlets."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types; non-finite floats become null so the text is strict JSON.

    Dicts (keys as strings), lists/tuples, numpy scalars and arrays, objects with a
    ``to_dict()`` and dataclasses are converted recursively; anything else becomes its
    ``str()``.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, str, type(None))):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    return str(obj)
