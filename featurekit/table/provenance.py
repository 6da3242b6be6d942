"""Where a result came from: the spec file, its git commit, the software, the user.

Recorded by `train` (run manifests) and `apply` (the apply log). No git, no repository, a
detached tree: say so, never fail.
"""
from __future__ import annotations

import getpass
import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

GIT_TIMEOUT = 5.0


def spec_provenance(path: Path) -> dict[str, Any]:
    """The spec file's path and sha256, and its git commit and whether it differs from it."""
    path = Path(path).resolve()
    out: dict[str, Any] = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    out.update(git_state(path))
    return out


def git_state(path: Path) -> dict[str, Any]:
    """{"git": {"commit", "dirty", "path_in_repo"}} or {"git": None, "git_note": why}."""
    folder = path.parent
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None:
        return {"git": None, "git_note": "not in a git repository (or git is not installed)"}
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return {"git": None, "git_note": f"git repository {top} has no commit yet"}
    rel = str(path.relative_to(Path(top).resolve())) if path.is_relative_to(Path(top).resolve()) else str(path)
    status = _git(folder, "status", "--porcelain", "--", str(path))
    tracked = _git(folder, "ls-files", "--error-unmatch", str(path)) is not None
    return {"git": {"repository": top, "commit": commit, "path_in_repo": rel, "tracked": tracked,
                    "dirty": bool(status) or not tracked}}


def _git(cwd: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def software(registry=None) -> dict[str, Any]:
    """Versions of Python, featurekit, the plugins in use and the libraries results depend on."""
    from .._version import __version__
    out: dict[str, Any] = {"python": platform.python_version(), "featurekit": __version__}
    for dist in ("pylance", "pyarrow", "torch", "transformers", "peft", "bitsandbytes", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if registry is not None:
        out["plugins"] = {name: o.version for name, o in sorted(registry.origins.items())
                          if o.distribution not in (None, "featurekit")}
    return out


def who() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return {"user": user, "host": platform.node(), "command": sys.argv}
