"""pydantic validation errors -> `Problem`s that point at the YAML, with hints."""
from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import Problem
from .document import Document, Loc


def _model_at(model: Any, loc: Loc) -> type[BaseModel] | None:
    """The pydantic model describing the mapping at `loc`, to list its valid keys."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(part) if isinstance(part, str) else None
            if info is None:
                return None
            current = info.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
        dicts = [a for a in typing.get_args(tp) if typing.get_origin(a) in (dict, list)]
        if dicts:
            return dicts[0]
    return tp


def validation_problems(doc: Document, exc: ValidationError, model: Any, base: Loc = ()) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "union["))))
        if len(loc) > 1 and isinstance(loc[-1], str) and loc[-1] in ("str", "int", "float", "bool", "list", "dict"):
            loc = loc[:-1]  # union branch tags
        full = base + loc
        kind, msg = err["type"], err["msg"]
        if kind == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            valid = ", ".join(f.alias or n for n, f in owner.model_fields.items()) if owner else ""
            problems.append(doc.problem(full, f"unknown key {loc[-1]!r}" + (f"; valid keys: {valid}" if valid else ""),
                                        key=True))
        elif kind == "missing":
            problems.append(doc.problem(full, "missing required key"))
        else:
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            else:
                msg = msg[0].lower() + msg[1:]
                if not isinstance(err.get("input"), (dict, list)):
                    msg += f" (got {err.get('input')!r})"
            problems.append(doc.problem(full, msg))
    return problems


