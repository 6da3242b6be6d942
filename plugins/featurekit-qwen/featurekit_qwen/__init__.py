"""featurekit-qwen: Qwen2.5-VL features for featurekit (tier 3).

- ``qwen.vision_tower``: the frozen vision tower's output after the merger
  (``pooler_output``), one fp16 row of tokens x hidden per image.
- ``qwen.sft_tokens``: ``input_ids``, ``attention_mask``, ``labels`` and
  ``mm_token_type_ids`` at a fixed length, with exactly as many ``<|image_pad|>`` as the
  tower produces.
- ``qlora`` (trainer, ``featurekit-qwen[train]``): LoRA / QLoRA on the language model from
  those columns, the tower never loaded; evaluated with the full VLM on raw images.

Nothing here imports torch or transformers at import time: models load in ``setup()``.
"""
from __future__ import annotations

import featurekit

from .sft import SftTokens
from .trainer import QLoraTrainer
from .vision import VisionTower

__version__ = "0.1.0"


@featurekit.hookimpl
def featurekit_register_extractors():
    return [VisionTower, SftTokens]


@featurekit.hookimpl
def featurekit_register_trainers():
    return [QLoraTrainer]
