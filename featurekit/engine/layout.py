"""The columns an apply adds or drops, and the metadata it writes last.

Why this is one step: each `add_columns`, `drop_columns` or metadata update is a Lance
version. An apply therefore drops (recreated features, `--prune` orphans) in one commit,
adds every new column of every step in one commit (all-null: metadata only), fills each
feature with one DataReplacement per checkpoint, and writes every metadata change together
with its apply-log entry in one last commit (`table.record_apply`). Metadata that names a
new fingerprint is written only once every row carries it (the last commit comes after the
last fill), so a reader never sees a fingerprint claimed over old values.
"""
from __future__ import annotations

import pyarrow as pa

from ..planning.inputkeys import HASH_TYPE
from ..planning.planner import SliceStep
from ..planning.resolve import Feature, Project
from ..table.metadata import feature_metadata, hash_column, slice_fields


def reuses_values(f: Feature) -> bool:
    """Whether the feature's rows share values by input (content-addressed compute)."""
    return getattr(f.extractor_cls, "reuse_values", None) is not False


def feature_fields(project: Project, f: Feature) -> list[pa.Field]:
    """The feature's output columns and state column, with the metadata they should carry."""
    input_fps = {col: project.features[o].fingerprint for col in f.inputs.values()
                 for o in [project.columns[col].origin.split(":", 1)[-1]] if o in project.features}
    wanted = [pa.field(c, t, metadata=feature_metadata(f, c, input_fps)) for c, t in f.output_types.items()]
    wanted.append(pa.field(f.state_column, pa.string(), metadata={"featurekit.state_of": f.name}))
    return wanted


def hash_field(f: Feature) -> pa.Field | None:
    if not reuses_values(f):
        return None
    return pa.field(hash_column(f.name), HASH_TYPE, metadata={"featurekit.inputs_of": f.name})


def feature_layout(project: Project, f: Feature, schema: pa.Schema) -> tuple[list[str], list[pa.Field]]:
    """(columns to drop, fields to add) for the feature. An output's type changed, or the
    feature's set of columns did: its columns are recreated together (a fragment keeps one
    data file per feature); the old values stay readable in earlier versions. The input-key
    column lives in the same data file, so it is created (or dropped) only together with the
    feature's other columns: a feature stored before it existed, or before its extractor shared
    values, goes on without one (no sharing) until its columns are recreated."""
    wanted = feature_fields(project, f)
    present = {fld.name: fld for fld in schema}
    have = [w.name for w in wanted if w.name in present]
    changed = any(not present[w.name].type.equals(w.type) for w in wanted if w.name in present)
    drop: list[str] = []
    if have and (changed or len(have) < len(wanted)):
        drop = have
    add = [w for w in wanted if w.name not in present or w.name in drop]
    created = bool(drop) or not have
    if created and hash_column(f.name) in present:
        drop.append(hash_column(f.name))
    extra = hash_field(f)
    if extra is not None and created:
        add.append(extra)
    return drop, add


def metadata_updates(wanted: list[pa.Field], schema: pa.Schema) -> dict[str, dict[str, str]]:
    """Columns whose `featurekit.` metadata differs from `wanted`, with their new metadata;
    other tools' keys (Geneva's) are kept as they are."""
    updates = {}
    for w in wanted:
        if w.name not in schema.names:
            continue
        want = {k.decode(): v.decode() for k, v in (w.metadata or {}).items()}
        current = {k.decode(): v.decode() for k, v in (schema.field(w.name).metadata or {}).items()}
        ours = {k: v for k, v in current.items() if k.startswith("featurekit.")}
        if ours != want:
            updates[w.name] = {k: v for k, v in current.items() if not k.startswith("featurekit.")} | want
    return updates


def plan_layout(project: Project, steps, schema: pa.Schema) -> tuple[list[str], list[pa.Field]]:
    """(columns to drop, fields to add) for every step with work, in one go."""
    drop: list[str] = []
    add: list[pa.Field] = []
    for step in steps:
        if not step.has_work:
            continue
        if isinstance(step, SliceStep):
            add += [fld for fld in slice_fields(project.slices[step.name]) if fld.name not in schema.names]
            continue
        d, a = feature_layout(project, project.features[step.name], schema)
        drop += d
        add += a
    return drop, add
