"""The embedded engine: pylance in this process, plus worker processes for CPU-bound work.

Data evolution only: a feature's columns are first added as all-null columns (metadata,
no data written), then filled fragment by fragment with DataReplacement commits. The
other columns, image bytes above all, are never rewritten. Commits happen every
``checkpoint_seconds`` and on interruption, so a re-run resumes where the last commit
left off: rows already computed carry the current fingerprint in the state column.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pyarrow as pa
from pydantic import Field

from ..curation.step import run_slice
from ..errors import RunError
from ..ingest.prepare import checked_batch, write_changes
from ..lifetime import critical, disk_full, machine_workers
from ..planning.planner import FeatureStep, Plan, SliceStep, only_filter
from ..planning.resolve import Feature, Project
from ..table.datafiles import ColumnFile, commit_replacements, file_version
from ..table.handle import table_ref, write_dataset
from ..table.metadata import failure_counts, hash_column, record_apply, todo_filter
from . import Engine, EngineOptions, FeatureRun, Reporter, RunResult, apply_entry, record_stopped
from .layout import feature_fields, feature_layout, metadata_updates, plan_layout, reuses_values, slice_fields
from .pool import WorkerPool
from .reuse import Reuse
from .work import (
    FeatureError,
    FeatureTask,
    FragmentJob,
    FragmentResult,
    FragmentTask,
    compute_fragment,
    compute_piece_counted,
    discard,
    release_extractor,
)

PARALLEL_AFTER_SECONDS = 2.0  # estimated in-process time above which a worker pool pays off


class LocalOptions(EngineOptions):
    checkpoint_seconds: float = Field(30.0, gt=0, le=1e9, allow_inf_nan=False,
                                      description="commit finished fragments at least this often")
    max_workers: int | None = Field(None, gt=0, le=1 << 20, description="cap on worker processes (default: the cores)")
    ingest_commit_rows: int | None = Field(None, gt=0, le=1 << 40, description="rows a commit while ingesting "
                                           "(default: 16 fragments)")
    reuse_memory_mb: float = Field(1024, ge=0, le=1 << 30, allow_inf_nan=False,
                                   description="memory for values shared by rows with equal inputs within an apply")


class LocalEngine(Engine):
    name = "local"
    Options = LocalOptions

    def run(self, project: Project, plan: Plan, prepared, reporter: Reporter) -> RunResult:
        import lance  # noqa: F401  (heavy: only when there is work)

        self.metadata: dict[str, dict[str, str]] = {}  # written with the apply-log entry, last
        self.recorded = False
        try:
            return self._run(project, plan, prepared, reporter)
        except BaseException as exc:  # Ctrl-C, SIGTERM (lifetime.Stopped), an error: log what was kept
            if not self.recorded:
                record_stopped(project, self.name, plan, getattr(self, "result", RunResult()), exc, self.metadata)
            raise

    def _run(self, project: Project, plan: Plan, prepared, reporter: Reporter) -> RunResult:
        started = time.perf_counter()
        result = self.result = RunResult(version_before=plan.table_version)
        uri = table_ref(project)
        check_file_format(uri, _open(uri))
        if prepared is not None and prepared.changed:
            result.ingested = self._ingest(project, prepared)
            result.skipped_rows = prepared.issue_counts()  # includes files that failed to read
        ds = _open(uri)
        if ds is None:
            if any(s.has_work for s in plan.features):
                raise RunError(f"table {uri} does not exist and the spec has no source to create it from")
            return result
        ds = self._layout(project, plan, ds, result)
        self.pool = None
        try:
            for step in plan.steps:
                if not step.has_work:
                    continue
                if isinstance(step, SliceStep):
                    result.slices[step.name] = self._slice(project, project.slices[step.name], step, reporter)
                    continue
                run = self._feature(project, project.features[step.name], step, reporter, result)
                result.features[step.name] = run
                reporter.feature_finished(run)
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)
        result.seconds = time.perf_counter() - started
        ds = _open(uri)
        if ds.version != plan.table_version or self.metadata:
            with critical():  # one commit: the log entry, the source signature, the new metadata
                record_apply(ds, apply_entry(project, self.name, plan, result),
                             source=prepared.signature if prepared is not None else None, fields=self.metadata)
                self.recorded = True  # a signal deferred by critical() must not log the apply twice
        result.version_after = _open(uri).version
        return result

    # -- ingest ---------------------------------------------------------------------------
    def _ingest(self, project: Project, prepared) -> int:
        """Replace changed rows and delete pruned ones (one commit), then append the new
        rows, streaming file bytes chunk by chunk. The source signature is recorded by the
        apply's last commit (record_apply): reading a source that changed nothing writes
        no version."""
        uri = table_ref(project)
        ds = _open(uri)
        written = 0
        schema = None
        if prepared.count:
            schema = prepared.schema()
            if ds is not None:
                new_cols = [f for f in schema if f.name not in ds.schema.names]
                if new_cols:
                    ds.add_columns(pa.schema(new_cols))
                    ds = _open(uri)
                schema = pa.schema([ds.schema.field(f.name).remove_metadata() for f in schema])
        if ds is not None and (prepared.changed_rows is not None or prepared.delete_keys):
            with critical():
                written += write_changes(uri, prepared, schema, project.spec.table.fragment_rows)
            ds = _open(uri)
        if prepared.new_rows is not None:
            def counted(start: int, stop: int):
                nonlocal written
                for batch in prepared.batches(start, stop):
                    written += batch.num_rows
                    yield checked_batch(batch.cast(schema))

            # One commit per group of fragments: a crash loses at most one group, and the
            # next apply skips the keys already in (ingest is keyed).
            step = self.options.ingest_commit_rows or project.spec.table.fragment_rows * 16
            for start in range(0, prepared.new_rows.num_rows, step):
                reader = pa.RecordBatchReader.from_batches(schema, counted(start, start + step))
                with critical():
                    ds = write_dataset(reader, uri, mode="create" if ds is None else "append",
                                             max_rows_per_file=project.spec.table.fragment_rows)
        return written

    # -- columns ----------------------------------------------------------------------------
    def _layout(self, project: Project, plan: Plan, ds, result: RunResult):
        """One commit dropping columns (recreated features, --prune orphans), one adding
        every new column of the apply (all-null: metadata only)."""
        drop, add = plan_layout(project, plan.steps, ds.schema)
        for orphan in plan.orphans:
            if orphan.action == "drop":
                cols = [c for c in orphan.columns if c in ds.schema.names]
                drop += cols
                result.dropped.extend(cols)
        drop = list(dict.fromkeys(c for c in drop if c in ds.schema.names))
        if drop:
            with critical():
                ds.drop_columns(drop)
            ds = _open(table_ref(project))
        if add:
            with critical():
                ds.add_columns(pa.schema(add))
            ds = _open(table_ref(project))
        return ds

    # -- one slice --------------------------------------------------------------------------
    def _slice(self, project: Project, sl, step: SliceStep, reporter: Reporter):
        reporter.message(f"slice {sl.name}: examining {'every row' if step.rows is None else step.rows} row(s)"
                         .replace("every row row(s)", "every row"))
        run = run_slice(project, sl, step.action in ("create", "recompute"), _open(table_ref(project)))
        self.metadata.update(metadata_updates(slice_fields(sl)[:1], _open(table_ref(project)).schema))
        kept = sum(run.added.values())
        removed = ", ".join(f"{n} {step_}" for step_, n in sorted(run.removed.items())) or "none removed"
        reporter.message(f"slice {sl.name}: {run.examined} examined, {kept} kept ({removed})"
                         + (f", {run.blocked} waiting for upstream values" if run.blocked else "")
                         + (f", {len(run.leaks)} leak(s) across splits" if run.leaks else ""))
        return run

    # -- one feature -----------------------------------------------------------------------
    def _feature(self, project: Project, f: Feature, step: FeatureStep, reporter: Reporter,
                 result: RunResult) -> FeatureRun:
        run = FeatureRun(f.name)
        started = time.perf_counter()
        ds = _open(table_ref(project))
        deferred = metadata_updates(feature_fields(project, f), ds.schema)
        upstream_bad = [u for u in f.depends_on if u in result.features and result.features[u].error
                        and not result.features[u].computed]
        task = self._task(project, f, ds)
        reuse = Reuse(table_ref(project), f.state_column, f.fingerprint, task.hash_column, dict(f.output_types),
                      int(self.options.reuse_memory_mb * (1 << 20))) if task.hash_column and reuses_values(f) else None
        scope = only_filter(project, f)
        todo = todo_filter(f.state_column, f.fingerprint)
        work = []
        total = 0
        fresh_column = step.action == "create" and not scope  # every row needs work: no filter to run
        for frag in ds.get_fragments():
            n = frag.count_rows() if fresh_column else frag.count_rows(filter=todo + (f" AND {scope}" if scope else ""))
            if n:
                full = fresh_column or (scope is None and n == frag.count_rows())
                work.append(FragmentTask(ds, frag.fragment_id, task, full,
                                         filter=None if full else todo + (f" AND {scope}" if scope else ""),
                                         reuse=reuse))
                total += n
        reporter.feature_started(f.name, total)
        if upstream_bad:
            reporter.message(f"{f.name}: upstream {', '.join(upstream_bad)} failed; rows without their values fail too")
        try:
            self._execute(project, f, work, ds, run, reporter)
            # every row now has the new fingerprint: the metadata may say so (in the last commit)
            self.metadata.update(deferred)
        except FeatureError as exc:
            run.error = str(exc)
        finally:
            release_extractor(task)  # a model loaded here must not outlive its feature
        run.seconds = time.perf_counter() - started
        run.rows = run.computed + run.failed
        if reuse is not None:
            run.distinct, run.reused = len(reuse.seen), reuse.rows - reuse.computes
        rate = f.spec.on_error.max_failure_rate
        if run.error is None and run.failed:
            # over the feature's rows, not the rows retried now: a retry that fails again
            # must not turn 1 failure in 1,000 rows into 1 in 1
            failed, attempted = failure_counts(_open(table_ref(project)), f.state_column, f.fingerprint, scope)
            failed, attempted = max(failed, run.failed), max(attempted, run.computed + run.failed)
            if failed > rate * attempted:
                run.error = (f"feature {f.name!r}: {failed} of {attempted} rows failed "
                             f"({failed / attempted:.1%} > max_failure_rate {rate:g})")
        return run

    def _prepare_columns(self, project: Project, f: Feature, step: FeatureStep):
        """Add the feature's columns as nulls (metadata only), or refresh their metadata.
        Returns the dataset and the metadata to write once every row is recomputed: while
        a stale feature is recomputed, its columns keep the old metadata, so a reader never
        sees the new fingerprint claimed over old values. (The local engine prepares every
        step's columns at once, `_layout`; this is the seam other engines use.)"""
        uri = table_ref(project)
        ds = _open(uri)
        drop, add = feature_layout(project, f, ds.schema)
        if drop:
            ds.drop_columns(drop)
            ds = _open(uri)
        if add:
            ds.add_columns(pa.schema(add))
            ds = _open(uri)
        updates = metadata_updates(feature_fields(project, f), ds.schema)
        if updates and step.action == "recompute" and not add:
            return ds, updates
        if updates:  # one commit for all of the feature's columns
            ds.update_field_metadata(updates, replace=True)
            ds = _open(uri)
        return ds, {}

    def _task(self, project: Project, f: Feature, ds) -> FeatureTask:
        ids = {fld.name(): fld.id() for fld in ds.lance_schema.fields()}
        hashes = hash_column(f.name) if hash_column(f.name) in ids else None  # rewritten with the values
        upstream = {project.features[u].state_column: project.features[u].fingerprint for u in f.depends_on}
        return FeatureTask(
            feature=f.name, extractor_cls=f.extractor_cls, params=f.run_params, inputs=dict(f.inputs),
            outputs=dict(f.outputs), output_types=dict(f.output_types), state_column=f.state_column,
            fingerprint=f.fingerprint, upstream_states=upstream,
            field_ids={c: ids[c] for c in [*f.output_types, f.state_column, hashes] if c},
            batch_size=f.resources.batch_size, key=project.key if project.key in ds.schema.names else None,
            timeout=f.resources.timeout, file_column=_file_column(project, f, ds), hash_column=hashes)

    # -- running and committing ---------------------------------------------------------
    def _workers(self, f: Feature, n_tasks: int) -> int:
        if f.resources.workers:
            return min(f.resources.workers, n_tasks, machine_workers())
        if f.resources.gpus:
            return 1
        return max(1, min(os.cpu_count() or 1, n_tasks, self.options.max_workers or 64))

    def _execute(self, project: Project, f: Feature, work: list[FragmentTask], ds, run: FeatureRun,
                 reporter: Reporter) -> None:
        checkpoint = self.options.checkpoint_seconds
        pending: list[FragmentResult] = []
        last_commit = time.perf_counter()
        read_version = ds.version

        def take(res: FragmentResult) -> None:
            nonlocal last_commit, read_version
            if res.changed:
                pending.append(res)
            else:  # every retried row failed again, as before: nothing to commit
                discard(ds, res)
            run.computed += res.computed
            run.failed += res.failed
            run.passed += res.passed
            run.errors.extend(res.errors[: max(0, 5 - len(run.errors))])
            if time.perf_counter() - last_commit > checkpoint:
                read_version = self._commit(project, ds, pending, read_version, run, reuse)
                last_commit = time.perf_counter()

        queue = [dataclasses.replace(t, on_rows=lambda n: reporter.rows_done(f.name, n)) for t in work]
        reuse = work[0].reuse if work else None
        workers = self._workers(f, len(queue))
        try:
            if f.resources.timeout and queue:  # a timeout is enforced in worker processes
                self._run_pool(queue, workers, take, reporter)
            elif workers > 1 and (f.resources.workers or 0) > 1:
                self._run_pool(queue, workers, take, reporter)
            elif queue:
                t0 = time.perf_counter()
                take(compute_fragment(queue.pop(0)))
                estimate = (time.perf_counter() - t0) * len(queue)
                if workers > 1 and len(queue) > 1 and estimate > PARALLEL_AFTER_SECONDS:
                    self._run_pool(queue, workers, take, reporter)
                elif f.resources.threads > 1 and len(queue) > 1 and queue[0].reuse is None:
                    # (a feature that shares values by input runs its fragments in order)
                    with ThreadPoolExecutor(min(f.resources.threads, len(queue))) as threads:
                        for res in threads.map(compute_fragment, queue):
                            take(res)
                else:
                    for t in queue:
                        take(compute_fragment(t))
        finally:
            # whatever happened, keep what was computed: commit the finished fragments
            if pending:
                self._commit(project, ds, pending, read_version, run, reuse)

    def _run_pool(self, queue: list[FragmentTask], workers: int, take, reporter: Reporter) -> None:
        """Worker processes compute; this process does all Lance I/O.

        Fragments are read here piece by piece, the pieces' inputs go to the workers (at most
        two per worker in flight), and each fragment's file is written here in order. Workers
        never touch Lance, so they can be forked (instant, no re-import of the caller's
        script) unless a library that dislikes fork is loaded; then they are spawned. If the
        pool breaks, the rest is computed in this process."""
        pool = self._pool(workers)
        window: deque = deque()  # (job, piece or None for "job done", future or None)
        jobs = iter(queue)
        pieces = None
        job = None
        local = False  # the pool broke: compute here

        def fill() -> None:
            nonlocal pieces, job
            while len(window) < 2 * workers:
                if pieces is None:
                    task = next(jobs, None)
                    if task is None:
                        return
                    job = FragmentJob(task)
                    pieces = job.pieces()
                piece = next(pieces, None)
                if piece is None:
                    window.append((job, None, None))
                    pieces = None
                    continue
                future = None
                if piece.logical is not None and not local:
                    future = pool.submit(compute_piece_counted, job.task.feature, piece.logical)
                window.append((job, piece, future))

        fill()
        while window:
            owner, piece, future = window.popleft()
            if piece is None:
                take(owner.close())
            elif piece.logical is None:
                owner.finish(piece, {}, None)
            else:
                try:
                    if future is None:
                        raise BrokenProcessPool("computing in this process")
                    values, errors, passed = future.result()
                except BrokenProcessPool as exc:
                    if not local:
                        reporter.message(f"worker processes failed ({exc}); computing the rest in this process")
                        local = True
                        self.pool = None
                    values, errors, passed = compute_piece_counted(owner.task.feature, piece.logical)
                owner.finish(piece, values, errors, passed)
            fill()

    def _pool(self, workers: int) -> WorkerPool:
        if self.pool is not None and self.pool.size >= workers:
            return self.pool
        if self.pool is not None:
            self.pool.shutdown()
        self.pool = WorkerPool(workers, _worker_context())
        return self.pool

    def _commit(self, project: Project, ds, results: list[FragmentResult], read_version: int,
                run: FeatureRun, reuse=None) -> int:
        if not results:
            return read_version
        files = [ColumnFile(r.fragment_id, r.path, r.field_ids) for r in results]
        try:
            with critical():
                ds = commit_replacements(table_ref(project), files, read_version, file_version(ds))
                results.clear()
                run.versions.append(ds.version)
            if reuse is not None:  # values written there can now be read back instead of recomputed
                reuse.committed(f.fragment_id for f in files)
        except OSError as exc:
            from lance.commit import CommitConflictError
            if disk_full(exc):
                raise RunError(f"could not commit feature {run.name!r} to {project.table_uri}: the disk is full "
                               f"({exc}); free some space and run apply again") from exc
            why = "another writer changed the same fragments; run apply again" \
                if isinstance(exc, CommitConflictError) else str(exc)
            raise RunError(f"could not commit feature {run.name!r} to {project.table_uri}: {why}") from exc
        return ds.version


FORK_UNSAFE = ("torch", "tensorflow", "jax")  # their thread pools do not survive fork


def _worker_context():
    """fork when it is safe: the workers only compute, never touch Lance, and nothing whose
    threads break under fork is loaded. Else spawn."""
    if "fork" in multiprocessing.get_all_start_methods() and not any(m in sys.modules for m in FORK_UNSAFE):
        return multiprocessing.get_context("fork")  # Lance's fork warning: silenced in pool.py, where it forks
    return multiprocessing.get_context("spawn")


def _open(where):
    from ..table.handle import open_dataset
    return open_dataset(where)


# Seams for other engines (the Geneva plugin): the same checks, ingest, columns and task as here.
def _file_column(project: Project, f: Feature, ds) -> str | None:
    """The source column naming the file one of the feature's inputs was loaded from."""
    files = project.spec.source.files if project.spec.source else {}
    for col in f.inputs.values():
        if col in files and files[col] in ds.schema.names:
            return files[col]
    return None


def check_file_format(uri: str, ds) -> None:
    """Refuse legacy-format tables: they cannot take all-null columns, which the fill design needs."""
    if ds is not None and file_version(ds).startswith("0."):
        raise RunError(f"{uri} uses the legacy Lance file format ({file_version(ds)}), which cannot add columns "
                       "without rewriting them; copy it once to the current format: "
                       "lance.write_dataset(lance.dataset(OLD), NEW, data_storage_version='stable')")


def ingest(project: Project, prepared, commit_rows: int | None = None) -> int:
    """Append the source's new rows to the table (keyed); returns the rows written."""
    return LocalEngine({"ingest_commit_rows": commit_rows})._ingest(project, prepared)


def prepare_columns(project: Project, f: Feature, step: FeatureStep):
    """Add a feature's columns (all null, metadata only) or refresh their featurekit metadata.
    Returns (dataset, metadata to write once every row carries the new fingerprint)."""
    return LocalEngine()._prepare_columns(project, f, step)


def feature_task(project: Project, f: Feature, ds) -> FeatureTask:
    """What a worker needs to compute `f` (`work.compute_piece`) against `ds`."""
    return LocalEngine()._task(project, f, ds)
