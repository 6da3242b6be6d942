"""Progress bars on a terminal, plain lines elsewhere, and the end-of-run summaries."""
from __future__ import annotations

import sys
import time

import click

from .engine import FeatureRun, Reporter
from .planning.planner import describe_ingest, ingest_counts, ingest_done

PLAIN_EVERY = 10.0  # seconds between progress lines outside a terminal


class PlainReporter(Reporter):
    """Logs and CI: a line when a feature starts, one every `every` seconds while it runs
    (rows, rows/s, ETA), and one when it ends."""

    def __init__(self, every: float = PLAIN_EVERY) -> None:
        self.started: dict[str, float] = {}
        self.every = every
        self.total: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.last: dict[str, float] = {}

    def feature_started(self, name: str, rows: int) -> None:
        self.started[name] = self.last[name] = time.perf_counter()
        self.total[name], self.done[name] = rows, 0
        click.echo(f"{name}: computing {rows} row(s)", err=True)

    def rows_done(self, name: str, rows: int) -> None:
        self.done[name] = self.done.get(name, 0) + rows
        now = time.perf_counter()
        if now - self.last.get(name, now) < self.every or name not in self.started:
            return
        self.last[name] = now
        done, total = self.done[name], self.total.get(name, 0)
        rate = done / max(now - self.started[name], 1e-9)
        eta = f", eta {(total - done) / rate:.0f}s" if rate and total > done else ""
        click.echo(f"{name}: {done}/{total} rows, {rate:,.0f} rows/s{eta}", err=True)

    def feature_finished(self, run: FeatureRun) -> None:
        rate = (run.computed + run.failed) / run.seconds if run.seconds else 0.0
        click.echo(f"{run.name}: {run.computed} computed, {run.failed} failed in {run.seconds:.1f}s "
                   f"({rate:,.0f} rows/s){work_line(run)}", err=True)

    def message(self, text: str) -> None:
        click.echo(text, err=True)

    def close(self) -> None: ...


