"""What featurekit reads from and keeps in a Lance table (contract section 4).

Each feature column carries field metadata under ``featurekit.*``; each feature has a
companion state column ``_fk_<feature>`` holding, per row, the fingerprint the value was
computed with (``<fp>``), or ``<fp>!<error>`` when the extractor failed on that row, or
NULL when the row was never computed. A legitimate NULL value is therefore always
distinguishable from a failure. Schema metadata ``featurekit.source`` remembers the
source files last ingested, so an unchanged source costs no read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..spec.names import RESERVED_PREFIX

META = "featurekit."
STATE_PREFIX = RESERVED_PREFIX   # _fk_<feature or slice>: per row, the fingerprint it was computed with
INPUTS_PREFIX = "_fkin_"         # _fkin_<feature>: per row, the key of its inputs (shared values)
SLICE_VERSION = "1"   # bump when slice semantics change: every stored slice becomes stale
SOURCE_META = b"featurekit.source"
APPLIES_META = b"featurekit.applies"
APPLIES_KEPT = 100
FAILED_SEP = "!"


def state_column(name: str) -> str:
    """The companion column recording, per row, the fingerprint a feature (or slice) was
    computed with (or that it failed, and why)."""
    return f"{STATE_PREFIX}{name}"


def hash_column(feature: str) -> str:
    """The column holding a feature's input keys (content-addressed compute)."""
    return INPUTS_PREFIX + feature


def sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class StoredFeature:
    """A feature as recorded in the table's field metadata."""

    name: str
    columns: tuple[str, ...]
    extractor: str
    version: str
    params: dict[str, Any]
    inputs: dict[str, str]
    fingerprint: str
    input_fingerprints: dict[str, str] = field(default_factory=dict)
    runtime_params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredSlice:
    """A slice as recorded in its column's field metadata."""

    name: str
    fingerprint: str
    version: str
    definition: dict[str, Any]
    inputs: dict[str, str]


def slice_metadata(sl) -> dict[str, str]:
    """Field metadata of a resolved slice's column."""
    return {META + "slice": sl.name, META + "version": SLICE_VERSION, META + "fingerprint": sl.fingerprint,
            META + "definition": json.dumps(sl.definition, sort_keys=True),
            META + "inputs": json.dumps(list(sl.columns_used)), META + "splits": json.dumps(list(sl.splits))}


def slice_fields(sl) -> list[pa.Field]:
    """The slice's column (its split, NULL outside) and its state column, with their metadata."""
    return [pa.field(sl.column, pa.string(), metadata=slice_metadata(sl)),
            pa.field(sl.state_column, pa.string(), metadata={"featurekit.state_of": sl.name})]


def stored_slices(schema: pa.Schema) -> dict[str, StoredSlice]:
    out = {}
    for f in schema:
        md = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        name = md.get(META + "slice")
        if name:
            out[name] = StoredSlice(name, md.get(META + "fingerprint", ""), md.get(META + "version", ""),
                                    stored_json(md.get(META + "definition"), dict),
                                    stored_json(md.get(META + "inputs"), list))
    return out


def is_featurekit_column(f: pa.Field) -> bool:
    """A column featurekit derived (feature output, slice, state), not source data."""
    md = f.metadata or {}
    return f.name.startswith((STATE_PREFIX, INPUTS_PREFIX)) or b"featurekit.feature" in md or b"featurekit.slice" in md \
        or b"featurekit.state_of" in md or b"featurekit.inputs_of" in md


def feature_metadata(feature, column: str, input_fps: dict[str, str]) -> dict[str, str]:
    """Field metadata for one output column of a resolved feature."""
    extra = {f"{META}output.{k}": str(v) for k, v in feature.make_extractor().output_metadata().items()}
    return {**extra, 
        META + "feature": feature.name,
        META + "extractor": feature.extractor_cls.name,
        META + "version": str(feature.extractor_cls.version),
        # what the fingerprint covers (params as written, run-time facts), and the runtime params apart
        META + "params": json.dumps(feature.extractor_cls(feature.params).fingerprint_params(), sort_keys=True),
        META + "runtime_params": json.dumps(feature.extractor_cls(feature.params).runtime_params(), sort_keys=True),
        META + "inputs": json.dumps(feature.inputs, sort_keys=True),
        META + "input_fingerprints": json.dumps(input_fps, sort_keys=True),
        META + "fingerprint": feature.fingerprint,
        META + "output": column,
    }


