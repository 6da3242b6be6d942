"""`featurekit train` and `featurekit eval`: run a recipe's trainer on the materialized columns.

featurekit owns what surrounds the model: the data (one pinned table version, shuffled,
resumable), the run folder, metrics.jsonl, the progress bar, the loss curve and the run
manifest that says exactly which spec, data and features produced an adapter. The trainer
only sees a `TrainRun` / `EvalRun` (see `featurekit.trainer`).

Run folders: ``<recipe output>/<YYYYmmdd-HHMMSS>/``; ``<recipe output>/LATEST`` names the
newest. ``train --resume`` continues the newest run; ``eval`` evaluates it unless told otherwise.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NotReady, RunError, SpecError, UsageError
from ..planning.resolve import Project, Recipe
from ..plugins.trainer import ColumnInfo
from ..table.handle import require_dataset, table_ref
from ..table.metadata import sql_quote, stored_features, stored_slices
from ..table.provenance import software, spec_provenance, who
from . import distributed
from .distributed import World

LATEST = "LATEST"
MANIFEST = "manifest.json"
METRICS = "metrics.jsonl"


# -- what a trainer is handed -------------------------------------------------------------

def column_infos(ds, mapping: dict[str, str]) -> dict[str, ColumnInfo]:
    """logical -> what the table records about the column it maps to."""
    out = {}
    for logical, col in mapping.items():
        f = ds.schema.field(col)
        md = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        extra = {k[len("featurekit.output."):]: v for k, v in md.items() if k.startswith("featurekit.output.")}
        shape = tuple(json.loads(extra["shape"])) if "shape" in extra else None
        out[logical] = ColumnInfo(logical, col, f.type, shape, md.get("featurekit.feature"),
                                  md.get("featurekit.fingerprint"), json.loads(md.get("featurekit.params", "{}")), extra,
                                  md.get("featurekit.extractor"))
    return out


WARMUP_STEPS = 3  # steps timed before an ETA is shown: the first ones pay for loading, compiling, allocating


class Progress:
    """A bar with loss, samples/s and ETA on a terminal; a line every few seconds elsewhere.
    The ETA is timed from the first logged step and shown once `WARMUP_STEPS` more are done:
    before that it would count the model's loading and the first step's warm-up."""

    def __init__(self, quiet: bool = False, every: float = 10.0, clock=time.perf_counter):
        import sys
        self.quiet, self.every, self.clock = quiet, every, clock
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.total = None
        self.last = 0.0
        self.first: tuple[int, float] | None = None  # (step, time) of the first step logged

    def set_total(self, total: int, initial: int = 0) -> None:
        self.total = total
        if self.tty and not self.quiet:
            import sys

            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def eta(self, step: int, now: float) -> float | None:
        """Seconds left, from the pace since the first logged step; None during warm-up."""
        if self.first is None:
            self.first = (step, now)
        first_step, first_time = self.first
        if not self.total or step - first_step < WARMUP_STEPS:
            return None
        return (now - first_time) / (step - first_step) * max(self.total - step, 0)

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if self.quiet:
            return
        now = self.clock()
        left = self.eta(step, now)
        shown = {k: metrics[k] for k in ("loss", "lr", "samples_per_s") if k in metrics}
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix({**{k: f"{v:.4g}" for k, v in shown.items()},
                                  **({"eta": f"{left:.0f}s"} if left is not None else {})}, refresh=True)
            return
        if now - self.last >= self.every or (self.total and step >= self.total):
            import click
            self.last = now
            done = f"step {step}" + (f"/{self.total}" if self.total else "")
            eta = f", eta {left:.0f}s" if left is not None and step < (self.total or 0) else ""
            click.echo(f"{done}: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()) + eta, err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EvalProgress:
    """Rows answered: a bar on a terminal; elsewhere a line when generation starts, one every
    `every` seconds, and one at the end (evaluation may take minutes)."""

    def __init__(self, total: int, quiet: bool = False, every: float = 10.0):
        import sys
        self.total, self.quiet, self.every = total, quiet, every
        self.done, self.bar = 0, None
        self.started = self.last = time.perf_counter()
        if quiet:
            return
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="row", file=sys.stderr, desc="eval", dynamic_ncols=True)
        else:
            import click
            click.echo(f"eval: loading the model, then answering {total} row(s)", err=True)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if not self.quiet and now - self.last >= self.every:
            import click
            self.last = now
            click.echo(f"eval: {self.done}/{self.total} rows, {now - self.started:.0f}s", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif not self.quiet:
            import click
            click.echo(f"eval: {self.done}/{self.total} rows in {time.perf_counter() - self.started:.1f}s", err=True)


@dataclass
class _TrainRun:
    """The `TrainRun` a trainer gets: data from one pinned version, a folder, a log."""

    project: Project
    recipe: Recipe
    dir: Path
    version: int
    seed: int
    steps: int | None
    resume: bool
    columns: dict[str, ColumnInfo]
    progress: Progress
    loaders: list = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    world: World = field(default_factory=World)

    @property
    def rank(self) -> int:
        """This process's rank in a torchrun job (0 alone): its loader reads shard `rank`."""
        return self.world.rank

    @property
    def world_size(self) -> int:
        """Processes training data-parallel (1 alone); the trainer averages gradients over them."""
        return self.world.size

    @property
    def local_rank(self) -> int:
        """The rank on this machine: which GPU this process uses."""
        return self.world.local_rank

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints and the model into `dir`."""
        return self.world.main

    def loader(self, *, batch_size: int, epoch: int = 0, shuffle: bool = True, seed: int | None = None,
               drop_last: bool = True, **options):
        from .dataloader import dataloader
        loader = dataloader(self.project, recipe=self.recipe.name, batch_size=batch_size, epoch=epoch,
                            shuffle=shuffle, seed=self.seed if seed is None else seed, drop_last=drop_last,
                            version=self.version, rank=self.world.rank, world_size=self.world.size, **options)
        self.loaders.append(loader)
        return loader

    def log(self, step: int, **metrics: float) -> None:
        entry = {"step": step, "time": round(time.time(), 3), **{k: _plain(v) for k, v in metrics.items()}}
        if not self.world.main:  # rank 0 writes the metrics (the trainer logs what all ranks computed)
            self.history.append(entry)
            return
        if not self.history:
            if self.resume and step == 1 and _logged_steps(self.dir / METRICS):
                import click  # a trainer without checkpoints: say so rather than silently starting over
                click.echo(f"note: --resume: no checkpoint in {self.dir}; training starts over from step 1 "
                           "(the earlier steps' metrics are replaced)", err=True)
            _drop_steps_from(self.dir / METRICS, step)  # a resumed run redoes the steps after its checkpoint
        with open(self.dir / METRICS, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        self.history.append(entry)
        self.progress.update(step, metrics)

    def set_total(self, steps: int) -> None:
        done = self.history[-1]["step"] if self.history else 0
        self.progress.set_total(steps, done)

    def distinct(self, logical: str) -> list:
        """The distinct values of a column over the recipe's split (a classifier's labels)."""
        import pyarrow.compute as pc
        ds = _dataset(self.project, self.version)
        col = self.recipe.columns[logical]
        values = ds.to_table(columns=[col], filter=split_filter(self.project, self.recipe)).column(col)
        return sorted(v for v in pc.unique(values).to_pylist() if v is not None)


@dataclass
class _EvalRun:
    project: Project
    recipe: Recipe
    dir: Path | None
    limit: int | None
    version: int
    columns: dict[str, ColumnInfo]
    bar: Any = None

    def rows(self, *, batch_size: int) -> Iterator[dict[str, Any]]:
        """The eval split's rows ordered by key: lists of values, fixed-size lists as numpy [B, *shape]."""
        key = self.project.key
        split = self.recipe.spec.eval.split if self.recipe.spec.eval else self.recipe.spec.split
        table = split_rows(self.project, self.recipe, self.version, split, list(self.recipe.eval_columns),
                           limit=self.limit)
        for start in range(0, table.num_rows, batch_size):
            chunk = table.slice(start, batch_size)
            out: dict[str, Any] = {"key": chunk.column(key).to_pylist() if key else list(range(start, start + len(chunk)))}
            for logical, col in self.recipe.eval_columns.items():
                out[logical] = _values(chunk.column(col), self.columns[logical].shape)
            yield out

    def progress(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)


