"""The `Source` base class: how rows get into the table (``source.format`` in a spec)."""
from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class RowIssue:
    """A source row that could not be ingested, and why. ``message`` starts with the
    category the summary counts ("unreadable file: ...", "not UTF-8 text: ...")."""

    where: str  # file:line, or the row key
    message: str
    key: Any = None  # the row's key, when known: the plan names skipped rows by it
    rows: int = 1    # rows this issue stands for (one issue may report a whole column's conflict)

    @property
    def category(self) -> str:
        return self.message.split(":")[0]


@dataclass
class SourceBatch:
    """Rows read from one file, plus the rows that could not be read."""

    table: pa.Table
    issues: list[RowIssue] = field(default_factory=list)
    lines: list[int] | None = None  # the line each row was read from, when the format has lines


class Source:
    """Reads files of one format. Subclasses set ``name`` and implement the two methods."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = _Options

    def __init__(self, options: BaseModel | None = None):
        self.options = options if options is not None else self.Options()

    def schema(self, path: Path) -> pa.Schema:
        """The columns of one file, read cheaply (validate and plan call this)."""
        raise NotImplementedError

    def read(self, path: Path) -> SourceBatch:
        """All rows of one file; rows that cannot be parsed go into ``issues``."""
        raise NotImplementedError

    def locate(self, root: Path, pattern: str) -> list[Path]:
        """The files ``source.path`` names, in reading order (each is passed to `read`, and their
        sizes and mtimes tell whether the source changed). Default: a file or a glob relative to
        the spec's folder; a format whose data is a folder (or a name) overrides it."""
        return expand(root, pattern)

    def not_found(self, pattern: str) -> str:
        """What to say when `locate` finds nothing."""
        return f"no file matches {pattern!r} (paths are relative to the spec's folder)"


def expand(root: Path, pattern: str) -> list[Path]:
    """Files matching a path or glob, relative to the spec's folder, sorted."""
    full = pattern if Path(pattern).is_absolute() else str(root / pattern)
    if any(ch in pattern for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file() or p.endswith(".lance"))
    path = Path(full)
    return [path] if path.exists() else []


def file_signature(paths: list[Path], root: Path) -> dict[str, Any]:
    """What identifies the source's state without reading it: path (relative to the spec's
    folder, so the working directory does not matter) -> [size, mtime_ns]."""
    out = {}
    for p in paths:
        st = p.stat()
        try:
            name = str(p.resolve().relative_to(root.resolve()))
        except ValueError:
            name = str(p.resolve())
        out[name] = [st.st_size, st.st_mtime_ns]
    return out
