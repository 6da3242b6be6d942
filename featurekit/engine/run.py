"""`ApplyRun`: the steps of one apply, the same on every engine (`Engine.run` drives it).

Ingest the source, lay out the columns (one commit dropping, one adding), run each plan
step with work in order (a slice here; a feature through `Engine.fill`), and write the
apply-log entry with every metadata change in one last commit. An apply that stops after
writing records an entry marked ``interrupted``.
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..checks import run_checks
from ..curation.step import run_slice
from ..errors import RunError, TableNotFound
from ..ingest.write import ingest
from ..lifetime import critical
from ..planning.indexes import describe as describe_index
from ..planning.indexes import index_steps
from ..planning.inputkeys import sharing_mode
from ..planning.planner import FeatureStep, Plan, SliceStep, ingest_counts, only_filter
from ..planning.resolve import Feature, Project
from ..table.datafiles import file_version
from ..table.handle import Table
from ..table.indexes import build_params
from ..table.metadata import failure_counts, hash_column, record_apply, slice_fields, todo_filter
from .compute import FeatureError, FeatureTask, release_extractor
from .fill import FeatureFill, FeatureRun, Reporter, RunResult
from .fragment import FragmentTask, piece_rows
from .layout import feature_fields, metadata_updates, plan_layout, reuses_values
from .reuse import Reuse
from .shared import decide

if TYPE_CHECKING:
    from .base import Engine


class ApplyRun:
    def __init__(self, engine: Engine, project: Project, plan: Plan, table: Table, reporter: Reporter):
        self.engine, self.project, self.plan, self.table, self.reporter = engine, project, plan, table, reporter
        self.result = RunResult(version_before=plan.table_version)
        self.finished: list[pa.Field] = []  # columns whose rows now all carry their new metadata
        self.recorded = False

    def run(self, prepared) -> RunResult:
        started = time.perf_counter()
        project, plan, table, result = self.project, self.plan, self.table, self.result
        self.engine.check(project, table)
        check_file_format(table)
        if prepared is not None and prepared.changed:
            result.ingested = ingest(table, prepared, fragment_rows=project.spec.table.fragment_rows,
                                     commit_rows=self.engine.ingest_commit_rows(project))
            result.skipped_rows = prepared.issue_counts()  # includes files that failed to read
        if not table.exists:
            if any(s.has_work for s in plan.features):
                raise TableNotFound(f"table {table.uri} does not exist and the spec has no source to create it from",
                                    table=table.uri)
            return result
        self.layout()
        for wave in self.waves([s for s in plan.steps if s.has_work]):
            if isinstance(wave[0], SliceStep):
                result.slices[wave[0].name] = self.slice(wave[0])
                continue
            runs = self.feature(wave[0]) if len(wave) == 1 else self.features_at_once(wave)
            for run in runs:
                result.features[run.name] = run
                self.reporter.feature_finished(run)
        result.indexes = self.indexes()
        result.seconds = time.perf_counter() - started
        result.checks = self.checks()
        updates = metadata_updates(self.finished, table.schema)
        if table.version != plan.table_version or updates:
            with critical():  # one commit: the log entry, the source signature, the new metadata
                record_apply(table, apply_entry(project, self.engine.name, plan, result),
                             source=prepared.signature if prepared is not None else None, fields=updates)
                self.recorded = True  # a signal deferred by critical() must not log the apply twice
        result.version_after = table.version
        if result.checks is not None:  # the log commit changed no data: say the version the apply left
            result.checks = dataclasses.replace(result.checks, version=table.version)
        return result

    def checks(self):
        """The spec's checks on the table as this apply leaves it (None: the spec has none)."""
        p = self.project
        if not any(f.spec.checks for f in p.features.values()) and not any(s.spec.checks for s in p.slices.values()):
            return None
        return run_checks(p, self.table.dataset, self.result.slices)

    # -- indexes ----------------------------------------------------------------------------
    def indexes(self) -> dict[str, str]:
        """The spec's indexes brought up to date with the table as this apply left it:
        column -> what was done (built, rebuilt, N rows added, dropped)."""
        prune = any(i.action == "drop" for i in self.plan.indexes)
        done: dict[str, str] = {}
        for step in index_steps(self.project, self.table.dataset, prune=prune):
            if not step.has_work:
                continue
            self.reporter.message(describe_index(step))
            with critical():
                if step.action == "drop":
                    self.table.drop_index(step.name)
                    done[step.column] = f"dropped {step.name}"
                    continue
                if step.action == "optimize":
                    self.table.optimize_indices([step.name])
                    done[step.column] = f"{step.rows} row(s) added"
                    continue
                if step.old:
                    self.table.drop_index(step.old)
                params = build_params(self.project.spec.indexes[step.column], self.table.dataset.count_rows())
                self.table.create_index(step.column, step.name, params)
                done[step.column] = f"{'rebuilt' if step.old else 'built'} {step.name}"
        return done

    # -- columns ----------------------------------------------------------------------------
    def layout(self) -> None:
        """One commit dropping columns (recreated features, --prune orphans), one adding
        every new column of the apply (all-null: metadata only)."""
        table = self.table
        drop, add = plan_layout(self.project, self.plan.steps, table.schema)
        for orphan in self.plan.orphans:
            if orphan.action == "drop":
                cols = [c for c in orphan.columns if c in table.schema.names]
                drop += cols
                self.result.dropped.extend(cols)
        drop = list(dict.fromkeys(c for c in drop if c in table.schema.names))
        if drop:
            with critical():
                table.drop_columns(drop)
        if add:
            with critical():
                table.add_columns(add)

    # -- one slice --------------------------------------------------------------------------
    def slice(self, step: SliceStep):
        sl = self.project.slices[step.name]
        reporter = self.reporter
        reporter.message(f"slice {sl.name}: examining {'every row' if step.rows is None else step.rows} row(s)"
                         .replace("every row row(s)", "every row"))
        run = run_slice(self.project, sl, step.action in ("create", "recompute"), self.table)
        self.finished += slice_fields(sl)[:1]
        kept = sum(run.added.values())
        removed = ", ".join(f"{n} {step_}" for step_, n in sorted(run.removed.items())) or "none removed"
        reporter.message(f"slice {sl.name}: {run.examined} examined, {kept} kept ({removed})"
                         + (f", {run.blocked} waiting for upstream values" if run.blocked else "")
                         + (f", {len(run.leaks)} leak(s) across splits" if run.leaks else ""))
        return run

    # -- features -----------------------------------------------------------------------------
    def waves(self, steps: list) -> list[list]:
        """The steps with work in plan order, grouped: a slice alone; a feature alone, or, when the
        engine fills features together (`Engine.fills_together`), with the consecutive features
        that depend on none of the group (every upstream done before the group starts)."""
        graph = self.project.graph
        groups: list[list] = []
        for step in steps:
            group = groups[-1] if groups else None
            if (self.engine.fills_together and isinstance(step, FeatureStep) and group
                    and isinstance(group[0], FeatureStep)
                    and not {f"feature:{s.name}" for s in group} & graph.ancestors(f"feature:{step.name}")):
                group.append(step)
            else:
                groups.append([step])
        return groups

    def feature(self, step: FeatureStep) -> list[FeatureRun]:
        """One feature: its rows computed by `Engine.fill`, then counted and judged."""
        fill, error = self.begin(step)
        try:
            try:
                if fill.fragments:
                    self.engine.fill(fill)
            finally:
                fill.flush()  # whatever happened, keep what was computed: commit the finished fragments
        except FeatureError as exc:
            error = exc
        finally:
            release_extractor(fill.task)  # a model loaded here must not outlive its feature
        return [self.end(fill, error)]

    def features_at_once(self, steps: list[FeatureStep]) -> list[FeatureRun]:
        """Features that do not depend on each other, filled together by `Engine.fill_together`
        (one commit history, counts and apply-log entry per feature, as one at a time)."""
        begun = [self.begin(step) for step in steps]
        fills = [fill for fill, _ in begun]
        errors = {fill.name: error for fill, error in begun if error is not None}
        try:
            try:
                errors.update(self.engine.fill_together([f for f in fills if f.fragments]))
            finally:
                for fill in fills:
                    fill.flush()
        finally:
            for fill in fills:
                release_extractor(fill.task)
        return [self.end(fill, errors.get(fill.name)) for fill in fills]

    def begin(self, step: FeatureStep) -> tuple[FeatureFill, FeatureError | None]:
        """A feature's `FeatureFill`: the fragments with rows to compute and how rows share values
        (deciding that runs the extractor on a sample: the error of one breaking its contract)."""
        project, table, engine = self.project, self.table, self.engine
        f = project.features[step.name]
        run = FeatureRun(f.name)
        started = time.perf_counter()
        ds = table.dataset
        upstream_bad = [u for u in f.depends_on if u in self.result.features and self.result.features[u].error
                        and not self.result.features[u].computed]
        task = feature_task(project, f, ds)
        scope = only_filter(project, f)
        todo = todo_filter(f.state_column, f.fingerprint)
        where = todo + (f" AND {scope}" if scope else "")
        work = []
        total = 0
        fresh_column = step.action == "create" and not scope  # every row needs work: no filter to run
        for frag in ds.get_fragments():
            n = frag.count_rows() if fresh_column else frag.count_rows(filter=where)
            if n:
                full = fresh_column or (scope is None and n == frag.count_rows())
                work.append(FragmentTask(ds, frag.fragment_id, task, full, filter=None if full else where))
                total += n
        self.reporter.feature_started(f.name, total)
        if upstream_bad:
            self.reporter.message(f"{f.name}: upstream {', '.join(upstream_bad)} failed; "
                                  "rows without their values fail too")
        fill = FeatureFill(project, f, step, table, task, where, scope, work, total, run, self.reporter,
                           checkpoint_seconds=engine.checkpoint_seconds(), read_version=ds.version, started=started)
        if not work:
            return fill, None
        try:  # decided once there is work (`sharing`)
            reuse = fill.reuse = self.sharing(f, task, ds, where, run, work[0].fragment_id)
        except FeatureError as exc:
            fill.fragments = []
            return fill, exc
        fill.fragments = [dataclasses.replace(t, reuse=reuse if reuse is not None and
                                              reuse.covers(t.fragment_id) else None) for t in work]
        return fill, None

    def end(self, fill: FeatureFill, error: FeatureError | None) -> FeatureRun:
        """Count what a filled feature did and judge it against its failure threshold."""
        f, run, reuse, table = fill.feature, fill.run, fill.reuse, self.table
        if error is None:
            self.finished += feature_fields(self.project, f)  # every row has the new fingerprint: the metadata may say so
        else:
            run.error = str(error)
        run.seconds = (fill.finished or time.perf_counter()) - fill.started
        run.rows = run.computed + run.failed
        if reuse is not None:
            run.passed += reuse.passed  # values computed before the fragments were read
            if reuse.shares:
                run.distinct, run.reused = len(reuse.seen), reuse.rows - reuse.computes
        rate = f.spec.on_error.max_failure_rate
        if run.error is None and run.failed:
            # over the feature's rows, not the rows retried now: a retry that fails again
            # must not turn 1 failure in 1,000 rows into 1 in 1
            failed, attempted = failure_counts(table.dataset, f.state_column, f.fingerprint, fill.scope)
            failed, attempted = max(failed, run.failed), max(attempted, run.computed + run.failed)
            if failed > rate * attempted:
                run.error = (f"feature {f.name!r}: {failed} of {attempted} rows failed "
                             f"({failed / attempted:.1%} > max_failure_rate {rate:g})")
        return run

    def sharing(self, f: Feature, task: FeatureTask, ds, where: str, run: FeatureRun, first_fragment: int):
        """How rows with equal inputs get one value (see `engine.shared`): by columns for small
        inputs when it pays, by a memo for bulky ones (images), or not at all; `run.sharing` says which."""
        budget = self.engine.reuse_memory_bytes()
        if budget is None or not task.hash_column or not reuses_values(f):
            run.sharing = "not shared" + ("" if reuses_values(f) else " (the extractor computes rows faster than "
                                          "keying them)")
            return None
        memo = Reuse(self.table, f.state_column, f.fingerprint, task.hash_column, dict(f.output_types), budget)
        mode = sharing_mode(f, self.project.columns)
        if mode == "shared by input key":  # (what the plan said: `inputkeys.sharing_mode`)
            run.sharing = "shared by input key (memo)"
            return memo
        shared, why = decide(task, ds, where, mode == "shared", memo.read_back, first_fragment,
                             compute=lambda pieces: self.engine.compute_pieces(f, task, pieces),
                             holds_none=memo.holds_none)
        run.sharing = "shared by input (computed once per distinct input)" if shared is not None and shared.shares \
            else f"not shared: {why}"
        return shared

    # -- a stop -----------------------------------------------------------------------------
    def record_stopped(self, exc: BaseException) -> None:
        """An apply that stops after writing (Ctrl-C, SIGTERM, an error) still says in the log
        which versions it made: an entry marked ``interrupted``, without the source signature
        (the ingest may not have finished, so the next apply reads the source again)."""
        if self.recorded:
            return
        try:
            table = self.table
            table.refresh()
            if not table.exists or table.version == self.plan.table_version:
                return
            why = (str(exc) or "Ctrl-C") if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"[:300]
            updates = metadata_updates(self.finished, table.schema)
            with critical():
                record_apply(table, {**apply_entry(self.project, self.engine.name, self.plan, self.result),
                                     "interrupted": why}, source=None, fields=updates or None)
        except Exception:  # noqa: BLE001  (the stop is what the user must see, not this)
            pass


