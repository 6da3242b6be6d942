"""A spec's local plugin files (`plugins: [features.py]`): their `@featurekit.extractor` functions
registered through the same hooks as an installed plugin's extractors.

Each file is run as a module of its own (named after its path and content, so an edited
file is a new module) and every decorated function in it becomes an extractor class,
registered by a plugin object implementing `featurekit_register_extractors`. Problems (a
missing file, a syntax error, a decorator used wrongly, a name some other plugin has) are
spec problems at their file:line.

Worker processes and Ray workers get the class by pickle: it travels as the file's source
and the function's name and is rebuilt there (once per process), so a worker needs neither
the file nor the spec's folder, and computes with exactly the code the driver planned with.
"""
from __future__ import annotations

import ast
import copyreg
import hashlib
import os
import re
import sys
import threading
import traceback
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Problem
from .code import code_digest
from .discovery import PluginFailure, PluginOrigin
from .function import ExtractorDefinitionError, FunctionExtractor, FunctionParams, declared, extractor_class
from .hookspecs import hookimpl

MAX_FILE_BYTES = 16 * 1024 * 1024
LOCAL_DISTRIBUTION = "local file"
LOCAL_MODULES = "featurekit_local_"  # prefix of the modules plugin files run as


class LocalExtractorType(type):
    """The metaclass of extractor classes built from a spec's files: they pickle as
    (file, source, function) and are rebuilt from the source by whoever unpickles them."""


class LocalParams(FunctionParams):
    """Params of a local function's extractor: pickled with the class they belong to."""

    def __reduce__(self):
        return rebuild_params, (type(self).__featurekit_local__, self.__getstate__())


class LocalFileError(Exception):
    """A plugin file that cannot be loaded, at `line`:`col` of `file`."""

    def __init__(self, file: str, line: int, col: int, message: str):
        super().__init__(message)
        self.file, self.line, self.col, self.message = file, line, col, message


@dataclass(frozen=True)
class Loaded:
    module: types.ModuleType
    classes: dict[str, type[FunctionExtractor]]   # function name -> class, in the file's order


_LOCK = threading.RLock()
_LOADED: dict[tuple[str, str], Loaded] = {}


