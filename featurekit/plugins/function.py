"""Extractors written as plain functions: the `@featurekit.extractor` decorator and the class built from one.

    @featurekit.extractor(inputs={"text": "string"}, output=pa.float32())
    def vowel_ratio(text: pa.Array, *, letters: str = "aeiou") -> pa.Array:
        ...

The positional parameters are the logical inputs (named as in `inputs`, which gives their
types), the keyword-only ones the params (validated like any extractor's `Params`). The
decorator only records this on the function, which stays callable as written; `extractor_class`
turns it into an `Extractor` subclass whose `version` is a digest of the function's code
(`code.py`), so editing the function makes its columns stale.
"""
from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ValidationError, create_model

from .extractor import TYPE_CLASSES, Extractor, Resources

MARK = "__featurekit_extractor__"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
CODE_PREFIX = "code:"


class ExtractorDefinitionError(TypeError):
    """`@featurekit.extractor` used in a way that cannot make an extractor (raised at import)."""


@dataclass(frozen=True)
class Declared:
    """What `@featurekit.extractor(...)` recorded on a function."""

    inputs: dict[str, Any]
    output: Any                      # an Arrow type, or {output name: Arrow type}
    name: str | None
    resources: Resources
    reuse_values: bool | None
    params: tuple[tuple[str, Any, Any], ...]  # keyword-only parameter: name, annotation, default (... = required)


def extractor(fn: Callable | None = None, *, inputs: Mapping[str, Any] | None = None, output: Any = None,
              name: str | None = None, resources: Mapping[str, Any] | None = None,
              reuse_values: bool | None = None) -> Any:
    """Make a function an extractor of a spec's local plugin file (`plugins: [features.py]`).

    `inputs`: logical input -> Arrow type or type class ("string", "binary", ...), one per
    positional parameter; `output`: the Arrow type of the result, or {name: type} for several
    outputs (the function then returns a dict of arrays or a RecordBatch). Keyword-only
    parameters are the params (`params:` in the spec). The extractor is named
    ``<file stem>.<function>`` unless `name` is given. The function gets the inputs as Arrow
    arrays and returns one value per row (an array, a list, or `featurekit.RowErrors`).
    """
    if fn is not None:
        raise ExtractorDefinitionError("write @featurekit.extractor(inputs={...}, output=<Arrow type>), with "
                                       "its arguments: it declares the inputs' and the output's types")

    def mark(func: Callable) -> Callable:
        setattr(func, MARK, declare(func, inputs, output, name, resources, reuse_values))
        return func
    return mark


def declare(func: Any, inputs: Any, output: Any, name: str | None, resources: Any,
            reuse_values: bool | None) -> Declared:
    """Check the decorator's arguments against the function; what the class will be built from."""
    what = f"@featurekit.extractor on {getattr(func, '__name__', func)!r}"
    if not inspect.isfunction(func):
        raise ExtractorDefinitionError(f"{what}: decorates a function (def name(...)), not {type(func).__name__}")
    if not isinstance(inputs, Mapping) or not inputs:
        raise ExtractorDefinitionError(f"{what}: inputs= is a mapping of each positional parameter to its "
                                       "Arrow type, e.g. inputs={'text': 'string'}")
    for key, typ in inputs.items():
        if not (isinstance(typ, pa.DataType) or (isinstance(typ, str) and typ in TYPE_CLASSES)):
            raise ExtractorDefinitionError(f"{what}: input {key!r} has type {typ!r}; give an Arrow type "
                                           f"(pa.string()) or one of {', '.join(TYPE_CLASSES)}")
    outputs = output if isinstance(output, Mapping) else {"": output}
    for key, typ in outputs.items():
        if not isinstance(typ, pa.DataType) or (isinstance(output, Mapping) and not key):
            shown = f"output {key!r}" if key else "output"
            raise ExtractorDefinitionError(f"{what}: {shown} must be an Arrow type (output=pa.int32(), or "
                                           f"output={{'a': pa.int32(), 'b': pa.string()}}), not {typ!r}")
    if name is not None and (not isinstance(name, str) or not NAME_RE.match(name)):
        raise ExtractorDefinitionError(f"{what}: name={name!r} must look like plugin.thing (letters, digits, _)")
    positional, params = _parameters(func, what)
    if set(positional) != set(inputs):
        raise ExtractorDefinitionError(
            f"{what}: its positional parameters ({', '.join(positional) or 'none'}) must be the inputs "
            f"({', '.join(inputs)}); make params keyword-only: def {func.__name__}({', '.join(inputs)}, *, ...)")
    try:
        res = Resources.model_validate(dict(resources or {}))
    except ValidationError as exc:
        raise ExtractorDefinitionError(f"{what}: resources: {exc.errors()[0]['msg']}") from None
    return Declared(dict(inputs), dict(output) if isinstance(output, Mapping) else output, name, res,
                    reuse_values, params)


