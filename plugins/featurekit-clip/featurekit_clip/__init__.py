"""featurekit-clip: CLIP / SigLIP embeddings for featurekit (tier 3).

- ``clip.image_embedding``: the vision tower's image embedding, L2-normalized, float[dim].
- ``clip.text_embedding``: the text tower's text embedding, L2-normalized, float[dim].

An image-embedding column is searched with text through the same checkpoint's text tower
(`featurekit search SPEC --column clip_image --text "a red stop sign"`). Nothing here imports
torch or transformers at import time: models load in ``setup()``.
"""
from __future__ import annotations

import featurekit

from .embedding import ImageEmbedding, TextEmbedding

__version__ = "0.1.0"


@featurekit.hookimpl
def featurekit_register_extractors():
    return [ImageEmbedding, TextEmbedding]
