"""The ``qlora`` training loop: micro-batches from the run's loader, gradient accumulation,
AdamW with a warmup + cosine/linear schedule, checkpoints and resume, the final adapter.

Resume reproduces an uninterrupted run exactly: a checkpoint holds the adapter, optimizer,
scheduler, every RNG and the data position (epoch + the loader's own ``state_dict()``), and
each optimizer step sees the same micro-batches in the same order either way.

Imported when a run starts (it imports torch).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import checkpoint, lm, parallel
from .checkpoint import ADAPTER
from .devices import resolve_device, resolve_dtype
from .params import feature_mismatches

# Params that do not change what a step computes: a resumed run may differ in these.
NOT_TRAJECTORY = ("checkpoint_every", "keep_checkpoints", "eval", "eval_loss_batches", "device")


@dataclass(frozen=True)
class VisionLayout:
    """Per-row shape of the vision column and the image grid it came from."""

    tokens: int
    hidden: int
    grid_thw: tuple[int, int, int]


def vision_layout(columns: Mapping[str, Any], merge_size: int) -> VisionLayout:
    """tokens x hidden and image_grid_thw from the vision column's metadata (written by
    qwen.vision_tower), checked against each other."""
    info = columns["vision"]
    meta = info.metadata or {}
    shape = tuple(info.shape) if info.shape else tuple(json.loads(meta["shape"])) if "shape" in meta else None
    if shape is None or len(shape) != 2:
        raise ValueError(f"vision column {info.column!r}: no [tokens, hidden] shape in its metadata; "
                         "is it a qwen.vision_tower feature?")
    tokens, hidden = shape
    if "image_grid_thw" in meta:
        grid = tuple(json.loads(meta["image_grid_thw"]))
    else:  # a square image: 400 tokens -> 20 x 20 merged -> grid [1, 40, 40]
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"vision column {info.column!r}: {tokens} tokens a row is not a square image and the "
                             "metadata has no image_grid_thw")
        grid = (1, side * merge_size, side * merge_size)
    if grid[0] * grid[1] * grid[2] // merge_size ** 2 != tokens:
        raise ValueError(f"vision column {info.column!r}: image_grid_thw {list(grid)} gives "
                         f"{grid[0] * grid[1] * grid[2] // merge_size ** 2} tokens, the rows hold {tokens}")
    return VisionLayout(tokens, hidden, grid)


def check_features_match(params, columns: Mapping[str, Any]) -> None:
    """Evaluation rebuilds prompts and pixels from `params`; they must be what produced the
    training columns (`params.feature_mismatches`)."""
    problems = feature_mismatches(params, columns)
    if problems:
        raise ValueError(problems[0])


def make_scheduler(optimizer, kind: str, warmup: int, total: int):
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )
    if kind == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    make = get_cosine_schedule_with_warmup if kind == "cosine" else get_linear_schedule_with_warmup
    return make(optimizer, warmup, total)


def peak_memory(device: torch.device) -> float:
    """Bytes: CUDA's peak allocation, or the process's peak resident set on CPU."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    try:  # this process's own peak (VmHWM): ru_maxrss on Linux keeps the high-water mark from before
        # exec, i.e. of the process that started this one (torchrun's Python, a test worker)
        with open("/proc/self/status") as fh:
            return float(next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) * 1024)
    except (OSError, StopIteration, ValueError, IndexError):
        import resource
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


class MicroBatches:
    """An endless stream of the split's batches, epoch after epoch, whose position
    (epoch + the loader's state) can be saved and restored between any two batches."""

    def __init__(self, run, batch_size: int, epoch: int = 0, loader: Mapping[str, Any] | None = None):
        self.run, self.batch_size, self.epoch = run, batch_size, epoch
        self._open(loader)

    def _open(self, state: Mapping[str, Any] | None = None) -> None:
        self.loader = self.run.loader(batch_size=self.batch_size, epoch=self.epoch)
        if state is not None:
            self.loader.load_state_dict(state)
        self._it = iter(self.loader)

    def __next__(self) -> dict[str, Any]:
        for _ in range(2):
            try:
                return next(self._it)
            except StopIteration:
                self.epoch += 1
                self._open()
        from featurekit.errors import UsageError
        raise UsageError(f"the training split has {self.loader.num_rows} row(s): not one batch of {self.batch_size} "
                         "(drop_last); lower params.batch_size")

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "loader": self.loader.state_dict()}


