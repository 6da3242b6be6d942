"""``clip.image_embedding`` and ``clip.text_embedding``: one L2-normalized vector a row.

Both load one tower of a CLIP or SigLIP checkpoint (a hub id or a folder), never both: the
image side the vision tower with its projection, the text side the text tower with its own.
Vectors are normalized in float32, then stored as float32 or float16 (``dtype``), so the
cosine distance between two rows is ``1 - a . b``. A row's value does not depend on the rows
batched with it: text is always padded to the model's full length.
"""
from __future__ import annotations

import io
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

import featurekit

from .models import DEFAULT_MODEL, known_dim


class _Embedding(featurekit.Extractor):
    version = "1"
    path_params = ("model",)
    resources = featurekit.Resources(gpus=1, batch_size=64)
    side: str = ""  # "vision" or "text"

    class Params(featurekit.Extractor.Params):
        model: str = Field(DEFAULT_MODEL, description="hub id or local folder of a CLIP or SigLIP checkpoint")
        dim: int | None = Field(None, gt=0, description="embedding width; read from the model's config.json "
                                "(or known for released checkpoints) when omitted")
        dtype: Literal["float32", "float16"] = Field("float32", description="element type of the stored vectors")
        compute_dtype: Literal["float32", "float16", "bfloat16"] = Field(
            "float32", description="precision the tower runs in (float16 halves GPU memory and time)")
        chunk: int = Field(32, gt=0, le=4096, description="rows the tower runs on at once, the last chunk padded to "
                           "this many: a row's value then never depends on the rows batched with it (its last bits "
                           "would), so it is part of the fingerprint")
        device: str = featurekit.runtime_field("auto", description="auto (CUDA when there), cpu, cuda, cuda:1, ...")

    @property
    def dim(self) -> int:
        dim = self.params.dim or known_dim(self.params.model, self.side)
        if dim is None:
            raise ValueError(f"cannot tell the embedding width of {self.params.model!r} without loading it "
                             "(no such folder, not in the hub cache): set params.dim")
        return dim

    def output_type(self) -> pa.DataType:
        return pa.list_(pa.float16() if self.params.dtype == "float16" else pa.float32(), self.dim)

    def output_metadata(self) -> dict[str, str]:
        return {"dtype": self.params.dtype, "normalized": "l2", "metric": "cosine"}

    def setup(self) -> None:
        import torch

        from .models import load_tower
        p = self.params
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if p.device == "auto" else p.device)
        self.tower, self.model_type = load_tower(p.model, self.side, getattr(torch, p.compute_dtype), self.device)
        width = self.tower.config.projection_dim if self.model_type == "clip" else self._siglip_width()
        if width != self.dim:
            raise ValueError(f"{p.model}: the model's embeddings are {width} wide but params.dim says {self.dim}")

    def _siglip_width(self) -> int:
        cfg = self.tower.config
        return getattr(cfg, "projection_size", None) or cfg.hidden_size

    def embed(self, inputs: dict) -> Any:
        """The tower on prepared inputs, `chunk` rows at a time (the last chunk padded with
        copies of its last row): normalized float32 embeddings, [n, dim]."""
        import numpy as np
        import torch
        n = len(next(iter(inputs.values())))
        size = self.params.chunk
        out = []
        with torch.inference_mode():
            for start in range(0, n, size):
                part = {k: _padded(v[start:start + size], size) for k, v in inputs.items()}
                part = {k: (v.to(self.device, self.tower.dtype) if v.is_floating_point() else v.to(self.device))
                        for k, v in part.items()}
                result = self.tower(**part)
                vectors = result.pooler_output if self.model_type != "clip" else (
                    result.image_embeds if self.side == "vision" else result.text_embeds)
                out.append(torch.nn.functional.normalize(vectors.float(), dim=-1)[:min(size, n - start)].cpu().numpy())
        return np.concatenate(out)

    def vectors(self, n: int, good: list[int], values) -> pa.Array:
        """One fixed-size list a row; rows not in `good` (failed) hold zeros, stored as NULL."""
        import numpy as np
        dtype = np.float16 if self.params.dtype == "float16" else np.float32
        flat = np.zeros((n, self.dim), dtype)
        if good:
            flat[good] = values.astype(dtype)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), self.dim)


