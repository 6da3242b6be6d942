"""What we know about Qwen2.5-VL checkpoints without loading them, and how to find files.

A model is a hub id or a local folder; both work the same way. Nothing here imports
torch; transformers and huggingface_hub are imported only when a file must be fetched.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
IMAGE_PAD = "<|image_pad|>"

# The vision_config of the released checkpoints (from their config.json), so that
# validate and plan know output shapes with no download.
QWEN25_VL_3B_VISION = {
    "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
    "in_channels": 3, "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2,
    "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
    "temporal_patch_size": 2,
}
KNOWN_OUT_HIDDEN = {
    "Qwen/Qwen2.5-VL-3B-Instruct": 2048,
    "Qwen/Qwen2.5-VL-7B-Instruct": 3584,
    "Qwen/Qwen2.5-VL-32B-Instruct": 5120,
    "Qwen/Qwen2.5-VL-72B-Instruct": 8192,
}

# Qwen2.5-VL-Instruct's chat template (chat_template.json), images only.
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def is_local(model: str) -> bool:
    return Path(model).expanduser().is_dir()


def missing_model(model: str) -> str | None:
    """Why `model` (a folder, or a hub id) cannot be loaded here, or None when it can (or may:
    a hub id with downloads allowed). Checked before anything heavy is loaded."""
    import os
    if is_local(model):
        return None
    hub_like = not model.startswith((".", "/", "~")) and model.count("/") == 1
    if hub_like:
        try:
            from huggingface_hub import try_to_load_from_cache
            if isinstance(try_to_load_from_cache(model, "config.json"), str):
                return None
        except Exception:  # noqa: BLE001  (not a valid hub id either: said below)
            hub_like = False
    if hub_like and os.environ.get("HF_HUB_OFFLINE", "") in ("", "0", "false", "False"):
        return None  # transformers will download it
    return (f"model {model!r}: no such folder (a relative path is relative to the spec's folder)"
            + (", and no hub model of that id in the local cache (HF_HUB_OFFLINE is set)" if hub_like else "")
            + "; give a model folder, or a hub id such as Qwen/Qwen2.5-VL-3B-Instruct")


def local_config(model: str) -> dict[str, Any] | None:
    path = Path(model).expanduser() / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


def out_hidden_size(model: str) -> int | None:
    """The merger's output width, from a local config.json or the known checkpoints."""
    cfg = local_config(model)
    if cfg is not None:
        return int(cfg["vision_config"]["out_hidden_size"])
    return KNOWN_OUT_HIDDEN.get(model)


def image_tokens(image_px: int, patch_size: int = 14, merge_size: int = 2) -> int:
    """Merged tokens for a square image: 560 px -> a 40 x 40 patch grid -> 400 tokens."""
    side = image_px // (patch_size * merge_size)
    return side * side


def fetch(model: str, filename: str) -> Path | None:
    """A file of the model: from the folder, or the hub cache/download. None if absent."""
    if is_local(model):
        path = Path(model).expanduser() / filename
        return path if path.exists() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError
    try:
        return Path(hf_hub_download(model, filename))
    except EntryNotFoundError:
        return None


def weight_files(model: str, prefixes: tuple[str, ...]) -> list[Path]:
    """Only the safetensors shards holding weights under `prefixes` (not the language model's)."""
    index = fetch(model, "model.safetensors.index.json")
    if index is None:
        single = fetch(model, "model.safetensors")
        if single is None:
            raise FileNotFoundError(f"{model}: no model.safetensors or model.safetensors.index.json")
        return [single]
    weight_map = json.loads(index.read_text())["weight_map"]
    shards = sorted({f for k, f in weight_map.items() if k.startswith(prefixes)})
    return [fetch(model, s) for s in shards]
