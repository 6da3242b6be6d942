"""`featurekit train`: run a recipe's trainer on the materialized columns (`training.runs`)."""
from __future__ import annotations

from pathlib import Path

from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..training.runs import TrainResult
from ..training.runs import train as train_recipe


def train(spec: str | Path | Project, recipe: str, *, resume: bool = False, steps: int | None = None,
          quiet: bool = False, registry: Registry | None = None, branch: str | None = None) -> TrainResult:
    """Train `recipe` from the materialized columns (the vision tower is never run). Writes a
    run folder under the recipe's output: the trainer's checkpoints and model, metrics.jsonl,
    loss.png and manifest.json. `resume`: continue the newest run from its last checkpoint;
    `steps`: stop after this many optimizer steps."""
    return train_recipe(project_of(spec, registry, branch), recipe, resume=resume, steps=steps, quiet=quiet)
