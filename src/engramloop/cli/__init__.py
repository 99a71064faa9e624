"""The ``engramloop`` command line.

Subcommands live one per module in ``cli/commands/``; each module defines ``HELP``
(one line), ``add_arguments(parser)`` and ``run(args) -> int``. Our modules are imported
at the top of each; the heavy libraries (torch, matplotlib, scipy.signal, the device
libraries) load only when a command needs them, so ``engramloop --help`` loads none.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import engramloop.cli.commands as commands_pkg
from engramloop._version import __version__
from engramloop.controller.stop_signals import interrupt_code, interrupt_name
from engramloop.core.errors import UserError
from engramloop.core.extras import MissingExtraError
from engramloop.core.schema import ConfigError


def _command_modules() -> list:
    mods = []
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            mods.append(importlib.import_module(f"engramloop.cli.commands.{info.name}"))
    return mods


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage block is one ``--help`` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: object) -> str:
    return " ".join(str(text).splitlines()).strip()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="engramloop",
        description="Closed-loop neuromodulation: detect ripples, spindles and slow "
                    "oscillations and fire phase-locked stimulation under a safety governor.")
    parser.add_argument("--version", action="version", version=f"engramloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in _command_modules():
        name = getattr(mod, "NAME", mod.__name__.rsplit(".", 1)[1].replace("_", "-"))
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _one_line_warnings() -> None:
    """Print the recording reader's damage warnings as one ``warning: ...`` line (a user
    reads them; the source line Python shows by default means nothing to them)."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        # by name: importing the reader here would import NumPy for `--help`
        if category.__name__ == "RecordingDamageWarning":
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _stdout_closed() -> bool:
    """True when stdout's reader is gone (then stdout points at os.devnull, so the
    interpreter's flush at exit does not fail again)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        # the write end of a pipe whose read end is closed polls as an error
        if not any(ev & select.POLLERR for _, ev in poll.poll(0)):
            return False
    except (OSError, ValueError, AttributeError):
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return True


def main(argv: list[str] | None = None) -> int:
    try:
        rc = _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C at any moment -- while the subcommands are imported, the arguments
        # parsed, or as a command's own interrupt handler finishes -- ends the same way:
        # exit 130 and one line, never a traceback (each command removes its own
        # partial output before the interrupt leaves it)
        try:
            print("interrupted", file=sys.stderr)
        except (OSError, KeyboardInterrupt):
            pass
        rc = 130
    if rc in (129, 130, 143):   # an interrupt caught (Ctrl-C, or sim's SIGHUP/SIGTERM)
        _forget_caught_interrupt()
    return rc


def _forget_caught_interrupt() -> None:
    """Make an interrupt we caught end as ``exit 130``, not as a death by SIGINT.

    CPython (3.10-3.13) flags "unhandled KeyboardInterrupt" whenever code run by a
    *string* ``exec`` ends with one -- even when a caller catches it later -- and
    ``python -m`` then re-raises SIGINT at exit (status -2, not our 130). Ctrl-C during
    an import that runs such code (``dataclasses`` builds its methods with ``exec``;
    ``scipy`` clones NumPy's namespace with one) hit this in 2 of ~5 interrupted
    ``engramloop sim`` runs under load. Each string ``exec`` clears the flag when it
    starts, so one that ends normally forgets the caught interrupt.
    """
    exec("None", {})  # noqa: S102 -- a constant string: see the docstring


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    _one_line_warnings()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        rc = int(args._run(args) or 0)
        sys.stdout.flush()      # a closed reader shows here, not at interpreter exit
        return rc
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        try:   # a run stopped by this still says so (stderr may be the same pipe)
            print("stopped: the program reading engramloop's output closed it (broken "
                  "pipe)", file=sys.stderr)
        except OSError:
            pass
        return 141     # the reader of our output went away (`| head`): as SIGPIPE would
    except ConfigError as exc:
        print(f"ConfigError: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (UserError, MissingExtraError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # Ctrl-C, or SIGTERM/SIGHUP raised as it (controller.stop_signals.SignalsInterrupt)
        print(interrupt_name(exc), file=sys.stderr)
        return interrupt_code(exc)
    except Exception as exc:
        # a bug, not a user mistake: still one line for the user (outputs are already off:
        # the loop turns them off on any exception); the traceback on request
        if os.environ.get("ENGRAMLOOP_TRACEBACK"):
            raise
        print(f"internal error: {type(exc).__name__}: {_one_line(exc)} (a bug in "
              "engramloop: please report it with the command line; set "
              "ENGRAMLOOP_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        return 70
