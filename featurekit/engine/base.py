"""The engine contract: what every engine runs, and the one part an engine writes itself.

`Engine.run` is a template (Feast's `feature_builder`, dbt's `BaseRunner`): the base owns
ingest, the column layout (added, dropped and orphaned columns), slices, the apply log and
the record of a stopped apply, shared values by input (`Reuse`), the failure threshold and
the checkpoint cadence of commits. An engine implements how one feature's rows are computed
and committed: `Engine.fill(FeatureFill)`. It either writes one data file per fragment and
hands each to `FeatureFill.take` (the base commits them at the checkpoint cadence), or
commits by its own means (a Geneva job) and then calls `FeatureFill.committed_elsewhere`.
An engine never reaches into another engine.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from ..table.handle import Table
from .compute import FeatureError, FeatureTask, compute_piece_counted
from .fill import FeatureFill, FeatureRun, Reporter, RunResult
from .run import ApplyRun

if TYPE_CHECKING:
    from ..planning.planner import Plan
    from ..planning.resolve import Feature, Project


class EngineOptions(BaseModel):
    """An engine's options (``engine: {kind: NAME, ...}`` in the spec); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Engine:
    """Subclass, implement `fill`, and register with ``featurekit_register_engines``."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = EngineOptions
    # True: features with no dependency between them (a wave) reach `fill_together` at once
    fills_together: ClassVar[bool] = False

    def __init__(self, options: BaseModel | dict[str, Any] | None = None):
        if not isinstance(options, BaseModel):
            options = self.Options.model_validate(options or {})
        self.options = options

    # -- what an engine implements ----------------------------------------------------------
    def fill(self, fill: FeatureFill) -> None:
        """Compute the rows of `fill.fragments` that `fill.where` selects and commit them: hand
        each fragment's file to `fill.take`, or commit by other means and call
        `fill.committed_elsewhere`. Raise `FeatureError` to fail the feature (not the apply)."""
        raise NotImplementedError

    def fill_together(self, fills: list[FeatureFill]) -> dict[str, FeatureError]:
        """Fill features none of which depends on another (every upstream is done), when
        `fills_together` is set; returns the `FeatureError` of each feature that failed, by name.
        The base fills them one after the other; an engine that pays a fixed cost per job runs
        them at once. Each fill is then counted, judged and logged on its own, as after `fill`."""
        errors = {}
        for fill in fills:
            fill.started = time.perf_counter()
            try:
                self.fill(fill)
            except FeatureError as exc:
                errors[fill.name] = exc
            finally:
                fill.finished = time.perf_counter()
        return errors

    def check(self, project: Project, table: Table) -> None:
        """Refuse, before anything is written, a table this engine cannot run (raise `RunError`)."""

    def close(self) -> None:
        """Release what `fill` started (worker processes, a Ray session); called once per run."""

    def checkpoint_seconds(self) -> float:
        """Commit finished fragments at least this often (`FeatureFill.take`)."""
        return 30.0

    def reuse_memory_bytes(self) -> int | None:
        """Memory for values shared by rows with equal inputs within an apply (0: none kept in
        memory, values are still read back from committed rows); None: this engine does not
        share values between rows."""
        return None

    def compute_pieces(self, feature: Feature, task: FeatureTask, pieces: list[pa.RecordBatch]) -> Iterator[tuple]:
        """Compute independent pieces of one feature's inputs (the distinct inputs of shared
        values), yielding `compute_piece_counted`'s (values, errors, rows passed) for each, in
        order. In this process here; an engine with worker processes spreads them when it pays."""
        for piece in pieces:
            yield compute_piece_counted(task, piece)

    def ingest_commit_rows(self, project: Project) -> int:
        """Source rows a commit while ingesting: a crash loses at most this many."""
        return project.spec.table.fragment_rows * 16

    # -- the template: every engine runs this ----------------------------------------------
    def run(self, project: Project, plan: Plan, prepared, reporter: Reporter, table: Table | None = None) -> RunResult:
        """Ingest, lay out the columns, run every step with work in order, log the apply.
        `table`: the apply's table handle (opened here when not given)."""
        apply = ApplyRun(self, project, plan, table or Table.of(project), reporter)
        try:
            return apply.run(prepared)
        except BaseException as exc:  # Ctrl-C, SIGTERM (lifetime.Stopped), an error: log what was kept
            apply.record_stopped(exc)
            raise
        finally:
            self.close()


__all__ = ["Engine", "EngineOptions", "FeatureError", "FeatureFill", "FeatureRun", "FeatureTask", "Reporter",
           "RunResult"]