LOGGED_ERROR_CHARS = 500  # of a feature's error, in the apply log (table metadata, the last 100 applies)


def apply_entry(project: Project, engine: str, plan: Plan, result: RunResult) -> dict[str, Any]:
    """The apply-log entry (`metadata.record_apply`) of a run: what changed, and where it came from."""
    features = {}
    for n, f in result.features.items():
        features[n] = {"computed": f.computed, "failed": f.failed, "versions": list(f.versions)}
        if f.error:  # the feature as a whole failed: `status` shows why until it is fresh
            features[n]["error"] = f.error[:LOGGED_ERROR_CHARS]
        if f.distinct is not None:
            features[n].update(rows=f.rows, distinct=f.distinct, reused=f.reused_rows)
        if f.passed and (f.distinct is not None or f.passed > f.rows):
            features[n]["passed"] = f.passed
        if f.jobs:
            features[n]["jobs"] = list(f.jobs)
    from ..table.provenance import software, spec_provenance, who
    return {"spec": project.spec.name, "engine": engine, "version_from": plan.table_version,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "ingested": result.ingested,
            **({"ingest_rows": ingest_counts(plan.ingest, result.ingested)} if plan.ingest is not None else {}),
            "features": features, "slices": {n: s.summary() for n, s in result.slices.items()},
            "dropped": result.dropped, **({"indexes": dict(result.indexes)} if result.indexes else {}),
            **({"checks": [r.to_dict() for r in result.checks.results]} if result.checks is not None else {}),
            # where it came from: the spec file (sha256, git commit, modified?), the software, the user
            "spec_file": spec_provenance(project.path), "software": software(project.registry),
            "user": who()["user"], "host": who()["host"], "branch": project.spec.table.branch}


