"""The import graph of ``engramloop``: imports run one way, nothing imports in a circle,
and our own modules are imported at the top of a module, where a reader sees them.

Every ``import`` statement of every module is read with :mod:`ast` -- at module level,
inside functions, under ``if TYPE_CHECKING`` -- and resolved to the module it loads.

The layers, bottom to top (a module may import its own subpackage and any layer below;
never a layer above, never a sibling of its own layer):

====  ==============================  ===================================================
 0    ``core``, ``_version``          the shared vocabulary: Chunk, Pulse, Event, clocks,
                                      config schema and errors, angles; the version
 1    ``recording``                   the XDF recording: one writer, one reader, one schema
 2    ``drivers``, ``decoders``       the outside world in real time (a file source reads
                                      the recording); samples to beliefs (pure stages)
 3    ``sim``                         the simulator, device emulators, loopback adapters
                                      (uses the drivers' protocols and the decoders)
 4    ``controller``                  the loop, safety, scheduling, recorder, the
                                      composition root (``controller.build``)
 5    ``analysis``                    offline work on recordings: scoring, trials,
                                      sweeps, report, forecaster training
 6    ``cli``, ``api``                the command line; the notebook API
 7    ``__main__``                    ``python -m engramloop``
====  ==============================  ===================================================

The package root (``engramloop/__init__.py``) runs before any of them, so it imports
nothing of ours at import time but ``_version``; it re-exports the API on first use
(PEP 562).

The issue's card says core <- drivers/decoders/sim <- controller <- analysis/cli; the
table refines it with what the code needs and the card allows: the recording sits below
the drivers (the file source replays XDF through the one reader), and the simulator
above drivers and decoders (its emulators speak the devices' protocols, its cortex model
uses the decoders' filters).
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import engramloop

ROOT = Path(engramloop.__file__).parent
PKG = "engramloop"

#: the layer of each unit (a subpackage, or a module at the package root)
LAYERS = {
    "core": 0, "_version": 0,
    "recording": 1,
    "drivers": 2, "decoders": 2,
    "sim": 3,
    "controller": 4,
    "analysis": 5,
    "cli": 6, "api": 6,
    "__main__": 7,
}

#: Heavy optional dependencies whose import may be deferred into a function (seconds of
#: start-up, or not installed at all). A function-level import of one of OUR modules is
#: allowed only when that module imports one of these at its top (checked below).
HEAVY = ("torch", "matplotlib", "mne", "pandas", "dask", "yasa", "pyedflib")

#: Our modules that may be imported inside a function, each with the reason. Each must
#: really import a HEAVY dependency when imported (test_deferred_modules_are_heavy).
DEFERRED = {
    "engramloop.decoders.forecaster":
        "the forecaster's model is torch (1-2 s and ~1 GB to import); a loop without "
        "[forecaster] enabled, and the command line, never load it",
    "engramloop.analysis.report":
        "the report draws with matplotlib; `engramloop run --report` and the API load it "
        "only when a report is asked for",
}

#: function-level imports of our own modules that are not deferrals of a heavy
#: dependency, (importer, imported): reason. Kept empty; a new entry needs a reason the
#: issue accepts.
EXCEPTIONS = {
    ("engramloop", "engramloop.api"):
        "PEP 562 re-export of the notebook API from the package root: the root runs "
        "before every subpackage, so importing the API (NumPy, the decoders) there would "
        "make every `import engramloop.core` pay for it",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _unit(mod: str) -> str:
    """The subpackage (or root-level module) a module belongs to; "" for the root."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _resolve(importer: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules of ours an import statement loads (a ``from x import y`` of a
    submodule ``y`` loads ``x.y``; of a name, ``x``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = importer.split(".")
            if not MODULES[importer].name == "__init__.py":
                base = base[:-1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix
                 for a in node.names]
    return sorted({n for n in names if n == PKG or n.startswith(PKG + ".")})


