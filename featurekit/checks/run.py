"""Each check as a Lance filter counted (`count_rows`) or an Arrow computation over one column,
never a loop over rows in Python; up to `KEYS_SHOWN` failing rows are named by their key."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..curation.report import last_run
from ..planning.checkspec import check_columns
from ..planning.planner import only_filter
from ..planning.resolve import Feature, Project, Slice
from ..spec.models import FeatureCheck, SliceCheck
from ..table.metadata import sql_quote

KEYS_SHOWN = 10


@dataclass(frozen=True)
class CheckResult:
    """One check on one column. `outcome`: pass, fail (an error-severity check), warn (a
    warn-severity check that failed) or skipped (its column is not in the table yet)."""

    kind: str                 # feature | slice
    name: str                 # the feature or slice
    column: str               # the column checked
    check: str                # not_null, unique, range, accepted_values, max_null_fraction, min_rows, ...
    severity: str             # error | warn
    outcome: str              # pass | fail | warn | skipped
    rows: int = 0             # rows checked (a feature's `only:` rows; a slice's rows)
    failing: int = 0          # rows failing (split_tolerance: splits off; no_leaks: leaks; min_rows: rows short)
    keys: tuple = ()          # up to 10 failing rows' keys (no_leaks: keys of leaking rows)
    detail: str = ""          # what was found, for people

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "keys": list(self.keys)}


@dataclass(frozen=True)
class CheckReport:
    """The value `featurekit check --json` prints (and an apply records in its log entry)."""

    version: int | None
    results: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """No error-severity check failed (warnings do not count)."""
        return not self.failed

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.outcome == "fail"]

    @property
    def warned(self) -> list[CheckResult]:
        return [r for r in self.results if r.outcome == "warn"]

    def to_dict(self) -> dict[str, Any]:
        counts = {o: sum(r.outcome == o for r in self.results) for o in ("pass", "fail", "warn", "skipped")}
        return {"version": self.version, "ok": self.ok, "counts": counts,
                "checks": [r.to_dict() for r in self.results]}

    def render(self, failures_only: bool = False) -> str:
        return render_results([r.to_dict() for r in self.results], self.version, failures_only)


def render_results(results: list[dict], version: int | None, failures_only: bool = False) -> str:
    """Check results (as `CheckResult.to_dict()` gives them, e.g. from the apply log) for people."""
    if not results:
        return f"checks on version {version}: none (add checks: to features and slices)"
    bad = sum(r["outcome"] == "fail" for r in results)
    warn = sum(r["outcome"] == "warn" for r in results)
    passed = sum(r["outcome"] == "pass" for r in results)
    lines = [f"checks on version {version}: {passed} passed, {bad} failed, {warn} warning(s)"]
    label = {"pass": "ok", "fail": "FAIL", "warn": "WARN", "skipped": "skip"}
    for r in results:
        if failures_only and r["outcome"] in ("pass", "skipped"):
            continue
        what = r["name"] if r["column"] == r["name"] else f"{r['name']}.{r['column']}"
        lines.append(f"  {label.get(r['outcome'], r['outcome']):<4}  {r['kind']} {what}: {r['check']}: "
                     f"{r['detail']}{keys_text(r)}")
    return "\n".join(lines)


def keys_text(result: dict) -> str:
    """`; keys: 1, 2, 3 ...` (the dots: more rows fail than are named)."""
    if not result["keys"]:
        return ""
    more = result["kind"] == "feature" and result["failing"] > len(result["keys"])
    return f"; keys: {', '.join(map(str, result['keys']))}" + (" ..." if more else "")


def run_checks(project: Project, ds, slice_runs: dict[str, Any] | None = None) -> CheckReport:
    """Every check of the spec on `ds` (a Lance dataset); `slice_runs`: the slices this apply
    ran (their leaks are not in the log yet)."""
    out: list[CheckResult] = []
    key = project.key if project.key and project.key in ds.schema.names else None
    for f in project.features.values():
        for check in f.spec.checks:
            for col in check_columns(check, f.outputs):
                out.append(_feature_check(project, ds, f, check, col, key))
    for sl in project.slices.values():
        for check in sl.spec.checks:
            out.append(_slice_check(ds, sl, check, key, (slice_runs or {}).get(sl.name)))
    return CheckReport(ds.version, tuple(out))


# -- features ------------------------------------------------------------------------------

def _feature_check(project: Project, ds, f: Feature, check: FeatureCheck, col: str, key: str | None) -> CheckResult:
    base = dict(kind="feature", name=f.name, column=col, check=check.kind, severity=check.severity)
    scope = only_filter(project, f)
    if col not in ds.schema.names or (scope and f.spec.only not in ds.schema.names):
        return CheckResult(**base, outcome="skipped", detail="not in the table yet (run featurekit apply)")
    rows = _count(ds, None, scope)
    if check.kind == "unique":
        failing, keys, detail = _unique(ds, col, scope, key)
    else:
        where, describe = _failing_filter(check, col, ds.schema.field(col).type)
        failing = _count(ds, where, scope)
        keys = _keys(ds, where, scope, key) if failing else ()
        detail = describe(failing, rows)
        if check.kind == "max_null_fraction" and failing <= check.max_null_fraction * rows:
            failing, keys = 0, ()
    return _result(base, check, rows, failing, keys, detail)


def _failing_filter(check: FeatureCheck, col: str, typ: pa.DataType):
    """The Lance filter selecting the rows that break `check`, and how to say what was found.
    Literals take the column's type (Lance compares an integer column with integers only)."""
    whole = pa.types.is_integer(typ)
    if check.not_null:
        return f"{col} IS NULL", lambda n, rows: f"{n} of {rows} rows are NULL"
    if check.max_null_fraction is not None:
        limit = check.max_null_fraction
        return f"{col} IS NULL", lambda n, rows: (f"{n} of {rows} rows are NULL ({n / rows:.1%}; at most "
                                                  f"{limit:.1%} allowed)" if rows else "no rows")
    if check.range is not None:
        lo, hi = check.range.min, check.range.max
        bounds = f"[{'' if lo is None else f'{lo:g}'}, {'' if hi is None else f'{hi:g}'}]"
        where = _outside(col, typ, lo, hi) if whole else " OR ".join(
            f"({col} {op} {_number(bound, False)})" for op, bound in (("<", lo), (">", hi)) if bound is not None)
        return where, lambda n, rows: f"{n} of {rows} rows outside {bounds}"
    values = check.accepted_values or []
    tmin, tmax = _int_range(typ) if whole else (None, None)
    listed = ", ".join(_literal(v, whole) for v in values if not whole or tmin <= v <= tmax)
    shown = ", ".join(map(str, values))
    return (f"{col} NOT IN ({listed})" if listed else f"{col} IS NOT NULL",
            lambda n, rows: f"{n} of {rows} rows hold a value not in [{shown}]")


