"""`featurekit apply --sample N`: what the apply would cost, measured on N rows, writing nothing.

Why: a tier-3 pass is hours of GPU. Before paying for it a user wants rows/s, memory, the
bytes a row adds to the table, and from those the time and storage of the real run.

How: N rows are picked evenly over the table's rows in storage order, so they spread over
its fragments in proportion (from the source's new rows when the table does not exist yet).
Every feature the plan would compute runs on them in plan order, in this process, through
the same extractor calls the engine makes (`work.compute_rows`, row errors isolated); a
feature whose upstream is computed in the same apply reads the upstream's sample values.
Nothing touches the table: outputs are written to a temporary Lance file only to learn
their encoded size. The estimate is ``setup + rows / (rows/s) / workers``, where workers is
what the local engine would use for that many rows (it parallelizes only work that would
take longer than `PARALLEL_AFTER_SECONDS` in-process). Rows sharing an input share its value
(content-addressed compute): the sample computes each distinct input once, and the estimate
counts the distinct inputs the plan found (rows when it could not count them).
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..planning.planner import FeatureStep, Plan
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..table.handle import Table


@dataclass(frozen=True)
class FeatureSample:
    name: str
    rows: int                      # sample rows computed
    failed: int                    # of those, rows the extractor failed on
    setup_seconds: float           # extractor setup (model loading), once per worker
    seconds: float                 # computing the sample rows, setup excluded
    peak_memory_bytes: int         # resident memory above the start, setup included
    bytes_per_row: float           # the feature's columns (and state) as Lance stores them
    rows_to_compute: int           # what the real apply computes
    inputs: int                    # sample rows passed to the extractor: one per distinct input
    inputs_to_compute: int | None  # distinct inputs among rows_to_compute, when the plan counted them
    upper_bound: bool              # rows_to_compute is the most it could be (an `only:` slice runs first)
    workers: int                   # parallel workers the local engine would use
    estimated_seconds: float
    estimated_bytes: float
    peak_gpu_bytes: int | None = None
    errors: tuple[str, ...] = ()

    @property
    def rows_per_s(self) -> float:
        """Extractor throughput: inputs computed a second (rows sharing an input cost nothing)."""
        return self.inputs / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class SampleReport:
    table: str
    version: int | None            # the table version read (unchanged: nothing was written)
    rows: int                      # sample rows
    fragments: int                 # fragments they came from
    origin: str                    # "table" | "source"
    features: tuple[FeatureSample, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)   # feature -> why it was not sampled
    failed: dict[str, str] = field(default_factory=dict)    # feature -> why it failed (a model that does not load)

    @property
    def ok(self) -> bool:
        """No feature failed as a whole (as the real apply would fail it)."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for f, d in zip(self.features, out["features"]):
            d["rows_per_s"] = round(f.rows_per_s, 1) if f.seconds > 0 else None
        return out

    @property
    def estimated_seconds(self) -> float:
        return sum(f.estimated_seconds for f in self.features)

    def render(self) -> str:
        where = f"version {self.version}" if self.version is not None else "not created yet"
        lines = [f"sampled {self.rows} row(s) of {self.table} ({where}; from the {self.origin}, "
                 f"{self.fragments} fragment(s)); nothing was written"]
        if not self.features:
            lines.append("nothing to compute: every selected feature is up to date"
                         if not (self.skipped or self.failed) else "")
        else:
            head = (f"  {'feature':<22} {'rows/s':>10} {'setup':>7} {'peak mem':>9} {'bytes/row':>10} "
                    f"{'rows to compute':>16} {'est. time':>10} {'est. storage':>12}")
            lines.append(head)
            for f in self.features:
                rows = f"<={f.rows_to_compute:,}" if f.upper_bound else f"{f.rows_to_compute:,}"
                rate = f"{f.rows_per_s:,.0f}" if f.seconds > 0 else "-"
                lines.append(f"  {f.name:<22} {rate:>10} {f.setup_seconds:>6.1f}s {_size(f.peak_memory_bytes):>9} "
                             f"{f.bytes_per_row:>10,.0f} {rows:>16} {_duration(f.estimated_seconds):>10} "
                             f"{_size(f.estimated_bytes):>12}")
            total = sum(f.estimated_bytes for f in self.features)
            lines.append(f"  {'total':<22} {'':>10} {'':>7} {'':>9} {'':>10} {'':>16} "
                         f"{_duration(self.estimated_seconds):>10} {_size(total):>12}")
            for f in self.features:
                if f.workers > 1:
                    lines.append(f"  {f.name}: estimated with {f.workers} worker processes, as the local engine runs it")
                if f.peak_gpu_bytes:
                    lines.append(f"  {f.name}: peak GPU memory {_size(f.peak_gpu_bytes)}")
                if f.failed:
                    lines.append(f"  {f.name}: {f.failed} of {f.rows} sample rows failed, e.g. {f.errors[0]}")
                if f.inputs_to_compute is not None and f.inputs_to_compute < f.rows_to_compute:
                    lines.append(f"  {f.name}: {f.rows_to_compute:,} rows, {f.inputs_to_compute:,} distinct inputs: "
                                 "the extractor runs once per input")
                if f.upper_bound:
                    lines.append(f"  {f.name}: computed only on its slice, which this apply examines first: "
                                 "the rows to compute are at most the table's")
        for name, why in self.skipped.items():
            lines.append(f"  {name}: not sampled: {why}")
        for name, why in self.failed.items():
            lines.append(f"  {name}: failed: {why}")
        return "\n".join(line for line in lines if line)


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _duration(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f}h"
    if s >= 60:
        return f"{s / 60:.1f}min"
    return f"{s:.1f}s"


