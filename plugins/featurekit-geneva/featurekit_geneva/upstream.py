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


def job_ref(future):
    """The Ray object ref of the job's driver task (wait on it, get it, cancel it)."""
    return future.ray_obj_ref


def job_tracker(future):
    """The job's JobTracker actor (progress; ended by featurekit), or None before it exists."""
    return getattr(future, "job_tracker", None)
