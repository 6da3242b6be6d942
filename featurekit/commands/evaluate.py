"""`featurekit eval`: the base and the tuned model on a recipe's eval split (`training.runs`)."""
from __future__ import annotations

from pathlib import Path

from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..training.runs import EvalResult
from ..training.runs import evaluate as evaluate_recipe


def evaluate(spec: str | Path | Project, recipe: str, *, run: str | Path | None = None, limit: int | None = None,
             base_only: bool = False, quiet: bool = False, registry: Registry | None = None,
             branch: str | None = None) -> EvalResult:
    """Evaluate the base and the tuned model (the newest finished run, or `run`) on the
    recipe's eval split; writes eval.json and predictions.jsonl into the run folder."""
    return evaluate_recipe(project_of(spec, registry, branch), recipe, run=run, limit=limit, base_only=base_only,
                           quiet=quiet)