# -- the sample rows ----------------------------------------------------------------------

def pick(total: int, n: int) -> np.ndarray:
    """`n` positions evenly spread over `total` rows (all of them when n >= total)."""
    if n >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, n).round().astype(np.int64))


def _table_rows(ds, columns: list[str], n: int) -> tuple[pa.Table, int]:
    """Sample rows of the table (evenly over its rows in storage order) and the fragments they span."""
    total = ds.count_rows()
    idx = pick(total, n)
    cols = [c for c in dict.fromkeys(columns) if c in ds.schema.names]
    table = ds.take(idx.tolist(), columns=[*cols, "_rowaddr"]) if len(idx) else None
    if table is None:
        return pa.table({}), 0
    fragments = len(np.unique(table.column("_rowaddr").to_numpy() >> np.uint64(32)))
    return table.drop_columns(["_rowaddr"]), fragments


def _source_rows(project, n: int) -> pa.Table:
    """Sample rows of the source's new rows, files loaded, when the table does not exist yet."""
    from ..ingest.prepare import prepare_ingest
    prepared = prepare_ingest(project, None)
    if prepared is None or prepared.new_rows is None:
        return pa.table({})
    batches = [b for i in pick(prepared.new_rows.num_rows, n).tolist() for b in prepared.batches(i, i + 1)]
    return pa.Table.from_batches(batches, schema=prepared.schema()) if batches else pa.table({})


# -- measuring ------------------------------------------------------------------------------

class _PeakMemory:
    """Peak resident memory of this process while the block runs, above where it started
    (sampled every few ms from /proc; elsewhere the process's lifetime peak)."""

    def __init__(self):
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._gpu = _gpu_reset()
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.gpu = _gpu_peak() if self._gpu else None

    @property
    def grown(self) -> int:
        return max(0, self.peak - self.start)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _gpu_reset() -> bool:
    import sys
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return False
    torch.cuda.reset_peak_memory_stats()
    return True


def _gpu_peak() -> int | None:
    import sys
    torch = sys.modules.get("torch")
    return int(torch.cuda.max_memory_allocated()) if torch is not None else None


