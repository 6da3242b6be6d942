"""The command line: parse arguments, call the API, render the result. Nothing else."""
from __future__ import annotations

import functools
import json
import os
import sys
import time

import click

from .errors import ExitCode, FeaturekitError, SpecError, UsageError

EPILOG_WIDTH = 100


def _fail(exc: FeaturekitError) -> None:
    if isinstance(exc, SpecError):
        for p in exc.problems:
            click.echo(str(p), err=True)
        n = len(exc.problems)
        click.echo(f"{n} problem{'s' if n != 1 else ''} found; nothing was written", err=True)
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(int(exc.exit_code))


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FeaturekitError as exc:
            _fail(exc)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": EPILOG_WIDTH})
@click.version_option(package_name="featurekit")
def cli():
    """featurekit: declare features for multimodal training in a YAML spec; get a Lance table.

    \b
    Typical session:
      featurekit validate specs/textvqa.yaml   # every mistake, with file:line:col
      featurekit plan specs/textvqa.yaml       # what would run, and why
      featurekit apply specs/textvqa.yaml      # ingest + compute what is new or stale
      featurekit status specs/textvqa.yaml     # fresh, stale, failed rows
      featurekit check specs/textvqa.yaml      # the spec's data checks on the table
      featurekit docs specs/textvqa.yaml --out catalog   # an HTML page of it all
      featurekit slice specs/textvqa.yaml text_dense   # splits, duplicates removed
      featurekit train specs/textvqa-qwen.yaml --recipe qlora

    Exit codes: 0 success, 1 a run failed, 2 invalid spec or usage (nothing written).
    """


SPEC_PATH = click.argument("spec", type=click.Path(dir_okay=False))
TARGET = click.option("--target", "-t", metavar="NAME", help="One of the spec's targets (default: $FEATUREKIT_TARGET, "
                      "else the first).")


def SPEC(command):  # noqa: N802 (a decorator, like click's)
    """The SPEC argument and its --target: with --target, the command gets the spec loaded for it."""
    @functools.wraps(command)
    def run(*args, target=None, **kwargs):
        if target is not None:
            if kwargs.get("against"):
                raise UsageError("--against compares the spec's files at two revisions; it does not take --target "
                                 "(set FEATUREKIT_TARGET instead)")
            from .api import load_spec
            kwargs["spec"] = load_spec(kwargs["spec"], target=target, branch=kwargs.get("branch"))
        return command(*args, **kwargs)
    return SPEC_PATH(TARGET(run))


JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
SELECT = click.option("--select", "-s", multiple=True, metavar="NAMES",
                      help="Only these features: 'a,b', '+a' (with ancestors), 'a+' (with descendants).")
TIER = click.option("--tier", type=click.IntRange(1, 3), help="Only tiers up to N (1 cheap text, 2 image, 3 model).")
BRANCH = click.option("--branch", "-b", metavar="NAME",
                      help="A Lance branch of the table instead of its main line (overrides table.branch).")


@cli.command(epilog="Example: featurekit validate specs/*.yaml")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Checks that wait for the source files (none match yet) are errors.")
@click.option("--target", "-t", metavar="NAME", help="Check this target only (default: every target of each spec).")
def validate(specs, strict, target):
    """Check specs: syntax, keys, plugins, columns, types and the graph. Touches no data.

    Without the source files (a fresh clone of a specs repository), everything else is
    checked and the checks that waited for the data are listed; --strict fails on them.
    """
    from .api import validate as check
    result = check(specs, strict=strict, target=target)
    for summary in result.specs:
        click.echo(summary.render())
    result.raise_for_problems()


@cli.command(epilog="Example: featurekit plan specs/textvqa.yaml --select +sft")
@SPEC
@JSON
@SELECT
@TIER
@click.option("--prune", is_flag=True, help="Show orphaned columns as dropped.")
@click.option("--against", metavar="REV", help="Instead: compare the spec as committed at this git revision "
              "with the working copy (touches no data).")
@BRANCH
def plan(spec, as_json, select, tier, prune, against, branch):
    """Show what apply would do per feature, and why: new, stale (what changed), rows to fill."""
    if against:
        from .api import diff
        d = diff(spec, against)
        click.echo(d.to_json() if as_json else d.render())
        return
    from .api import plan as make_plan
    p = make_plan(spec, select=select, tier=tier, prune=prune, branch=branch)
    click.echo(p.to_json() if as_json else p.render())


