"""The `Trainer` base class plugin authors subclass, and what a trainer gets to work with.

A trainer turns the materialized columns of a recipe's slice into a model (``train``) and
measures it (``evaluate``). It declares the columns it reads, with their Arrow types, the
way an extractor declares its inputs; `validate` checks a recipe's columns against them.

featurekit owns everything around the model: the data (shuffled, pinned to one table
version, resumable), the run folder, metrics, progress and the run manifest. A trainer
only sees a `TrainRun` / `EvalRun` and returns its final metrics.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Loader(Protocol):
    """What `TrainRun.loader` returns (a `featurekit.DataLoader`)."""

    version: int                      # the pinned table version every batch comes from

    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def __len__(self) -> int: ...     # batches per epoch (this rank)
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class ColumnInfo:
    """A recipe column as the table records it."""

    logical: str                      # the trainer's name for it
    column: str                       # the table column
    type: Any                         # its Arrow type
    shape: tuple[int, ...] | None     # per-row shape of a fixed-size list (from featurekit.output.shape)
    feature: str | None = None        # the feature producing it, if any
    fingerprint: str | None = None
    params: dict[str, Any] = field(default_factory=dict)     # that feature's params, as written
    metadata: dict[str, str] = field(default_factory=dict)   # featurekit.output.* metadata, without the prefix
    extractor: str | None = None      # the extractor that feature runs (its registered name)


class TrainRun(Protocol):
    """What featurekit hands `Trainer.train`."""

    dir: Path                         # the run folder: write checkpoints and the model here
    seed: int
    steps: int | None                 # `train --steps N` (None: the trainer's own params decide)
    resume: bool                      # `train --resume`: continue from the last checkpoint in `dir`
    columns: dict[str, ColumnInfo]    # logical -> column info
    rank: int                         # torchrun: this process's rank (0 alone); loader() reads its shard
    world_size: int                   # processes training data-parallel (1 alone): sum gradients over them
    local_rank: int                   # the rank on this machine (which GPU)
    main: bool                        # rank 0: the only process that writes into `dir`

    def loader(self, *, batch_size: int, epoch: int = 0, shuffle: bool = True, seed: int | None = None,
               drop_last: bool = True) -> Loader:
        """Batches of the recipe's split: dicts logical column -> torch tensor (fixed-size lists
        shaped [B, *shape]), every row once per epoch, order a function of (seed, epoch, version)."""

    def log(self, step: int, **metrics: float) -> None:
        """Record metrics for a step (metrics.jsonl, the progress bar, the loss curve)."""

    def set_total(self, steps: int) -> None:
        """The number of optimizer steps this run will take (the progress bar's length)."""

    def distinct(self, logical: str) -> list:
        """The distinct values of a column over the recipe's split (a classifier's labels)."""


class EvalRun(Protocol):
    """What featurekit hands `Trainer.evaluate`."""

    dir: Path | None                  # a trained run's folder, or None to evaluate the base model only
    limit: int | None                 # evaluate at most this many rows
    columns: dict[str, ColumnInfo]    # logical -> column info for `eval_columns`

    def rows(self, *, batch_size: int) -> Iterable[dict[str, Any]]:
        """The eval split's rows in a fixed order, as dicts logical column -> list of values,
        plus ``"key"``: the rows' keys (the source key), so predictions can name their rows."""

    def progress(self, n: int) -> None:
        """Rows done since the last call (the progress bar)."""


class Trainer:
    """Subclass this and register it with ``featurekit_register_trainers``.

    Class attributes: ``name`` (what recipes write after ``trainer:``), ``version``,
    ``columns`` (logical column -> Arrow type or a type class such as ``"list"``: what
    training batches hold), ``eval_columns`` (what ``evaluate`` reads, e.g. raw images and
    answers), ``path_params`` (params naming files, relative to the spec's folder).
    Nested class ``Params``: a pydantic model, unknown keys rejected.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    columns: ClassVar[Mapping[str, Any]] = {}
    optional_columns: ClassVar[tuple[str, ...]] = ()   # logical columns a recipe may leave out
    eval_columns: ClassVar[Mapping[str, Any]] = {}
    Params: ClassVar[type[BaseModel]] = _Params
    path_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: BaseModel | None = None):
        self.params = params if params is not None else self.Params()

    def check_columns(self, columns: Mapping[str, ColumnInfo]) -> list[str]:
        """Checks between the recipe's params and the features producing its columns, at
        `validate` (no data read): e.g. an image size that must equal the one the cached
        features were computed with. `columns`: logical name -> ColumnInfo (feature, params as
        written; no shape or output metadata yet). Each message returned becomes a spec error
        at the recipe's params."""
        return []

    def train(self, run: TrainRun) -> dict[str, Any]:
        """Train from `run.loader(...)`; save what `evaluate` needs into `run.dir`. Returns the
        final metrics (at least ``loss``)."""
        raise NotImplementedError(f"{type(self).__name__} must define train(run)")

    def evaluate(self, run: EvalRun) -> dict[str, Any]:
        """Evaluate the base model and, when ``run.dir`` is set, the trained one. Returns
        ``{"metrics": {"base": {...}, "tuned": {...}}, "predictions": [{...}, ...]}``: each
        prediction names its row (``"key"``) and holds each model's answer under its name.
        With an ``answer`` (or ``label``) eval column, featurekit adds the training split's
        answer priors (``majority``, and ``type_prior`` with a ``question`` column) and the
        score per question type, scored like ``vqa_accuracy`` (or ``accuracy``) here."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")
