"""A tiny random CLIP (or SigLIP) in a folder, for tests and examples: the real architecture,
the real processor classes, random weights, no download.

The tokenizer is CLIP's byte-level BPE with a vocabulary of single bytes and no merges (every
word is split into its characters): built here, so nothing is fetched.
"""
from __future__ import annotations

import json
from pathlib import Path

TINY_NOTE = "tiny random CLIP-architecture model (not OpenAI's weights): neighbours show the plumbing, not meaning"
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=77)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   image_size=32, patch_size=8)


def byte_vocab() -> dict[str, int]:
    """GPT-2's printable stand-ins for the 256 bytes, each alone and word-final (``</w>``),
    then CLIP's two special tokens."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shift = 0
    chars = {}
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + shift)
            shift += 1
    symbols = [chars[b] for b in range(256)]
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


def tiny_tokenizer():
    from transformers import CLIPTokenizer
    return CLIPTokenizer(vocab=byte_vocab(), merges=[], model_max_length=77)  # as the real ones


def build_tiny_clip(folder: str | Path, seed: int = 0, dim: int = 32) -> Path:
    """Write config, weights, tokenizer and image processor of a tiny CLIP to `folder`
    (32 x 32 px images, `dim`-wide embeddings)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    CLIPModel(CLIPConfig(text_config=_text_config(tokenizer), vision_config=TINY_VISION, projection_dim=dim)).save_pretrained(folder)
    side = TINY_VISION["image_size"]
    images = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    _note(folder)
    return folder


def build_tiny_siglip(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random SigLIP (its image processor, CLIP's byte tokenizer: SigLIP's own needs
    a SentencePiece file). Embeddings are as wide as the towers (32)."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel
    from transformers.utils import logging

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    was = logging.get_verbosity()
    logging.set_verbosity_error()  # SigLIP's default text config names token ids our vocabulary lacks
    try:
        config = SiglipConfig(text_config=_text_config(tokenizer, max_position_embeddings=64), vision_config=TINY_VISION)
    finally:
        logging.set_verbosity(was)
    SiglipModel(config).save_pretrained(folder)
    side = TINY_VISION["image_size"]
    SiglipImageProcessorPil(size={"height": side, "width": side}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _note(folder)
    return folder


def _text_config(tokenizer, **changes) -> dict:
    vocab = tokenizer.get_vocab()
    return dict(TINY_TEXT, vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"], **changes)


def _note(folder: Path) -> None:
    path = folder / "config.json"  # every output that names this model says what it is
    path.write_text(json.dumps({**json.loads(path.read_text()), "featurekit_note": TINY_NOTE}, indent=2))