def train_step(model, optimizer, scheduler, window: list[dict], grid, device, max_grad_norm,
               world_size: int = 1) -> float:
    """One optimizer step over `window` (grad_accum micro-batches). The loss is the mean over
    every supervised token of the window, as if it were one batch: micro-batches with longer
    answers weigh more, exactly as they would unsplit. With several ranks the window is every
    rank's micro-batches together (`parallel`)."""
    batches = [lm.to_device(b, device) for b in window]
    n_tokens = sum(int((b["labels"][:, 1:] != lm.IGNORE).sum()) for b in batches)
    if world_size > 1:
        n_tokens = int(parallel.summed([n_tokens], device)[0])
    n_tokens = max(n_tokens, 1)
    total = 0.0
    for batch in batches:
        loss_sum, _ = lm.token_loss(model, batch, grid)
        (loss_sum / n_tokens).backward()
        total += float(loss_sum.detach())
    if world_size > 1:
        parallel.sum_gradients([p for g in optimizer.param_groups for p in g["params"]])
        total = parallel.summed([total], device)[0]
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total / n_tokens


def mean_loss(model, batches: Iterable[Mapping[str, Any]], grid, device, world_size: int = 1) -> float:
    """Eval-mode (no dropout) mean loss per supervised token over `batches` (every rank's)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            loss_sum, n = lm.token_loss(model, lm.to_device(batch, device), grid)
            total, count = total + float(loss_sum), count + n
    model.train(was_training)
    if world_size > 1:
        total, count = parallel.summed([total, count], device)
    return total / max(count, 1)


def first_batches(run, batch_size: int, n: int) -> list[dict]:
    """The split's first `n` batches in table order: what the final eval loss is measured on."""
    out = []
    for batch in run.loader(batch_size=batch_size, shuffle=False, drop_last=False):
        if len(out) == n:
            break
        out.append(batch)
    return out


def trajectory_params(params, total_steps: int, world_size: int = 1) -> dict[str, Any]:
    dumped = params.model_dump(mode="json", exclude=set(NOT_TRAJECTORY))
    return {**dumped, "total_steps": total_steps, **({"world_size": world_size} if world_size > 1 else {})}


@dataclass
class Session:
    """Everything a step changes, built once per run (fresh or resumed)."""

    model: Any          # the transformers model, LoRA layers injected
    peft_model: Any     # its peft wrapper (saves and loads the adapter)
    optimizer: Any
    scheduler: Any
    layout: VisionLayout
    device: torch.device


def build_session(params, run, total: int) -> Session:
    device = resolve_device(params.device, getattr(run, "local_rank", 0))
    dtype = resolve_dtype(params.dtype, device)
    check_features_match(params, run.columns)
    torch.manual_seed(params.seed)
    model = lm.load_language_model(params.model, params.quantization, dtype, device)
    layout = vision_layout(run.columns, model.config.vision_config.spatial_merge_size)
    if layout.hidden != model.config.text_config.hidden_size:
        raise ValueError(f"the vision column holds {layout.hidden}-wide tokens, {params.model}'s language model "
                         f"is {model.config.text_config.hidden_size} wide: features from another model?")
    lora = params.lora
    peft_model = lm.add_lora(model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout,
                             target_modules=lora.target_modules)
    if params.gradient_checkpointing:
        lm.enable_activation_checkpointing(model)
    model.train()  # before any forward: a 4-bit model that ran in eval mode first cannot train (bitsandbytes)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    scheduler = make_scheduler(optimizer, params.schedule, params.warmup_steps, total)
    return Session(model, peft_model, optimizer, scheduler, layout, device)


