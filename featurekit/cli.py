"""The command line: parse arguments, call the API, render the result. Nothing else."""
from __future__ import annotations

import json
import sys
import time

import click

from .errors import ExitCode, FeaturekitError, SpecError

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

    Exit codes: 0 success, 1 a run failed, 2 invalid spec or usage (nothing written).
    """


SPEC = click.argument("spec", type=click.Path(dir_okay=False))
JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
SELECT = click.option("--select", "-s", multiple=True, metavar="NAMES",
                      help="Only these features: 'a,b', '+a' (with ancestors), 'a+' (with descendants).")
TIER = click.option("--tier", type=click.IntRange(1, 3), help="Only tiers up to N (1 cheap text, 2 image, 3 model).")


@cli.command(epilog="Example: featurekit validate specs/*.yaml")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(specs):
    """Check specs: syntax, keys, plugins, columns, types and the graph. Touches no data."""
    from .api import load_spec
    problems = []
    for path in specs:
        try:
            project = load_spec(path)
            click.echo(f"{path}: ok ({len(project.features)} features, {len(project.spec.slices)} slices, "
                       f"{len(project.spec.recipes)} recipes)")
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        _fail(SpecError(problems))


@cli.command(epilog="Example: featurekit plan specs/textvqa.yaml --select +sft")
@SPEC
@JSON
@SELECT
@TIER
@click.option("--prune", is_flag=True, help="Show orphaned columns as dropped.")
def plan(spec, as_json, select, tier, prune):
    """Show what apply would do per feature, and why: new, stale (what changed), rows to fill."""
    from .api import plan as make_plan
    p = make_plan(spec, select=select, tier=tier, prune=prune)
    click.echo(p.to_json() if as_json else p.render())


@cli.command(epilog="Example: featurekit apply specs/textvqa.yaml --tier 2")
@SPEC
@SELECT
@TIER
@click.option("--engine", help="Run on this engine instead of the spec's (local, geneva, ...).")
@click.option("--dry-run", is_flag=True, help="Plan only; write nothing.")
@click.option("--prune", is_flag=True, help="Drop columns of features no longer in the spec.")
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the summary and errors.")
def apply(spec, select, tier, engine, dry_run, prune, quiet):
    """Ingest the source and compute every feature that is new or stale; commit to Lance."""
    from .api import apply as run_apply
    from .lifetime import stop_on_signals
    from .progress import make_reporter
    started = time.perf_counter()
    reporter = make_reporter(quiet=quiet)
    with stop_on_signals():  # SIGTERM (docker stop, systemd) stops the run like Ctrl-C
        result = run_apply(spec, engine=engine, select=select, tier=tier, dry_run=dry_run, prune=prune,
                           reporter=reporter)
    reporter.close()
    if dry_run or result.run is None:
        click.echo(result.plan.render())
        return
    from .progress import render_summary
    click.echo(render_summary(result, time.perf_counter() - started))
    if not result.ok:
        for run in result.run.features.values():
            if run.error:
                click.echo(f"error: {run.error}", err=True)
        sys.exit(int(ExitCode.RUN_FAILED))


@cli.command(epilog="Example: featurekit status specs/textvqa.yaml --json")
@SPEC
@JSON
def status(spec, as_json):
    """Per feature: fresh or stale, rows computed, failed (first errors), pending; Lance versions."""
    from .api import status as get_status
    from .progress import render_status
    s = get_status(spec)
    click.echo(json.dumps(s.to_dict(), indent=2, default=str) if as_json else render_status(s))


@cli.command(epilog="Example: featurekit graph specs/textvqa.yaml --format mermaid")
@SPEC
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot"]), default="text", show_default=True)
def graph(spec, fmt):
    """Print the dependency graph of features, slices and recipes."""
    from .api import load_spec
    click.echo(load_spec(spec).graph.render(fmt))


@cli.command(epilog="Example: featurekit plugins --json")
@JSON
def plugins(as_json):
    """List installed plugins, their versions and what they register."""
    from .registry import default_registry
    reg = default_registry()
    rows = []
    for name, kinds in reg.by_plugin().items():
        origin = reg.origins.get(name)
        rows.append({"name": name, "distribution": origin.distribution if origin else None,
                     "version": origin.version if origin else None, **kinds})
    failures = [{"name": f.name, "distribution": f.distribution, "error": f.error} for f in reg.failures]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failed": failures, "conflicts": reg.conflicts}, indent=2))
    else:
        for row in rows:
            click.echo(f"{row['name']} ({row['distribution'] or '?'} {row['version'] or ''})".replace(" )", ")"))
            for kind in ("extractors", "sources", "engines", "trainers"):
                if row.get(kind):
                    click.echo(f"  {kind}: {', '.join(row[kind])}")
        for f in failures:
            click.echo(f"{f['name']}: FAILED to load: {f['error']}", err=True)
    if reg.conflicts:
        for c in reg.conflicts:
            click.echo(f"error: {c}", err=True)
        sys.exit(int(ExitCode.USAGE))


@cli.command(epilog="Example: featurekit schema > featurekit.schema.json")
@click.option("--markdown", is_flag=True, help="The spec reference as Markdown instead (keys, types, extractors).")
def schema(markdown):
    """Print the JSON Schema of the spec format, with installed extractors' params (for editors)."""
    from .registry import default_registry
    if markdown:
        from .docs import spec_reference
        click.echo(spec_reference(default_registry()), nl=False)
        return
    from .jsonschema import spec_schema
    click.echo(json.dumps(spec_schema(default_registry()), indent=2))


def main(argv: list[str] | None = None) -> int:
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
            click.echo(f"{exc.__cause__}: finished work was committed; run apply again to go on", err=True)
            return 128 + exc.__cause__.signum
        click.echo("aborted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
