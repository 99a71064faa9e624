"""Every type and function of the C extension names where it lives, so tracebacks, reprs
and pickling point at ``engramloop.decoders._filters`` (FilterBank's tp_name once said
``decoders._filters.FilterBank``, the layout before the one ``engramloop`` package)."""
import importlib

import pytest

from engramloop.decoders import _filters

MODULE = "engramloop.decoders._filters"
PUBLIC = sorted(n for n in dir(_filters) if not n.startswith("_"))


def test_module_name():
    assert _filters.__name__ == MODULE


@pytest.mark.parametrize("name", PUBLIC)
def test_each_name_says_where_it_lives(name):
    obj = getattr(_filters, name)
    assert obj.__module__ == MODULE
    assert obj.__qualname__ == name
    # the dotted name resolves back to the object (what pickle and tools rely on)
    assert getattr(importlib.import_module(obj.__module__), obj.__qualname__) is obj
    if isinstance(obj, type):
        assert repr(obj) == f"<class '{MODULE}.{name}'>"


def test_filterbank_and_plan_are_types():
    assert isinstance(_filters.FilterBank, type) and isinstance(_filters.SpindlePlan, type)