def _values(col, shape):
    import pyarrow as pa
    arr = col.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        flat = arr.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape((len(arr), *(shape or (arr.type.list_size,))))
    return arr.to_pylist()


def _plain(value):
    try:
        return float(value) if not isinstance(value, (int, str, bool)) else value
    except (TypeError, ValueError):
        return str(value)


# -- helpers --------------------------------------------------------------------------------

def split_filter(project: Project, recipe: Recipe, split: str | None = None) -> str:
    """SQL selecting the recipe's rows: its slice's rows of `split` (the recipe's by default)."""
    column = project.slices[recipe.slice].column
    split = recipe.spec.split if split is None else split
    return f"{column} = {sql_quote(split)}" if split else f"{column} IS NOT NULL"


def split_rows(project: Project, recipe: Recipe, version: int | str | None, split: str | None, logicals: list[str],
               present: list[str] | None = None, limit: int | None = None):
    """Eval columns `logicals` (and the key) of the rows of `split` where the eval columns
    `present` (default: all) are not NULL, ordered by key, the first `limit`: what
    `EvalRun.rows` hands a trainer, and what the answer priors read from the training split."""
    ds = _dataset(project, version)
    key = project.key
    mapping = recipe.eval_columns
    cols = list(dict.fromkeys([*(mapping[lg] for lg in logicals), *([key] if key else [])]))
    where = split_filter(project, recipe, split)
    present = " AND ".join(f"{mapping[lg]} IS NOT NULL" for lg in (mapping if present is None else present))
    table = ds.to_table(columns=cols, filter=f"({where}) AND ({present})" if present else where)
    if key:
        table = table.sort_by(key)
    return table.slice(0, limit) if limit else table


