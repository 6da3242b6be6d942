"""The ``qlora`` trainer's params, and the check that they match the features it trains on."""
from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from .models import DEFAULT_MODEL


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraParams(_Strict):
    r: int = Field(16, gt=0, description="adapter rank")
    alpha: float = Field(32, gt=0, description="scaling numerator: updates are scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj"), min_length=1,
        description="projections of the language model's layers to adapt (q_proj, k_proj, v_proj, o_proj, "
                    "gate_proj, up_proj, down_proj); the vision tower is never adapted")


class EvalParams(_Strict):
    max_new_tokens: int = Field(16, gt=0, description="greedy decoding stops here or at <|im_end|>")
    batch_size: int = Field(8, gt=0, description="questions generated together (left-padded)")


class QLoraParams(_Strict):
    model: str = Field(DEFAULT_MODEL, description="hub id or local folder: the checkpoint the features came from")
    quantization: Literal["none", "int8", "nf4"] = Field(
        "nf4", description="the frozen language model's weights: nf4 = QLoRA (bitsandbytes 4-bit), int8, or none")
    lora: LoraParams = Field(LoraParams(), description="the adapter: r, alpha, dropout, target_modules")
    batch_size: int = Field(2, gt=0, description="rows per micro-batch")
    grad_accum: int = Field(8, gt=0, description="micro-batches per optimizer step")
    steps: int = Field(300, gt=0, description="optimizer steps (`featurekit train --steps` overrides)")
    lr: float = Field(2e-4, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on the adapter")
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping; null: none")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="decay after the warmup")
    warmup_steps: int = Field(0, ge=0, description="linear warmup from 0 to lr")
    seed: int = Field(0, description="seeds the adapter's initialisation and dropout (batch order is the run's)")
    checkpoint_every: int = Field(100, ge=0, description="save a resumable checkpoint every N steps; 0: never")
    keep_checkpoints: int = Field(2, gt=0, description="the most recent checkpoints kept")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward: less memory, slower")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="compute dtype; auto: bfloat16 on CUDA, float32 on CPU")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")
    eval_loss_batches: int = Field(8, ge=0, description="batches of the split, in table order, the final "
                                                        "eval-mode loss is measured on")
    image_px: int = Field(560, gt=0, description="evaluation resizes images to this square: the qwen.vision_tower "
                                                  "feature's image_px (checked against it when training)")
    system_prompt: str | None = Field(None, description="the qwen.sft_tokens feature's system_prompt (checked)")
    eval: EvalParams = Field(EvalParams(), description="`featurekit eval` settings")


INT_LIST = pa.list_(pa.int64())


def feature_mismatches(params, columns) -> list[str]:
    """Evaluation rebuilds prompts and pixels from `params`; they must be what produced the
    training columns, or the tuned model is measured on inputs it never saw."""
    from .sft import SftTokens
    from .vision import VisionTower
    pairs = ((columns.get("vision"), VisionTower, "image_px"),
             (columns.get("input_ids"), SftTokens, "system_prompt"),
             (columns.get("input_ids"), SftTokens, "image_px"))
    problems = []
    for info, extractor, key in pairs:
        if info is None or info.feature is None:
            continue
        if getattr(info, "extractor", None) not in (None, extractor.name):
            continue  # a column another extractor made: its params are not ours to compare
        feature_params = extractor.Params
        written = info.params.get(key, feature_params.model_fields[key].default)
        if written != getattr(params, key):
            problems.append(f"params.{key} is {getattr(params, key)!r} but feature {info.feature!r} was computed "
                            f"with {key} {written!r}: set params.{key}: {written!r} so evaluation matches training")
    return problems