class BarReporter(PlainReporter):
    """A tqdm bar per feature with rows/s and ETA."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: dict = {}

    def feature_started(self, name: str, rows: int) -> None:
        import shutil

        from tqdm import tqdm
        width = shutil.get_terminal_size((100, 20)).columns or 100  # 0 under some pseudo-terminals
        self.bars[name] = tqdm(total=rows, desc=name, unit="row", file=sys.stderr, ncols=width)

    def rows_done(self, name: str, rows: int) -> None:
        self.bars[name].update(rows)

    def feature_finished(self, run: FeatureRun) -> None:
        bar = self.bars.pop(run.name, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class QuietReporter(Reporter):
    def close(self) -> None: ...


def make_reporter(quiet: bool = False) -> Reporter:
    if quiet:
        return QuietReporter()
    return BarReporter() if sys.stderr.isatty() else PlainReporter()


def render_summary(result, seconds: float) -> str:
    run = result.run
    before = "new table" if run.version_before is None else f"table version {run.version_before}"
    lines = [f"applied {result.plan.spec}: {before} -> version {run.version_after} in {seconds:.1f}s"]
    if result.plan.ingest is not None:
        lines.append(f"  {describe_ingest(ingest_counts(result.plan.ingest, run.ingested))}")
        examples = result.plan.ingest.skipped_examples
        for what, n in sorted(run.skipped_rows.items()):
            lines.append(f"  skipped {n} source row(s): {what}")
            lines.extend(f"      {example}" for example in examples.get(what, ()))
    for name, f in run.features.items():
        lines.append(f"  {name}: {f.computed} computed, {f.failed} failed, {f.seconds:.1f}s{work_line(f)}"
                     + ("; the feature failed (error below)" if f.error else ""))
        for key, err in f.errors[:3]:
            lines.append(f"      row {key!r}: {err}")
    for name, sl in run.slices.items():
        kept = ", ".join(f"{split} +{n}" for split, n in sl.added.items()) or "none kept"
        removed = ", ".join(f"{step} {n}" for step, n in sorted(sl.removed.items()))
        line = f"  slice {name}: {sl.examined} examined, {kept}" + (f"; removed {removed}" if removed else "")
        if sl.blocked:
            line += f"; {sl.blocked} waiting for upstream values"
        if sl.leaks:
            line += f"; {len(sl.leaks)} leak(s) across splits (featurekit slice shows them)"
        lines.append(line)
    for col in run.dropped:
        lines.append(f"  dropped column {col}")
    for col, what in run.indexes.items():
        lines.append(f"  index {col}: {what}")
    return "\n".join(lines)


def work_line(f: FeatureRun) -> str:
    """What the extractor was asked to do: rows, distinct inputs, rows passed to it."""
    parts = []
    if f.distinct is not None:
        parts.append(f"{f.rows} rows, {f.distinct} distinct inputs")
        if f.reused_rows:
            parts.append(f"{f.reused_rows} reused")
    computed = f.rows if f.distinct is None else f.distinct
    if f.passed and (f.distinct is not None or f.passed > 1.05 * computed):
        extra = f.passed - computed
        parts.append(f"{f.passed} passed to the extractor" + (
            f" ({f.passed / max(computed, 1):.2f}x: rows that raised were isolated by halving; "
            "return featurekit.RowErrors to report them instead)" if extra > 0.05 * computed else ""))
    return f" ({'; '.join(parts)})" if parts else ""


def render_status(s) -> str:
    if not s.exists:
        return f"table {s.table} does not exist yet; run 'featurekit apply'"
    lines = [f"table {s.table}: version {s.version}, {s.rows} rows"]
    width = max([len(f.name) for f in s.features] + [4])
    for f in s.features:
        outside = f", outside slice {f.only} {f.outside}" if f.only else ""
        lines.append(f"  {f.name:<{width}}  {f.state:<10}  computed {f.computed}, failed {f.failed}, "
                     f"pending {f.pending}{outside}")
        for reason in f.reasons:
            lines.append(f"      {reason}")
        if f.last_error:
            lines.append(f"      the last apply failed it: {f.last_error.removeprefix(f'feature {f.name!r}: ')}")
        for key, err in f.errors:
            lines.append(f"      failed row {key!r}: {err}")
    for sl in s.slices:
        splits = ", ".join(f"{k} {v}" for k, v in sl.splits.items()) or "no rows"
        removed = ", ".join(f"{k} {v}" for k, v in sl.removed.items())
        lines.append(f"  slice {sl.name}: {sl.state}; {splits}" + (f"; removed {removed}" if removed else "")
                     + (f"; {sl.pending} row(s) to examine" if sl.pending else ""))
        for reason in sl.reasons:
            lines.append(f"      {reason}")
    for ix in s.indexes:
        lines.append(f"  index {ix.column} ({ix.type}): {ix.state}" + (f", {ix.unindexed} row(s) not indexed yet"
                                                                        if ix.unindexed else "") + f" [{ix.name}]")
        lines.extend(f"      {reason}" for reason in ix.reasons)
    if s.checks:
        from .checks import render_results
        lines.append(f"last apply's {render_results(s.checks['results'], s.checks['version'])}")
    if s.history:
        lines.append("applies (Lance versions each produced):")
        for h in s.history[-10:]:
            start = 1 if h["version_from"] is None else h["version_from"] + 1
            did = ingest_done(h)
            did += [f"{n} {f['computed']} computed" + (f", {f['failed']} failed" if f["failed"] else "")
                    for n, f in h.get("features", {}).items()]
            did += [f"slice {n} {sum(r.get('added', {}).values())} kept of {r.get('examined', 0)} examined"
                    for n, r in h.get("slices", {}).items()]
            did += [f"dropped {c}" for c in h.get("dropped", [])]
            did += [f"index {c} {what}" for c, what in h.get("indexes", {}).items()]
            engine = f" [{h['engine']}]" if h.get("engine", "local") != "local" else ""
            lines.append(f"  v{start}-v{h['version_to']}  {h['at']}{engine}  {'; '.join(did) or 'source recorded'}")
            for n, f in h.get("features", {}).items():
                if f.get("jobs"):
                    lines.append(f"      {n}: job {', '.join(f['jobs'])}")
    return "\n".join(lines)


class StageProgress:
    """One bar across the stages of a run (`featurekit bench`), its label the current stage;
    on a pipe, one line per stage."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.bar = None
        self.stage = None
        self.quiet = quiet
        if not quiet and sys.stderr.isatty():
            import shutil

            from tqdm import tqdm
            width = shutil.get_terminal_size((100, 20)).columns or 100
            self.bar = tqdm(total=total, unit="row", file=sys.stderr, ncols=width)

    def __call__(self, stage: str, rows: int) -> None:
        if stage != self.stage:
            self.stage = stage
            if self.bar is not None:
                self.bar.set_description(stage)
            elif not self.quiet:
                click.echo(f"reading: {stage}", err=True)
        if self.bar is not None:
            self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