def _dataset(project: Project, version: int | str | None = None):
    """The table (its branch) at `version`: a number or a tag; None: the latest."""
    return require_dataset(table_ref(project), version)


def pinned_version(recipe: Recipe) -> int | str | None:
    """The version the recipe's ``table: {version: N | tag: NAME}`` pins, or None (the latest)."""
    return recipe.spec.table.pin if recipe.spec.table is not None else None


def _recipe(project: Project, name: str) -> Recipe:
    if name not in project.spec.recipes:
        raise UsageError(f"unknown recipe {name!r}; recipes: {', '.join(project.spec.recipes) or '(none defined)'}")
    return project.recipes[name]


def check_ready(project: Project, recipe: Recipe, ds) -> None:
    """Training reads what apply materialized: everything the recipe depends on must be fresh.
    A recipe pinned to a version (or tag) reads that version as it is: its columns must be
    there, and the manifest records what the spec would now compute differently."""
    from ..planning.planner import build_plan
    if recipe.spec.table is not None:
        missing = [c for c in [project.slices[recipe.slice].column, *recipe.columns.values()]
                   if c not in ds.schema.names]
        if missing:
            raise RunError(f"recipe {recipe.name!r} is pinned to {_pin_text(recipe)} (version {ds.version}), "
                           f"which has no column {', '.join(map(repr, missing))}; pin a version that has them")
        _check_rows(project, recipe, ds)
        return
    needed = project.graph.ancestors(f"recipe:{recipe.name}")
    plan = build_plan(project, ds, None)
    behind = [s for s in plan.steps if s.has_work and
              (f"feature:{s.name}" in needed or f"slice:{s.name}" in needed)]
    if behind:
        what = "; ".join(f"{s.name}: {s.action}" + (f" ({s.reasons[0]})" if s.reasons else "") for s in behind)
        raise NotReady(f"recipe {recipe.name!r} reads columns that are not up to date ({what}); "
                       "run 'featurekit apply' first")
    _check_rows(project, recipe, ds)


def _check_rows(project: Project, recipe: Recipe, ds) -> None:
    """The training split has rows (a version pinned before the slice was computed has none)."""
    if not ds.count_rows(filter=split_filter(project, recipe)):
        where = f"{_pin_text(recipe)} (version {ds.version})" if recipe.spec.table is not None else \
            f"version {ds.version}"
        raise NotReady(f"recipe {recipe.name!r}: split {recipe.spec.split!r} of slice {recipe.slice!r} has no rows "
                       f"at {where}; the slice keeps none there (or was not computed yet)")