@cli.command("diff", epilog="Examples:\n\n\b\n  featurekit diff specs/textvqa.yaml HEAD~1\n"
             "  featurekit diff specs/textvqa.yaml v1.0 v1.1 --json")
@SPEC_PATH
@click.argument("rev1")
@click.argument("rev2", required=False)
@JSON
def diff_(spec, rev1, rev2, as_json):
    """Compare the spec at git revision REV1 with REV2 (default: the working copy): features
    added, removed, changed and exactly why; slices whose membership would change; recipes
    affected. Touches no data."""
    from .api import diff
    d = diff(spec, rev1, rev2)
    click.echo(d.to_json() if as_json else d.render())


@cli.command("log", epilog="Example: featurekit log specs/textvqa.yaml --json")
@SPEC
@JSON
@BRANCH
def log_(spec, as_json, branch):
    """The applies that changed the table, newest first: when, Lance versions, the spec's git
    commit (and whether it was modified), who, and what was computed."""
    from .api import log
    applied = log(spec, branch=branch)
    click.echo(applied.to_json() if as_json else applied.render())


@cli.command(epilog="Example: featurekit apply specs/textvqa.yaml --tier 2")
@SPEC
@SELECT
@TIER
@click.option("--engine", help="Run on this engine instead of the spec's (local, geneva, ...).")
@click.option("--dry-run", is_flag=True, help="Plan only; write nothing.")
@click.option("--prune", is_flag=True, help="Drop columns of features no longer in the spec.")
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the summary and errors.")
@BRANCH
@click.option("--tag", metavar="NAME", help="Tag the table version this apply leaves (Lance tag; recipes can pin it).")
@click.option("--sample", type=click.IntRange(1, 1 << 20), metavar="N",
              help="Instead: run each feature on N sample rows, commit nothing, and estimate the real apply's "
                   "time and storage.")
def apply(spec, select, tier, engine, dry_run, prune, quiet, branch, tag, sample):
    """Ingest the source and compute every feature that is new or stale; commit to Lance.

    With --branch NAME, apply onto that Lance branch (created from main's current version
    when it does not exist): main and its readers are untouched.
    """
    if sample is not None:
        if dry_run or tag or prune or engine:
            raise UsageError("--sample runs nothing for real: it does not combine with --dry-run, --tag, "
                             "--prune or --engine")
        from .api import sample as run_sample
        report = run_sample(spec, sample, select=select, tier=tier, branch=branch)
        click.echo(report.render())
        if not report.ok:
            sys.exit(int(ExitCode.RUN_FAILED))
        return
    from .api import apply as run_apply
    from .lifetime import stop_on_signals
    from .progress import make_reporter
    started = time.perf_counter()
    reporter = make_reporter(quiet=quiet)
    with stop_on_signals():  # SIGTERM (docker stop, systemd) stops the run like Ctrl-C
        result = run_apply(spec, engine=engine, select=select, tier=tier, dry_run=dry_run, prune=prune,
                           reporter=reporter, branch=branch, tag=tag)
    reporter.close()
    notes = _apply_notes(result)
    if dry_run or result.run is None:
        if not (quiet and result.run is None and result.plan.is_noop and not notes):  # -q: silence when nothing changed
            click.echo(result.plan.render())
        for line in notes:
            click.echo(line)
        return
    from .progress import render_summary
    click.echo(render_summary(result, time.perf_counter() - started))
    checks = result.run.checks
    if checks is not None:
        click.echo(checks.render(failures_only=True))
    for line in notes:
        click.echo(line)
    if not result.ok:
        for run in result.run.features.values():
            if run.error:
                click.echo(f"error: {run.error}", err=True)
        from .checks import keys_text
        for r in checks.failed if checks is not None else ():
            click.echo(f"error: check {r.check} failed on {r.kind} {r.column}: {r.detail}{keys_text(r.to_dict())} "
                       "(the data is kept)", err=True)
        sys.exit(int(ExitCode.RUN_FAILED))


def _apply_notes(result) -> list[str]:
    notes = []
    if result.branch_created:
        notes.append(f"created branch {result.branch} from main version {result.plan.table_version}")
    if result.tag:
        where = f" of branch {result.branch}" if result.branch else ""
        notes.append(f"tagged version {result.tagged_version}{where} as {result.tag}")
    return notes


