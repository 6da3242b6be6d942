"""Turn a loaded spec into a `Project`: plugins resolved, columns typed, graph checked.

Every problem found is collected and raised together as one `SpecError`; nothing here
writes anything. The result is a frozen value the planner and the engines work from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from ..errors import Problem, SpecError
from ..plugins.extractor import Extractor, Resources, describe_type, fingerprint, type_matches
from ..plugins.registry import Registry
from ..plugins.source import Source
from ..spec.document import Document, Loc
from ..spec.models import FeatureSpec, RecipeSpec, SliceSpec, Spec
from ..spec.names import check_name, column_name_problem
from ..spec.problems import validation_problems
from ..spec.sql import check_filter, sql_columns, syntax_problem
from ..table.metadata import SLICE_VERSION, is_featurekit_column, state_column
from .checkspec import feature_check_problems, slice_check_problems
from .graph import Graph, Node
from .indexspec import index_problems, near_problem


@dataclass(frozen=True)
class Feature:
    name: str
    spec: FeatureSpec
    extractor_cls: type[Extractor]
    params: BaseModel               # as written in the spec: what the fingerprint covers
    inputs: dict[str, str]          # logical input -> column
    outputs: dict[str, str]         # extractor output ("" when single) -> column
    output_types: dict[str, pa.DataType]  # column -> type
    resources: Resources
    depends_on: tuple[str, ...]     # upstream feature names
    fingerprint: str
    runtime_params: BaseModel | None = None  # params with relative paths resolved against the spec

    @property
    def run_params(self) -> BaseModel:
        return self.runtime_params if self.runtime_params is not None else self.params

    @property
    def tier(self) -> int:
        return self.spec.tier

    @property
    def state_column(self) -> str:
        return state_column(self.name)

    @property
    def columns(self) -> list[str]:
        return list(self.output_types)

    def make_extractor(self) -> Extractor:
        return self.extractor_cls(self.run_params)


ALL_ROWS = "all"      # the split of a slice without split:


@dataclass(frozen=True)
class Slice:
    """A curation slice, stored as column `name` (its split, NULL outside) plus a state column."""

    name: str
    spec: SliceSpec
    columns_used: tuple[str, ...]
    depends_on: tuple[str, ...]     # upstream features
    parent: str | None              # `from:` slice
    fingerprint: str
    tier: int
    splits: tuple[str, ...]         # split names, in the spec's order ("all" without split:)
    key: str | None                 # the row key (keepers are recorded by key)
    definition: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str:
        return self.name

    @property
    def state_column(self) -> str:
        return state_column(self.name)


@dataclass(frozen=True)
class Recipe:
    """A training recipe: its trainer and params, and the columns it reads (logical -> column)."""

    name: str
    spec: RecipeSpec
    trainer_cls: type
    params: BaseModel                 # as written: what the manifest records
    runtime_params: BaseModel         # paths resolved against the spec's folder
    columns: dict[str, str]           # training batches
    eval_columns: dict[str, str] = field(default_factory=dict)

    @property
    def slice(self) -> str:
        return self.spec.slice

    def make_trainer(self):
        return self.trainer_cls(self.runtime_params)


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType | None  # None: unknown (its producer had errors)
    origin: str               # table | source | feature:<name>


@dataclass(frozen=True)
class Project:
    """A validated spec, resolved against the plugins and the table: what engines run."""

    spec: Spec
    path: Path
    doc: Document
    registry: Registry
    features: dict[str, Feature]   # in dependency order
    columns: dict[str, Column]
    graph: Graph
    table_schema: pa.Schema | None
    source: Source | None = None
    source_files: tuple[Path, ...] = ()
    slices: dict[str, Slice] = field(default_factory=dict)  # in dependency order
    recipes: dict[str, Recipe] = field(default_factory=dict)
    deferred: tuple[Problem, ...] = ()  # checks that wait for the source files (none match yet)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def table_uri(self) -> str:
        return table_uri(self.spec, self.root)

    @property
    def key(self) -> str | None:
        return self.spec.source.key if self.spec.source else None


def table_uri(spec: Spec, root: Path) -> str:
    db = spec.table.db
    base = db if "://" in db or Path(db).is_absolute() else str(root / db)
    return f"{base.rstrip('/')}/{spec.table.name}.lance"


# -- the resolver -----------------------------------------------------------------------

@dataclass
class _Resolver:
    doc: Document
    registry: Registry
    root: Path
    table_schema: pa.Schema | None
    problems: list[Problem] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)  # names whose own definition had errors
    partial: set[str] = field(default_factory=set)  # entries checked without a field that had errors
    unchecked_params: dict[str, type] = field(default_factory=dict)  # feature -> extractor class (bad params)
    columns_unknown: bool = False  # the source could not be read: don't cascade unknown columns
    deferred: list[Problem] = field(default_factory=list)  # checks that wait for the data
    feature_inputs: dict[str, dict[str, str]] = field(default_factory=dict)  # logical -> column, per feature

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(loc, message, key=key))

    # spec shape -----------------------------------------------------------------------
    def parse(self) -> Spec | None:
        data = self.doc.data
        if not isinstance(data, dict):
            what = type(data).__name__ if not isinstance(data, list) else "list"
            self.problem((), f"a spec is a mapping (featurekit: 1, name:, table:, ...), not a {what}")
            return None
        try:
            return Spec.model_validate(data)
        except ValidationError as exc:
            self.problems.extend(validation_problems(self.doc, exc, Spec))
            errors = exc.errors()
        # Keep going with what is fine, so one run reports everything: a bad field of an entry
        # (a typo'd key, a slice's split) is left out and the rest of the entry is checked; an
        # entry that still fails without it is left out whole.
        pruned = dict(data)
        bad_checks: dict[tuple[str, str], set[int]] = {}  # a bad check leaves out that item only
        for p in errors:
            loc = p["loc"]
            if len(loc) >= 4 and loc[0] in ("features", "slices") and loc[2] == "checks" and isinstance(loc[3], int):
                bad_checks.setdefault((loc[0], loc[1]), set()).add(loc[3])
                continue
            if len(loc) == 1 and p["type"] == "extra_forbidden":
                pruned.pop(loc[0], None)
            elif loc and loc[0] in PLACEHOLDERS:  # a bad header: check the sections with a stand-in
                pruned[loc[0]] = PLACEHOLDERS[loc[0]]
            elif loc and loc[0] == "source":  # a bad source: its columns are unknown, not missing
                pruned.pop("source", None)
                self.columns_unknown = True
            if len(loc) >= 2 and loc[0] in SECTIONS and isinstance(pruned.get(loc[0]), dict):
                section = dict(pruned[loc[0]])
                entry = section.get(loc[1])
                field_only = len(loc) >= 3 and isinstance(entry, dict) and \
                    (p["type"] == "extra_forbidden" or loc[0] != "features" or loc[2] == "checks")
                if field_only:
                    section[loc[1]] = {k: v for k, v in entry.items() if k != loc[2]}
                    self.partial.add(loc[1])
                else:
                    section.pop(loc[1], None)
                    self.broken.add(loc[1])
                pruned[loc[0]] = section
        for (where, name), bad in bad_checks.items():
            section = pruned.get(where)
            entry = section.get(name) if isinstance(section, dict) else None
            if isinstance(entry, dict) and isinstance(entry.get("checks"), list):
                kept = [c for i, c in enumerate(entry["checks"]) if i not in bad]
                pruned[where] = {**section, name: {**entry, "checks": kept}}
        for _ in range(2):
            try:
                return Spec.model_validate(pruned)
            except ValidationError as again:
                for p in again.errors():
                    loc = p["loc"]
                    if len(loc) >= 2 and loc[0] in SECTIONS and isinstance(pruned.get(loc[0]), dict):
                        pruned[loc[0]] = {k: v for k, v in pruned[loc[0]].items() if k != loc[1]}
                        self.broken.add(loc[1])
        return None

    def engine(self, spec: Spec) -> None:
        entry = self.registry.get("engine", spec.engine.kind)
        if entry is None:
            self.problem(("engine",), self.registry.unknown("engine", spec.engine.kind))
            return
        try:
            entry.cls.Options.model_validate(spec.engine.options)
        except ValidationError as exc:
            self.problems.extend(validation_problems(self.doc, exc, entry.cls.Options, ("engine",)))

    # columns ----------------------------------------------------------------------------
    def base_columns(self, spec: Spec) -> tuple[dict[str, Column], Source | None, tuple[Path, ...]]:
        cols: dict[str, Column] = {}
        if self.table_schema is not None:
            for f in self.table_schema:
                if not is_featurekit_column(f):
                    cols[f.name] = Column(f.name, f.type, "table")
        source, files = None, ()
        if spec.source is not None:
            source, files, scols = self.source_columns(spec)
            for name, typ in scols.items():
                cols.setdefault(name, Column(name, typ, "source"))
        return cols, source, files

    def source_columns(self, spec: Spec) -> tuple[Source | None, tuple[Path, ...], dict[str, pa.DataType]]:
        src = spec.source
        entry = self.registry.get("source", src.format)
        if entry is None:
            self.problem(("source", "format"), self.registry.unknown("source", src.format))
            return None, (), {}
        try:
            options = entry.cls.Options.model_validate(src.options)
        except ValidationError as exc:
            self.problems.extend(validation_problems(self.doc, exc, entry.cls.Options, ("source", "options")))
            self.columns_unknown = True  # the source cannot be read: no cascade of unknown columns
            return None, (), {}
        source = entry.cls(options)
        try:
            files = tuple(source.locate(self.root, src.path))
        except ValueError as exc:  # a source whose path is a name (an hf hub id) says why it found nothing
            self.problem(("source", "path"), str(exc))
            self.columns_unknown = True
            return source, (), {}
        if not files:
            if self.table_schema is None:
                # a fresh clone of a specs repository: check everything that does not need the data
                self.deferred.append(self.doc.problem(
                    ("source", "path"), f"{source.not_found(src.path)}: the source's columns, their types and "
                                        "the filters over them were not checked"))
                self.columns_unknown = True
            else:
                self.deferred.append(self.doc.problem(
                    ("source", "path"), f"{source.not_found(src.path)}: apply ingests nothing and cannot tell "
                                        "which rows left the source; the table's rows are used as they are"))
            return source, (), {}
        try:
            schema = source.schema(files[0])
        except Exception as exc:
            self.problem(("source", "path"), f"cannot read {files[0]}: {exc}")
            self.columns_unknown = True
            return source, files, {}
        cols = self.named_columns(schema, files[0].name)
        if cols is None:
            self.columns_unknown = True
            return source, files, {}
        if not cols and self.table_schema is None:  # nothing to learn the columns from, and no table yet
            self.problem(("source", "path"), f"{files[0].name} is empty: featurekit learns the source's columns from "
                                             "its rows; write rows to it first")
            self.columns_unknown = True
            return source, files, {}
        for col in cols:
            problem = column_name_problem(col)
            if problem:  # featurekit's own columns (or Lance's) cannot come from the source
                problem = problem if problem.startswith(("column", "a column")) else f"column {problem}"
                self.problem(("source", "path"), f"{files[0].name}: {problem}; rename it in the source")
        if src.key not in cols and (self.table_schema is None or src.key not in self.table_schema.names):
            self.problem(("source", "key"), f"key column {src.key!r} is not in {files[0].name} "
                                            f"(columns: {shown_names(cols)})")
        elif src.key in cols and not is_key_type(cols[src.key]):
            self.problem(("source", "key"), f"key column {src.key!r} is {cols[src.key]}; a key must be a string "
                                            "or an integer")
        for target, path_col in src.files.items():
            if path_col not in cols:
                self.problem(("source", "files", target), f"column {path_col!r} is not in {files[0].name} "
                                                          f"(columns: {shown_names(cols)})")
            elif not is_text_type(cols[path_col]):
                self.problem(("source", "files", target), f"column {path_col!r} is {cols[path_col]}; files: "
                                                          "reads paths from a string column")
            if target in cols and target != path_col:
                self.problem(("source", "files", target), f"{files[0].name} already has a column {target!r}; "
                             f"name the binary column differently, e.g. {target}_bytes: {path_col}", key=True)
                continue
            cols[target] = pa.binary()
        return source, files, cols

    def named_columns(self, schema: pa.Schema, shown: str) -> dict[str, pa.DataType] | None:
        """name -> type of the source's columns; None (and a problem) if a name is not UTF-8."""
        cols = {}
        for i in range(len(schema)):
            field = schema.field(i)
            try:
                cols[field.name] = field.type
            except UnicodeDecodeError as exc:
                raw = exc.object if isinstance(exc.object, bytes) else b""
                self.problem(("source", "path"), f"{shown}: the name of column {i + 1} ({raw!r}) is not UTF-8 "
                                                 f"(byte 0x{raw[exc.start]:02x}); rename it in the source"
                             if raw else f"{shown}: the name of column {i + 1} is not UTF-8; rename it in the source")
                return None
        return cols

    # features ---------------------------------------------------------------------------
    def extractor_for(self, name: str, fs: FeatureSpec) -> tuple[type[Extractor], BaseModel] | None:
        entry = self.registry.get("extractor", fs.extractor)
        if entry is None:
            self.problem(("features", name, "extractor"), self.registry.unknown("extractor", fs.extractor))
            return None
        try:
            params = entry.cls.Params.model_validate(fs.params)
        except ValidationError as exc:
            self.problems.extend(validation_problems(self.doc, exc, entry.cls.Params, ("features", name, "params")))
            return None
        return entry.cls, params

    def runtime_params(self, cls: type[Extractor], params: BaseModel) -> BaseModel:
        """Params naming files (``cls.path_params``) are relative to the spec's folder; the
        fingerprint keeps them as written, so moving the project recomputes nothing."""
        update = {}
        for key in getattr(cls, "path_params", ()):
            value = getattr(params, key, None)
            if isinstance(value, str) and value and not Path(value).is_absolute() and (self.root / value).exists():
                update[key] = str((self.root / value).resolve())
        return params.model_copy(update=update) if update else params

    def outputs_for(self, name: str, fs: FeatureSpec, ext: Extractor) -> dict[str, str] | None:
        loc = ("features", name, "outputs")
        try:
            declared = ext.outputs()
        except Exception as exc:
            self.problem(("features", name, "extractor"), f"{fs.extractor}: output type(s) failed: {exc}")
            return None
        if not ext.is_multi_output():
            if fs.outputs is not None:
                self.problem(loc, f"{fs.extractor} has one output, stored as column {name!r}; remove 'outputs'")
                return None
            return {"": name}
        wanted = fs.outputs if fs.outputs is not None else list(declared)
        mapping = dict(wanted) if isinstance(wanted, dict) else {o: o for o in wanted}
        unknown = [o for o in mapping if o not in declared]
        if unknown:
            self.problem(loc, f"{fs.extractor} has no output {', '.join(map(repr, unknown))}; "
                              f"it produces: {', '.join(declared)}")
            return None
        for col in mapping.values():
            try:
                check_name(col, "an output column")
            except ValueError as exc:
                self.problem(loc, str(exc))
                return None
        return mapping

    def feature(self, spec: Spec, name: str, fs: FeatureSpec, cols: dict[str, Column]):
        try:
            check_name(name, "a feature")
        except ValueError as exc:
            self.problem(("features", name), str(exc), key=True)
        found = self.extractor_for(name, fs)
        if found is None:
            self.broken.add(name)
            entry = self.registry.get("extractor", fs.extractor)
            if entry is not None and not entry.cls.inputs_from_params:  # bad params: inputs still checked
                self.unchecked_params[name] = entry.cls
            return None
        cls, params = found
        ext = cls(self.runtime_params(cls, params))
        outputs = self.outputs_for(name, fs, ext)
        if outputs is None:
            self.broken.add(name)
            return None
        expected = dict(ext.input_types())
        inputs = dict(fs.inputs)
        if cls.inputs_from_params:  # e.g. the sql extractor: a column named in the expression feeds itself
            inputs = {**{k: k for k in expected}, **inputs}
        self.feature_inputs[name] = inputs
        missing = [k for k in expected if k not in inputs]
        extra = [k for k in inputs if k not in expected]
        for k in missing:
            self.problem(("features", name, "inputs"), f"{fs.extractor} needs input {k!r} "
                                                       f"({describe_type(expected[k])}); add '{k}: <column>'")
        for k in extra:
            self.problem(("features", name, "inputs", k), f"{fs.extractor} has no input {k!r}; "
                                                          f"its inputs: {', '.join(expected) or '(none)'}", key=True)
        resources = cls.resources
        if fs.resources is not None:
            resources = resources.model_copy(update=fs.resources.model_dump(exclude_none=True))
        types = ext.outputs()
        return cls, params, outputs, {col: types[out] for out, col in outputs.items()}, resources

    def check_input_types(self, name: str, fs: FeatureSpec, cls: type[Extractor], cols: dict[str, Column]) -> None:
        """A feature whose params are invalid: its inputs' types against the class's declared ones."""
        for logical, col in fs.inputs.items():
            expected = cls.inputs.get(logical)
            actual = cols[col].type if col in cols else None
            if expected is not None and actual is not None and not type_matches(expected, actual):
                self.problem(("features", name, "inputs", logical), f"type mismatch: column {col!r} is {actual}, "
                             f"but {fs.extractor} input {logical!r} expects {describe_type(expected)}")

    def check_input(self, name: str, fs: FeatureSpec, cls: type[Extractor], params: BaseModel,
                    cols: dict[str, Column]) -> None:
        ext = cls(params)
        expected = dict(ext.input_types())
        actual_types = {}
        for logical, col in self.feature_inputs[name].items():
            if logical not in expected:
                continue
            loc = ("features", name, "inputs", logical) if logical in fs.inputs else ("features", name, "params")
            if col not in cols:
                if col not in self.broken and not self.columns_unknown:
                    self.problem(loc, self.unknown_column(col, cols))
                continue
            actual = cols[col].type
            actual_types[logical] = actual
            if actual is not None and not type_matches(expected[logical], actual):
                self.problem(loc, f"type mismatch: column {col!r} is {actual}, but {fs.extractor} "
                                  f"input {logical!r} expects {describe_type(expected[logical])}")
        if len(actual_types) == len(expected) and all(t is not None for t in actual_types.values()):
            error = ext.check_inputs(actual_types)
            if error:
                self.problem(("features", name, "params"), error)

    @staticmethod
    def unknown_column(col: str, cols: dict[str, Column]) -> str:
        import difflib
        close = difflib.get_close_matches(col, list(cols), n=3, cutoff=0.6)
        hint = ("; did you mean " + " or ".join(map(repr, close)) + "?") if close else \
            f"; known columns: {shown_names(sorted(cols)) or '(none)'}"
        return f"unknown column {col!r}: not in the table, the source or any feature's outputs{hint}"

    def checks(self, spec: Spec, resolved: dict[str, tuple]) -> None:
        """`checks:` of features and slices fit their columns' types, outputs and splits."""
        for name, r in resolved.items():
            for loc, message in feature_check_problems(name, spec.features[name].checks, r[2], r[3]):
                self.problem(loc, message)
        for name, sl in spec.slices.items():
            for loc, message in slice_check_problems(name, sl, split_names(spec, name)):
                self.problem(loc, message)

    # slices and recipes -----------------------------------------------------------------
    def slice_columns(self, name: str, sl: SliceSpec, cols: dict[str, Column], key: str | None) -> list[str]:
        """Columns a slice reads, each checked; the `where` filter is parsed into one tree (its
        syntax checked whatever else is wrong), then planned and tried by Lance (`check_filter`)."""
        used: list[tuple[Loc, str]] = []
        where_problem = syntax_problem(sl.where) if sl.where else None
        if where_problem:  # reported whatever else is wrong: it needs no column to be checked
            self.problem(("slices", name, "where"), where_problem)
        elif sl.where:
            used += [(("slices", name, "where"), c) for c in sql_columns(sl.where)]
        if sl.dedupe:
            used += [(("slices", name, "dedupe", "by", i), c) for i, c in enumerate(sl.dedupe.by)]
            if sl.dedupe.near:
                used += [(("slices", name, "dedupe", "near", "column"), sl.dedupe.near.column)]
        if sl.split and sl.split.by:
            used += [(("slices", name, "split", "by"), sl.split.by)]
        for loc, col in used:
            if col not in cols and col not in self.broken and not self.columns_unknown:
                self.problem(loc, self.unknown_column(col, cols))
        where_cols = sql_columns(sl.where) if sl.where and not where_problem else []
        if sl.where and not where_problem and all(c in cols for c in where_cols):
            error = check_filter(sl.where, {c: cols[c].type for c in where_cols})
            if error:
                self.problem(("slices", name, "where"), error)
        near = sl.dedupe.near if sl.dedupe else None
        near_type = cols[near.column].type if near and near.column in cols else None
        if near_type is not None and near_problem(near, near_type):
            self.problem(("slices", name, "dedupe", "near", "column"), near_problem(near, near_type))
        if (sl.dedupe or (sl.split and not sl.split.by)) and key is None:
            what = "dedupe" if sl.dedupe else "split"
            self.problem(("slices", name, what), f"{what} needs a row key: add source: with key:"
                         + ("" if sl.dedupe else ", or give split.by"))
        return [c for _, c in used]

    def slice_names(self, spec: Spec, cols: dict[str, Column]) -> None:
        """A slice is stored as a column named after it: it must not shadow another column."""
        for name, sl in spec.slices.items():
            if name in cols:
                what = cols[name].origin.replace("feature:", "feature ")
                self.problem(("slices", name), f"slice {name!r} is stored as column {name!r}, which the "
                                               f"{what} already has; rename the slice", key=True)
            if sl.from_ is not None and sl.from_ not in spec.slices and sl.from_ not in self.broken:
                self.problem(("slices", name, "from"), f"unknown slice {sl.from_!r}; "
                                                       f"slices: {shown_names(spec.slices) or '(none defined)'}")

    def recipes(self, spec: Spec, cols: dict[str, Column]) -> dict[str, list[str]]:
        """Each recipe's trainer, params, slice, splits and columns, checked like an extractor's."""
        out = {}
        self.resolved_recipes: dict[str, Recipe] = {}
        for name, rs in spec.recipes.items():
            base = ("recipes", name)
            entry = self.registry.get("trainer", rs.trainer)
            params = None
            if entry is None:
                self.problem(base + ("trainer",), self.registry.unknown("trainer", rs.trainer))
            else:
                try:
                    params = entry.cls.Params.model_validate(rs.params)
                except ValidationError as exc:
                    self.problems.extend(validation_problems(self.doc, exc, entry.cls.Params, base + ("params",)))
            if rs.slice not in spec.slices:
                if rs.slice not in self.broken:
                    self.problem(base + ("slice",), f"unknown slice {rs.slice!r}; "
                                 f"slices: {shown_names(spec.slices) or '(none defined)'}")
            elif rs.slice not in self.partial:  # a slice checked without its bad split: no split to compare
                names = split_names(spec, rs.slice)
                for loc, wanted in ((base + ("split",), rs.split),
                                    (base + ("eval", "split"), rs.eval.split if rs.eval else None)):
                    if wanted is not None and wanted not in names:
                        self.problem(loc, f"slice {rs.slice!r} has no split {wanted!r}; "
                                          f"its splits: {', '.join(names) or '(none: add split: to the slice)'}")
            trainer = entry.cls if entry is not None else None
            columns = self.recipe_columns(base + ("columns",), rs.columns, trainer.columns if trainer else None,
                                          trainer.optional_columns if trainer else (), cols, rs.trainer)
            eval_columns = {}
            if rs.eval is not None and trainer is not None:
                # default: the training mapping for the same logical name, else a column of that name
                wanted = {k: rs.eval.columns.get(k, rs.columns.get(k, k)) for k in trainer.eval_columns}
                unknown = [k for k in rs.eval.columns if k not in trainer.eval_columns]
                for k in unknown:
                    self.problem(base + ("eval", "columns", k), f"trainer {rs.trainer!r} reads no eval column {k!r}; "
                                 f"its eval columns: {', '.join(trainer.eval_columns) or '(none)'}", key=True)
                eval_columns = self.recipe_columns(base + ("eval", "columns"), wanted, trainer.eval_columns, (),
                                                   cols, rs.trainer)
            if trainer is not None and params is not None:
                self.resolved_recipes[name] = Recipe(name, rs, trainer, params, self.runtime_params(trainer, params),
                                                     columns, eval_columns)
                self.recipe_checks(base, trainer, params, columns, spec, cols)
            out[name] = list(dict.fromkeys([*rs.columns.values(), *eval_columns.values()]))
        return out

    def recipe_checks(self, base: Loc, trainer: type, params, columns: dict[str, str], spec: Spec,
                      cols: dict[str, Column]) -> None:
        """The trainer's own checks between its params and the features its columns come from."""
        from ..plugins.trainer import ColumnInfo
        infos = {}
        for logical, col in columns.items():
            origin = cols[col].origin if col in cols else "table"
            feature = origin.split(":", 1)[1] if origin.startswith("feature:") else None
            infos[logical] = ColumnInfo(logical, col, cols[col].type if col in cols else None, None, feature,
                                        params=dict(spec.features[feature].params) if feature else {},
                                        extractor=spec.features[feature].extractor if feature else None)
        try:
            messages = trainer(params).check_columns(infos)
        except Exception as exc:  # a plugin's bug must not hide the spec's other problems
            messages = [f"trainer {trainer.name!r} failed to check its columns: {type(exc).__name__}: {exc}"]
        for message in messages:
            self.problem(base + ("params",), message)

    def recipe_columns(self, loc: Loc, mapping: dict[str, str], expected, optional, cols: dict[str, Column],
                       trainer: str) -> dict[str, str]:
        """logical -> column, each present and of the type the trainer expects."""
        if expected is not None:
            for k in expected:
                if k not in mapping and k not in optional:
                    self.problem(loc, f"trainer {trainer!r} needs column {k!r} ({describe_type(expected[k])}); "
                                      f"add '{k}: <column>'")
            for k in mapping:
                if k not in expected:
                    self.problem(loc + (k,), f"trainer {trainer!r} reads no column {k!r}; "
                                             f"its columns: {', '.join(expected) or '(none)'}", key=True)
        for logical, col in mapping.items():
            if col not in cols:
                if col not in self.broken and not self.columns_unknown:
                    self.problem(loc + (logical,), self.unknown_column(col, cols))
                continue
            actual = cols[col].type
            if expected is not None and logical in expected and actual is not None \
                    and not type_matches(expected[logical], actual):
                self.problem(loc + (logical,), f"type mismatch: column {col!r} is {actual}, but trainer "
                                               f"{trainer!r} column {logical!r} expects "
                                               f"{describe_type(expected[logical])}")
        return dict(mapping)

    # everything -------------------------------------------------------------------------
    def resolve(self, path: Path) -> Project:
        spec = self.parse()
        if spec is None:
            raise SpecError(self.problems)
        for section in ("slices", "recipes"):
            for name in getattr(spec, section):
                try:
                    check_name(name, "a " + section[:-1])
                except ValueError as exc:
                    self.problem((section, name), str(exc), key=True)
        for name in set(spec.features) & set(spec.slices):
            self.problem(("slices", name), f"{name!r} names both a feature and a slice; rename one", key=True)
        self.engine(spec)
        cols, source, files = self.base_columns(spec)
        resolved: dict[str, tuple] = {}
        owner: dict[str, str] = {}  # output column -> feature
        for name, fs in spec.features.items():
            r = self.feature(spec, name, fs, cols)
            if r is None:
                continue
            resolved[name] = r
            for col, typ in r[3].items():
                if col in cols and cols[col].origin in ("source", "table"):
                    self.problem(("features", name), f"output column {col!r} already exists in the "
                                 f"{cols[col].origin}; rename the feature", key=True)
                elif col in owner:
                    self.problem(("features", name), f"output column {col!r} is also produced by "
                                                     f"feature {owner[col]!r}", key=True)
                owner[col] = name
                cols[col] = Column(col, typ, f"feature:{name}")
        for name in self.broken & set(spec.features):
            cols.setdefault(name, Column(name, None, f"feature:{name}"))
        for name, r in resolved.items():
            self.check_input(name, spec.features[name], r[0], r[1], cols)
        for name, cls in self.unchecked_params.items():
            self.check_input_types(name, spec.features[name], cls, cols)
        self.checks(spec, resolved)
        self.slice_names(spec, cols)
        for name in spec.slices:
            cols.setdefault(name, Column(name, pa.string(), f"slice:{name}"))
        key = spec.source.key if spec.source else None
        slice_cols = {n: self.slice_columns(n, sl, cols, key) for n, sl in spec.slices.items()}
        recipe_cols = self.recipes(spec, cols)
        if not self.columns_unknown:
            known = {c: cols[c].type for c in cols if not cols[c].origin.startswith("slice:")}
            for loc, message in index_problems(spec.indexes, known, lambda c: self.unknown_column(c, cols)):
                self.problem(loc, message, key=len(loc) == 2)
        graph = self.graph(spec, cols, owner, slice_cols, recipe_cols)
        if self.problems:
            raise SpecError(self.problems)
        features = self.fingerprint(spec, graph, resolved, owner)
        slices = self.slices(spec, graph, features, owner, slice_cols, key)
        if self.problems:
            raise SpecError(self.problems)
        return Project(spec=spec, path=path, doc=self.doc, registry=self.registry, features=features,
                       columns=cols, graph=graph, table_schema=self.table_schema, source=source,
                       source_files=files, slices=slices, recipes=self.resolved_recipes,
                       deferred=tuple(self.deferred))

    def graph(self, spec: Spec, cols, owner, slice_cols, recipe_cols) -> Graph:
        nodes: dict[str, Node] = {}
        deps: dict[str, tuple[str, ...]] = {}
        raw: dict[str, tuple[str, ...]] = {}

        def split(key: str, used: list[str], extra: list[str] = ()) -> None:
            up = [f"feature:{owner[c]}" if c in owner else f"slice:{c}" for c in used
                  if c in owner or (c in cols and cols[c].origin.startswith("slice:"))] + list(extra)
            deps[key] = tuple(dict.fromkeys(up))
            raw[key] = tuple(dict.fromkeys(c for c in used if c not in owner and c in cols
                                           and not cols[c].origin.startswith("slice:")))

        for name, fs in spec.features.items():
            key = f"feature:{name}"
            nodes[key] = Node("feature", name, fs.tier)
            only = [f"slice:{fs.only}"] if fs.only in spec.slices else []
            if fs.only is not None and fs.only not in spec.slices and fs.only not in self.broken:
                self.problem(("features", name, "only"), f"unknown slice {fs.only!r}; "
                                                         f"slices: {shown_names(spec.slices) or '(none defined)'}")
            split(key, list(self.feature_inputs.get(name, fs.inputs).values()), only)
        for name, sl in spec.slices.items():
            nodes[f"slice:{name}"] = Node("slice", name)
            split(f"slice:{name}", slice_cols[name], [f"slice:{sl.from_}"] if sl.from_ in spec.slices else [])
        for name, rs in spec.recipes.items():
            nodes[f"recipe:{name}"] = Node("recipe", name)
            split(f"recipe:{name}", recipe_cols[name], [f"slice:{rs.slice}"] if rs.slice in spec.slices else [])
        graph = Graph(nodes, deps, raw)
        cycle = graph.find_cycle()
        if cycle:
            names = [k.split(":", 1)[1] for k in cycle]
            first = cycle[0]
            kind, name = first.split(":", 1)
            self.problem((kind + "s", name), "dependency cycle: " + " -> ".join(names) + "; break it", key=True)
        return graph

    def fingerprint(self, spec: Spec, graph: Graph, resolved, owner) -> dict[str, Feature]:
        features: dict[str, Feature] = {}
        for key in graph.order():
            kind, name = key.split(":", 1)
            if kind != "feature" or name not in resolved:
                continue
            cls, params, outputs, types, resources = resolved[name]
            fs = spec.features[name]
            ups = {}
            for logical, col in self.feature_inputs[name].items():
                ups[logical] = features[owner[col]].fingerprint + "/" + col if col in owner else f"column:{col}"
            fp = fingerprint(cls.name, cls.version, cls(params).fingerprint_params(), ups)
            depends = tuple(dict.fromkeys(owner[c] for c in self.feature_inputs[name].values() if c in owner))
            features[name] = Feature(name, fs, cls, params, dict(self.feature_inputs[name]), outputs, types, resources,
                                     depends, fp, self.runtime_params(cls, params))
        return features


    def slices(self, spec: Spec, graph: Graph, features: dict[str, Feature], owner: dict[str, str],
               slice_cols: dict[str, list[str]], key: str | None) -> dict[str, Slice]:
        """Resolved slices in dependency order, with fingerprints and tiers; a feature computed
        `only:` on a slice must not be of a cheaper tier than the slice needs."""
        out: dict[str, Slice] = {}
        for node in graph.order():
            kind, name = node.split(":", 1)
            if kind != "slice":
                continue
            sl = spec.slices[name]
            used = list(dict.fromkeys(slice_cols[name]))
            ups = {}
            for col in used:
                if col in owner:
                    ups[col] = features[owner[col]].fingerprint + "/" + col
                elif col in out:
                    ups[col] = "slice:" + out[col].fingerprint
                else:
                    ups[col] = f"column:{col}"
            parent = out.get(sl.from_) if sl.from_ else None
            if parent is not None:
                ups["from"] = "slice:" + parent.fingerprint
            depends = tuple(dict.fromkeys(owner[c] for c in used if c in owner))
            tier = max([features[d].tier for d in depends] + [s.tier for s in out.values()
                                                               if s.name in used or s is parent] + [1])
            definition = sl.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"checks"})
            fp = fingerprint("slice", SLICE_VERSION, definition, ups)
            splits = tuple(sl.split.fractions) if sl.split else (parent.splits if parent else (ALL_ROWS,))
            out[name] = Slice(name, sl, tuple(used), depends, parent.name if parent else None, fp, tier,
                              splits, key, definition)
        for name, f in features.items():
            sl = out.get(f.spec.only) if f.spec.only else None
            if sl is not None and f.tier < sl.tier:
                needs = [d for d in sl.depends_on if features[d].tier == sl.tier] or [sl.name]
                self.problem(("features", name, "only"),
                             f"slice {sl.name!r} needs tier-{sl.tier} feature {needs[0]!r}, so a tier-{f.tier} "
                             f"feature cannot be computed only on its rows; make {name!r} tier {sl.tier} or more")
        return out


