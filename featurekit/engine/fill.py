"""The values passed between the engine template and an engine: `FeatureFill` (one feature to
compute, and how to commit it), `FeatureRun` and `RunResult` (what happened), `Reporter`
(progress callbacks)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..lifetime import critical
from ..table.datafiles import ColumnFile, file_version, replacement
from ..table.metadata import FAILED_SEP, failed_filter
from .compute import FeatureTask
from .fragment import FragmentResult, FragmentTask, discard

if TYPE_CHECKING:
    from ..planning.planner import FeatureStep
    from ..planning.resolve import Feature, Project
    from ..table.handle import Table
    from .reuse import Reuse

ERROR_SAMPLE = 5


@dataclass
class FeatureRun:
    name: str
    computed: int = 0
    failed: int = 0
    errors: list[tuple[Any, str]] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None    # the feature as a whole failed (contract broken, threshold)
    versions: list[int] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # ids of the engine's own jobs (Geneva), for the apply log
    rows: int = 0               # rows that needed a value
    distinct: int | None = None  # distinct inputs among them (None: the feature does not share values)
    reused: int = 0             # rows that took a value computed for equal inputs (this apply or before)
    passed: int = 0             # rows passed to the extractor (halving a raising batch passes rows again)
    sharing: str = ""           # whether and how rows with equal inputs shared one value

    @property
    def reused_rows(self) -> int:
        """Rows whose value or row error came from an equal input's computation: what the apply
        summary shows and its log records (none when no row got either, as when setup failed)."""
        return min(self.reused, self.computed + self.failed)


@dataclass
class RunResult:
    ingested: int = 0
    skipped_rows: dict[str, int] = field(default_factory=dict)
    features: dict[str, FeatureRun] = field(default_factory=dict)
    slices: dict[str, Any] = field(default_factory=dict)   # name -> curation.step.SliceRun
    dropped: list[str] = field(default_factory=list)
    version_before: int | None = None
    version_after: int | None = None
    seconds: float = 0.0
    checks: Any = None   # checks.CheckReport: the spec's checks on the table the apply left
    indexes: dict[str, str] = field(default_factory=dict)  # column -> what apply did to its index

    @property
    def ok(self) -> bool:
        """No feature over its failure threshold and no error-severity check failed."""
        return all(f.error is None for f in self.features.values()) and (self.checks is None or self.checks.ok)


class Reporter:
    """Progress callbacks; the default does nothing (the API returns values, never prints)."""

    def feature_started(self, name: str, rows: int) -> None: ...
    def rows_done(self, name: str, rows: int) -> None: ...
    def feature_finished(self, run: FeatureRun) -> None: ...
    def message(self, text: str) -> None: ...


@dataclass
class FeatureFill:
    """One feature step handed to `Engine.fill`: the rows to compute and how to commit them."""

    project: Project
    feature: Feature
    step: FeatureStep
    table: Table                     # the apply's table handle (its current version moves with commits)
    task: FeatureTask                # what a worker needs to compute the feature (picklable)
    where: str                       # SQL selecting the rows to compute: not computed with this
    scope: str | None                # fingerprint (new, failed, stale), within the `only:` slice
    fragments: list[FragmentTask]    # the fragments with rows to compute, read at `read_version`
    rows: int                        # rows to compute
    run: FeatureRun                  # what the engine reports (computed, failed, versions, jobs)
    reporter: Reporter
    reuse: Reuse | None = None       # shared values by input, when the feature and the engine use them
    checkpoint_seconds: float = 30.0
    read_version: int = 0
    pending: list[FragmentResult] = field(default_factory=list)
    last_commit: float = field(default_factory=time.perf_counter)
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None    # its rows done (features filled together end at different times)

    @property
    def name(self) -> str:
        return self.feature.name

    def rows_done(self, n: int) -> None:
        self.reporter.rows_done(self.feature.name, n)

    def message(self, text: str) -> None:
        self.reporter.message(text)

    def take(self, result: FragmentResult) -> None:
        """A fragment's file is written: count its rows, and commit what is pending once a
        checkpoint is due (finished work survives a crash)."""
        if result.changed:
            self.pending.append(result)
        else:  # every retried row failed again, as before: nothing to commit
            discard(self.table.dataset, result)
        run = self.run
        run.computed += result.computed
        run.failed += result.failed
        run.passed += result.passed
        run.errors.extend(result.errors[: max(0, ERROR_SAMPLE - len(run.errors))])
        if time.perf_counter() - self.last_commit > self.checkpoint_seconds:
            self.flush()

    def flush(self) -> None:
        """Commit every pending fragment file now, as one Lance version."""
        if not self.pending:
            return
        files = [ColumnFile(r.fragment_id, r.path, r.field_ids) for r in self.pending]
        with critical():
            version = self.table.commit(replacement(files, file_version(self.table.dataset)), self.read_version,
                                        what=f"feature {self.feature.name!r}")
            self.pending.clear()
            self.run.versions.append(version)
        self.read_version = version
        self.last_commit = time.perf_counter()
        if self.reuse is not None:  # values written there can now be read back instead of recomputed
            self.reuse.committed(f.fragment_id for f in files)

    def committed_elsewhere(self, version_before: int, versions: list[int] | None = None) -> None:
        """The engine committed by its own means (a Geneva job): move the table handle to the
        latest version and read back from the state column what was computed and what failed.
        `versions`: the versions this feature's commits made, when other writers (the jobs of
        features filled together) committed since `version_before` too; default: all of them."""
        table = self.table
        ds = table.refresh()
        failed = failed_filter(self.feature.state_column, self.feature.fingerprint) + \
            (f" AND {self.scope}" if self.scope else "")
        self.run.failed = ds.count_rows(filter=failed)
        self.run.computed = self.rows - ds.count_rows(filter=self.where)
        self.run.versions = list(range(version_before + 1, ds.version + 1)) if versions is None else list(versions)
        if self.run.failed:
            key = self.project.key if self.project.key in ds.schema.names else None
            cols = [self.feature.state_column] + ([key] if key else [])
            sample = ds.to_table(columns=cols, filter=failed, limit=ERROR_SAMPLE, with_row_address=key is None)
            keys = sample.column(key or "_rowaddr").to_pylist()
            states = sample.column(self.feature.state_column).to_pylist()
            self.run.errors = [(k, s.split(FAILED_SEP, 1)[1]) for k, s in zip(keys, states)]