def _edges() -> list[tuple[str, str, str, int]]:
    """(importer, imported, where, line): where is "top", "function" or "typing"."""
    out = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        parent: dict[ast.AST, ast.AST] = {}
        for n in ast.walk(tree):
            for c in ast.iter_child_nodes(n):
                parent[c] = n
        for n in ast.walk(tree):
            if not isinstance(n, (ast.Import, ast.ImportFrom)):
                continue
            where, q = "top", n
            while q in parent:
                q = parent[q]
                if isinstance(q, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    where = "function"
                    break
                if isinstance(q, ast.If) and "TYPE_CHECKING" in ast.unparse(q.test):
                    where = "typing"
            for target in _resolve(mod, n):
                if target != mod:
                    out.append((mod, target, where, n.lineno))
    return out


EDGES = _edges()


def _where(mod: str, line: int) -> str:
    return f"{MODULES[mod].relative_to(ROOT.parent.parent)}:{line}"


def _tarjan(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_tarjan_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _tarjan(g) == [["a", "b", "c"]]
    assert _tarjan({"a": {"b"}, "b": set()}) == []


def test_the_walk_sees_every_kind_of_import():
    """The walk itself: it finds module-level, function-level and type-only imports."""
    kinds = {w for _, _, w, _ in EDGES}
    assert {"top", "function"} <= kinds
    assert len(MODULES) > 80 and len(EDGES) > 300


def test_every_subpackage_has_a_layer():
    units = {_unit(m) for m in MODULES} - {""}
    assert units == set(LAYERS), f"layer table out of date: {sorted(units ^ set(LAYERS))}"


def test_imports_run_one_way():
    """No import of a layer above, nor of a sibling subpackage of the same layer (also
    not under TYPE_CHECKING: a type name is a dependency too)."""
    bad = []
    for a, b, where, line in EDGES:
        ua, ub = _unit(a), _unit(b)
        if ua == ub or (a, b) in EXCEPTIONS:
            continue
        if ua == "" and ub == "_version":
            continue          # the root's __version__, from the bottom layer
        if ua == "" or ub == "" or LAYERS[ub] >= LAYERS[ua]:
            bad.append(f"{_where(a, line)}: {a} imports {b} ({where})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_decoders_import_only_core():
    """The decoders are pure stages: nothing of the controller, analysis, simulator,
    drivers or recording."""
    bad = [f"{_where(a, line)}: {b}" for a, b, _, line in EDGES
           if _unit(a) == "decoders" and _unit(b) not in ("decoders", "core")]
    assert not bad, "\n".join(bad)


def test_recording_imports_only_core():
    bad = [f"{_where(a, line)}: {b}" for a, b, _, line in EDGES
           if _unit(a) == "recording" and _unit(b) not in ("recording", "core")]
    assert not bad, "\n".join(bad)


def test_no_cycle_between_subpackages():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b, _, _ in EDGES:
        if _unit(a) != _unit(b) and (a, b) not in EXCEPTIONS:
            graph[_unit(a)].add(_unit(b))
    assert _tarjan(graph) == []


def test_no_cycle_between_modules():
    """Module-level, function-level and type-only imports alike: a cycle hidden in a
    function or behind TYPE_CHECKING is still a cycle of the design."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b, _, _ in EDGES:
        if (a, b) not in EXCEPTIONS:
            graph[a].add(b)
    cycles = _tarjan(graph)
    assert cycles == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_our_modules_are_imported_at_the_top():
    """A function-level import of our own module only defers a heavy optional
    dependency (DEFERRED) or is a named exception (EXCEPTIONS)."""
    bad = [f"{_where(a, line)}: {a} imports {b} inside a function"
           for a, b, where, line in EDGES
           if where == "function" and b not in DEFERRED and (a, b) not in EXCEPTIONS]
    assert not bad, f"{len(bad)} function-level imports of our modules:\n" + "\n".join(bad)


def test_exceptions_are_in_use():
    used = {(a, b) for a, b, where, _ in EDGES if where == "function"}
    deferred_used = {b for a, b, where, _ in EDGES if where == "function"}
    assert set(EXCEPTIONS) <= used, "stale EXCEPTIONS entries"
    assert set(DEFERRED) <= deferred_used | {m for m in DEFERRED if m in MODULES}
    assert set(DEFERRED) <= set(MODULES), "DEFERRED names a module that does not exist"


def _imported_heavy(statement: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    code = (f"import sys\n{statement}\n"
            f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("module", sorted(DEFERRED))
def test_deferred_modules_are_heavy(module):
    """Each allowed deferral really spares a heavy import (else it belongs at the top)."""
    found = _imported_heavy(f"import {module}")
    assert found, f"{module} imports none of {HEAVY}: import it at the top instead"
    assert any(h in DEFERRED[module] or h == "torch" and "torch" in DEFERRED[module]
               for h in found), f"reason for {module} does not name {found}"


def test_command_line_and_loop_load_no_heavy_dependency():
    """What the deferrals buy: the command line's parser, and a loop built from a config
    without the forecaster, import none of the heavy optional dependencies."""
    # scipy.signal too (0.5-2 s): the filter design and the simulator import it when a
    # detector or a simulated source is set up
    assert _imported_heavy("import engramloop.cli as c; c.build_parser()\n"
                           "import engramloop.controller.build", HEAVY + ("scipy",)) == []


def test_architecture_page_states_this_table():
    """docs/architecture.md shows the same layers and names the same deferrals."""
    page = Path(__file__).parents[2] / "docs" / "architecture.md"
    if not page.is_file():
        pytest.skip("docs/ not beside this checkout's tests")
    text = page.read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| `engramloop\.(\w+)` \|", text, re.M)
    assert {name: int(layer) for layer, name in rows} == LAYERS
    for module in DEFERRED:
        assert module.removeprefix("engramloop.") in text, module
