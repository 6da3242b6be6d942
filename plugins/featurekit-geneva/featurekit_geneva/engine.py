"""The `geneva` engine: the plan's feature fills as Geneva backfills, on featurekit's engine contract.

The base `Engine` runs ingest, the column layout, orphans, slices and the apply log in the
driver (as for every engine); this engine fills a feature with one Geneva backfill whose
`where` is featurekit's selection of rows to compute (new, failed, stale, within the `only:`
slice) and whose UDF is featurekit's `compute_batch`, then lets the base read back what the
job committed. Values, state column and field metadata are therefore those the local
engine writes, and either engine can continue a table the other filled. Ray starts at the
first feature with work and stops when the apply ends.
"""
from __future__ import annotations

import time

from featurekit.engine import Engine, FeatureError, FeatureFill, Reporter
from featurekit.errors import RunError

from .options import GenevaOptions


class GenevaEngine(Engine):
    name = "geneva"
    Options = GenevaOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.session = None

    def close(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            session.__exit__(None, None, None)

    def fill(self, fill: FeatureFill) -> None:
        from . import columns, job
        from .cluster import concurrency
        from .udf import output_columns

        if self.session is None:
            self.session = self._ray(fill.reporter)
        f = fill.feature
        gtable = _geneva_table(fill.table.ref)
        udf = columns.make_udf(fill.task, f, self.options.batch_size, self.options.checkpoint_size, fill.table.ref)
        columns.register(gtable, fill.table, udf, output_columns(fill.task))
        if fill.task.hash_column:
            fill.run.sharing = "shared by input key (in each Geneva applier)"
        version = fill.table.refresh().version
        workers = concurrency(self.options, f, len(fill.fragments))
        failure = None
        try:
            submitted = job.submit(gtable, next(iter(f.output_types)), fill.where, feature=f.name,
                                   resources=f.resources, concurrency=workers, options=self.options)
            fill.run.jobs.append(submitted.job_id)
            fill.message(f"{f.name}: Geneva job {submitted.job_id}, {workers} worker(s)")
            job.follow(submitted, feature=f.name, rows=fill.rows, on_rows=fill.rows_done,
                       timeout=self.options.timeout_seconds, stall=self.options.stall_seconds)
        except job.JobFailed as exc:
            failure = str(exc)
        fill.committed_elsewhere(version)  # what the job committed, failed rows included
        if failure is not None:
            raise FeatureError(failure)

    def _ray(self, reporter: Reporter):
        from ._geneva import load
        from .cluster import RaySession, ray_address
        load()
        t0 = time.perf_counter()
        try:
            session = RaySession(self.options).__enter__()
        except Exception as exc:  # no cluster at that address, a Ray version mismatch, ...
            address = ray_address(self.options)
            where = f"Ray at {address}" if address else "a local Ray"
            raise RunError(f"geneva engine: could not start or reach {where}: {exc}") from exc
        reporter.message(f"geneva: running on {session.describe()} ({time.perf_counter() - t0:.1f}s to start)")
        return session


def _geneva_table(ref):
    """The table through Geneva (which opens tables made by plain lancedb/pylance), with the
    spec's storage options expanded (Geneva hands them to its workers in its table reference)."""
    from ._geneva import load
    geneva = load()
    db, name = (ref.local_path or ref.uri).rsplit("/", 1)  # absolute: Ray workers do not share the driver's cwd
    name = name[: -len(".lance")]
    if ref.branch is None:
        return geneva.connect(db, storage_options=ref.storage_options).open_table(name)
    from .namespace import BranchNamespace, properties  # the branch's root as the table's location
    return geneva.connect(namespace_client_impl=f"{BranchNamespace.__module__}.{BranchNamespace.__name__}",
                          namespace_client_properties=properties(db, name, ref.branch, ref.storage_options),
                          storage_options=ref.storage_options).open_table(name)