@cli.command(epilog="Examples:\n\n\b\n  featurekit compact specs/textvqa.yaml --dry-run\n"
             "  featurekit compact specs/textvqa.yaml --older-than 1d")
@SPEC
@click.option("--older-than", default="7d", show_default=True, metavar="DURATION",
              help="Remove versions older than this (30s, 15m, 12h, 7d, 2w).")
@click.option("--dry-run", is_flag=True, help="Say what would be merged and removed; change nothing.")
def compact(spec, older_than, dry_run):
    """Merge small fragments and delete main's old versions, except the latest, tagged ones, each
    branch's starting version, and those a run manifest or a recipe's table.version names (tagged
    featurekit-run-... / featurekit-recipe-...); print the bytes freed. Values are unchanged."""
    from .api import compact as run_compact
    click.echo(run_compact(spec, older_than=older_than, dry_run=dry_run).render())


@cli.command(epilog="Example: featurekit check specs/textvqa.yaml --json")
@SPEC
@JSON
@BRANCH
def check(spec, as_json, branch):
    """Run the spec's checks (features' and slices' checks:) on the table as it stands; write nothing.

    Exits 1 when an error-severity check fails; warnings are reported only.
    """
    from .api import check as run_check
    report = run_check(spec, branch=branch)
    click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str) if as_json else report.render())
    if not report.ok:
        sys.exit(int(ExitCode.RUN_FAILED))


@cli.command(epilog="Example: featurekit status specs/textvqa.yaml --json")
@SPEC
@JSON
@BRANCH
def status(spec, as_json, branch):
    """Per feature: fresh or stale, rows computed, failed (first errors), pending; Lance versions."""
    from .api import status as get_status
    from .progress import render_status
    s = get_status(spec, branch=branch)
    click.echo(json.dumps(s.to_dict(), indent=2, default=str) if as_json else render_status(s))


@cli.command("slice", epilog="Examples:\n\n\b\n  featurekit slice specs/textvqa.yaml text_dense\n"
             "  featurekit slice specs/textvqa.yaml text_dense --keys val > val_keys.txt\n"
             "  featurekit slice specs/textvqa.yaml text_dense --gallery dedupe.html")
@SPEC
@click.argument("name")
@JSON
@click.option("--keys", "keys_split", metavar="SPLIT", help="Print the row keys of this split, one a line.")
@click.option("--gallery", type=click.Path(dir_okay=False), metavar="FILE.html",
              help="Write one static HTML page: sample rows per split, the largest duplicate groups side by side.")
@click.option("--groups", default=5, show_default=True, help="Duplicate groups and leaks to show.")
@BRANCH
def slice_(spec, name, as_json, keys_split, gallery, groups, branch):
    """A slice's rows per split, rows removed by each step, duplicate groups, leaks across
    splits, and what the last apply changed. Reads the table; computes nothing."""
    from .api import slice as get_slice
    report = get_slice(spec, name, branch=branch, gallery=None if keys_split is not None else gallery)
    if keys_split is not None:
        try:
            keys = report.keys(keys_split)
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
        click.echo("\n".join(map(str, keys)))
        return
    if report.gallery is not None:
        click.echo(f"wrote {report.gallery}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif not gallery:
        from .curation.report import render
        click.echo(render(report, groups=groups))


@cli.command(epilog="Examples:\n\n\b\n  featurekit search specs/textvqa.yaml --column clip_image --like 17 -k 8\n"
             "  featurekit search specs/textvqa.yaml --column clip_image --text 'a red stop sign' --gallery near.html")
@SPEC
@click.option("--column", "-c", required=True, help="A vector column (fixed-size list of floats).")
@click.option("--like", metavar="KEY", help="Rows near this row's vector (the row itself left out).")
@click.option("--text", metavar="TEXT", help="Rows near this text, embedded by the column's text extractor.")
@click.option("-k", "k", default=20, show_default=True, type=click.IntRange(1), help="Rows to return.")
@click.option("--where", metavar="SQL", help="Only rows this Lance SQL filter selects.")
@click.option("--show", multiple=True, metavar="COLS", help="More columns to print: 'a,b' (repeatable).")
@click.option("--exact", is_flag=True, help="A flat scan (exact) even when the column has a vector index.")
@click.option("--nprobes", default=20, show_default=True, type=click.IntRange(1),
              help="Partitions of the vector index visited at least (more: better recall, slower).")
@click.option("--gallery", type=click.Path(dir_okay=False), metavar="FILE.html",
              help="Also write one static HTML page: the rows' images in order, with their distances.")
@JSON
@BRANCH
def search(spec, column, like, text, k, where, show, exact, nprobes, gallery, as_json, branch):
    """The rows nearest a query on a vector column, by cosine distance: through the column's
    vector index when it has one (approximate), else a flat scan (exact). Reads the table only."""
    from .api import search as run_search
    shown = tuple(c.strip() for part in show for c in part.split(",") if c.strip())
    result = run_search(spec, column, like=like, text=text, k=k, where=where, show=shown, exact=exact,
                        nprobes=nprobes, gallery=gallery, branch=branch)
    if result.gallery is not None:
        click.echo(f"wrote {result.gallery}", err=True)
    click.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else result.render())