def feature_task(project: Project, f: Feature, ds) -> FeatureTask:
    """What a worker needs to compute `f` (`compute.compute_piece`) against the dataset `ds`."""
    ids = {fld.name(): fld.id() for fld in ds.lance_schema.fields()}
    hashes = hash_column(f.name) if hash_column(f.name) in ids else None  # rewritten with the values
    upstream = {project.features[u].state_column: project.features[u].fingerprint for u in f.depends_on}
    return FeatureTask(
        feature=f.name, extractor_cls=f.extractor_cls, params=f.run_params, inputs=dict(f.inputs),
        outputs=dict(f.outputs), output_types=dict(f.output_types), state_column=f.state_column,
        fingerprint=f.fingerprint, upstream_states=upstream,
        field_ids={c: ids[c] for c in [*f.output_types, f.state_column, hashes] if c},
        batch_size=f.resources.batch_size, key=project.key if project.key in ds.schema.names else None,
        timeout=f.resources.timeout, file_column=_file_column(project, f, ds), hash_column=hashes,
        # (a timeout is enforced per piece in a worker: there a piece is one batch)
        read_rows=None if f.resources.timeout else piece_rows(ds, list(dict.fromkeys(f.inputs.values())),
                                                              f.resources.batch_size))


def _file_column(project: Project, f: Feature, ds) -> str | None:
    """The source column naming the file one of the feature's inputs was loaded from."""
    files = project.spec.source.files if project.spec.source else {}
    for col in f.inputs.values():
        if col in files and files[col] in ds.schema.names:
            return files[col]
    return None


def check_file_format(table: Table) -> None:
    """Refuse legacy-format tables: they cannot take all-null columns, which the fill design needs."""
    ds = table.dataset
    if ds is not None and file_version(ds).startswith("0."):
        raise RunError(f"{table.uri} uses the legacy Lance file format ({file_version(ds)}), which cannot add columns "
                       "without rewriting them; copy it once to the current format: "
                       "lance.write_dataset(lance.dataset(OLD), NEW, data_storage_version='stable')")
