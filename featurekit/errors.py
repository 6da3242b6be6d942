"""Errors featurekit raises on purpose, and the exit codes they map to.

Expected errors (a bad spec, a failed run) are printed without a traceback; anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    RUN_FAILED = 1
    USAGE = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a spec, at a place in a file."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"


class FeaturekitError(Exception):
    """Base of every error featurekit raises deliberately."""

    exit_code: ExitCode = ExitCode.RUN_FAILED


class SpecError(FeaturekitError):
    """The spec (or the command line) is invalid; nothing was written."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems), key=lambda p: (p.file, p.line, p.col, p.path, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(FeaturekitError):
    """A command was called wrongly (unknown name in --select, missing table...)."""

    exit_code = ExitCode.USAGE


class PluginError(FeaturekitError):
    """Installed plugins contradict each other (two claim one name)."""

    exit_code = ExitCode.USAGE


class RunError(FeaturekitError):
    """A run failed: extractor failures above the threshold, engine error, conflict.

    The subclasses below are the failures a caller may act on (retry, wait, free space);
    each is still a `RunError` and exits 1 from the command line."""

    exit_code = ExitCode.RUN_FAILED


class TableError(RunError):
    """A failure that concerns one table; `table` names it (its URI)."""

    def __init__(self, message: str, *, table: str | None = None):
        super().__init__(message)
        self.table = table


class CommitConflict(TableError):
    """Another writer changed what this commit read; nothing of it was committed. Apply again."""


class LockHeld(TableError):
    """Another featurekit writer holds the table's writer lock; wait for it, then apply again."""


class LockLost(TableError):
    """This writer's lease on an object-store table's lock expired while it ran."""


class DiskFull(TableError):
    """The disk (or quota) holding the table is full; committed work is kept."""


class TableNotFound(TableError):
    """The table (or the branch) does not exist yet: run apply first."""


class NotReady(RunError):
    """What a command reads is not computed yet (a slice, a column behind its spec): run apply."""


class SourceUnreadable(RunError):
    """The spec's source cannot be ingested as it stands (rows refused, files that disagree)."""
