"""Output paths checked before a command does any work: the folder exists (or can be made)
and takes a file, and an output never overwrites an input. Each failure is one
:class:`~engramloop.core.errors.UserError` naming the flag, the path and what to do."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from engramloop.core.errors import UserError


def _probe(folder: Path, flag: str, what: Path) -> None:
    """Create and delete a file in ``folder`` (the only honest test: root ignores mode
    bits, a read-only mount ignores them the other way)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"{flag} {what}: cannot write in folder {folder} "
                          f"({exc.strerror or exc}); choose a writable folder") from None


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when two paths name the same file (links, relative paths, ``..``)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def check_output_file(path: str | Path, flag: str, inputs: Iterable[str | Path] = ()) -> Path:
    """``path`` can be written (its folder exists and takes files, it is not a folder)
    and is none of ``inputs``."""
    out = Path(path)
    for src in inputs:
        if src and same_file(out, src):
            raise UserError(f"{flag} {out}: this is the input file {src}; writing it "
                              "would destroy it -- choose another output name")
    if out.is_dir():
        raise UserError(f"{flag} {out}: is a folder; give a file name")
    parent = out.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {out}: folder {parent} does not exist; create it first")
    _probe(parent, flag, out)
    return out


def prepare_output_dir(folder: str | Path, flag: str) -> list[Path]:
    """Create ``folder`` (and missing parents) and check it takes files. Returns the
    folders created, so that a run that never starts can remove them
    (:func:`remove_if_empty`)."""
    target = Path(folder)
    missing: list[Path] = []
    p = target
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {target}: {p} is a file, not a folder")
    created: list[Path] = []
    try:
        for m in reversed(missing):
            m.mkdir()
            created.append(m)
    except OSError as exc:
        remove_if_empty(created)
        raise UserError(f"{flag} {target}: cannot create folder {m} "
                          f"({exc.strerror or exc}); choose a writable folder") from None
    try:
        _probe(target, flag, target)
    except BaseException:
        remove_if_empty(created)
        raise
    return created


def remove_if_empty(folders: list[Path]) -> None:
    """Remove folders this command created, deepest first, if nothing was put in them."""
    for f in reversed(folders):
        with contextlib.suppress(OSError):
            f.rmdir()