@cli.command(epilog="Examples:\n\n\b\n  featurekit train specs/textvqa-qwen.yaml --recipe qlora\n"
             "  featurekit train specs/textvqa-qwen.yaml --recipe qlora --resume\n"
             "  featurekit train specs/easyvqa-qwen.yaml --recipe qlora --steps 20")
@SPEC
@click.option("--recipe", "-r", required=True, help="The recipe to run (recipes: in the spec).")
@click.option("--resume", is_flag=True, help="Continue the newest run of this recipe from its last checkpoint.")
@click.option("--steps", type=click.IntRange(1), help="Stop after this many optimizer steps (overrides params).")
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the summary.")
@BRANCH
def train(spec, recipe, resume, steps, quiet, branch):
    """Train a recipe from the materialized columns (the vision tower is never run).

    Writes a run folder under the recipe's output: the trainer's checkpoints and model,
    metrics.jsonl, loss.png and manifest.json (spec and git commit, table version, the
    fingerprints of every column read, seeds, software, wall time, final loss).
    """
    from .api import train as run_train
    from .lifetime import stop_on_signals
    if quiet:  # model-loading bars of huggingface libraries too (read when they are first imported)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with stop_on_signals():  # SIGTERM (a scheduler's preemption) stops at the next step, like Ctrl-C
        result = run_train(spec, recipe, resume=resume, steps=steps, quiet=quiet, branch=branch)
    if not result.main:  # a torchrun rank > 0: rank 0 reports the run
        return
    loss = result.metrics.get("loss")
    click.echo(f"trained {recipe}: {result.run_dir}" + (f" (final loss {loss:.4f})" if isinstance(loss, float) else ""))
    if result.manifest.get("model_note"):
        click.echo(f"model: {result.manifest['model_note']}")


@cli.command("eval", epilog="Example: featurekit eval specs/textvqa-qwen.yaml --recipe qlora --limit 50")
@SPEC
@click.option("--recipe", "-r", required=True, help="The recipe whose eval split and trainer to use.")
@click.option("--run", "run_dir", type=click.Path(file_okay=False),
              help="A run folder (default: the newest finished run).")
@click.option("--limit", type=click.IntRange(1), help="Evaluate at most this many rows.")
@click.option("--base-only", is_flag=True, help="Evaluate the base model only.")
@JSON
@BRANCH
def eval_(spec, recipe, run_dir, limit, base_only, as_json, branch):
    """Evaluate the base and the tuned model on the recipe's eval split; write eval.json and
    predictions.jsonl into the run folder, print the table."""
    from .api import evaluate
    from .training.runs import render_eval
    result = evaluate(spec, recipe, run=run_dir, limit=limit, base_only=base_only, branch=branch)
    if as_json:
        click.echo(json.dumps({"metrics": result.metrics, "out": str(result.out_dir),
                               "run": str(result.run_dir) if result.run_dir else None}, indent=2))
    else:
        click.echo(render_eval(result))


@cli.command(epilog="Example: featurekit docs specs/textvqa.yaml --out catalog")
@SPEC
@click.option("--out", required=True, type=click.Path(), metavar="DIR",
              help="Folder for index.html and a gallery page per slice (created if needed).")
@BRANCH
@JSON
def docs(spec, out, branch, as_json):
    """Write a static HTML catalog of the table: the graph, every feature (description, extractor,
    params, fingerprint, fill, NULLs, stats, checks), the columns, slices, recipes and applies."""
    from .api import docs as write_docs
    catalog = write_docs(spec, out, branch=branch)
    if as_json:
        click.echo(json.dumps(catalog.to_dict(), indent=2, default=str))
    else:
        click.echo(f"wrote {catalog.path}: {len(catalog.features)} features, {len(catalog.slices)} slices, "
                   f"{len(catalog.files) - 1} gallery page(s); open it in a browser")