def stored_features(schema: pa.Schema) -> dict[str, StoredFeature]:
    out: dict[str, StoredFeature] = {}
    for f in schema:
        md = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        name = md.get(META + "feature")
        if not name:
            continue
        if name in out:
            prev = out[name]
            out[name] = StoredFeature(**{**prev.__dict__, "columns": prev.columns + (f.name,)})
            continue
        out[name] = StoredFeature(
            name=name, columns=(f.name,), extractor=md.get(META + "extractor", ""),
            version=md.get(META + "version", ""), params=stored_json(md.get(META + "params"), dict),
            inputs=stored_json(md.get(META + "inputs"), dict), fingerprint=md.get(META + "fingerprint", ""),
            input_fingerprints=stored_json(md.get(META + "input_fingerprints"), dict),
            runtime_params=stored_json(md.get(META + "runtime_params"), dict))
    return out


def stored_json(raw: str | bytes | None, kind: type) -> Any:
    """A JSON value featurekit wrote into the table's metadata, or an empty `kind` when it is
    missing or was edited into something featurekit never writes (not JSON, another type).
    Tampered metadata then reads as unknown: a feature's fingerprint no longer matches and it is
    recomputed, a source signature is not trusted and the source is read, a log starts afresh,
    rather than every command ending in a traceback."""
    if not raw:
        return kind()
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return kind()
    return value if isinstance(value, kind) else kind()


def source_signature(schema: pa.Schema) -> dict[str, Any] | None:
    raw = (schema.metadata or {}).get(SOURCE_META)
    return stored_json(raw, dict) or None


def failed_filter(state_col: str, fp: str) -> str:
    return f"starts_with({state_col}, {sql_quote(fp + FAILED_SEP)})"


def todo_filter(state_col: str, fp: str) -> str:
    """Rows whose value is missing, failed or computed by another fingerprint."""
    return f"({state_col} IS NULL OR {state_col} <> {sql_quote(fp)})"


def slice_todo_filter(state_col: str, fp: str) -> str:
    """Slice rows to examine: never examined, examined by another definition, or waiting
    for an upstream value (``<fp>!blocked``)."""
    return (f"({state_col} IS NULL OR NOT starts_with({state_col}, {sql_quote(fp)}) "
            f"OR starts_with({state_col}, {sql_quote(fp + FAILED_SEP + 'blocked')}))")


def applies(schema: pa.Schema) -> list[dict[str, Any]]:
    """The log of applies that changed the table, oldest first (the last APPLIES_KEPT)."""
    raw = (schema.metadata or {}).get(APPLIES_META)
    return [e for e in stored_json(raw, list) if isinstance(e, dict)]


def record_apply(table, entry: dict[str, Any], source: dict[str, Any] | None = None,
                 fields: dict[str, dict[str, str]] | None = None) -> int:
    """Append `entry` to the apply log of `table` (a `Table`); this commit is the apply's last
    version, returned. `source`: the source signature ingested, and `fields`: column -> its
    complete new field metadata (features and slices whose rows now carry a new fingerprint),
    recorded in the same commit (never versions of their own)."""
    import lance
    ds = table.require()
    log = applies(ds.schema)[-(APPLIES_KEPT - 1):]
    entry = {**entry, "version_to": ds.version + 1}
    meta = {APPLIES_META.decode(): json.dumps(log + [entry], sort_keys=True)}
    if source is not None:
        meta[SOURCE_META.decode()] = json.dumps(source, sort_keys=True)
    ids = {f.name(): f.id() for f in ds.lance_schema.fields()}
    op = lance.LanceOperation.UpdateConfig(
        schema_metadata_updates=lance.LanceOperation.UpdateMap(meta, replace=False),
        field_metadata_updates={ids[c]: lance.LanceOperation.UpdateMap(md, replace=True)
                                for c, md in (fields or {}).items() if c in ids} or None)
    return table.commit(op, what="the apply log")


def failure_counts(ds, state_col: str, fp: str, scope: str | None = None) -> tuple[int, int]:
    """(failed, attempted) over the feature's rows: rows whose state holds this
    fingerprint, failed or not, within the feature's `only:` scope."""
    def count(where: str) -> int:
        return ds.count_rows(filter=" AND ".join(filter(None, [where, scope])))
    return count(failed_filter(state_col, fp)), count(f"starts_with({state_col}, {sql_quote(fp)})")
