"""`featurekit docs SPEC --out DIR`: a static HTML catalog of the table (read-only).

What a person wants to see in one place: the dependency graph (SVG drawn by
`planning/graphsvg`), every feature with its description, extractor, params, types,
fingerprint, how much of it is filled, its NULL rate and simple stats, its checks and their
last results; the raw columns; the slices with their splits, removals, leaks and a gallery
page each; the recent applies. Every number is a Lance count or an Arrow computation over a
column, never a loop over rows. The pages are files: no server, no script, nothing fetched.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import NotReady, UsageError
from ..planning.planner import only_filter
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..table.handle import Table
from ..table.metadata import applies, is_featurekit_column
from .log import entry_summary
from .status import FeatureStatus, Status, table_status

APPLIES_SHOWN = 12
TOP_VALUES = 5
BINARY_SAMPLE = 10_000  # bytes columns: sizes over the first rows only (images are large to read)


@dataclass(frozen=True)
class ColumnStats:
    """One column: its type, rows considered (a feature's `only:` rows), NULLs, and stats:
    numbers min/max/mean, booleans the share true, text distinct and top values, lists and
    bytes their lengths."""

    name: str
    type: str
    rows: int
    nulls: int
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def null_rate(self) -> float | None:
        return self.nulls / self.rows if self.rows else None


@dataclass(frozen=True)
class FeatureEntry:
    name: str
    tier: int
    description: str | None
    extractor: str
    version: str
    inputs: dict[str, str]
    params: dict[str, Any]
    fingerprint: str
    state: str                  # fresh | stale | new | incomplete
    computed: int
    failed: int
    pending: int
    only: str | None
    scope_rows: int             # rows it is computed for (its `only:` slice, else the table)
    columns: tuple[ColumnStats, ...]
    checks: tuple[dict, ...]    # {check, column, severity, outcome, detail} (outcome None: not run yet)
    reasons: tuple[str, ...] = ()
    errors: tuple[tuple[Any, str], ...] = ()

    @property
    def fill(self) -> float | None:
        return self.computed / self.scope_rows if self.scope_rows else None


@dataclass(frozen=True)
class SliceEntry:
    name: str
    definition: dict[str, Any]
    state: str
    splits: dict[str, int]
    removed: dict[str, int]
    leaks: int
    checks: tuple[dict, ...]
    gallery: str | None = None  # file name of its gallery page, beside the catalog


@dataclass(frozen=True)
class Catalog:
    """The value `featurekit docs` returns: what the page shows, and where it was written."""

    name: str
    table: str
    exists: bool
    version: int | None
    rows: int
    generated: str
    graph_svg: str
    features: tuple[FeatureEntry, ...]
    columns: tuple[ColumnStats, ...]
    slices: tuple[SliceEntry, ...]
    recipes: tuple[dict, ...]
    applies: tuple[dict, ...]       # newest first: {versions, at, user, did, interrupted}
    checks: dict                    # the last apply's check results (`Status.checks`)
    path: Path | None = None        # index.html
    files: tuple[Path, ...] = ()    # every page written

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("graph_svg")
        out["path"] = str(self.path) if self.path else None
        out["files"] = [str(p) for p in self.files]
        return out


def docs(spec: str | Path | Project, out: str | Path, *, registry: Registry | None = None,
         branch: str | None = None) -> Catalog:
    """Write the table's catalog into the folder `out` (created if needed): `index.html` and a
    gallery page per stored slice. Reads the table, writes nothing to it."""
    from ..curation.gallery import write_page
    from .catalog_page import render_page
    project = project_of(spec, registry, branch)
    folder = _folder(Path(out))
    table = Table.of(project)
    catalog = build_catalog(project, table)
    written, slices = [], []
    for entry in catalog.slices:
        page = _gallery_write(project, table, folder, entry.name) if entry.gallery else None
        written += [page] if page else []
        slices.append(entry if page else replace(entry, gallery=None))
    catalog = replace(catalog, slices=tuple(slices))
    index = write_page(folder / "index.html", render_page(catalog), flag="--out")
    return replace(catalog, path=index, files=(index, *written))


def build_catalog(project: Project, table: Table) -> Catalog:
    """What the page shows, read from the table as it stands (the spec alone when it does not exist)."""
    status = table_status(project, table)
    ds = table.dataset
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    last = {(r["kind"], r["name"], r["column"], r["check"]): r for r in status.checks.get("results", [])}
    features = tuple(_feature(project, ds, s, status, last) for s in status.features if s.name in project.features)
    slices = tuple(_slice(project, s, last, ds) for s in status.slices)
    recipes = tuple({"name": r.name, "trainer": r.spec.trainer, "slice": r.spec.slice, "split": r.spec.split,
                     "columns": dict(r.columns)} for r in project.recipes.values())
    log = list(reversed(applies(ds.schema)))[:APPLIES_SHOWN] if ds is not None else []
    return Catalog(project.spec.name, status.table, status.exists, status.version, status.rows, generated,
                   project.graph.render("svg"), features, _raw_columns(project, ds), slices, recipes,
                   tuple(_apply(e) for e in log), status.checks)


# -- features and columns --------------------------------------------------------------

def _feature(project: Project, ds, st: FeatureStatus, status: Status, last: dict) -> FeatureEntry:
    f = project.features[st.name]
    scope = only_filter(project, f) if ds is not None and f.spec.only in ds.schema.names else None
    scope_rows = (ds.count_rows(filter=scope) if scope else status.rows) if ds is not None else 0
    columns = tuple(column_stats(ds, col, scope, scope_rows) if ds is not None and col in ds.schema.names
                    else ColumnStats(col, str(typ), 0, 0) for col, typ in f.output_types.items())
    checks = tuple(_check_row("feature", f.name, col, c, last)
                   for c in f.spec.checks for col in _check_columns(c, f))
    return FeatureEntry(f.name, f.tier, f.spec.description, f.extractor_cls.name, str(f.extractor_cls.version),
                        dict(f.inputs), dict(f.spec.params), f.fingerprint, st.state, st.computed, st.failed,
                        st.pending, f.spec.only, scope_rows, columns, checks, tuple(st.reasons), tuple(st.errors))


def _check_columns(check, f) -> list[str]:
    from ..planning.checkspec import check_columns
    return list(check_columns(check, f.outputs))


def _check_row(kind: str, name: str, column: str, check, last: dict) -> dict:
    result = last.get((kind, name, column, check.kind)) or {}
    return {"check": check.kind, "column": column, "severity": check.severity, "spec": _check_text(check),
            "outcome": result.get("outcome"), "detail": result.get("detail", ""), "keys": result.get("keys", [])}


def _check_text(check) -> str:
    """How the spec writes the check: ``not_null``, ``range: {min: 0, max: 10}``."""
    data = check.model_dump(exclude_none=True, exclude={"severity", "output"}, by_alias=True)
    data = {k: v for k, v in data.items() if v not in (False, None)}
    if not data:
        return check.kind
    key, value = next(iter(data.items()))
    if value is True:
        return key
    if isinstance(value, dict):
        return f"{key}: {{{', '.join(f'{k}: {_plain(v)}' for k, v in value.items() if v is not None)}}}"
    return f"{key}: {_plain(value)}"


def _plain(value):
    """1.0 as 1, as a person writes it in the spec."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return "[" + ", ".join(str(_plain(v)) for v in value) + "]"
    return value


def _raw_columns(project: Project, ds) -> tuple[ColumnStats, ...]:
    """The table's own columns (source data), not featurekit's."""
    if ds is None:
        return tuple(ColumnStats(c.name, str(c.type), 0, 0) for c in project.columns.values() if c.origin == "source")
    rows = ds.count_rows()
    derived = {c for f in project.features.values() for c in f.columns} | set(project.slices)
    return tuple(column_stats(ds, f.name, None, rows) for f in ds.schema
                 if not is_featurekit_column(f) and f.name not in derived and not f.name.startswith("_fk"))


def column_stats(ds, column: str, scope: str | None, rows: int) -> ColumnStats:
    """A column's NULLs (a Lance count) and stats (Arrow kernels over the column read once)."""
    typ = ds.schema.field(column).type
    nulls = ds.count_rows(filter=f"({scope}) AND ({column} IS NULL)" if scope else f"{column} IS NULL") if rows else 0
    stats: dict[str, Any] = {}
    if rows and nulls < rows:
        if pa.types.is_fixed_size_list(typ):
            stats = {"length": typ.list_size}  # vectors: nothing cheap and useful to add
        else:
            binary = pa.types.is_binary(typ) or pa.types.is_large_binary(typ)
            limit = BINARY_SAMPLE if binary else None
            values = ds.to_table(columns=[column], filter=scope, limit=limit).column(column)
            stats = _stats(values, typ)
            if binary and rows > BINARY_SAMPLE:
                stats["sampled"] = BINARY_SAMPLE
    return ColumnStats(column, str(typ), rows, nulls, stats)


def _stats(values: pa.ChunkedArray, typ: pa.DataType) -> dict[str, Any]:
    if pa.types.is_boolean(typ):
        return {"true": _number(pc.mean(values.cast(pa.int8())).as_py())}
    if pa.types.is_uint64(typ):  # hashes (image.dhash): how many differ says more than a mean
        mm = pc.min_max(values)
        return {"min": mm["min"].as_py(), "max": mm["max"].as_py(), "distinct": pc.count_distinct(values).as_py()}
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        mm = pc.min_max(values)
        return {"min": _number(mm["min"].as_py()), "max": _number(mm["max"].as_py()),
                "mean": _number(pc.mean(values).as_py())}
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_dictionary(typ):
        counts = pc.value_counts(values.combine_chunks().drop_null())
        order = pc.sort_indices(counts.field("counts"), sort_keys=[("", "descending")])[:TOP_VALUES]
        top = counts.take(order)
        return {"distinct": len(counts),
                "top": [[v, n] for v, n in zip(top.field("values").to_pylist(), top.field("counts").to_pylist())]}
    length = None
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        length = pc.list_value_length(values)
    elif pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        length = pc.binary_length(values)
    if length is not None:
        mm = pc.min_max(length)
        return {"min length": mm["min"].as_py(), "max length": mm["max"].as_py(),
                "mean length": _number(pc.mean(length).as_py())}
    return {}


def _number(value):
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.4g}")
    return value


