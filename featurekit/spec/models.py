"""The spec file, format version 1, as strict frozen pydantic models.

Only shape lives here: what keys exist and their types. Whether an extractor exists,
a column is known or the graph has a cycle is checked by `resolve`.
"""
from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .names import NAME_RE, column_name_problem, ref_problem, table_name_problem

SUPPORTED_VERSIONS = (1,)
MAX_FILE_BYTES = 256 * 1024 * 1024


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SECRET_KEY = re.compile(r"secret|password|token|(^|_)key$", re.IGNORECASE)
ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


class TableSpec(Strict):
    db: str = Field(description="LanceDB database URI: a folder relative to the spec, or s3://, gs://")
    name: str = Field(description="table name inside the database")
    fragment_rows: int = Field(8192, gt=0, le=1 << 30, description="rows per Lance fragment written by ingest; "
                               "the unit of parallel work and of checkpointing")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="object-store options passed to every Lance call (e.g. aws_endpoint, "
        "region, allow_http, aws_access_key_id); a value may name environment variables as ${NAME}, expanded "
        "when the table is opened. Secrets (keys naming a secret, token or password, or ending in _key) must be "
        "written that way, so they stay out of the spec and out of git")
    branch: str | None = Field(None, description="read and apply onto this Lance branch of the table (created from "
                               "main's current version by the first apply); `--branch` overrides it")

    @field_validator("storage_options", mode="before")
    @classmethod
    def _option_text(cls, value: Any) -> Any:
        """Lance takes strings: YAML's `allow_http: true` means "true"."""
        if isinstance(value, dict):
            return {k: (str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v)
                    for k, v in value.items()}
        return value

    @field_validator("storage_options")
    @classmethod
    def _no_literal_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if SECRET_KEY.search(key) and text and not ENV_REF.search(text):
                raise ValueError(f"{key}: a secret written into the spec ends up in git; write "
                                 f"{key}: ${{{key.upper()}}} and set that environment variable")
        return value

    @field_validator("name")
    @classmethod
    def _table_name(cls, value: str) -> str:
        problem = table_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("db")
    @classmethod
    def _persistent_db(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("db must name a folder (relative to the spec) or an s3://, gs://, az:// URI")
        if "\0" in value:
            raise ValueError(f"db {value!r} holds a NUL character")
        if value.lower().startswith("memory:"):
            raise ValueError(f"db {value!r} is in memory: it is gone when the command ends, and every command "
                             "would start from an empty table; use a folder or an object-store URI")
        return value

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, value: str | None) -> str | None:
        problem = None if value is None else ref_problem(value, "branch")
        if problem:
            raise ValueError(problem)
        return value


