"""`checks:` against what the spec resolved to: a check fits its column's type, names an
output the feature has, a split the slice has (`resolve` reports each as a spec problem)."""
from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from ..spec.document import Loc
from ..spec.models import FeatureCheck, SliceSpec


def check_columns(check: FeatureCheck, outputs: dict[str, str]) -> list[str]:
    """The columns a feature check applies to: its `output`'s, else every output's."""
    if check.output is None:
        return list(outputs.values())
    return [outputs[check.output]] if check.output in outputs else []


def feature_check_problems(name: str, checks: list[FeatureCheck], outputs: dict[str, str],
                           types: dict[str, pa.DataType]) -> Iterator[tuple[Loc, str]]:
    """(place, message) for each check that cannot apply to the feature's columns."""
    for i, check in enumerate(checks):
        loc: Loc = ("features", name, "checks", i)
        if check.output is not None and "" in outputs:
            yield loc + ("output",), f"feature {name!r} has one output; remove 'output'"
            continue
        if check.output is not None and check.output not in outputs:
            yield loc + ("output",), f"feature {name!r} has no output {check.output!r}; its outputs: " \
                                     f"{', '.join(outputs)}"
            continue
        for col in check_columns(check, outputs):
            problem = type_problem(check, col, types.get(col))
            if problem:
                yield loc + (check.kind,), problem
                break


def type_problem(check: FeatureCheck, col: str, typ: pa.DataType | None) -> str | None:
    if typ is None:
        return None
    t = pa.types
    if check.range is not None and not (t.is_integer(typ) or t.is_floating(typ)):
        return f"range needs a number column; column {col!r} is {typ}"
    if check.unique is not None and not (t.is_integer(typ) or t.is_floating(typ) or t.is_string(typ)
                                         or t.is_large_string(typ) or t.is_binary(typ) or t.is_large_binary(typ)
                                         or t.is_boolean(typ) or t.is_temporal(typ) or t.is_decimal(typ)):
        return f"unique needs a column of single values (numbers, text, bytes, dates); column {col!r} is {typ}"
    if check.accepted_values is not None:
        return accepted_problem(check.accepted_values, col, typ)
    return None


def accepted_problem(values: list, col: str, typ: pa.DataType) -> str | None:
    t = pa.types
    if t.is_string(typ) or t.is_large_string(typ):
        ok, want = (lambda v: isinstance(v, str)), "text"
    elif t.is_boolean(typ):
        ok, want = (lambda v: isinstance(v, bool)), "true or false"
    elif t.is_integer(typ):
        ok, want = (lambda v: isinstance(v, int) and not isinstance(v, bool)), "integers"
    elif t.is_floating(typ):
        ok, want = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)), "numbers"
    else:
        return f"accepted_values needs a text, integer, float or boolean column; column {col!r} is {typ}"
    bad = [v for v in values if not ok(v)]
    if bad:
        return f"column {col!r} is {typ}, so accepted_values must be {want}; {bad[0]!r} is not"
    return None


def slice_check_problems(name: str, sl: SliceSpec, splits: list[str]) -> Iterator[tuple[Loc, str]]:
    """(place, message) for each slice check that cannot apply: splits it does not have."""
    for i, check in enumerate(sl.checks):
        loc: Loc = ("slices", name, "checks", i)
        if check.split is not None and check.split not in splits:
            yield loc + ("split",), f"slice {name!r} has no split {check.split!r}; its splits: {', '.join(splits)}"
        if check.split_tolerance is not None and sl.split is None:
            yield loc + ("split_tolerance",), f"split_tolerance needs the slice's own split: {{fractions: ...}}; " \
                                              f"slice {name!r} has none"
        if check.no_leaks is not None and sl.split is None:
            yield loc + ("no_leaks",), f"no_leaks needs a split: {{fractions: ...}}; slice {name!r} has none, " \
                                       "so no row can leak across splits"
