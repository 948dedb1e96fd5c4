"""Errors the command line turns into exit codes and messages written for the person reading them."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class of the harness's own errors."""


class BadInput(HarnessError):
    """The user's input is wrong (suite file, option, plugin name): exit code 2, nothing is run or changed."""


class TrackingError(HarnessError):
    """The tracking server could not be reached or refused a write; results stay in the journal."""


class CellSkipped(HarnessError):
    """Raised by a plugin inside a cell when the cell cannot run here (missing device, optional package).

    The cell is recorded as skipped with the message as its reason, not as failed.
    """


class ResultsFolderError(HarnessError):
    """A file of the results folder cannot be written safely (a full disk, a symlink planted in its place): exit
    code 2 with the file named. What was journaled before stays, and the next run resumes from it."""
