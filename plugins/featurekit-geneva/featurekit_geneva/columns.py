"""Declare a feature's columns to Geneva as one multi-column UDF group.

Layout decision (notes/geneva.md): Geneva 0.17 unpacks a struct-returning UDF into sibling
columns (the `Columns[T]` machinery) and writes the siblings of a fragment as ONE data file,
committed with DataReplacement: exactly featurekit's layout (values and `_fk_<feature>` in
one file per feature per fragment), so no second pass and no re-layout.

Geneva only creates such a group through `add_columns(UnpackedUDF)`, which refuses columns
that exist; featurekit's columns usually exist (created by the engine base's layout step, the other
engine, or an earlier apply with other params). So this module writes Geneva's field
metadata for the group itself, the way `Table._add_unpacked_virtual_columns` does, onto the
existing columns, next to featurekit's own `featurekit.*` keys (left untouched). It relies on
Geneva internals of the pinned version (geneva==0.17.0): check it when the pin moves
(tests/test_geneva.py covers it).
"""
from __future__ import annotations

import hashlib
import json
import platform

PREFIX = "virtual_column"


def make_udf(task, f, batch_size: int | None, checkpoint_size: int | None, ref=None):
    """The Geneva UDF of a feature: its resources, batch size and fingerprint (as version)."""
    from geneva.transformer import UDF

    from .udf import FeatureUDF
    func = FeatureUDF(task, ref)
    return UDF(func=func, name=f"featurekit_{f.name}", data_type=func.type, input_columns=func.columns,
               version=f.fingerprint, num_cpus=f.resources.cpus, num_gpus=f.resources.gpus,
               batch_size=batch_size or f.resources.batch_size, checkpoint_size=checkpoint_size)


def register(gtable, table, udf, columns: list[str]) -> bool:
    """Point `columns` (the feature's outputs, then its state column) at `udf`, committed through
    the apply's `table` handle (storage options, branch root, writer lease); False when they
    already were (no commit)."""
    from geneva.utils.schema import canonical_field_paths

    from .upstream import marshal_udf, unpacked_udf_plan, upload_udf
    spec = marshal_udf(gtable, udf)
    location = f"_udfs/{hashlib.sha256(spec.udf_payload).hexdigest()}"
    ds = table.require()
    current = {c: _strings(ds.schema.field(c).metadata) for c in columns}
    if all(md.get(f"{PREFIX}.udf") == location for md in current.values()):
        return False
    upload_udf(gtable, spec.udf_payload, location)
    plan = unpacked_udf_plan(udf)
    inputs = json.dumps(canonical_field_paths(ds.schema, udf.input_columns))
    updates = {}
    for output in plan.outputs:
        column = output.field.output_column
        ours = {k: v for k, v in current[column].items() if not (k == PREFIX or k.startswith(PREFIX + "."))}
        updates[column] = ours | output.metadata | {
            PREFIX: "true", f"{PREFIX}.udf_backend": spec.backend, f"{PREFIX}.udf_name": spec.name,
            f"{PREFIX}.udf": location, f"{PREFIX}.udf_inputs": inputs,
            f"{PREFIX}.platform.system": platform.system(), f"{PREFIX}.platform.arch": platform.machine(),
            f"{PREFIX}.platform.python_version": platform.python_version(), f"{PREFIX}.auto_backfill": "false"}
    if sorted(updates) != sorted(columns):
        raise RuntimeError(f"Geneva unpacks {sorted(updates)}, featurekit expects {sorted(columns)}")
    table.update_field_metadata(updates)  # one commit, metadata only
    gtable.checkout_latest()
    return True


def _strings(metadata) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (metadata or {}).items()}