def encoded_bytes_per_row(table: pa.Table, file_format: str) -> float:
    """Bytes a row of `table` takes in a Lance data file: the size of the file with the rows
    minus the size of the same file without them (so the footer does not count)."""
    from lance.file import LanceFileWriter

    def size(t: pa.Table) -> int:
        with tempfile.TemporaryDirectory(prefix="featurekit-sample-") as tmp:
            path = os.path.join(tmp, "sample.lance")
            writer = LanceFileWriter(path, t.schema, version=file_format)
            for batch in t.to_batches():
                writer.write_batch(batch)
            writer.close()
            return os.path.getsize(path)

    if not table.num_rows:
        return 0.0
    return max(0.0, (size(table) - size(table.slice(0, 0))) / table.num_rows)


# -- running --------------------------------------------------------------------------------

def sample(spec: str | Path | Project, rows: int, *, select: Iterable[str] | None = None, tier: int | None = None,
           registry: Registry | None = None, branch: str | None = None) -> SampleReport:
    """Run each feature the apply would compute on `rows` sample rows, commit nothing, and
    estimate the real apply's time and storage (`apply --sample N`)."""
    from .plan import plan as make_plan
    project = project_of(spec, registry, branch)
    return sample_run(project, make_plan(project, select=select, tier=tier), rows)


def sample_run(project, plan: Plan, n: int) -> SampleReport:
    table = Table.of(project)
    if not table.exists and table.branch is not None:
        table = table.main  # the branch does not exist yet: it would start as main
    ref, ds = table.ref, table.dataset
    steps = [s for s in plan.features if s.has_work]
    needed = [c for s in steps for c in project.features[s.name].inputs.values()]
    if ds is not None and ds.count_rows():
        rows, fragments = _table_rows(ds, needed, n)
        origin, file_format = "table", ds.data_storage_version
    else:
        rows, fragments, origin, file_format = _source_rows(project, n), 1, "source", "2.2"
    from ..engine.compute import FeatureError
    report = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    for step in steps:
        f = project.features[step.name]
        missing = [c for c in f.inputs.values() if c not in rows.column_names]
        upstream = [u for u in f.depends_on if u in failed]
        if upstream:
            skipped[f.name] = f"its upstream feature {', '.join(map(repr, upstream))} failed"
            continue
        if missing:
            skipped[f.name] = (f"input {', '.join(map(repr, missing))} is neither in the table nor computed by this "
                               "apply (select its feature too)")
            continue
        if not rows.num_rows:
            skipped[f.name] = "no rows to sample"
            continue
        try:
            result, outputs = _run_feature(project, f, step, plan, rows, file_format)
        except FeatureError as exc:  # its model does not load, or it broke the contract: as the apply would fail it
            failed[f.name] = str(exc).replace(f"feature {f.name!r}: ", "", 1)
            continue
        report.append(result)
        for col, values in outputs.items():  # downstream features read the sample values
            rows = rows.drop_columns([col]) if col in rows.column_names else rows
            rows = rows.append_column(col, values)
    return SampleReport(str(ref), ds.version if ds is not None else None, rows.num_rows, fragments, origin,
                        tuple(report), skipped, failed)


def _task(f):
    from ..engine.compute import FeatureTask
    return FeatureTask(feature=f.name, extractor_cls=f.extractor_cls, params=f.run_params, inputs=dict(f.inputs),
                       outputs=dict(f.outputs), output_types=dict(f.output_types), state_column=f.state_column,
                       fingerprint=f.fingerprint, upstream_states={}, field_ids={},
                       batch_size=f.resources.batch_size, key=None, timeout=f.resources.timeout)


