"""Resumable checkpoints in the run folder.

    <run.dir>/checkpoints/step-00000040/
        adapter_model.safetensors, adapter_config.json   a loadable peft adapter
        state.pt                                         optimizer, scheduler, RNG, data position,
                                                         step, and the params that shape the trajectory

A checkpoint is written to ``step-N.tmp`` and renamed when complete, so a run killed while
saving leaves the previous one as the latest. ``state.pt`` holds only tensors and plain
values: it loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch

FOLDER = "checkpoints"
PREFIX = "step-"
STATE = "state.pt"
ADAPTER = "adapter"  # the finished run's adapter, in the run folder (loadable by peft)
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def _root(run_dir: Path) -> Path:
    return Path(run_dir) / FOLDER


def complete(run_dir: Path) -> list[Path]:
    """Finished checkpoints, oldest first."""
    root = _root(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir()
             if p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit() and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest(run_dir: Path) -> Path | None:
    found = complete(run_dir)
    return found[-1] if found else None


def clear(run_dir: Path) -> None:
    """Forget checkpoints of an earlier run in this folder, so a later resume cannot mix runs."""
    root = _root(run_dir)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(PREFIX):
                shutil.rmtree(p)


def save(run_dir: Path, step: int, peft_model, state: dict[str, Any], keep: int) -> Path:
    root = _root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    peft_model.save_pretrained(str(tmp))
    torch.save(state, tmp / STATE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in complete(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(Path(path) / STATE, weights_only=True)


def load_adapter_weights(peft_model, path: Path) -> None:
    """Overwrite the adapter's weights with the checkpoint's (strictly: every key must match)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    result = set_peft_model_state_dict(peft_model, load_file(str(Path(path) / ADAPTER_WEIGHTS)))
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ValueError(f"{path}: adapter does not match the model: missing {missing[:3]}, "
                         f"unexpected {list(result.unexpected_keys)[:3]}")


def rng_state() -> dict[str, Any]:
    """Every RNG training draws from (dropout on CPU or CUDA; Python's for anything else)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