def _parameters(func: Callable, what: str) -> tuple[list[str], tuple[tuple[str, Any, Any], ...]]:
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # an annotation naming something defined later in the file: each one alone
        hints = {}
    positional, params = [], []
    for p in inspect.signature(func).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ExtractorDefinitionError(f"{what}: *{p.name} / **{p.name} cannot be inputs or params; "
                                           "name each one")
        if p.kind == p.KEYWORD_ONLY:
            default = ... if p.default is p.empty else p.default
            annotation = hints.get(p.name, p.annotation)
            params.append((p.name, Any if annotation is p.empty or isinstance(annotation, str) else annotation,
                           default))
        else:
            positional.append(p.name)
    return positional, tuple(params)


def declared(obj: Any) -> Declared | None:
    """What the decorator recorded on `obj`, or None for anything else."""
    found = getattr(obj, MARK, None) if inspect.isfunction(obj) else None
    return found if isinstance(found, Declared) else None


class FunctionExtractor(Extractor):
    """An extractor whose work is a plain function (built by `extractor_class`)."""

    function: ClassVar[Callable[..., Any]]
    output: ClassVar[Any]
    origin: ClassVar[str] = ""      # file:line of the function, for messages

    def output_type(self) -> pa.DataType:
        return type(self).output

    def __call__(self, batch: pa.RecordBatch) -> Any:
        columns = {name: batch.column(name) for name in type(self).inputs}
        return type(self).function(**columns, **dict(self.params))


class _MultiOutput(FunctionExtractor):
    def output_types(self) -> dict[str, pa.DataType]:
        return dict(type(self).output)


class FunctionParams(Extractor.Params):
    """Params of a function extractor (its keyword-only parameters)."""


def extractor_class(func: Callable, decl: Declared, name: str, digest: str, origin: str,
                    metaclass: type = type, params_base: type[BaseModel] = FunctionParams,
                    module: str | None = None) -> type[FunctionExtractor]:
    """The `Extractor` subclass for a decorated function; `version` is the digest of its code."""
    fields = {p: (annotation, default) for p, annotation, default in decl.params}
    params = create_model(f"{func.__name__}_Params", __base__=params_base, __module__=module or func.__module__,
                          **fields)
    base = _MultiOutput if isinstance(decl.output, dict) else FunctionExtractor
    namespace = {"name": name, "version": CODE_PREFIX + digest, "inputs": dict(decl.inputs),
                 "resources": decl.resources, "Params": params, "function": staticmethod(func),
                 "output": decl.output, "origin": origin, "reuse_values": decl.reuse_values,
                 "__module__": module or func.__module__, "__doc__": inspect.getdoc(func)}
    return metaclass(f"{func.__name__}_extractor", (base,), namespace)


def is_code_version(version: str) -> bool:
    """A version made from a function's code (a local extractor), not written by a person."""
    return str(version).startswith(CODE_PREFIX)