def save_checkpoint(s: Session, run, params, step: int, total: int, batches: MicroBatches) -> None:
    """Rank 0 writes the checkpoint, with every rank's data position and RNG (`ranks`)."""
    ranks = parallel.gathered(run, {"data": batches.state_dict(), "rng": checkpoint.rng_state()})
    if parallel.is_main(run):
        state = {"step": step, "data": ranks[0]["data"], "optimizer": s.optimizer.state_dict(),
                 "scheduler": s.scheduler.state_dict(), "rng": ranks[0]["rng"],
                 "params": json.dumps(trajectory_params(params, total, len(ranks)), sort_keys=True),
                 **({"ranks": ranks} if len(ranks) > 1 else {})}
        checkpoint.save(Path(run.dir), step, s.peft_model, state, params.keep_checkpoints)
    parallel.barrier(run)


def resume(s: Session, path: Path, params, total: int, rank: int = 0,
           world_size: int = 1) -> tuple[int, dict[str, Any]]:
    """Load a checkpoint into the session; returns (step, this rank's data position)."""
    state = checkpoint.load_state(path)
    if "ranks" in state:  # a data-parallel run: each rank continues from its own position and RNG
        state = {**state, **state["ranks"][rank]} if rank < len(state["ranks"]) else state
    now = trajectory_params(params, total, world_size)
    then = json.loads(state["params"])
    changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
    if changed:
        from featurekit.errors import UsageError
        raise UsageError(f"{path} was written with different {', '.join(changed)} "
                         f"({', '.join(f'{k}={then.get(k)!r}' for k in changed)}): a resumed run would not continue "
                         "the same trajectory; restore them, or train without --resume")
    checkpoint.load_adapter_weights(s.peft_model, path)
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    checkpoint.set_rng_state(state["rng"])
    return int(state["step"]), dict(state["data"])


def train(params, run) -> dict[str, Any]:
    """Train, checkpoint every `checkpoint_every` steps, save the adapter to run.dir/adapter."""
    total = run.steps or params.steps
    last = checkpoint.latest(Path(run.dir)) if run.resume else None
    if run.resume and last is None:  # before loading the model: a resume never silently starts over
        from featurekit.errors import UsageError
        raise UsageError(f"--resume: {run.dir} has no checkpoint to continue from (checkpoint_every: "
                         f"{params.checkpoint_every}); train without --resume to start a new run, or set "
                         "checkpoint_every below the steps a run may stop at")
    s = build_session(params, run, total)
    world = parallel.world_size(run)
    step, position = 0, {}
    if last is not None:
        step, position = resume(s, last, params, total, getattr(run, "rank", 0), world)
    elif parallel.is_main(run):
        checkpoint.clear(Path(run.dir))
    run.set_total(total)
    batches = MicroBatches(run, params.batch_size, **position)
    loss = float("nan")
    while step < total:
        start = time.perf_counter()
        lr = s.scheduler.get_last_lr()[0]
        window = [next(batches) for _ in range(params.grad_accum)]
        loss = train_step(s.model, s.optimizer, s.scheduler, window, s.layout.grid_thw, s.device,
                          params.max_grad_norm, world)
        step += 1
        seconds = time.perf_counter() - start
        run.log(step, loss=loss, lr=lr, samples_per_s=params.batch_size * params.grad_accum * world / seconds,
                peak_mem=peak_memory(s.device))
        if params.checkpoint_every and step % params.checkpoint_every == 0 and step < total:
            save_checkpoint(s, run, params, step, total, batches)
    if parallel.is_main(run):
        s.peft_model.save_pretrained(str(Path(run.dir) / ADAPTER))
    out: dict[str, Any] = {"loss": loss, "steps": total}
    if params.eval_loss_batches:
        out["eval_loss"] = mean_loss(s.model, first_batches(run, params.batch_size, params.eval_loss_batches),
                                     s.layout.grid_thw, s.device, world)
    parallel.barrier(run)
    return out
