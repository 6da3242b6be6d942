"""Every reach below Geneva's public API, in one place, for the pinned geneva==0.17.0.

Each name here is checked by tests/test_geneva.py::test_the_geneva_internals_relied_on_are_there
(no Ray needed), so a new Geneva that moves one fails that test first, naming it.

- `local_ray_context()`: Geneva's own local-mode context (`geneva._context`), entered when
  featurekit starts or reuses a local Ray, so Geneva schedules its driver task there.
- `marshal_udf`, `upload_udf`, `unpacked_udf_plan`: how Geneva records a struct UDF as a group
  of sibling virtual columns (`Table._add_unpacked_virtual_columns` does the same for new
  columns; featurekit's columns already exist). See columns.py.
- `backfill_async`: `Table.backfill_async` with its private admission switches (`_admission_check`,
  `_admission_strict`: refuse a job the cluster cannot place) and `_return_future` (follow the job).
- `job_ref`, `job_tracker`: the `RayJobFuture` fields a job is followed and cancelled through.
- `arrow_selected_rows()`: a fix carried for `BackfillUDFTask.apply` (geneva/apply/task.py),
  whose selected-rows path (every filtered backfill, so all of featurekit's) puts each
  computed row back in place with `as_py()` and rebuilds the array from Python lists: 0.6 s a
  row for fp16[400x2048]. The fix hands Geneva only the selected rows (no selection column,
  so its all-Arrow path runs) and puts them back in place with one Arrow `take`; the
  unselected rows keep their carried values (the same take). Installed in
  each applier process when featurekit's UDF is unpickled there (`udf.FeatureUDF`).
- `own_root_placement()`: wraps `FragmentBasePlacement.from_dataset` (geneva/utils/multi_base.py,
  with `resolve_dataset_bases`) so that a branch's new data files and checkpoints stay under the
  branch's root instead of main's (tests/test_upstream.py::test_a_branch_is_placed_under_its_own_root...).
  Installed with the UDF too (Geneva unpickles it in the job's driver task, where placement is
  decided, and in each applier).
"""
from __future__ import annotations

from typing import Any

GENEVA_VERSION = "0.17.0"
BACKFILL_PRIVATE_KWARGS = ("_admission_check", "_admission_strict", "_return_future")


def local_ray_context():
    """A `LocalRayContext` to enter, or None when Geneva already has a context."""
    from geneva._context import LocalRayContext, get_current_context
    return LocalRayContext() if get_current_context() is None else None


def marshal_udf(gtable, udf):
    """Geneva's packaged form of `udf` for this table (its payload, backend and name)."""
    return gtable._conn._packager.marshal(udf, table_ref=gtable.get_reference())


def upload_udf(gtable, payload: bytes, location: str) -> None:
    gtable._upload_udf(payload, location)


def unpacked_udf_plan(udf):
    """The output columns (and their field metadata) Geneva unpacks a struct UDF into."""
    from geneva.table import _build_unpacked_udf_plan
    from geneva.transformer import UnpackedUDF
    return _build_unpacked_udf_plan(UnpackedUDF(udf))


def resources_unavailable() -> type[Exception]:
    from geneva.runners.ray.admission import ResourcesUnavailableError
    return ResourcesUnavailableError


def backfill_async(gtable, column: str, *, where: str, strict: bool, **options: Any):
    """Start a backfill and return its `RayJobFuture`; a job the cluster cannot place is refused
    at once (`resources_unavailable()`) when `strict`."""
    return gtable.backfill_async(column, where=where, _admission_check=True, _admission_strict=strict,
                                 _return_future=True, **options)


_ORIGINAL_APPLY = "_featurekit_original_apply"


def arrow_selected_rows() -> None:
    """Make `BackfillUDFTask.apply` keep a filtered batch's computed rows in Arrow (idempotent)."""
    from geneva.apply.task import BackfillUDFTask
    if hasattr(BackfillUDFTask, _ORIGINAL_APPLY):
        return
    original = BackfillUDFTask.apply
    setattr(BackfillUDFTask, _ORIGINAL_APPLY, original)
    BackfillUDFTask.apply = lambda self, batch: _apply_selected(original, self, batch)


