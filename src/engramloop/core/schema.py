"""Configuration as data with a schema.

Settings are frozen dataclasses whose fields carry their unit, doc and allowed range in
``field.metadata`` (made with :func:`setting`). :func:`build` turns a parsed TOML table
into such a dataclass, rejecting unknown keys, wrong types and out-of-range values with a
:class:`ConfigError` that names the file and the dotted key. Cross-field rules live in a
``validate(self)`` method on the dataclass that raises ``ValueError("key: message")``.

This module is a leaf: any package may import it to declare its settings.
"""
from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Sequence
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """``ConfigError: <file>: <dotted.key>: <what is wrong, what is allowed>``."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file, self.key, self.message = file, key, message
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{key + ': ' if key else ''}{message}")


def setting(default: Any = _MISSING, *, doc: str, unit: str = "", gt: float | None = None,
            ge: float | None = None, lt: float | None = None, le: float | None = None,
            default_factory: Any = _MISSING) -> Any:
    """A dataclass field with a doc string, a unit and bounds checked at load time.

    Bounds apply to numbers and to every element of a tuple of numbers.
    """
    meta = {"doc": doc, "unit": unit, "gt": gt, "ge": ge, "lt": lt, "le": le}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (tuple,):
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return f"list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    if origin is dict:
        return f"table of {_type_name(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def _check_bounds(value: float, meta: dict, file: str, key: str) -> None:
    unit = f" {meta.get('unit')}" if meta.get("unit") else ""
    for name, ok, word in (("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
                           ("lt", lambda v, b: v < b, "<"), ("le", lambda v, b: v <= b, "<=")):
        bound = meta.get(name)
        if bound is not None and not ok(value, bound):
            raise ConfigError(file, key, f"must be {word} {bound}{unit}, got {value!r}")


def _convert(tp: Any, value: Any, meta: dict, file: str, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for alt in get_args(tp):
            if alt is type(None):
                continue
            try:
                return _convert(alt, value, meta, file, key)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(file, key, " or ".join(errors))
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices or type(value) is not type(choices[0]):
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(file, key, f"must be one of {allowed}, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, key, f"must be an integer, got {value!r}")
        _check_bounds(value, meta, file, key)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(file, key, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(file, key, f"must be finite, got {value!r}")
        _check_bounds(float(value), meta, file, key)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(file, key, f"must be a string, got {value!r}")
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(file, key, f"must be a {_type_name(tp)}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, meta, file, f"{key}[{i}]")
                         for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(file, key, f"must be a {_type_name(tp)}, got {value!r}")
        return tuple(_convert(a, v, meta, file, f"{key}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        _, vt = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"must be a table, got {value!r}")
        return {k: _convert(vt, v, {}, file, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"must be a table, got {value!r}")
        return build(tp, value, file=file, prefix=key)
    raise TypeError(f"schema: unsupported field type {tp!r} at {key}")  # programmer error


def build(cls: type, table: dict, *, file: str = "", prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a TOML table, checking every key.

    Raises
    ------
    ConfigError
        On an unknown key, a missing required key, a wrong type, a value out of range or a
        failed cross-field ``validate()`` rule.
    """
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for k in table:
        if k not in fields:
            allowed = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(file, _join(prefix, k), f"unknown key; allowed keys here: {allowed}")
    kwargs = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in table:
            kwargs[name] = _convert(hints[name], table[name], dict(f.metadata), file, key)
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(file, key, f"required ({_type_name(hints[name])}) but missing")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            sub, sep, msg = str(exc).partition(": ")
            if sep and sub.split(".")[0].split("[")[0] in fields:
                raise ConfigError(file, _join(prefix, sub), msg) from None
            raise ConfigError(file, prefix, str(exc)) from None
    return obj


def check_bands(settings: Any, *names: str) -> None:
    """For a ``validate()`` method: each named ``(low_hz, high_hz)`` field must have its low
    edge below its high edge; raises ``ValueError("<name>: ...")`` otherwise."""
    for name in names:
        lo, hi = getattr(settings, name)
        if not lo < hi:
            raise ValueError(f"{name}: low edge {lo} must be below high edge {hi}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def to_toml(obj: Any, prefix: str = "") -> str:
    """Render a settings dataclass as TOML (scalars first, then sub-tables)."""
    scalars, tables = [], []
    items = (obj.items() if isinstance(obj, dict)
             else ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)))
    for name, value in items:
        if dataclasses.is_dataclass(value) or isinstance(value, dict):
            tables.append(to_toml(value, _join(prefix, name)))
        else:
            scalars.append(f"{name} = {_toml_value(value)}")
    head = [f"[{prefix}]"] if prefix and (scalars or not tables) else []
    parts = ["\n".join(head + scalars)] if (head or scalars) else []
    return "\n\n".join(parts + [t for t in tables if t])


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def describe(cls: type, prefix: str = "") -> list[dict]:
    """Every key of a settings class (recursively): name, type, unit, default, range, doc.

    Used to generate the config reference so the docs cannot drift from the schema.
    """
    rows = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = _join(prefix, f.name)
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, key))
            continue
        meta = dict(f.metadata)
        bounds = [f"{w} {meta[n]}" for n, w in (("gt", ">"), ("ge", ">="), ("lt", "<"),
                                                  ("le", "<=")) if meta.get(n) is not None]
        if f.default is not _MISSING:
            default = f.default
        elif f.default_factory is not _MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append({"key": key, "type": _type_name(tp), "unit": meta.get("unit", ""),
                     "default": default if isinstance(default, str) and default == "(required)"
                     else _toml_value(default) if not isinstance(default, dict) else "{}",
                     "range": ", ".join(bounds), "doc": meta.get("doc", "")})
    return rows


__all__ = ["ConfigError", "setting", "build", "to_toml", "describe", "check_bands",
           "name_with_hint"]


def name_with_hint(name: str, names: Sequence[str]) -> str:
    """``'cz' (did you mean 'Cz'?)`` when ``names`` holds a close match (difflib, or the
    same name in another case, or ``name`` with a reference suffix such as ``C3-A1``),
    else ``'cz'``: for errors about a channel or stream name that is not there."""
    import difflib

    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    if not close:
        low = name.lower()
        close = [h for h in names if h.lower() == low or h.lower().split("-")[0] == low][:1]
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)