def _int_range(typ: pa.DataType) -> tuple[int, int]:
    bits = typ.bit_width
    return (0, (1 << bits) - 1) if pa.types.is_unsigned_integer(typ) else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _outside(col: str, typ: pa.DataType, lo: float | None, hi: float | None) -> str:
    """Rows of an integer column outside [lo, hi]: integer literals within the column's type
    (Lance refuses others), a bound the type cannot pass left out."""
    tmin, tmax = _int_range(typ)
    lo_i = None if lo is None else math.ceil(lo)
    hi_i = None if hi is None else math.floor(hi)
    if (lo_i is not None and lo_i > tmax) or (hi_i is not None and hi_i < tmin) or \
            (lo_i is not None and hi_i is not None and lo_i > hi_i):
        return f"{col} IS NOT NULL"  # no value of the type fits
    parts = ([f"({col} < {lo_i})"] if lo_i is not None and lo_i > tmin else []) + \
            ([f"({col} > {hi_i})"] if hi_i is not None and hi_i < tmax else [])
    return " OR ".join(parts) or "false"


def _unique(ds, col: str, scope: str | None, key: str | None) -> tuple[int, tuple, str]:
    """Rows whose value another row has too (NULLs ignored), grouped by Arrow."""
    tbl = ds.to_table(columns=[col] + ([key] if key and key != col else []), filter=scope,
                      with_row_id=key is None)
    values = tbl.column(col).combine_chunks()
    counts = pc.value_counts(values)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1)).drop_null()
    if not len(repeated):
        return 0, (), f"{len(values)} rows, no value twice"
    mask = pc.is_in(values, value_set=repeated)
    failing = pc.sum(mask).as_py() or 0
    keys = tbl.column(key or "_rowid").filter(mask).slice(0, KEYS_SHOWN).to_pylist()
    return failing, tuple(keys), f"{failing} of {len(values)} rows share {len(repeated)} value(s)"


