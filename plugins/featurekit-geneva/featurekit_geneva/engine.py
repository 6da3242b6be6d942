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
    fills_together = True  # a wave's features as concurrent Geneva jobs (`fill_together`)

    def __init__(self, options=None):
        super().__init__(options)
        self.session = None

    def close(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            session.__exit__(None, None, None)

    def fill(self, fill: FeatureFill) -> None:
        error = self.fill_together([fill]).get(fill.name)
        if error is not None:
            raise error

    def fill_together(self, fills: list[FeatureFill]) -> dict[str, FeatureError]:
        """One Geneva backfill per feature; features with no dependency between them (a wave)
        run as concurrent jobs, followed together: their fixed costs (actor processes starting,
        Geneva importing in each) overlap instead of adding up. At most `jobs_at_once` jobs run,
        each with its share of the cluster's CPUs; the rest start as earlier ones finish."""
        from . import columns, job
        from .cluster import jobs_at_once
        from .sharing import shared_counts, todo_rows
        from .udf import output_columns

        if not fills:
            return {}
        if self.session is None:
            self.session = self._ray(fills[0].reporter)
        plans = []
        for fill in fills:  # every UDF registered (a metadata commit each) before any job commits
            gtable = _geneva_table(fill.table.ref)
            udf = columns.make_udf(fill.task, fill.feature, self.options.batch_size, self.options.checkpoint_size,
                                   fill.table.ref)
            columns.register(gtable, fill.table, udf, output_columns(fill.task))
            if fill.task.hash_column:
                fill.run.sharing = "shared by input key (in each Geneva applier)"
            plans.append((fill, gtable, todo_rows(fill.table.dataset, fill.where) if fill.task.hash_column else None))
        version = fills[0].table.refresh().version
        at_once, shares = jobs_at_once(self.options, [f.feature for f in fills], [len(f.fragments) for f in fills])
        failures: dict[str, str] = {}
        followed: dict[str, job.Followed] = {}

        def submit(i: int) -> job.Followed | None:
            fill, gtable, _ = plans[i]
            f = fill.feature
            fill.started = time.perf_counter()  # its own time, not the wave's
            workers, cpus = shares[i]
            try:
                submitted = job.submit(gtable, next(iter(f.output_types)), fill.where, feature=f.name,
                                       resources=f.resources, concurrency=workers, options=self.options, num_cpus=cpus)
            except job.JobFailed as exc:
                failures[f.name] = str(exc)
                return None
            fill.run.jobs.append(submitted.job_id)
            fill.message(f"{f.name}: Geneva job {submitted.job_id}, {workers} worker(s)")
            followed[f.name] = job.Followed(submitted, f.name, fill.rows, fill.rows_done,
                                            on_end=lambda: setattr(fill, "finished", time.perf_counter()))
            return followed[f.name]

        failures.update(job.follow_all(submit, len(plans), at_once, timeout=self.options.timeout_seconds,
                                       stall=self.options.stall_seconds))
        owners = {fid: fill.name for fill, _, _ in plans for fid in fill.task.field_ids.values()}
        by_job = {j.job.job_id: name for name, j in followed.items()}
        versions = job.versions_by_feature(fills[0].table.refresh(), version, owners, by_job) if len(fills) > 1 \
            else None
        for fill, _, todo in plans:  # what the jobs committed, failed rows included
            fill.committed_elsewhere(version, None if versions is None else versions.get(fill.name, []))
            if todo is not None:  # rows with equal inputs shared one value: counted from the keys committed
                fill.run.distinct, fill.run.reused = shared_counts(fill.table.dataset, fill.task, todo)
        return {name: FeatureError(text) for name, text in failures.items()}

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