def load_file(path: Path) -> Loaded:
    """Run the plugin file at `path` (once per content) and build its extractors."""
    try:
        if not path.is_file():
            raise LocalFileError(str(path), 1, 1, "not a file" if path.exists() else "no such file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise LocalFileError(str(path), 1, 1, f"larger than {MAX_FILE_BYTES >> 20} MB: not a plugin file")
        source = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LocalFileError(str(path), 1, 1, f"not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise LocalFileError(str(path), 1, 1, f"cannot read it: {exc.strerror or exc}") from None
    return load_source(str(path), source)


def load_source(file: str, source: str) -> Loaded:
    key = (file, hashlib.sha256(source.encode()).hexdigest())
    with _LOCK:
        loaded = _LOADED.get(key)
        if loaded is None:
            loaded = _LOADED[key] = _run(file, source, key[1])
        return loaded


def _run(file: str, source: str, sha: str) -> Loaded:
    try:
        tree = ast.parse(source, filename=file)
        code = compile(tree, file, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise LocalFileError(file, exc.lineno or 1, exc.offset or 1, f"syntax error: {exc.msg}") from None
    stem = Path(file).stem
    modname = f"{LOCAL_MODULES}{re.sub(r'[^A-Za-z0-9_]', '_', stem)}_{sha[:12]}"
    module = types.ModuleType(modname)
    module.__file__ = file
    sys.modules[modname] = module  # dataclasses, pickling by reference and typing look modules up by name
    try:
        exec(code, module.__dict__)
    except BaseException as exc:
        sys.modules.pop(modname, None)
        if isinstance(exc, (KeyboardInterrupt, GeneratorExit)):
            raise  # a SystemExit in the file is its failure, not featurekit's exit
        line = _line_in(exc, file)
        what = str(exc) if isinstance(exc, ExtractorDefinitionError) else f"{type(exc).__name__}: {exc}"
        raise LocalFileError(file, line, 1, f"running it failed: {what}") from None
    classes: dict[str, type[FunctionExtractor]] = {}
    names: dict[str, str] = {}
    for obj in list(module.__dict__.values()):
        decl = declared(obj)
        if decl is None or obj.__module__ != modname or obj.__name__ in classes:
            continue
        first = obj.__code__.co_firstlineno
        name = decl.name or f"{stem}.{obj.__name__}"
        if name in names:
            raise LocalFileError(file, first, 1, f"extractor {name!r} is defined twice in this file (functions "
                                 f"{names[name]!r} and {obj.__name__!r}); give one another name=")
        names[name] = obj.__name__
        digest = code_digest(tree, obj.__name__, first)
        if digest is None:  # defined by exec'd text, not in the file's tree: its code cannot be versioned
            raise LocalFileError(file, first, 1, f"function {obj.__name__!r} is not defined in this file's code")
        try:
            cls = extractor_class(obj, decl, name, digest, f"{file}:{first}", metaclass=LocalExtractorType,
                                  params_base=LocalParams, module=modname)
        except Exception as exc:  # e.g. a param annotated with a type pydantic cannot validate
            raise LocalFileError(file, first, 1, f"@featurekit.extractor on {obj.__name__!r}: its keyword-only "
                                 f"parameters cannot be params: {str(exc).splitlines()[0]}") from None
        local = (file, source, obj.__name__)
        cls.__qualname__ = cls.__name__ = f"__featurekit_{obj.__name__}__"
        cls.__featurekit_local__ = local
        cls.Params.__featurekit_local__ = local
        setattr(module, cls.__qualname__, cls)  # found by reference (cloudpickle), then pickled by the reducer
        classes[obj.__name__] = cls
    return Loaded(module, classes)


def _line_in(exc: BaseException, file: str) -> int:
    """The line of `file` an exception was raised from (the innermost frame in it)."""
    line = 1
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == file and frame.lineno:
            line = frame.lineno
    return line


# -- pickling ---------------------------------------------------------------------------

def rebuild_class(file: str, source: str, function: str) -> type:
    """The class of `function` in `source` (pickled by a driver), built once per process."""
    return load_source(file, source).classes[function]


def rebuild_params(local: tuple[str, str, str], state: Any) -> Any:
    cls = rebuild_class(*local).Params
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


def _reduce_class(cls: type) -> tuple:
    return rebuild_class, cls.__featurekit_local__


copyreg.pickle(LocalExtractorType, _reduce_class)


# -- a spec's files as plugins ------------------------------------------------------------

class LocalPlugin:
    """One loaded plugin file as a pluggy plugin: its extractors through the usual hook."""

    def __init__(self, classes: Iterable[type]):
        self.classes = list(classes)

    @hookimpl
    def featurekit_register_extractors(self) -> list[type]:
        return list(self.classes)


@dataclass(frozen=True)
class SpecPlugins:
    """What a spec's `plugins:` loaded: plugin name (the path as written) -> plugin, and the problems."""

    plugins: dict[str, LocalPlugin]
    problems: tuple[Problem, ...] = ()
    failures: tuple[PluginFailure, ...] = ()

    def origins(self) -> list[tuple[str, LocalPlugin, PluginOrigin]]:
        return [(name, plugin, PluginOrigin(name, LOCAL_DISTRIBUTION, None)) for name, plugin in self.plugins.items()]


def load_spec_plugins(written: list[Any], root: Path, problem, taken) -> SpecPlugins:
    """Load the files a spec's `plugins:` names (paths relative to `root`, the spec's folder).

    `problem(loc, message)` makes a Problem at a place in the spec; `taken(name)` says which
    installed plugin already registers extractor `name` (or None)."""
    plugins: dict[str, LocalPlugin] = {}
    problems: list[Problem] = []
    failures: list[PluginFailure] = []
    owners: dict[str, str] = {}  # extractor name -> file, across this spec's files
    for i, rel in enumerate(written):
        if not isinstance(rel, str) or rel in plugins:
            continue  # the spec's model says what is wrong with it
        path = (root / rel) if not Path(rel).is_absolute() else Path(rel)
        if path.suffix != ".py":
            problems.append(problem(("plugins", i), f"{rel!r} is not a .py file; plugins: lists Python files "
                                                    "holding @featurekit.extractor functions"))
            continue
        shown = os.path.normpath(path)  # as the spec's path was given: relative to the working folder
        try:
            loaded = load_file(path.resolve() if path.exists() else path)
        except LocalFileError as exc:
            if exc.message in ("no such file", "not a file"):
                problems.append(problem(("plugins", i), f"{rel}: {exc.message} (looked for {shown}); plugins: "
                                                        "paths are relative to the spec's folder"))
            else:
                problems.append(Problem(shown, exc.line, exc.col, f"plugins[{i}]", exc.message))
            failures.append(PluginFailure(Path(rel).stem, LOCAL_DISTRIBUTION, f"{shown}:{exc.line}: {exc.message}"))
            continue
        kept = []
        for cls in loaded.classes.values():
            line = int(cls.origin.rsplit(":", 1)[1])
            other = owners.get(cls.name) or taken(cls.name)
            if other:
                problems.append(Problem(shown, line, 1, f"plugins[{i}]",
                                        f"extractor {cls.name!r} (function {cls.function.__name__}) is already "
                                        f"registered by {other}; give it another name with "
                                        "@featurekit.extractor(name=...)"))
                continue
            owners[cls.name] = f"plugin file {rel!r}"
            kept.append(cls)
        plugins[rel] = LocalPlugin(kept)
    return SpecPlugins(plugins, tuple(problems), tuple(failures))