class EngineSpec(BaseModel):
    """`engine: local` or `engine: {kind: geneva, ...options}`; options belong to the engine."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str = Field("local", description="an installed engine: local (embedded, the default), geneva, ...")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SourceSpec(Strict):
    format: str = Field(description="jsonl, parquet, csv, lance, or one a plugin registers")
    path: str = Field(description="a file or glob, relative to the spec's folder")
    key: str = Field(description="unique row key: re-ingesting the same key never duplicates")
    files: dict[str, str] = Field(default_factory=dict,
                                  description="binary column -> column holding a file path to load into it")
    options: dict[str, Any] = Field(default_factory=dict, description="format-specific reader options")
    files_root: str | None = Field(None, description="folder the files named by `files` must be inside "
                                   "(default: the spec's folder); relative to the spec's folder")
    max_file_bytes: int = Field(MAX_FILE_BYTES, gt=0, le=1 << 36,
                                description="a file larger than this is a row error, never read")
    on_change: Literal["update", "ignore", "error"] = Field(
        "update", description="a source row that changed since it was ingested: update (rewrite that row and "
        "recompute its features), ignore (keep the table's), error (apply fails, writes nothing)")
    on_skip: Literal["report", "error"] = Field(
        "report", description="source rows that cannot be ingested (bad JSON, a wrong type, a missing file): "
        "report (name them, ingest the rest, retry them next apply) or error (apply fails, writes nothing)")

    @field_validator("key")
    @classmethod
    def _key_not_reserved(cls, value: str) -> str:
        problem = column_name_problem(value)
        if problem:
            raise ValueError(problem if problem.startswith(("column", "a column")) else f"column {problem}")
        return value

    @field_validator("files")
    @classmethod
    def _targets_not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        for target, path_column in value.items():
            for name in (target, path_column):
                problem = column_name_problem(name)
                if problem:
                    raise ValueError(problem if problem.startswith(("column", "a column")) else f"column {problem}")
            if target == path_column:
                raise ValueError(f"{{{target}: {path_column}}} would replace each path with the bytes of its "
                                 f"file; name the binary column differently, e.g. {{{target}_bytes: {path_column}}}")
        return value


class ResourcesSpec(Strict):
    cpus: float | None = Field(None, gt=0, le=1 << 20, allow_inf_nan=False, description="CPUs one worker needs")
    gpus: float | None = Field(None, ge=0, le=1 << 10, allow_inf_nan=False,
                               description="GPUs one worker needs (a GPU extractor runs one worker)")
    batch_size: int | None = Field(None, gt=0, le=1 << 24, description="rows handed to one extractor call")
    workers: int | None = Field(None, gt=0, le=1 << 20,
                                description="parallel worker processes (local engine; capped at the machine's CPUs)")
    threads: int | None = Field(None, gt=0, le=1 << 10,
                                description="fragments at once in one process (thread-safe extractors)")
    timeout: float | None = Field(None, gt=0, le=7 * 24 * 3600, allow_inf_nan=False,
                                  description="seconds one extractor call may take; its rows fail (and are "
                                  "retried next apply) past it. Enforced in worker processes")


class OnErrorSpec(Strict):
    max_failure_rate: float = Field(0.0, ge=0.0, le=1.0,
                                    description="fraction of rows allowed to fail before apply exits 1")


FEATURE_CHECKS = ("not_null", "unique", "range", "accepted_values", "max_null_fraction")
SLICE_CHECKS = ("min_rows", "split_tolerance", "no_leaks")
FLAG_CHECKS = ("not_null", "unique", "no_leaks")  # written bare: `checks: [not_null]`


def check_item(value: Any, kinds: tuple[str, ...], what: str) -> Any:
    """`not_null` -> {not_null: true}; an item names exactly one check of `kinds`."""
    if isinstance(value, str):
        if value not in kinds:
            import difflib
            close = difflib.get_close_matches(value, kinds, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown check {value!r}; {hint}{what} checks: {', '.join(kinds)}")
        if value not in FLAG_CHECKS:
            raise ValueError(f"check {value!r} needs a value: write {{{value}: ...}}")
        return {value: True}
    if isinstance(value, dict):
        named = [k for k in value if k in kinds]
        if len(named) > 1:
            raise ValueError(f"one check per item, not {', '.join(named)}: write each as its own list item")
        extras = ("severity", "output") if what == "feature" else ("severity", "split")
        unknown = [k for k in value if k not in kinds and k not in extras]
        if unknown:
            import difflib
            close = difflib.get_close_matches(str(unknown[0]), kinds + extras, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown check {unknown[0]!r}; {hint}{what} checks: {', '.join(kinds)} "
                             f"(with {' and '.join(extras)})")
        if not named:
            raise ValueError(f"name a check: {', '.join(kinds)}")
        return {k: (True if k in FLAG_CHECKS and v is None else v) for k, v in value.items()}
    if isinstance(value, BaseModel):
        return value
    example = "not_null or {range: {min: 0}}" if what == "feature" else "no_leaks or {min_rows: 100}"
    raise ValueError(f"a check is a name or a mapping ({example}), not {value!r}")


class CheckBase(Strict):
    severity: Literal["error", "warn"] = Field("error", description="error: apply and check exit 1 when it "
                                               "fails (the data is kept); warn: reported only")

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if k not in ("severity", "output", "split")
                    and getattr(self, k) is not None)


class RangeSpec(Strict):
    min: float | None = Field(None, allow_inf_nan=False, description="smallest value allowed (inclusive)")
    max: float | None = Field(None, allow_inf_nan=False, description="largest value allowed (inclusive)")

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError("range needs min:, max: or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min:g} is above max {self.max:g}")
        return self


class FeatureCheck(CheckBase):
    """One check of a feature's column(s): `not_null`, `{range: {min: 0}}`, `{unique: true, severity: warn}`."""

    not_null: Literal[True] | None = Field(None, description="no NULL values")
    unique: Literal[True] | None = Field(None, description="no value twice (NULLs ignored)")
    range: RangeSpec | None = Field(None, description="every value within {min, max} (numbers; NULLs ignored)")
    accepted_values: list[bool | int | float | str] | None = Field(
        None, min_length=1, description="every value is one of these (NULLs ignored)")
    max_null_fraction: float | None = Field(None, ge=0.0, le=1.0, description="at most this fraction of NULLs")
    output: str | None = Field(None, description="a multi-output feature: check this output only "
                               "(default: each of its outputs)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return check_item(value, FEATURE_CHECKS, "feature")


class SliceCheck(CheckBase):
    """One check of a slice: `{min_rows: 100}`, `{split_tolerance: 0.05}`, `no_leaks`."""

    min_rows: int | None = Field(None, ge=0, description="at least this many rows in the slice (or in `split`)")
    split_tolerance: float | None = Field(None, gt=0.0, le=1.0, description="each split's share of the slice's "
                                          "rows is within this of its fraction")
    no_leaks: Literal[True] | None = Field(None, description="no group of rows sharing split.by (or near duplicates) "
                                  "across splits")
    split: str | None = Field(None, description="min_rows: count this split's rows only")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return check_item(value, SLICE_CHECKS, "slice")

    @model_validator(mode="after")
    def _split_for_min_rows(self):
        if self.split is not None and self.min_rows is None:
            raise ValueError("split: goes with min_rows only")
        return self


class FeatureSpec(Strict):
    tier: Literal[1, 2, 3] = Field(1, description="1 cheap CPU, 2 light image, 3 heavy model (GPU); "
                                   "`apply --tier N` runs tiers up to N")
    extractor: str = Field(description="an extractor registered by a plugin (`featurekit plugins` lists them)")
    inputs: dict[str, str] = Field(default_factory=dict, description="extractor input -> column or feature")
    params: dict[str, Any] = Field(default_factory=dict, description="validated by the extractor's Params model")
    resources: ResourcesSpec | None = Field(None, description="overrides the extractor's resources")
    only: str | None = Field(None, description="compute only the rows of this slice")
    outputs: list[str] | dict[str, str] | None = Field(
        None, description="columns of a multi-output extractor: a list, or {output: column}")
    on_error: OnErrorSpec = Field(OnErrorSpec(), description="how many failed rows fail the apply")
    description: str | None = Field(None, description="free text, for people")
    checks: list[FeatureCheck] = Field(default_factory=list, description="data tests run after apply and by "
                                       "`featurekit check`: not_null, unique, {range: {min, max}}, "
                                       "{accepted_values: [...]}, {max_null_fraction: F}; each may add "
                                       "severity: warn (default error) and output: NAME")

    @field_validator("outputs")
    @classmethod
    def _distinct_columns(cls, value: list[str] | dict[str, str] | None):
        columns = list(value.values()) if isinstance(value, dict) else list(value or ())
        seen: dict[str, int] = {}
        for col in columns:
            seen[col] = seen.get(col, 0) + 1
        twice = [c for c, n in seen.items() if n > 1]
        if twice:
            raise ValueError(f"column {twice[0]!r} is named for {seen[twice[0]]} outputs; each output needs a "
                             "column of its own")
        return value


class NearSpec(Strict):
    column: str = Field(description="a uint64 hash column (e.g. image.dhash) with max_distance, or a vector "
                        "column (an embedding: fixed-size list of floats) with max_cosine_distance")
    max_distance: int | None = Field(None, description="hash column: bits two hashes may differ in", ge=0, le=16)
    max_cosine_distance: float | None = Field(
        None, ge=0.0, le=2.0, allow_inf_nan=False, description="vector column: rows whose vectors are within this "
        "cosine distance (1 - cosine similarity, computed in float64 from the stored values) are near duplicates")

    @model_validator(mode="after")
    def _one_threshold(self):
        if (self.max_distance is None) == (self.max_cosine_distance is None):
            raise ValueError("near needs max_distance (bits, for a hash column) or max_cosine_distance (for a "
                             "vector column), exactly one")
        return self

    @property
    def on_vectors(self) -> bool:
        return self.max_cosine_distance is not None


class DedupeSpec(Strict):
    by: list[str] = Field(default_factory=list, description="duplicates agree on every one of these columns")
    near: NearSpec | None = Field(None, description="and their hashes are within max_distance bits of each other")

    @model_validator(mode="after")
    def _something(self):
        if not self.by and self.near is None:
            raise ValueError("dedupe needs by: [columns], near: {column, max_distance}, or both")
        return self


class SplitSpec(Strict):
    by: str | None = Field(None, description="rows sharing this column's value land in one split "
                           "(default: the source key)")
    seed: int = Field(0, description="the same seed gives the same split")
    fractions: dict[str, float] = Field(min_length=1, description="split name -> fraction; they add up to 1")

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(f"split name {name!r} must be letters, digits and _, not starting with a digit")
        for name, v in value.items():
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"fraction {name}: {v} must be a finite number above 0 (a split with no rows "
                                 "is no split: remove it)")
        if abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError(f"fractions must add up to 1, not {sum(value.values()):g}")
        return value