def _run_feature(project, f, step: FeatureStep, plan: Plan, rows: pa.Table, file_format: str):
    from ..engine.compute import compute_rows, get_extractor, release_extractor
    from ..engine.layout import reuses_values
    from ..table.metadata import FAILED_SEP
    task = _task(f)
    logical = pa.table({name: rows.column(col) for name, col in f.inputs.items()})
    first = _first_of_each_input(logical, f.fingerprint) if reuses_values(f) else None
    if first is not None:  # as the engine runs it: once per distinct input
        logical = logical.take(first[0])
    values: dict[str, list] = {c: [] for c in f.output_types}
    errors: list[str | None] = []
    with _PeakMemory() as mem:
        t0 = time.perf_counter()
        ext = get_extractor(task)  # setup(): loads the model, once per worker in the real run
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            for batch in logical.to_batches(max_chunksize=task.batch_size):
                out, errs = compute_rows(ext, task, batch)
                for c in f.output_types:
                    values[c].append(out[c])
                errors += errs if errs is not None else [None] * batch.num_rows
            seconds = time.perf_counter() - t0
        finally:
            release_extractor(task)
    inputs = len(errors)
    outputs = {c: pa.chunked_array(v, type=f.output_types[c]) for c, v in values.items()}
    if first is not None:  # every sample row gets the value of its input
        outputs = {c: v.take(first[1]) for c, v in outputs.items()}
        errors = [errors[i] for i in first[1].to_pylist()]
    state = pa.array([f.fingerprint if e is None else f.fingerprint + FAILED_SEP + e for e in errors], pa.string())
    stored = pa.table({**outputs, f.state_column: state})
    per_row = encoded_bytes_per_row(stored, file_format)
    todo, upper = _rows_to_compute(step, plan)
    to_compute = step.distinct if step.distinct is not None and first is not None else None
    compute, workers = _estimate(project, f, plan, to_compute if to_compute is not None else todo,
                                 seconds / max(inputs, 1))
    failed = [e for e in errors if e is not None]
    return FeatureSample(name=f.name, rows=len(errors), failed=len(failed), setup_seconds=setup, seconds=seconds,
                         peak_memory_bytes=mem.grown, bytes_per_row=per_row, rows_to_compute=todo,
                         inputs=inputs, inputs_to_compute=to_compute,
                         upper_bound=upper, workers=workers, estimated_seconds=setup + compute,
                         estimated_bytes=per_row * todo, peak_gpu_bytes=mem.gpu, errors=tuple(failed[:3])), outputs


def _first_of_each_input(logical: pa.Table, fingerprint: str) -> tuple[pa.Array, pa.Array]:
    """(index of the first row of each distinct input, index into those for every row), by the
    input keys the engine uses (`inputhash.py`)."""
    from ..planning.inputkeys import input_hashes
    keys = input_hashes(logical, fingerprint).to_pylist()
    seen: dict[bytes, int] = {}
    first, where = [], []
    for i, k in enumerate(keys):
        if k not in seen:
            seen[k] = len(first)
            first.append(i)
        where.append(seen[k])
    return pa.array(first, pa.int64()), pa.array(where, pa.int64())


def _rows_to_compute(step: FeatureStep, plan: Plan) -> tuple[int, bool]:
    new = plan.ingest.new_rows if plan.ingest is not None else 0
    if step.only_pending:
        return plan.table_rows + new, True
    if step.rows is None:
        return plan.table_rows + new, False
    return step.rows, False


def _estimate(project, f, plan: Plan, rows: int, per_row: float) -> tuple[float, int]:
    """(seconds to compute `rows`, worker processes) as the local engine runs `f`: the first
    fragment in this process, the rest in `workers_for` processes when the in-process estimate
    passes PARALLEL_AFTER_SECONDS (or workers/timeout ask for them), else in-process."""
    from ..engine.local import PARALLEL_AFTER_SECONDS, LocalEngine
    options = project.spec.engine.options if project.spec.engine.kind == "local" else {}
    per_fragment = project.spec.table.fragment_rows
    fragments = max(1, -(-rows // per_fragment))
    workers = LocalEngine(options).workers_for(f, fragments)
    explicit = (f.resources.workers or 0) > 1 or f.resources.timeout
    first = min(rows, per_fragment)
    if workers > 1 and fragments > 1 and (explicit or (rows - first) * per_row > PARALLEL_AFTER_SECONDS):
        return (first + (rows - first) / workers) * per_row, workers
    return rows * per_row, 1