def _pin_text(recipe: Recipe) -> str:
    pin = recipe.spec.table
    return f"tag {pin.tag!r}" if pin.tag is not None else f"version {pin.version}"


def behind_spec(project: Project, recipe: Recipe, ds) -> list[str]:
    """What the spec would compute differently from the version a pinned recipe reads."""
    from ..planning.planner import build_plan
    needed = project.graph.ancestors(f"recipe:{recipe.name}")
    return [f"{s.name}: {s.action}" + (f" ({s.reasons[0]})" if s.reasons else "")
            for s in build_plan(project, ds, None).steps
            if s.has_work and (f"feature:{s.name}" in needed or f"slice:{s.name}" in needed)]


def _run_dir(project: Project, recipe: Recipe, resume: bool) -> tuple[Path, bool]:
    out = project.root / recipe.spec.output
    latest = out / LATEST
    if resume:
        if not latest.exists():
            raise UsageError(f"--resume: no run to resume in {out}; run 'featurekit train' without --resume")
        return out / latest.read_text().strip(), True
    name = time.strftime("%Y%m%d-%H%M%S")
    run_dir = out / name
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = out / f"{name}-{n}"
    run_dir.mkdir(parents=True)
    latest.write_text(run_dir.name + "\n")
    return run_dir, False


def _discard(run_dir: Path, previous_latest: str | None) -> None:
    """A new run that stopped before its first step: its folder goes, LATEST names what it did."""
    import shutil
    shutil.rmtree(run_dir, ignore_errors=True)
    latest = run_dir.parent / LATEST
    if previous_latest:
        latest.write_text(previous_latest)
    else:
        latest.unlink(missing_ok=True)


def find_run(project: Project, recipe: Recipe, run: str | Path | None) -> Path | None:
    if run is not None:
        path = Path(run)
        if not (path / MANIFEST).exists():
            raise UsageError(f"--run {run}: no {MANIFEST} there; give a folder 'featurekit train' made")
        return path
    out = project.root / recipe.spec.output
    runs = sorted((p for p in out.glob("*/") if (p / MANIFEST).exists() and not p.name.startswith("eval-base-")),
                  key=lambda p: p.name, reverse=True)
    for run_dir in runs:  # the newest finished run (a failed or interrupted one has no final model)
        if str(json.loads((run_dir / MANIFEST).read_text()).get("status", "")).startswith("finished"):
            return run_dir
    if runs:
        status = json.loads((runs[0] / MANIFEST).read_text()).get("status")
        raise UsageError(f"no finished run of recipe {recipe.name!r} in {out}: the newest, {runs[0].name}, is "
                         f"{status!r}; finish it ('featurekit train --resume'), give --run DIR, or --base-only")
    raise UsageError(f"no trained run of recipe {recipe.name!r} in {out}: run 'featurekit train' first, "
                     "or evaluate the base model alone with --base-only")


def model_note(recipe: Recipe) -> str | None:
    """What a model folder says about itself (``featurekit_note`` in its config.json), e.g. that
    it is a tiny random model: every output naming it repeats that."""
    model = getattr(recipe.runtime_params, "model", None)
    path = Path(model) / "config.json" if isinstance(model, str) else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("featurekit_note")
    except (OSError, ValueError):
        return None


# -- train ----------------------------------------------------------------------------------

@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    main: bool = True    # False on ranks > 0 of a torchrun job (rank 0 wrote the run folder and reports it)


def train(project: Project, recipe_name: str, *, resume: bool = False, steps: int | None = None,
          quiet: bool = False, world: World | None = None) -> TrainResult:
    """Run the recipe's trainer. Under torchrun (`world`, default from the environment) every
    rank trains on its shard; rank 0 alone makes and writes the run folder."""
    world = distributed.from_env() if world is None else world
    opened = distributed.start(world)
    try:
        if world.main:
            return _train_main(project, recipe_name, resume, steps, quiet, world)
        return _train_rank(project, recipe_name, resume, steps, world)
    finally:
        distributed.stop(opened)


