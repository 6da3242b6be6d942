"""Qwen2.5-VL's language model without its vision tower, and the loss from cached features.

Training reads the tower's output from the table, so the tower is never built: the
model class here is ``Qwen2_5_VLForConditionalGeneration`` minus ``model.visual``. It
loads through ``from_pretrained`` (bitsandbytes quantization, dtype, tied embeddings and
the checkpoint key renaming come for free); the checkpoint's ``visual.*`` tensors are
unexpected keys, never read. Module paths stay those of the full model
(``model.language_model.layers.N...``), so an adapter trained here loads onto the full VLM.

This module imports torch and transformers at the top: import it inside functions only.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import BitsAndBytesConfig, Qwen2_5_VLForConditionalGeneration
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VLModel,
    Qwen2_5_VLPreTrainedModel,
    Qwen2_5_VLTextModel,
)

from . import logs

IGNORE = -100


class Qwen2_5_VLTextOnlyModel(Qwen2_5_VLModel):
    """`Qwen2_5_VLModel` with no `visual`: the language model and `get_rope_index`."""

    def __init__(self, config):
        Qwen2_5_VLPreTrainedModel.__init__(self, config)  # skips Qwen2_5_VLModel.__init__, which builds the tower
        self.language_model = Qwen2_5_VLTextModel._from_config(config.text_config)
        self.rope_deltas = None
        self.post_init()

    def get_image_features(self, *args, **kwargs):
        raise RuntimeError("this model has no vision tower: it trains from cached vision features")


class Qwen2_5_VLLanguageModel(Qwen2_5_VLForConditionalGeneration):
    """Token embeddings, decoder and LM head of a Qwen2.5-VL checkpoint; nothing visual."""

    _keys_to_ignore_on_load_unexpected = [r"(^|\.)visual\."]

    def __init__(self, config):
        Qwen2_5_VLPreTrainedModel.__init__(self, config)
        self.model = Qwen2_5_VLTextOnlyModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()


# transformers renames old checkpoint keys (model.layers.* -> model.language_model.layers.*) only for
# its own classes; a subclass defined here counts as custom code unless its mapping is registered.
register_checkpoint_conversion_mapping(
    Qwen2_5_VLLanguageModel.__name__,
    get_checkpoint_conversion_mapping("Qwen2_5_VLForConditionalGeneration"), overwrite=True)


# -- loading ---------------------------------------------------------------------------

def quantization_config(kind: str, compute_dtype, skip: Sequence[str] = ()) -> BitsAndBytesConfig | None:
    """bitsandbytes settings for `kind` (none, int8, nf4); `skip` lists modules kept as they are."""
    if kind == "none":
        return None
    extra = {"llm_int8_skip_modules": list(skip)} if skip else {}
    if kind == "int8":
        logs.say_int8_cast_once()
        return BitsAndBytesConfig(load_in_8bit=True, **extra)
    if kind == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype, **extra)
    raise ValueError(f"unknown quantization {kind!r}: none, int8 or nf4")


logs.drop_kernels_notice()  # before bitsandbytes is imported (by quantized loading or peft)


def _load(cls, model: str, quantization: str, dtype, device, skip: Sequence[str] = ()):
    kwargs: dict[str, Any] = {"dtype": dtype}
    qc = quantization_config(quantization, dtype, skip)
    if qc is not None:
        kwargs["quantization_config"] = qc
    if device.type == "cuda":
        kwargs["device_map"] = {"": device.index or 0}
    loaded = cls.from_pretrained(model, **kwargs)
    if device.type != "cuda" and qc is None:   # bitsandbytes models are placed by from_pretrained
        loaded = loaded.to(device)
    return loaded


def load_language_model(model: str, quantization: str, dtype, device) -> Qwen2_5_VLLanguageModel:
    """The language model alone (no tower tensor is ever read), quantized as asked."""
    return _load(Qwen2_5_VLLanguageModel, model, quantization, dtype, device)


def load_full_model(model: str, quantization: str, dtype, device) -> Qwen2_5_VLForConditionalGeneration:
    """The whole VLM, for evaluation on raw images; quantization applies to the language model
    only (the tower stays in `dtype`, like the feature that produced the training hiddens)."""
    return _load(Qwen2_5_VLForConditionalGeneration, model, quantization, dtype, device,
                 skip=("model.visual", "lm_head"))


# -- LoRA ------------------------------------------------------------------------------

def lora_target_pattern(names: Sequence[str]) -> str:
    """A regex for peft matching `names` (q_proj, v_proj, ...) in the language model's layers only:
    the tower also has modules called gate_proj/up_proj/down_proj, which must stay untouched
    when the adapter is loaded onto the full VLM."""
    alternatives = "|".join(re.escape(n) for n in names)
    return rf"model\.language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{alternatives})"


def add_lora(model, *, r: int, alpha: float, dropout: float, target_modules: Sequence[str]):
    """Wrap `model` with a trainable LoRA adapter; the base weights are frozen."""
    from peft import LoraConfig, get_peft_model
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=lora_target_pattern(target_modules))
    with _quiet_peft():
        return get_peft_model(model, config)


def load_adapter(model, folder, *, trainable: bool = False):
    """`model` with the adapter saved in `folder` (by `save_pretrained`)."""
    from peft import PeftModel
    with _quiet_peft():
        return PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)


@contextlib.contextmanager
def _quiet_peft():
    """peft 0.21 calls a transformers property that v5 deprecated: a FutureWarning on every
    run that users can do nothing about. Silenced here only, not process-wide."""
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def enable_activation_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in backward (non-reentrant: the frozen
    embeddings need no grad). transformers 5.24 renamed gradient_ to activation_checkpointing."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


# -- the forward pass from cached features ---------------------------------------------

def base_model(model):
    """The transformers model under a peft wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def to_device(batch: Mapping[str, Any], device) -> dict[str, Any]:
    """The batch on `device`, integer columns as int64 (the table stores int32 / int8)."""
    out = {}
    for name, value in batch.items():
        if torch.is_tensor(value):
            value = value.to(device, non_blocking=True)
            if not value.is_floating_point():
                value = value.long()
        out[name] = value
    return out