def _apply_selected(original, task, batch):
    import numpy as np
    import pyarrow as pa
    from geneva.transformer import BACKFILL_SELECTED, UDFArgType

    if not isinstance(batch, pa.RecordBatch) or BACKFILL_SELECTED not in batch.schema.names:
        return original(task, batch)
    name, udf = next(iter(task.udfs.items()))
    mask = batch[BACKFILL_SELECTED]
    if getattr(udf, "arg_type", None) not in (UDFArgType.RECORD_BATCH, UDFArgType.ARRAY) or mask.null_count:
        return original(task, batch)
    if task.use_blob_v2:  # Geneva's backfills set it; it changes nothing unless an output is a blob
        from geneva.apply.blob_range import blob_v2_field_paths
        if blob_v2_field_paths(pa.schema(task._output_fields(name, udf))):
            return original(task, batch)
    selected = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
    if not selected.any():
        return original(task, batch)  # Geneva's own path: nulls and carried values, nothing computed
    inputs = {c.split(".")[0] for c in udf.input_columns or []}
    carried = set(task._output_column_names(name)) - inputs  # featurekit's state column is both
    chosen = batch.drop_columns([c for c in batch.schema.names if c in carried or c == BACKFILL_SELECTED])
    out = original(task, chosen.filter(mask))  # no selection column: Geneva's all-Arrow path, selected rows only
    if task.defer_carry_forward:
        return out  # sparse output (selected rows only) is what Geneva emits here too
    at = np.cumsum(selected) - 1                 # selected row -> its computed row
    n = len(selected)
    unselected = pa.array(at, pa.int64(), mask=~selected)  # null there: no value (Geneva's nulls)
    kept = pa.array(np.where(selected, n + at, np.arange(n)), pa.int64())  # selected: computed, else carried
    columns = []
    for field in out.schema:
        if field.name == "_rowaddr":
            columns.append(batch["_rowaddr"])
        elif field.name in batch.schema.names:  # carry forward: one take over [old values, computed]
            carried = batch[field.name]
            if not carried.type.equals(field.type):
                carried = carried.cast(field.type)
            columns.append(pa.concat_arrays([carried, out[field.name]]).take(kept))
        else:
            columns.append(out[field.name].take(unselected))
    return pa.record_batch(columns, schema=out.schema)


_ORIGINAL_PLACEMENT = "_featurekit_original_from_dataset"


def own_root_placement() -> None:
    """Keep Geneva's multi-base placement (`FragmentBasePlacement.from_dataset`, geneva/utils/
    multi_base.py) from writing a dataset's new data files and checkpoints into ANOTHER dataset's
    root: a branch's fragments start with main's files (base 0 = main's root), and Geneva places
    new files beside a fragment's first file, i.e. in main's `data/` and `_ckp/` (measured), where
    main's cleanup would delete them. For such a dataset it answers "no placement" (Geneva's
    single-base path: files under the dataset's own root); other datasets are unchanged. Idempotent."""
    from geneva.utils.multi_base import FragmentBasePlacement, resolve_dataset_bases
    if hasattr(FragmentBasePlacement, _ORIGINAL_PLACEMENT):
        return
    original = FragmentBasePlacement.from_dataset
    setattr(FragmentBasePlacement, _ORIGINAL_PLACEMENT, original)

    def from_dataset(cls, ds):
        own = ds.uri.rstrip("/")
        if any(b.is_dataset_root and b.uri.rstrip("/") != own for b in resolve_dataset_bases(ds).values()):
            return None
        return original(ds)
    FragmentBasePlacement.from_dataset = classmethod(from_dataset)


def job_ref(future):
    """The Ray object ref of the job's driver task (wait on it, get it, cancel it)."""
    return future.ray_obj_ref


def job_tracker(future):
    """The job's JobTracker actor (progress; ended by featurekit), or None before it exists."""
    return getattr(future, "job_tracker", None)