class SliceSpec(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_: str | None = Field(None, alias="from", description="start from another slice's rows, then apply "
                              "this slice's steps")
    where: str | None = Field(None, description="Lance/DataFusion SQL filter; never evaluated as Python")
    dedupe: DedupeSpec | None = Field(None, description="keep one row per group of duplicates (the earliest)")
    split: SplitSpec | None = Field(None, description="assign rows to named splits, stable as data grows")
    checks: list[SliceCheck] = Field(default_factory=list, description="data tests run after apply and by "
                                     "`featurekit check`: {min_rows: N, split: NAME}, {split_tolerance: F}, "
                                     "no_leaks; each may add severity: warn (default error)")


class EvalSpec(Strict):
    split: str = Field(description="the slice's split to evaluate on")
    columns: dict[str, str] = Field(default_factory=dict, description="trainer eval input -> column "
                                    "(default: the column of the same name)")
    limit: int | None = Field(None, gt=0, description="evaluate at most this many rows")


class RecipeTableSpec(Strict):
    version: int | None = Field(None, ge=1, description="train on this Lance version of the table (of its branch)")
    tag: str | None = Field(None, description="train on the version this tag names (`apply --tag NAME` makes one)")

    @model_validator(mode="after")
    def _one(self):
        if (self.version is None) == (self.tag is None):
            raise ValueError("give version: N or tag: NAME (exactly one)")
        if self.tag is not None:
            problem = ref_problem(self.tag, "tag")
            if problem:
                raise ValueError(problem)
        return self

    @property
    def pin(self) -> int | str:
        return self.version if self.version is not None else self.tag


class RecipeSpec(Strict):
    trainer: str = Field(description="a trainer registered by a plugin")
    slice: str = Field(description="the slice the recipe trains on")
    split: str | None = Field(None, description="a split of that slice")
    columns: dict[str, str] = Field(default_factory=dict, description="trainer input -> column")
    params: dict[str, Any] = Field(default_factory=dict, description="validated by the trainer")
    output: str = Field("runs", description="folder for checkpoints and run records, relative to the spec")
    eval: EvalSpec | None = Field(None, description="what `featurekit eval` compares on")
    table: RecipeTableSpec | None = Field(None, description="pin the table version the recipe reads: "
                                          "{version: N} or {tag: NAME} (default: the latest)")


VECTOR_INDEXES = ("IVF_PQ", "IVF_HNSW_SQ")
SCALAR_INDEXES = ("BTREE", "BITMAP", "FTS")


class IndexSpec(Strict):
    """An index on one column: vector (IVF_PQ, IVF_HNSW_SQ) or scalar (BTREE, BITMAP, FTS)."""

    type: Literal["IVF_PQ", "IVF_HNSW_SQ", "BTREE", "BITMAP", "FTS"] = Field(
        description="IVF_PQ or IVF_HNSW_SQ on a vector column; BTREE (range and equality), BITMAP (few distinct "
        "values) or FTS (full-text search on a string column)")
    num_partitions: int | None = Field(None, gt=0, le=1 << 20, description="vector indexes: IVF partitions "
                                       "(default: Lance's choice, about one per 8,192 rows); fewer while the table "
                                       "has under 32 rows per partition")
    num_sub_vectors: int | None = Field(None, gt=0, le=1 << 12, description="IVF_PQ: PQ sub-vectors; must divide "
                                        "the vector's dimension (default: Lance's choice)")
    metric: Literal["cosine", "l2", "dot"] = Field("cosine", description="vector indexes: the distance searched by")

    @model_validator(mode="after")
    def _params_fit(self):
        if self.type in SCALAR_INDEXES:
            given = [k for k in ("num_partitions", "num_sub_vectors") if getattr(self, k) is not None]
            if given or "metric" in self.model_fields_set:
                raise ValueError(f"{(given or ['metric'])[0]} is for vector indexes (IVF_PQ, IVF_HNSW_SQ), "
                                 f"not {self.type}")
        if self.type == "IVF_HNSW_SQ" and self.num_sub_vectors is not None:
            raise ValueError("num_sub_vectors is for IVF_PQ; IVF_HNSW_SQ quantizes each dimension")
        return self

    @property
    def is_vector(self) -> bool:
        return self.type in VECTOR_INDEXES


class TargetTableSpec(Strict):
    db: str | None = Field(None, description="this target's database: a folder relative to the spec, or s3://, gs://")
    name: str | None = Field(None, description="this target's table name")
    storage_options: dict[str, str | bool | int | float] | None = Field(
        None, description="this target's object-store options (replace the table's; secrets as ${NAME})")
    branch: str | None = Field(None, description="this target's Lance branch")


class TargetSourceSpec(Strict):
    path: str | None = Field(None, description="this target's source file or glob, relative to the spec's folder")
    files_root: str | None = Field(None, description="this target's folder for the files named by source.files")


class TargetSpec(Strict):
    """Where one target runs: what it changes of `table`, `engine` and the `source` paths."""

    table: TargetTableSpec | None = Field(None, description="keys of `table` this target sets")
    engine: EngineSpec | None = Field(None, description="this target's engine: a name, or {kind: NAME, ...options}")
    source: TargetSourceSpec | None = Field(None, description="this target's source path")

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


class Spec(Strict):
    featurekit: int = Field(description="spec format version (1)")
    name: str = Field(description="free text, shown in plans and run records")
    table: TableSpec = Field(description="the Lance table everything lives in")
    engine: EngineSpec = Field(EngineSpec(), description="where apply runs: a name, or {kind: NAME, ...options}")
    source: SourceSpec | None = Field(None, description="how rows get into the table")
    features: dict[str, FeatureSpec] = Field(default_factory=dict, description="feature name (= column) -> feature")
    slices: dict[str, SliceSpec] = Field(default_factory=dict, description="curation: filters, dedupe, splits")
    recipes: dict[str, RecipeSpec] = Field(default_factory=dict, description="training recipes")
    indexes: dict[str, IndexSpec] = Field(default_factory=dict, description="column -> index (on a source or "
                                          "feature column): created by apply, kept up to date after appends, "
                                          "dropped by apply --prune once removed from the spec")
    plugins: list[str] = Field(default_factory=list, description="Python files (relative to the spec) whose "
                               "@featurekit.extractor functions this spec's features can use, named "
                               "<file stem>.<function>")
    targets: dict[str, TargetSpec] = Field(default_factory=dict, description="named places to run the spec "
                                           "(dev, prod, ...), each overriding table, engine and source paths; "
                                           "chosen with --target or FEATUREKIT_TARGET, default the first")

    @field_validator("featurekit")
    @classmethod
    def _version(cls, value: int) -> int:
        if value not in SUPPORTED_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_VERSIONS))
            raise ValueError(f"unsupported spec format version {value}; this featurekit reads version {supported}")
        return value

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict[str, TargetSpec]) -> dict[str, TargetSpec]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(f"target name {name!r} must be letters, digits and _, not starting with a digit")
        return value