# -- slices --------------------------------------------------------------------------------

def _slice_check(ds, sl: Slice, check: SliceCheck, key: str | None, run: Any) -> CheckResult:
    base = dict(kind="slice", name=sl.name, column=sl.column, check=check.kind, severity=check.severity)
    if sl.column not in ds.schema.names:
        return CheckResult(**base, outcome="skipped", detail="not in the table yet (run featurekit apply)")
    members = f"{sl.column} IS NOT NULL"
    rows = _count(ds, members, None)
    if check.min_rows is not None:
        where = members if check.split is None else f"{sl.column} = {sql_quote(check.split)}"
        n = rows if check.split is None else _count(ds, where, None)
        what = "the slice" if check.split is None else f"split {check.split}"
        return _result(base, check, n, max(0, check.min_rows - n), (),
                       f"{n} rows in {what} (at least {check.min_rows} wanted)")
    if check.split_tolerance is not None:
        return _split_shares(base, ds, sl, check, rows)
    leaks = _leaks(ds, sl.name, run)
    keys = tuple(k for leak in leaks for k in leak.get("keys", []))[:KEYS_SHOWN]
    return _result(base, check, rows, len(leaks), keys,
                   f"{len(leaks)} group(s) of rows across splits" if leaks else "no rows across splits")


def _split_shares(base: dict, ds, sl: Slice, check: SliceCheck, rows: int) -> CheckResult:
    fractions = sl.spec.split.fractions if sl.spec.split else {}
    tol = check.split_tolerance
    off, shares = [], []
    for split, fraction in fractions.items():
        n = _count(ds, f"{sl.column} = {sql_quote(split)}", None)
        share = n / rows if rows else 0.0
        shares.append(f"{split} {share:.1%} (want {fraction:.1%})")
        if abs(share - fraction) > tol + 1e-12:
            off.append(split)
    detail = "; ".join(shares) + f"; tolerance {tol:.1%}" + (f"; off: {', '.join(off)}" if off else "")
    return _result(base, check, rows, len(off), (), detail if rows else "the slice has no rows")


def _leaks(ds, name: str, run: Any) -> list[dict]:
    """Leaks recorded since the slice was last computed from scratch, with this apply's run."""
    _, leaks = last_run(ds.schema, name)
    if run is not None:
        leaks = list(run.leaks) if run.full else leaks + list(run.leaks)
    return leaks


# -- shared --------------------------------------------------------------------------------

def _result(base: dict, check, rows: int, failing: int, keys: tuple, detail: str) -> CheckResult:
    if check.kind == "split_tolerance" and not rows:
        failing = 1
    outcome = "pass" if not failing else ("fail" if check.severity == "error" else "warn")
    return CheckResult(**base, outcome=outcome, rows=rows, failing=failing, keys=tuple(keys), detail=detail)


def _count(ds, where: str | None, scope: str | None) -> int:
    both = " AND ".join(f"({w})" for w in (where, scope) if w)
    return ds.count_rows(filter=both) if both else ds.count_rows()


def _keys(ds, where: str, scope: str | None, key: str | None) -> tuple:
    both = " AND ".join(f"({w})" for w in (where, scope) if w)
    tbl = ds.to_table(columns=[key] if key else [], filter=both, limit=KEYS_SHOWN, with_row_id=key is None)
    return tuple(tbl.column(key or "_rowid").to_pylist())


def _number(value: float, whole: bool) -> str:
    """An integer literal for an integer column, a float literal (with a point) otherwise."""
    return str(int(value)) if whole else repr(float(value))


def _literal(value: Any, whole: bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return sql_quote(value)
    return _number(value, whole)