def _train_rank(project: Project, recipe_name: str, resume: bool, steps: int | None, world: World) -> TrainResult:
    """Rank > 0: train in the folder rank 0 chose, on the version it pinned; write nothing."""
    shared = distributed.share(world)
    if "refused" in shared:
        raise RunError(f"rank {world.rank}: rank 0 stopped before training: {shared['refused']}")
    recipe = _recipe(project, recipe_name)
    run_dir, version = Path(shared["run_dir"]), shared["version"]
    seed = int(getattr(recipe.params, "seed", 0) or 0)
    columns = column_infos(_dataset(project, version), recipe.columns)
    run = _TrainRun(project, recipe, run_dir, version, seed, steps, shared["resuming"], columns, Progress(True),
                    world=world)
    metrics = recipe.make_trainer().train(run) or {}
    return TrainResult(run_dir, metrics, {}, main=False)


def _train_main(project: Project, recipe_name: str, resume: bool, steps: int | None, quiet: bool,
                world: World) -> TrainResult:
    try:
        recipe = _recipe(project, recipe_name)
        ds = _dataset(project, pinned_version(recipe))
        if not resume:
            check_ready(project, recipe, ds)  # before a run folder exists: a refused run leaves nothing
        latest = project.root / recipe.spec.output / LATEST
        previous_latest = latest.read_text() if latest.exists() else None
        run_dir, resuming = _run_dir(project, recipe, resume)
    except BaseException as exc:
        distributed.share(world, {"refused": f"{type(exc).__name__}: {exc}"})
        raise
    manifest_path = run_dir / MANIFEST
    previous = json.loads(manifest_path.read_text()) if resuming and manifest_path.exists() else None
    try:
        version = _resumable(project, recipe, run_dir, previous, steps, ds, world)
    except BaseException as exc:
        distributed.share(world, {"refused": f"{type(exc).__name__}: {exc}"})
        raise
    distributed.share(world, {"run_dir": str(run_dir), "version": version, "resuming": resuming})
    ds = _dataset(project, version)
    seed = int(getattr(recipe.params, "seed", 0) or 0)
    columns = column_infos(ds, recipe.columns)
    manifest = _manifest(project, recipe, ds, seed, columns, previous, run_dir)
    manifest["world_size"] = world.size  # processes trained data-parallel (torchrun), each on its shard
    if steps is not None:
        manifest["steps_override"] = steps  # `--steps N`: the run trains N steps, not params.steps
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    progress = Progress(quiet)
    run = _TrainRun(project, recipe, run_dir, version, seed, steps, resuming, columns, progress, world=world)
    started = time.perf_counter()
    discarded = False
    try:
        metrics = recipe.make_trainer().train(run) or {}
    except BaseException as exc:
        if not resuming and not run.history:  # stopped before its first step: nothing to keep or resume
            discarded = True
            _discard(run_dir, previous_latest)
        elif resuming and not run.history and isinstance(exc, (UsageError, SpecError)):  # refused: run as it was
            discarded = True
            if previous is not None:
                manifest_path.write_text(json.dumps(previous, indent=2, default=str))
        elif isinstance(exc, KeyboardInterrupt):
            manifest["status"] = "interrupted: resume with 'featurekit train --resume'"
        else:
            manifest["status"] = f"failed: {type(exc).__name__}: {exc}"
        raise
    finally:
        progress.close()
        if not discarded:
            manifest["wall_seconds"] = round(manifest.get("wall_seconds", 0) + time.perf_counter() - started, 2)
            manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    manifest.update(status="finished", final=metrics, final_loss=metrics.get("loss"))
    manifest["loader"] = [{"version": getattr(ld, "version", version), "skipped": getattr(ld, "skipped", None)}
                          for ld in run.loaders[:1]]
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    plot_losses(run_dir)
    return TrainResult(run_dir, metrics, manifest)