@cli.command(epilog="Example: featurekit graph specs/textvqa.yaml --format mermaid")
@SPEC
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot", "svg"]), default="text", show_default=True)
def graph(spec, fmt):
    """Print the dependency graph of features, slices and recipes."""
    from .api import graph as get_graph
    click.echo(get_graph(spec).render(fmt))


@cli.command(epilog="Example: featurekit bench specs/textvqa-qwen.yaml --recipe qlora --rows 256")
@SPEC
@click.option("--recipe", help="Read this recipe's split and columns. Without it: --columns, or else every "
              "fixed-size list feature (the large ones training reads).")
@click.option("--columns", metavar="A,B", help="Columns to read (without --recipe).")
@click.option("--rows", type=click.IntRange(1), default=512, show_default=True,
              help="Rows sampled from the split; each reader reads them all once.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress.")
@JSON
@BRANCH
def bench(spec, recipe, columns, rows, batch_size, quiet, as_json, branch):
    """Read throughput (rows/s, GB/s) of training columns on your table: featurekit's loader shuffled and
    sequential, a shuffled LanceDB Permutation, a Parquet copy (temporary) and the page-cache ceiling."""
    from .api import bench as run_bench
    from .commands.bench import STAGES
    from .progress import StageProgress
    if recipe and columns:
        raise UsageError("give --recipe or --columns, not both")
    progress = StageProgress(rows * len(STAGES), quiet=quiet or as_json)
    try:
        result = run_bench(spec, recipe=recipe, columns=[c.strip() for c in (columns or "").split(",") if c.strip()] or None,
                           rows=rows, batch_size=batch_size, progress=progress, branch=branch)
    finally:
        progress.close()
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.render())


@cli.command(epilog="Example: featurekit branches specs/textvqa.yaml --json")
@SPEC
@JSON
def branches(spec, as_json):
    """The table's Lance branches: base version, latest version, rows, and the features and
    slices whose fingerprints differ from main's; then the table's tags."""
    from .api import branches as get_branches
    report = get_branches(spec)
    click.echo(json.dumps(report.to_dict(), indent=2, default=str) if as_json else report.render())


@cli.command(epilog="Example: featurekit plugins specs/textvqa.yaml --json")
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@JSON
def plugins(spec, as_json):
    """List installed plugins, their versions and what they register; with SPEC, also the
    files its plugins: names and the extractors their functions make."""
    from .api import list_plugins
    report = list_plugins(spec=spec)
    if as_json:
        click.echo(report.to_json())
    else:
        if report.plugins:
            click.echo(report.render())
        for f in report.failed:
            click.echo(f"{f['name']}: FAILED to load: {f['error']}", err=True)
    if report.conflicts:
        for c in report.conflicts:
            click.echo(f"error: {c}", err=True)
        sys.exit(int(ExitCode.USAGE))


@cli.command(epilog="Example: featurekit schema > featurekit.schema.json")
@click.option("--markdown", is_flag=True, help="The spec reference as Markdown instead (keys, types, extractors).")
def schema(markdown):
    """Print the JSON Schema of the spec format, with installed extractors' params (for editors)."""
    from .api import schema as get_schema
    if markdown:
        click.echo(get_schema(markdown=True), nl=False)
        return
    click.echo(json.dumps(get_schema(), indent=2))


def main(argv: list[str] | None = None) -> int:
    # What users of the command see: Lance logs a warning on every DataReplacement commit
    # (the way featurekit fills columns), which says nothing to them. Decided here, for the
    # command only, before Lance is imported; importing featurekit changes no environment.
    # LANCE_LOG=warn (or info, debug) in the environment shows Lance's logs again.
    os.environ.setdefault("LANCE_LOG", "error")
    try:
        cli.main(args=argv, prog_name="featurekit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return int(ExitCode.USAGE)
    except click.exceptions.Abort as exc:
        from .lifetime import Stopped
        if isinstance(exc.__cause__, Stopped):
            click.echo(f"{exc.__cause__}: finished work was committed; run the same command again to go on "
                       "(train: with --resume)", err=True)
            return 128 + exc.__cause__.signum
        click.echo("aborted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
