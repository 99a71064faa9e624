"""Errors a user can fix, shared by every layer that reads what a user gives it."""
from __future__ import annotations


class UserError(RuntimeError):
    """A problem the user can fix (bad path, missing device, unreadable truth file...):
    the command line prints it as one line and exits with status 2."""


__all__ = ["UserError"]