def _resumable(project: Project, recipe: Recipe, run_dir: Path, previous: dict | None, steps: int | None,
               ds, world: World) -> int:
    """The table version the run reads (a resumed run: what it started on), after refusing a
    resume that has nothing to do or reads another branch."""
    target = steps if steps is not None else getattr(recipe.params, "steps", None)
    done = (previous or {}).get("final", {}).get("steps")
    if previous and str(previous.get("status", "")).startswith("finished") and isinstance(done, int) \
            and isinstance(target, int) and done >= target:
        raise UsageError(f"--resume: {run_dir} already finished its {done} steps; nothing to resume "
                         "(train without --resume for a new run, or give --steps beyond it)")
    if previous and previous["table"].get("branch") != table_ref(project).branch:
        was = previous["table"].get("branch")
        raise UsageError(f"--resume: {run_dir} trained on " + (f"branch {was!r}" if was else "main")
                         + "; resume it with " + (f"--branch {was}" if was else "no --branch"))
    if previous and previous.get("world_size", 1) != world.size:
        raise UsageError(f"--resume: {run_dir} trained on {previous.get('world_size', 1)} process(es), this is "
                         f"{world.size}; resume with the same number (torchrun --nproc_per_node)")
    return previous["table"]["version"] if previous else ds.version