def splice(model, input_ids: torch.Tensor, hiddens: torch.Tensor) -> torch.Tensor:
    """Token embeddings with the cached tower output written over the <|image_pad|> positions,
    in order (what the full model does with the tower's pooler_output)."""
    embeds = model.get_input_embeddings()(input_ids)
    pads = input_ids == model.config.image_token_id
    found = pads.sum(dim=1)
    if bool((found != hiddens.shape[1]).any()):
        raise ValueError(f"rows have {found.tolist()} <|image_pad|> tokens but the vision column holds "
                         f"{hiddens.shape[1]} tokens a row: the sft and vision features disagree on image_px")
    return embeds.masked_scatter(pads.unsqueeze(-1), hiddens.to(embeds.dtype))


def mm_token_types(model, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """mm_token_type_ids from the batch, else derived from input_ids (1 on image pads)."""
    if "mm_token_type_ids" in batch:
        return batch["mm_token_type_ids"]
    return (batch["input_ids"] == model.config.image_token_id).to(torch.int32)


def rope_positions(model, batch: Mapping[str, torch.Tensor], grid_thw: Sequence[int]) -> torch.Tensor:
    """The 3D mRoPE positions [3, B, L]: without them v5 silently falls back to 1D positions."""
    input_ids = batch["input_ids"]
    grid = torch.tensor([list(grid_thw)] * input_ids.shape[0], device=input_ids.device)
    positions, _ = model.model.get_rope_index(input_ids, mm_token_type_ids=mm_token_types(model, batch),
                                              image_grid_thw=grid, attention_mask=batch["attention_mask"])
    return positions


def supervised_logits(model, batch: Mapping[str, torch.Tensor], grid_thw: Sequence[int]):
    """(logits, targets) at every position whose next token is supervised, in row order.

    The LM head runs only there (the answer, a handful of tokens a row), not over the
    vocabulary at all 512 positions: the same loss without [B, L, 151936] logits.
    """
    model = base_model(model)
    embeds = splice(model, batch["input_ids"], batch["vision"])
    hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                        position_ids=rope_positions(model, batch, grid_thw),
                                        use_cache=False).last_hidden_state
    targets = batch["labels"][:, 1:]
    supervised = targets != IGNORE
    return model.lm_head(hidden[:, :-1][supervised]).float(), targets[supervised]


def token_loss(model, batch: Mapping[str, torch.Tensor], grid_thw: Sequence[int]) -> tuple[torch.Tensor, int]:
    """(sum of the next-token cross-entropy over supervised tokens, their count): summed, so
    gradient accumulation can divide by the whole window's count."""
    logits, targets = supervised_logits(model, batch, grid_thw)
    return nn.functional.cross_entropy(logits, targets, reduction="sum"), int(targets.numel())