class ImageEmbedding(_Embedding):
    """The image embedding of a CLIP / SigLIP vision tower, L2-normalized: float[dim] a row.

    Images go through the checkpoint's own image processor (resize, center crop, normalize).
    A blob that does not decode is that row's error.
    """

    name = "clip.image_embedding"
    side = "vision"
    inputs = {"image": "binary"}

    def setup(self) -> None:
        super().setup()
        from transformers import AutoImageProcessor
        self.processor = AutoImageProcessor.from_pretrained(self.params.model)

    def text_embedder(self) -> tuple[str, dict[str, Any]]:
        """Text queries (`featurekit search --text`) embed with the same checkpoint's text tower
        (in float32 whatever the column stores: the query loses nothing)."""
        return TextEmbedding.name, self.params.model_dump(include={"model", "compute_dtype", "device"})

    def __call__(self, batch: pa.RecordBatch) -> featurekit.RowErrors:
        decoded = featurekit.RowErrors.map(decode_image, batch.column("image").to_pylist())
        good = [i for i, e in enumerate(decoded.errors) if e is None]
        values = None
        if good:
            inputs = self.processor(images=[decoded.values[i] for i in good], return_tensors="pt")
            values = self.embed({"pixel_values": inputs["pixel_values"]})
        return featurekit.RowErrors(self.vectors(batch.num_rows, good, values), decoded.errors)


class TextEmbedding(_Embedding):
    """The text embedding of a CLIP / SigLIP text tower, L2-normalized: float[dim] a row.

    Text longer than the model takes (77 tokens for CLIP, 64 for SigLIP) is truncated, as
    CLIP does; ``max_length`` shortens it further. A null is that row's error.
    """

    name = "clip.text_embedding"
    side = "text"
    inputs = {"text": "string"}

    class Params(_Embedding.Params):
        max_length: int | None = Field(None, gt=1, description="tokens a text is padded or truncated to; "
                                       "the model's maximum when omitted")

    def setup(self) -> None:
        super().setup()
        from transformers import AutoTokenizer
        self.tokenizer = AutoTokenizer.from_pretrained(self.params.model)
        most = self.tower.config.max_position_embeddings
        self.length = min(self.params.max_length or most, most)

    def text_embedder(self) -> tuple[str, dict[str, Any]]:
        """A column of text embeddings is queried with text embedded the same way."""
        return self.name, self.params.model_dump(exclude_unset=True)

    def __call__(self, batch: pa.RecordBatch) -> featurekit.RowErrors:
        texts = batch.column("text").to_pylist()
        errors = [None if t is not None else "no text (null)" for t in texts]
        good = [i for i, t in enumerate(texts) if t is not None]
        values = None
        if good:
            enc = self.tokenizer([texts[i] for i in good], padding="max_length", truncation=True,
                                 max_length=self.length, return_tensors="pt")
            values = self.embed(dict(enc))
        return featurekit.RowErrors(self.vectors(batch.num_rows, good, values), errors)


def _padded(tensor, size: int):
    """`tensor` with copies of its last row appended up to `size` rows."""
    import torch
    missing = size - len(tensor)
    return torch.cat([tensor, tensor[-1:].expand(missing, *tensor.shape[1:])]) if missing > 0 else tensor


def decode_image(blob: bytes | None):
    """One image, decoded and in RGB; raises when it cannot be."""
    from PIL import Image
    if blob is None:
        raise ValueError("no image (null)")
    img = Image.open(io.BytesIO(blob))
    return img.convert("RGB")