def _manifest(project: Project, recipe: Recipe, ds, seed: int, columns: dict[str, ColumnInfo],
              previous: dict | None, run_dir: Path) -> dict[str, Any]:
    sl = project.slices[recipe.slice]
    stored = stored_slices(ds.schema).get(sl.name)
    feats = stored_features(ds.schema)
    manifest = {
        "recipe": recipe.name, "trainer": recipe.trainer_cls.name, "trainer_version": recipe.trainer_cls.version,
        "params": recipe.params.model_dump(mode="json"),  # --steps, when given, is recorded as steps_override
        "spec": spec_provenance(project.path),
        "table": {"uri": project.table_uri if "://" in project.table_uri else os.path.abspath(project.table_uri),
                  "version": ds.version, "branch": table_ref(project).branch,
                  **({"pinned": _pin_text(recipe), "behind_spec": behind_spec(project, recipe, ds)}
                     if recipe.spec.table is not None else {})},
        "slice": {"name": sl.name, "fingerprint": stored.fingerprint if stored else None,
                  "split": recipe.spec.split, "eval_split": recipe.spec.eval.split if recipe.spec.eval else None},
        "columns": {k: {"column": c.column, "feature": c.feature, "fingerprint": c.fingerprint,
                        "type": str(c.type), "shape": c.shape} for k, c in columns.items()},
        "features": {c.feature: feats[c.feature].fingerprint for c in columns.values() if c.feature in feats},
        "seed": seed, "software": software(project.registry), **who(), "run_dir": str(run_dir),
        "model_note": model_note(recipe),
        "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if previous is not None:
        manifest["resumes"] = previous.get("resumes", []) + [{k: previous.get(k) for k in
                                                               ("started", "status", "command", "wall_seconds")}]
        manifest["wall_seconds"] = previous.get("wall_seconds", 0)
        manifest["started"] = previous.get("started")
    return manifest


def _logged_steps(path: Path) -> int:
    """How many step entries metrics.jsonl holds (0 when there is none)."""
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0


def _drop_steps_from(path: Path, step: int) -> None:
    """Remove the entries of `step` and later from metrics.jsonl (steps an interrupted run
    logged after the checkpoint a resume starts from): each step appears once."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", -1) < step]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))


def plot_losses(run_dir: Path) -> Path | None:
    """loss.png from metrics.jsonl (needs matplotlib; without it, no picture)."""
    path = run_dir / METRICS
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if isinstance(r.get("loss"), (int, float))]
    if not rows:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = run_dir / "loss.png"
    fig.savefig(out)
    plt.close(fig)
    return out


# -- eval -----------------------------------------------------------------------------------

@dataclass
class EvalResult:
    run_dir: Path | None
    out_dir: Path
    metrics: dict[str, Any]
    predictions: int
    note: str | None = None
    priors: dict[str, Any] | None = None     # the answer priors: split, answers counted, majority, by_type
    question_types: dict[str, int] = field(default_factory=dict)   # eval questions per type


def evaluate(project: Project, recipe_name: str, *, run: str | Path | None = None, limit: int | None = None,
             base_only: bool = False, quiet: bool = False) -> EvalResult:
    recipe = _recipe(project, recipe_name)
    if recipe.spec.eval is None:
        raise UsageError(f"recipe {recipe_name!r} has no eval: section; add eval: {{split: <split>}}")
    run_dir = None if base_only else find_run(project, recipe, run)
    version = json.loads((run_dir / MANIFEST).read_text())["table"]["version"] if run_dir else \
        _dataset(project, pinned_version(recipe)).version
    ds = _dataset(project, version)
    columns = column_infos(ds, recipe.eval_columns)
    limit = limit or recipe.spec.eval.limit
    total = ds.count_rows(filter=split_filter(project, recipe, recipe.spec.eval.split))
    if not total:
        raise NotReady(f"recipe {recipe.name!r}: split {recipe.spec.eval.split!r} of slice {recipe.slice!r} has no "
                       f"rows at table version {version}; run 'featurekit apply' (or pin a version where the slice "
                       "is computed)")
    bar = EvalProgress(min(total, limit or total), quiet)
    er = _EvalRun(project, recipe, run_dir, limit, version, columns, bar)
    try:
        result = recipe.make_trainer().evaluate(er) or {}
    finally:
        bar.close()
    out_dir = run_dir or (project.root / recipe.spec.output / f"eval-base-{time.strftime('%Y%m%d-%H%M%S')}")
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = result.get("predictions", [])
    try:
        metrics, baselines = with_priors(project, recipe, version, limit, result.get("metrics", {}), predictions)
    except Exception as exc:  # minutes of generation are not lost to a baseline: the models' scores stand
        import click
        click.echo(f"note: answer priors not computed: {type(exc).__name__}: {exc}", err=True)
        metrics, baselines = result.get("metrics", {}), {}
    (out_dir / "eval.json").write_text(json.dumps({
        "recipe": recipe.name, "model_note": model_note(recipe), "split": recipe.spec.eval.split, "table_version": version, "limit": limit,
        "run": str(run_dir) if run_dir else None, "n": len(predictions), "metrics": metrics, **baselines,
        **{k: v for k, v in result.items() if k not in ("metrics", "predictions")}},
        indent=2, default=str))
    with open(out_dir / "predictions.jsonl", "w") as fh:
        for p in predictions:
            fh.write(json.dumps(p, default=str) + "\n")
    plot_eval(out_dir, metrics, baselines.get("question_types", {}))
    return EvalResult(run_dir, out_dir, metrics, len(predictions), model_note(recipe), baselines.get("priors"),
                      baselines.get("question_types", {}))


PLOT_TYPES = 12                       # eval.png shows at most this many question types
QUESTION_TYPE = "text.question_type"  # the built-in extractor: a question's type as the feature computes it


def question_typer(project: Project):
    """questions -> their types, through the registered `text.question_type` extractor (None
    if it is not registered)."""
    import pyarrow as pa
    entry = project.registry.get("extractor", QUESTION_TYPE)
    if entry is None:
        return None
    extractor = entry.cls()
    extractor.setup()
    name = next(iter(extractor.input_types()))

    def types(questions: list) -> list:
        if not questions:
            return []
        text = pa.array([q if isinstance(q, str) or q is None else str(q) for q in questions], pa.string())
        return extractor(pa.RecordBatch.from_arrays([text], names=[name])).to_pylist()
    return types


def with_priors(project: Project, recipe: Recipe, version: int, limit: int | None, metrics: dict[str, Any],
                predictions: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trainer's metrics plus the answer priors (`priors`) fitted on the recipe's training
    split, and accuracy per question type for every model; and what eval.json says about them.
    The truth (eval column ``answer``, else ``label``) and ``question`` of each prediction come
    from the eval split by its ``key``. Without an answer column: the metrics as they are."""
    from . import priors as pr
    answer = next((lg for lg in ("answer", "label") if lg in recipe.eval_columns), None)
    if answer is None or not predictions:
        return metrics, {}
    question = "question" if "question" in recipe.eval_columns else None
    wanted = [answer, *([question] if question else [])]
    eval_split = recipe.spec.eval.split if recipe.spec.eval else recipe.spec.split
    truth = split_rows(project, recipe, version, eval_split, wanted, limit=limit)
    keys = truth.column(project.key).to_pylist() if project.key else list(range(truth.num_rows))
    by_key = dict(zip(keys, zip(truth.column(recipe.eval_columns[answer]).to_pylist(),
                                truth.column(recipe.eval_columns[question]).to_pylist() if question
                                else [None] * truth.num_rows)))
    rows = [by_key.get(p.get("key"), (p.get(answer), p.get("question"))) for p in predictions]
    typer = question_typer(project) if question else None
    metric = pr.metric_of(metrics)
    train = split_rows(project, recipe, version, recipe.spec.split, wanted, present=[answer])
    train_answers = train.column(recipe.eval_columns[answer]).to_pylist()
    train_types = typer(train.column(recipe.eval_columns[question]).to_pylist()) if typer else None
    priors = pr.fit(train_answers, train_types, metric)
    if priors.majority is None:
        return metrics, {}
    types = typer([q for _, q in rows]) if typer else None
    out = pr.with_baselines(metrics, predictions, [a for a, _ in rows], types, priors, metric)
    info = {"priors": {"split": recipe.spec.split, "answers": priors.answers, "metric": metric,
                       "majority": priors.majority, **({"by_type": priors.by_type} if types is not None else {})}}
    if types is not None:
        info["question_types"] = pr.type_counts(types)
    return out, info


def plot_eval(out_dir: Path, metrics: dict[str, Any], types: dict[str, int]) -> Path | None:
    """eval.png: each model's and prior's accuracy overall and per question type (bars; needs
    matplotlib, as loss.png)."""
    from .priors import metric_of
    metric = metric_of(metrics)
    models = [m for m, v in metrics.items() if isinstance(v.get(metric), (int, float))]
    if not models:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    shown = dict(list(types.items())[:PLOT_TYPES])  # the most frequent types (types come most frequent first)
    groups = ["all", *shown]
    n = metrics[models[0]].get("n")
    labels = ["all" + (f"\n(n={n})" if isinstance(n, int) else "")] + [f"{t}\n(n={c})" for t, c in shown.items()]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(groups) + 2), 3.5), dpi=100)
    for i, model in enumerate(models):
        values = [metrics[model][metric]] + [metrics[model].get("by_type", {}).get(t, 0.0) for t in shown]
        ax.bar([g + (i - (len(models) - 1) / 2) * width for g in range(len(groups))], values, width, label=model)
    ax.set_xticks(range(len(groups)), labels, fontsize=8)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.2)  # room for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    more = f" ({len(shown)} most frequent of {len(types)} types)" if len(shown) < len(types) else ""
    ax.set_title(f"{out_dir.name}: {metric} by question type{more}", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncols=min(len(models), 4), loc="upper center")
    fig.tight_layout()
    out = out_dir / "eval.png"
    fig.savefig(out)
    plt.close(fig)
    return out