SECTIONS = ("features", "slices", "recipes")
# stand-ins for a header field with errors (already reported), so that the sections are checked too
# (not for `featurekit:`: a spec of another format version is not checked as this one)
PLACEHOLDERS = {"name": "", "table": {"db": "data", "name": "t"}, "engine": "local"}
SHOWN_NAMES = 12


def shown_names(names, limit: int = SHOWN_NAMES) -> str:
    """`names` joined for a message, the first `limit` of them: a spec with thousands of
    features must not print (nor build) a list of every column in each of its problems."""
    names = list(names)
    if len(names) <= limit:
        return ", ".join(map(str, names))
    return ", ".join(map(str, names[:limit])) + f", ... ({len(names) - limit} more)"


def is_key_type(typ: pa.DataType) -> bool:
    t = pa.types
    return t.is_integer(typ) or t.is_string(typ) or t.is_large_string(typ) or t.is_null(typ)


def is_text_type(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ)


def split_names(spec: Spec, name: str, seen: tuple[str, ...] = ()) -> list[str]:
    """A slice's split names: its own, else its `from:` slice's, else the one split "all"."""
    sl = spec.slices[name]
    if sl.split:
        return list(sl.split.fractions)
    if sl.from_ in spec.slices and sl.from_ not in seen:
        return split_names(spec, sl.from_, seen + (name,))
    return [ALL_ROWS]


def resolve(doc: Document, registry: Registry, path: Path, table_schema: pa.Schema | None) -> Project:
    registry.check()
    return _Resolver(doc, registry, path.parent, table_schema).resolve(path)
