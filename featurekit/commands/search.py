"""`featurekit search`: the rows nearest a query on a vector column, by cosine distance.

The query is a row's own vector (``like``: a row key) or a text embedded by the column's text
extractor (``text``: the extractor that made the column names it, `Extractor.text_embedder`,
e.g. CLIP's image side its text side with the same model). Lance finds the nearest rows: through
the column's vector index when there is one (approximate, as every ANN is; queried in the
index's own metric so that Lance uses it), else by a flat scan (exact). Distances shown are
the exact cosine distances of the rows found, computed from their stored vectors.

``like`` leaves the row itself out (it would be first, at distance 0): the k rows are its k
nearest others, and a copy of it (another row with the same vector) is shown at distance 0.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..curation.nearest import NPROBES, SearchHit, is_vector, nearest, ranked, vector_index
from ..errors import RunError, UsageError
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..plugins.rowerrors import RowErrors
from ..spec.sql import all_of, check_filter
from ..table.handle import Table
from ..table.metadata import INPUTS_PREFIX, STATE_PREFIX, sql_quote, stored_features


@dataclass(frozen=True)
class SearchResult:
    table: str
    version: int
    column: str
    query: dict[str, Any]      # {"like": key} or {"text": "..."}
    k: int
    where: str | None
    index: str | None          # "name (IVF_PQ, metric l2)" when the vector index was used; None: flat scan
    hits: tuple[SearchHit, ...]
    key_column: str | None = None
    notes: tuple[str, ...] = ()
    gallery: Path | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["gallery"] = str(self.gallery) if self.gallery else None
        return out

    def render(self) -> str:
        how = f"through index {self.index} (approximate)" if self.index else "by a flat scan (exact)"
        asked = f"like {self.key_column} = {self.query['like']}" if "like" in self.query else \
            f"text {self.query['text']!r}"
        lines = [f"{self.column}: {len(self.hits)} nearest rows {asked}, {how}"
                 + (f", where {self.where}" if self.where else "")]
        shown = list(dict.fromkeys(c for h in self.hits for c in h.values))
        header = ["#", self.key_column or "row", "distance", *shown]
        body = [[str(i), str(h.key), f"{h.distance:.4f}", *(_cell(h.values.get(c)) for c in shown)]
                for i, h in enumerate(self.hits, 1)]
        widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _cell(value: Any, width: int = 60) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= width else text[:width - 3] + "..."


def search(spec: str | Path | Project, column: str, *, like: Any = None, text: str | None = None, k: int = 20,
           where: str | None = None, show: tuple[str, ...] = (), exact: bool = False, nprobes: int = NPROBES,
           gallery: str | Path | None = None, registry: Registry | None = None,
           branch: str | None = None) -> SearchResult:
    """The `k` rows nearest `like` (a row key: that row's vector; the row itself left out) or
    `text` (embedded by the column's text extractor) on vector column `column`, by cosine
    distance, among the rows `where` selects; through the column's vector index unless
    `exact` (visiting at least `nprobes` of its partitions). `show`: more columns to print;
    `gallery`: also write an HTML page of the rows' images with their distances."""
    if (like is None) == (text is None):
        raise UsageError("give one query: --like KEY (a row's vector) or --text 'words' (embedded by the "
                         "column's text extractor)")
    if k < 1:
        raise UsageError(f"-k must be at least 1, not {k}")
    project = project_of(spec, registry, branch)
    ds = Table.of(project).require()
    dim = _vector_column(ds.schema, column)
    _check_options(ds.schema, show, where)
    key = project.key if project.key in ds.schema.names else None
    query, where_all, asked = _query(project, ds, column, dim, key, like, text, where)
    image = _image_column(project, ds.schema, column) if gallery is not None else None
    columns = list(dict.fromkeys([c for c in [key, *_default_shown(project, ds.schema, column), *show] if c]))
    index = None if exact else vector_index(ds, column)
    table, used = nearest(ds, column, query, k, where_all, [*columns, *([image] if image else [])], index, nprobes)
    notes = _staleness(project, ds.schema, column)
    if index and not used:
        notes += (f"Lance did not use the vector index {index[0]} for this query: the rows were found by a flat scan",)
    hits, order = ranked(table, column, query, key, [c for c in columns if c != key])
    result = SearchResult(str(Table.of(project).ref), ds.version, column, asked, k, where,
                          f"{index[0]} ({index[1]}, metric {index[2]})" if used else None, hits, key, notes)
    if gallery is None:
        return result
    from ..curation.searchpage import write_search_page
    images = table.column(image).to_pylist() if image else [None] * table.num_rows
    query_image = _query_image(ds, key, like, image) if like is not None and image else None
    page = write_search_page(result, [images[i] for i in order], query_image, Path(gallery))
    return replace(result, gallery=page)


def _check_options(schema: pa.Schema, show: tuple[str, ...], where: str | None) -> None:
    missing = [c for c in show if c not in schema.names]
    if missing:
        raise UsageError(f"--show: no column {', '.join(map(repr, missing))} in the table")
    if where:
        problem = check_filter(where, {f.name: f.type for f in schema})
        if problem:
            raise UsageError(f"--where: {problem}")


def _query(project: Project, ds, column: str, dim: int, key: str | None, like: Any, text: str | None,
           where: str | None):
    """The query vector, the filter (a `like` row left out), and what was asked."""
    if like is None:
        return _text_vector(project, column, text, dim), where, {"text": text}
    if key is None:
        raise UsageError("--like needs a row key: the spec has no source.key; use --text")
    query, literal = _row_vector(ds, key, column, like), _literal(ds.schema.field(key).type, like)
    return query, all_of(where, f"NOT ({key} = {literal})"), {"like": like}


def _vector_column(schema: pa.Schema, column: str) -> int:
    """The width of vector column `column`; a usage error naming the vector columns otherwise."""
    vectors = [f.name for f in schema if is_vector(f.type) and not _internal(f.name)]
    listed = f"vector columns: {', '.join(vectors)}" if vectors else "the table has no vector column"
    if column not in schema.names:
        raise UsageError(f"--column {column}: no such column in the table; {listed}")
    typ = schema.field(column).type
    if not is_vector(typ):
        raise UsageError(f"--column {column}: it is {typ}, not a vector (a fixed-size list of floats); {listed}")
    return typ.list_size


def _literal(typ: pa.DataType, value: Any) -> str:
    """`value` (a key as typed on the command line) as a SQL literal of the key column's type."""
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return sql_quote(str(value))
    try:
        parsed = pa.scalar(value).cast(typ).as_py() if not isinstance(value, str) else \
            pa.array([value]).cast(typ)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise UsageError(f"--like {value}: the key column is {typ}; give a key of that type") from None
    return str(parsed)


def _row_vector(ds, key: str, column: str, like: Any):
    import numpy as np
    rows = ds.to_table(columns=[column], filter=f"{key} = {_literal(ds.schema.field(key).type, like)}")
    if rows.num_rows == 0:
        raise UsageError(f"--like {like}: no row with {key} = {like}")
    value = rows.column(column)[0].as_py()
    if value is None:
        raise UsageError(f"--like {like}: that row has no {column} (not computed yet, failed, or outside the "
                         "feature's only: slice); run featurekit apply, or pick another row")
    return np.asarray(value, dtype=np.float32)


def _text_vector(project: Project, column: str, text: str, dim: int):
    """`text` embedded by the extractor the column's own extractor names for text."""
    import numpy as np
    feature = feature_of(project, column)
    if feature is None:
        raise UsageError(f"--text: {column} is not a feature of the spec, so no extractor says how to embed "
                         "text for it; use --like KEY")
    pair = feature.make_extractor().text_embedder()
    if pair is None:
        raise UsageError(f"--text: {feature.spec.extractor} (which makes {column}) has no text side to embed a "
                         "query with; use --like KEY")
    name, params = pair
    entry = project.registry.get("extractor", name)
    if entry is None:
        raise UsageError(f"--text: {column} is queried with extractor {name!r}, which is not installed: "
                         + project.registry.unknown("extractor", name))
    embedder = entry.cls(entry.cls.Params.model_validate(params))
    texts = [n for n, t in embedder.input_types().items() if t == "string" or t == pa.string()]
    if len(texts) != 1 or len(embedder.input_types()) != 1:
        raise UsageError(f"--text: {name} does not take one text input; use --like KEY")
    embedder.setup()
    out = embedder(pa.record_batch([pa.array([text], pa.string())], names=texts))
    if isinstance(out, RowErrors):
        if out.errors[0] is not None:
            raise RunError(f"--text: {name} could not embed the query: {out.errors[0]}")
        out = out.values
    vector = np.asarray(pa.array(out)[0].as_py(), dtype=np.float32) if out is not None else None
    if vector is None or vector.shape != (dim,):
        raise RunError(f"--text: {name} gave a query of shape {None if vector is None else vector.shape}, "
                       f"but {column} holds vectors of {dim}")
    return vector


def _staleness(project: Project, schema: pa.Schema, column: str) -> tuple[str, ...]:
    feature = feature_of(project, column)
    stored = stored_features(schema).get(feature.name) if feature else None
    if feature is None or stored is None or stored.fingerprint == feature.fingerprint:
        return ()
    return (f"{column} was computed with other params or inputs than the spec now says (it is stale): "
            "distances compare the stored vectors; featurekit apply brings it up to date",)


def _default_shown(project: Project, schema: pa.Schema, column: str) -> list[str]:
    """The text a vector was made from (a text embedding's input), when there is one."""
    feature = feature_of(project, column)
    if feature is None:
        return []
    return [c for c in feature.inputs.values() if c in schema.names and _is_text(schema.field(c).type)]


def feature_of(project: Project, column: str):
    """The spec's feature whose output `column` is, or None (a source column)."""
    return next((f for f in project.features.values() if column in f.columns), None)


def _image_column(project: Project, schema: pa.Schema, column: str) -> str | None:
    """The image the vectors were computed from, else the table's first binary column."""
    feature = feature_of(project, column)
    for col in (feature.inputs.values() if feature else ()):
        if col in schema.names and _is_binary(schema.field(col).type):
            return col
    return next((f.name for f in schema if _is_binary(f.type) and not _internal(f.name)), None)


def _query_image(ds, key: str, like: Any, image: str) -> bytes | None:
    rows = ds.to_table(columns=[image], filter=f"{key} = {_literal(ds.schema.field(key).type, like)}")
    return rows.column(image)[0].as_py() if rows.num_rows else None


def _internal(name: str) -> bool:
    return name.startswith((STATE_PREFIX, INPUTS_PREFIX))


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)