# -- slices, applies ---------------------------------------------------------------------

def _slice(project: Project, st, last: dict, ds) -> SliceEntry:
    sl = project.slices[st.name]
    definition = {k: v for k, v in sl.spec.model_dump(exclude_none=True, by_alias=True, exclude={"checks"}).items()
                  if v not in ({}, [])}
    from ..curation.report import last_run
    leaks = len(last_run(ds.schema, sl.name)[1]) if ds is not None else 0
    checks = tuple(_check_row("slice", sl.name, sl.column, c, last) for c in sl.spec.checks)
    stored = ds is not None and sl.column in ds.schema.names
    return SliceEntry(sl.name, definition, st.state, dict(st.splits), dict(st.removed), leaks, checks,
                      f"slice-{sl.name}.html" if stored else None)


def _gallery_write(project: Project, table: Table, folder: Path, name: str) -> Path | None:
    """The slice's gallery page beside the catalog (None: the slice cannot be read yet)."""
    from ..curation.gallery import write_gallery
    from ..curation.report import build_report
    try:
        report = build_report(project, name, table.require())
    except NotReady:
        return None
    return write_gallery(project, report, folder / f"slice-{name}.html")


def _apply(entry: dict) -> dict:
    start = 1 if entry.get("version_from") is None else entry["version_from"] + 1
    return {"versions": f"v{start}-v{entry.get('version_to')}", "at": entry.get("at"), "user": entry.get("user"),
            "did": entry_summary(entry), "interrupted": entry.get("interrupted"),
            "checks": _check_counts(entry.get("checks"))}


def _check_counts(results) -> dict[str, int] | None:
    if not isinstance(results, list):
        return None
    return {o: sum(r.get("outcome") == o for r in results) for o in ("pass", "fail", "warn")}


# -- files -----------------------------------------------------------------------------------

def _folder(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: that is a file; give a folder for the catalog's pages")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder: {exc.strerror or exc}") from None
    return out

