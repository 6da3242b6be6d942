"""The `geneva` engine: the same plan as the local engine, feature fills as Geneva backfills.

Ingest, orphans and slices run here in the driver with the local engine's own code (they
are cheap, and slices need the whole table at once); each feature step with work becomes
one Geneva backfill whose `where` is featurekit's todo filter (new, failed, stale rows,
within the `only:` slice) and whose UDF is featurekit's `compute_piece`. Values, state
column and field metadata are therefore those the local engine writes, and either engine
can continue a table the other filled. Ray starts only when a feature needs it.
"""
from __future__ import annotations

import os
import time

from featurekit.curation.step import finish_metadata, run_slice
from featurekit.engine import Engine, FeatureRun, Reporter, RunResult, apply_entry, record_stopped
from featurekit.engine.local import check_file_format, feature_task, ingest, prepare_columns
from featurekit.errors import RunError
from featurekit.planning.planner import FeatureStep, Plan, SliceStep, only_filter
from featurekit.planning.resolve import Feature, Project
from featurekit.table.metadata import FAILED_SEP, failed_filter, open_dataset, record_apply, todo_filter

from .options import GenevaOptions

ERROR_SAMPLE = 5


class GenevaEngine(Engine):
    name = "geneva"
    Options = GenevaOptions

    def run(self, project: Project, plan: Plan, prepared, reporter: Reporter) -> RunResult:
        self.recorded = False
        self.result = RunResult(version_before=plan.table_version)
        try:
            return self._run(project, plan, prepared, reporter)
        except BaseException as exc:  # Ctrl-C, an error: the log still says what was written
            if not self.recorded:
                record_stopped(project, self.name, plan, self.result, exc)
            raise

    def _run(self, project: Project, plan: Plan, prepared, reporter: Reporter) -> RunResult:
        started = time.perf_counter()
        result = self.result
        uri = project.table_uri
        table = project.spec.table
        if table.branch or table.storage_options:
            raise RunError("the geneva engine runs on a table's main line reached without storage options; "
                           "apply branches and object-store tables with the local engine (--engine local)")
        check_file_format(uri, open_dataset(uri))
        if prepared is not None and prepared.changed:
            result.ingested = ingest(project, prepared)
            result.skipped_rows = prepared.issue_counts()
        ds = open_dataset(uri)
        if ds is None:
            if any(s.has_work for s in plan.features):
                raise RunError(f"table {uri} does not exist and the spec has no source to create it from")
            return result
        for orphan in plan.orphans:
            if orphan.action == "drop":
                cols = [c for c in orphan.columns if c in ds.schema.names]
                ds.drop_columns(cols)
                result.dropped.extend(cols)
        session = None
        try:
            for step in plan.steps:
                if not step.has_work:
                    continue
                if isinstance(step, SliceStep):
                    result.slices[step.name] = self._slice(project, step, reporter)
                    continue
                if session is None:
                    session = self._ray(reporter)
                run = self._feature(project, project.features[step.name], step, reporter, result)
                result.features[step.name] = run
                reporter.feature_finished(run)
        finally:
            if session is not None:
                session.__exit__(None, None, None)
        result.seconds = time.perf_counter() - started
        ds = open_dataset(uri)
        if ds.version != plan.table_version:
            record_apply(ds, apply_entry(project, self.name, plan, result),
                         source=prepared.signature if prepared is not None else None)
            self.recorded = True
        result.version_after = open_dataset(uri).version
        return result

    def _ray(self, reporter: Reporter):
        from ._geneva import load
        from .cluster import RaySession
        load()
        t0 = time.perf_counter()
        try:
            session = RaySession(self.options).__enter__()
        except Exception as exc:  # no cluster at that address, a Ray version mismatch, ...
            where = f"Ray at {self.options.address}" if self.options.address else "a local Ray"
            raise RunError(f"geneva engine: could not start or reach {where}: {exc}") from exc
        reporter.message(f"geneva: running on {session.describe()} ({time.perf_counter() - t0:.1f}s to start)")
        return session

    def _slice(self, project: Project, step: SliceStep, reporter: Reporter):
        """Exactly the local engine's slice step: slices are cheap and need the whole table."""
        sl = project.slices[step.name]
        run = run_slice(project, sl, step.action in ("create", "recompute"), open_dataset(project.table_uri))
        finish_metadata(open_dataset(project.table_uri), sl)
        reporter.message(f"slice {sl.name}: {run.examined} examined, {sum(run.added.values())} kept")
        return run

    # -- one feature ------------------------------------------------------------------------
    def _feature(self, project: Project, f: Feature, step: FeatureStep, reporter: Reporter,
                 result: RunResult) -> FeatureRun:
        from . import columns, job
        from .cluster import concurrency

        run = FeatureRun(f.name)
        started = time.perf_counter()
        ds, deferred = prepare_columns(project, f, step)  # new metadata waits until every row has it
        scope = only_filter(project, f)
        where = todo_filter(f.state_column, f.fingerprint) + (f" AND {scope}" if scope else "")
        counts = [frag.count_rows(filter=where) for frag in ds.get_fragments()]
        total = sum(counts)
        reporter.feature_started(f.name, total)
        upstream_bad = [u for u in f.depends_on if u in result.features and result.features[u].error
                        and not result.features[u].computed]
        if upstream_bad:
            reporter.message(f"{f.name}: upstream {', '.join(upstream_bad)} failed; rows without their values fail too")
        if not total:
            if deferred:
                open_dataset(project.table_uri).update_field_metadata(deferred, replace=True)
            run.seconds = time.perf_counter() - started
            return run
        gtable = _geneva_table(project)
        task = feature_task(project, f, ds)
        udf = columns.make_udf(task, f, self.options.batch_size, self.options.checkpoint_size)
        columns.register(gtable, udf, [*f.output_types, f.state_column])
        version = open_dataset(project.table_uri).version
        workers = concurrency(self.options, f, sum(1 for n in counts if n))
        try:
            submitted = job.submit(gtable, next(iter(f.output_types)), where, feature=f.name, resources=f.resources,
                                   concurrency=workers, options=self.options)
            run.jobs.append(submitted.job_id)
            reporter.message(f"{f.name}: Geneva job {submitted.job_id}, {workers} worker(s)")
            job.follow(submitted, feature=f.name, rows=total, on_rows=lambda n: reporter.rows_done(f.name, n),
                       timeout=self.options.timeout_seconds, stall=self.options.stall_seconds)
            if deferred:
                open_dataset(project.table_uri).update_field_metadata(deferred, replace=True)
        except job.JobFailed as exc:
            run.error = str(exc)
        self._tally(project, f, where, scope, total, version, run)
        run.seconds = time.perf_counter() - started
        rate = f.spec.on_error.max_failure_rate
        attempted = run.computed + run.failed
        if run.error is None and run.failed and run.failed > rate * attempted:
            run.error = (f"feature {f.name!r}: {run.failed} of {attempted} rows failed "
                         f"({run.failed / attempted:.1%} > max_failure_rate {rate:g})")
        return run

    def _tally(self, project: Project, f: Feature, where: str, scope: str | None, total: int, version: int,
               run: FeatureRun) -> None:
        """Rows computed and failed by the job, read back from the state column (the UDF ran
        elsewhere), and the Lance versions it committed."""
        ds = open_dataset(project.table_uri)
        failed = failed_filter(f.state_column, f.fingerprint) + (f" AND {scope}" if scope else "")
        remaining = ds.count_rows(filter=where)
        run.failed = ds.count_rows(filter=failed)
        run.computed = total - remaining
        run.versions = list(range(version + 1, ds.version + 1))
        if run.failed:
            key = project.key if project.key in ds.schema.names else None
            cols = [f.state_column] + ([key] if key else [])
            sample = ds.to_table(columns=cols, filter=failed, limit=ERROR_SAMPLE, with_row_address=key is None)
            keys = sample.column(key or "_rowaddr").to_pylist()
            states = sample.column(f.state_column).to_pylist()
            run.errors = [(k, s.split(FAILED_SEP, 1)[1]) for k, s in zip(keys, states)]


def _geneva_table(project: Project):
    """The table through Geneva (which opens tables made by plain lancedb/pylance)."""
    from ._geneva import load
    geneva = load()
    uri = project.table_uri
    db, name = uri.rsplit("/", 1)
    if "://" not in db:
        db = os.path.abspath(db)  # Ray workers do not share the driver's working directory
    return geneva.connect(db).open_table(name[: -len(".lance")])
