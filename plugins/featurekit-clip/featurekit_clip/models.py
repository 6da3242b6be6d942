"""What we know about CLIP / SigLIP checkpoints without loading them, and how to load one tower.

A model is a hub id or a local folder. The embedding width must be known at `validate` /
`plan` time (it is the column's type), so it comes from a local ``config.json``, the hub
cache, the released checkpoints listed here, or the ``dim`` param. Nothing here imports
torch at import time.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "openai/clip-vit-base-patch32"

# Embedding widths of released checkpoints (their config.json), so that validate and plan
# know the column type with no download.
KNOWN_DIMS = {
    "openai/clip-vit-base-patch32": 512,
    "openai/clip-vit-base-patch16": 512,
    "openai/clip-vit-large-patch14": 768,
    "openai/clip-vit-large-patch14-336": 768,
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K": 512,
    "laion/CLIP-ViT-L-14-laion2B-s32B-b82K": 768,
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": 1024,
    "google/siglip-base-patch16-224": 768,
    "google/siglip-base-patch16-384": 768,
    "google/siglip-large-patch16-384": 1024,
    "google/siglip-so400m-patch14-384": 1152,
}

# model_type -> (vision class, text class): the tower alone is loaded, never both.
# CLIP projects the pooled output (image_embeds / text_embeds); SigLIP's pooler_output is the
# embedding (its head is part of the tower).
TOWERS = {
    "clip": ("CLIPVisionModelWithProjection", "CLIPTextModelWithProjection"),
    "siglip": ("SiglipVisionModel", "SiglipTextModel"),
}


def config_of(model: str) -> dict[str, Any] | None:
    """config.json of a local folder, or of a hub model already in the local cache; None otherwise."""
    path = Path(model).expanduser() / "config.json"
    if path.is_file():
        return json.loads(path.read_text())
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        try:
            from huggingface_hub import try_to_load_from_cache
            cached = try_to_load_from_cache(model, "config.json")
        except Exception:  # noqa: BLE001  (not a hub id: said by the caller)
            return None
        if isinstance(cached, str):
            return json.loads(Path(cached).read_text())
    return None


def embedding_dim(config: dict[str, Any], side: str) -> int:
    """The width of the image ('vision') or text ('text') embedding a config describes."""
    kind = config.get("model_type")
    if kind == "clip":
        return int(config.get("projection_dim", 512))
    if kind == "siglip":
        sub = config.get(f"{side}_config") or {}
        if side == "text" and sub.get("projection_size"):
            return int(sub["projection_size"])
        return int(sub.get("hidden_size", 768))
    raise ValueError(f"model_type {kind!r} is not supported: clip.* extractors take CLIP or SigLIP models "
                     f"({', '.join(TOWERS)})")


def known_dim(model: str, side: str) -> int | None:
    config = config_of(model)
    if config is not None:
        return embedding_dim(config, side)
    return KNOWN_DIMS.get(model)


def missing_model(model: str) -> str | None:
    """Why `model` cannot be loaded here (no such folder, or a hub id not cached while offline),
    or None when it can (or may: a hub id with downloads allowed)."""
    import os
    if Path(model).expanduser().is_dir() or config_of(model) is not None:
        return None
    hub_like = model.count("/") == 1 and not model.startswith((".", "/", "~"))
    if hub_like and os.environ.get("HF_HUB_OFFLINE", "") in ("", "0", "false", "False"):
        return None
    return (f"model {model!r}: no such folder (a relative path is relative to the spec's folder)"
            + (", and no hub model of that id in the local cache (HF_HUB_OFFLINE is set)" if hub_like else "")
            + f"; give a model folder, or a hub id such as {DEFAULT_MODEL}")


def load_tower(model: str, side: str, dtype, device):
    """The vision or text tower alone (with its projection), from the full checkpoint; a weight
    of that tower missing from it is an error (never a random initialisation). Eval mode."""
    import transformers
    from transformers.utils import logging
    problem = missing_model(model)
    if problem:
        raise FileNotFoundError(problem)
    config = transformers.AutoConfig.from_pretrained(model)
    if config.model_type not in TOWERS:
        embedding_dim({"model_type": config.model_type}, side)  # raises: not supported
    sub = config.vision_config if side == "vision" else config.text_config
    if config.model_type == "clip":
        sub.projection_dim = config.projection_dim  # a top-level key of CLIPConfig
    cls = getattr(transformers, TOWERS[config.model_type][0 if side == "vision" else 1])
    was, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()  # the other tower's weights are "unexpected" here, by design
    logging.disable_progress_bar()  # featurekit reports progress itself
    try:
        tower, info = cls.from_pretrained(model, config=sub, dtype=dtype, output_loading_info=True)
    finally:
        logging.set_verbosity(was)
        if bars:
            logging.enable_progress_bar()
    problems = [*info.get("missing_keys", ()), *info.get("mismatched_keys", ())]
    if problems:
        raise ValueError(f"{model}: {side} weights missing or of another shape in the checkpoint: "
                         f"{sorted(map(str, problems))[:5]}")
    return tower.to(device).eval(), config.model_type