def render_eval(result: EvalResult) -> str:
    """Models and priors as columns; the metrics, then the score per question type, as rows."""
    metrics = result.metrics
    names = sorted({k for m in metrics.values() for k in m if k != "by_type"})
    types = result.question_types
    rows = [(n, [m.get(n) for m in metrics.values()]) for n in names]
    if types:
        rows.append(("by question type (n):", None))
        rows += [(f"  {t} ({c})", [m.get("by_type", {}).get(t) for m in metrics.values()]) for t, c in types.items()]
    width = max([len(label) for label, cells in rows if cells is not None] + [6])
    lines = [f"{'':<{width}}  " + "  ".join(f"{model:>10}" for model in metrics)]
    for label, cells in rows:
        if cells is None:
            lines.append(label)
            continue
        lines.append(f"{label:<{width}}  " + "  ".join(
            f"{v:>10.4f}" if isinstance(v, float) else f"{'-' if v is None else v!s:>10}" for v in cells))
    if "vqa_accuracy" in names:
        from .vqa import METRIC
        lines.append(f"vqa_accuracy: {METRIC}")
    if result.priors:
        p = result.priors
        lines.append(f"priors: from split {p['split']!r} ({p['answers']} answers): majority answers "
                     f"{p['majority']!r}" + (", type_prior the majority of the question's type" if "by_type" in p else ""))
    where = result.out_dir / "eval.json"
    plot = " and eval.png" if (result.out_dir / "eval.png").exists() else ""
    lines.append(f"written: {where}, predictions.jsonl ({result.predictions} rows){plot}")
    if result.note:
        lines.append(f"model: {result.note}")
    return "\n".join(lines)
