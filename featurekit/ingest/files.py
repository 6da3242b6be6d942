"""Loading the files a source row names (``source.files``), confined and bounded.

A row is data, and data can be hostile: it may name ``/etc/passwd``, ``../../secret``, a
symlink out of the project, ``/proc/self/environ``, a FIFO that blocks forever, or a 4 GB
file. A path must resolve (symlinks followed) inside the files root: ``source.files_root``
or, by default, the spec's folder, against which relative paths are resolved. It must be a
regular file no larger than ``source.max_file_bytes``. Anything else is a per-row issue;
the file is never opened, or (for size and type) checked on the opened descriptor before
a byte is read, so a file swapped between the check and the read gains nothing.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")


class FileProblem(Exception):
    """Why a row's file cannot be loaded; the message starts with its category."""


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FileRoot:
    base: Path        # relative paths resolve against this folder (the spec's)
    root: Path        # and must end up inside this one (files_root; default: base)
    max_bytes: int = DEFAULT_MAX_FILE_BYTES

    @classmethod
    def for_source(cls, spec_folder: Path, source) -> FileRoot:
        root = getattr(source, "files_root", None)
        root_path = spec_folder / root if root else spec_folder
        return cls(spec_folder, root_path, getattr(source, "max_file_bytes", None) or DEFAULT_MAX_FILE_BYTES)

    def locate(self, rel: str) -> Path:
        """The file a row names, symlinks resolved; raises `FileProblem` outside the root."""
        if "\0" in rel:  # no file system takes one: os calls would raise ValueError
            raise FileProblem(f"bad file path {rel!r}: it holds a NUL character")
        path = Path(rel) if Path(rel).is_absolute() else self.base / rel
        real = Path(os.path.realpath(path))
        root = os.path.realpath(self.root)
        if str(real) != root and not str(real).startswith(root.rstrip(os.sep) + os.sep):
            raise FileProblem(f"file outside the files root: {rel!r} resolves to {real}, outside {root}; "
                              "move it inside, or set source.files_root")
        if any(str(real) == p or str(real).startswith(p + os.sep) for p in PSEUDO_FILESYSTEMS):
            raise FileProblem(f"not a regular file: {real} is on a pseudo-filesystem")
        return real

    def check(self, rel: str) -> FileStat:
        """What the plan can afford: the file is inside the root, exists, is regular and
        not too large. Raises `FileProblem`."""
        real = self.locate(rel)
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise FileProblem(f"unreadable file: {real}: not found") from None
        except OSError as exc:
            raise FileProblem(f"unreadable file: {real}: {exc.strerror or exc}") from None
        return self._checked(real, st)

    def _checked(self, real: Path, st: os.stat_result) -> FileStat:
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem(f"not a regular file: {real}")
        if st.st_size > self.max_bytes:
            raise FileProblem(f"file too large: {real} is {st.st_size} bytes, above source.max_file_bytes "
                              f"({self.max_bytes}); raise the limit or leave the file out")
        return FileStat(st.st_size, st.st_mtime_ns)

    def read(self, rel: str) -> tuple[bytes, FileStat]:
        """The file's bytes and its stat, taken from the descriptor that was read."""
        real = self.locate(rel)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(real, flags)
        except FileNotFoundError:
            raise FileProblem(f"unreadable file: {real}: not found") from None
        except OSError as exc:
            raise FileProblem(f"unreadable file: {real}: {exc.strerror or exc}") from None
        try:
            info = self._checked(real, os.fstat(fd))
            data = _read_at_most(fd, self.max_bytes + 1)
        except OSError as exc:
            raise FileProblem(f"unreadable file: {real}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        if len(data) > self.max_bytes:
            raise FileProblem(f"file too large: {real} grew past source.max_file_bytes ({self.max_bytes}) "
                              "while being read")
        return data, info


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(1 << 20, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()
