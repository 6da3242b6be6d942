"""Engines run a plan. The local engine is the embedded default; others are plugins."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


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


@dataclass
class RunResult:
    ingested: int = 0
    skipped_rows: dict[str, int] = field(default_factory=dict)
    features: dict[str, FeatureRun] = field(default_factory=dict)
    slices: dict[str, Any] = field(default_factory=dict)   # name -> engine.slices.SliceRun
    dropped: list[str] = field(default_factory=list)
    version_before: int | None = None
    version_after: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(f.error is None for f in self.features.values())


def apply_entry(project, engine: str, plan, result: RunResult) -> dict[str, Any]:
    """The apply-log entry (`table.record_apply`) of a run; every engine writes the same shape:
    what changed, and where it came from."""
    import time
    features = {}
    for n, f in result.features.items():
        features[n] = {"computed": f.computed, "failed": f.failed, "versions": list(f.versions)}
        if f.distinct is not None:
            features[n].update(rows=f.rows, distinct=f.distinct, reused=f.reused)
        if f.passed and (f.distinct is not None or f.passed > f.rows):
            features[n]["passed"] = f.passed
        if f.jobs:
            features[n]["jobs"] = list(f.jobs)
    from ..table.provenance import software, spec_provenance, who
    return {"spec": project.spec.name, "engine": engine, "version_from": plan.table_version,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "ingested": result.ingested,
            "features": features, "slices": {n: s.summary() for n, s in result.slices.items()},
            "dropped": result.dropped,
            # where it came from: the spec file (sha256, git commit, modified?), the software, the user
            "spec_file": spec_provenance(project.path), "software": software(project.registry),
            "user": who()["user"], "host": who()["host"], "branch": project.spec.table.branch}


def record_stopped(project, engine: str, plan, result: RunResult, exc: BaseException,
                   fields: dict[str, dict[str, str]] | None = None) -> None:
    """An apply that stops after writing (Ctrl-C, SIGTERM, an error) still says in the log which
    versions it made: an entry marked ``interrupted``, without the source signature (the ingest
    may not have finished, so the next apply reads the source again). Every engine calls this."""
    from ..lifetime import critical
    from ..table.handle import open_dataset, table_ref
    from ..table.metadata import record_apply
    try:
        ds = open_dataset(table_ref(project))
        if ds is None or ds.version == plan.table_version:
            return
        why = (str(exc) or "Ctrl-C") if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"[:300]
        with critical():
            record_apply(ds, {**apply_entry(project, engine, plan, result), "interrupted": why},
                         source=None, fields=fields or None)
    except Exception:  # noqa: BLE001  (the stop is what the user must see, not this)
        pass


class Reporter:
    """Progress callbacks; the default does nothing (the API returns values, never prints)."""

    def feature_started(self, name: str, rows: int) -> None: ...
    def rows_done(self, name: str, rows: int) -> None: ...
    def feature_finished(self, run: FeatureRun) -> None: ...
    def message(self, text: str) -> None: ...


class EngineOptions(BaseModel):
    """An engine's options (``engine: {kind: NAME, ...}`` in the spec); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Engine:
    """Subclass and register with ``featurekit_register_engines`` to run plans elsewhere."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = EngineOptions

    def __init__(self, options: BaseModel | dict[str, Any] | None = None):
        if not isinstance(options, BaseModel):
            options = self.Options.model_validate(options or {})
        self.options = options

    def run(self, project, plan, prepared, reporter: Reporter) -> RunResult:
        raise NotImplementedError
