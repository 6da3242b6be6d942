"""Toy vector extractors for the search tests: a text's (or a blob's) vector is a fixed random
unit vector seeded by its bytes, so equal inputs give equal vectors and the exact nearest rows
can be computed independently with numpy (`toy_vector`)."""
from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

import featurekit


def toy_vector(data: bytes, dim: int) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(data)).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class _Vec(featurekit.Extractor):
    class Params(featurekit.Extractor.Params):
        dim: int = 8

    def output_type(self):
        return pa.list_(pa.float32(), self.params.dim)

    def _vectors(self, items, encode):
        return featurekit.RowErrors.map(lambda x: toy_vector(encode(x), self.params.dim).tolist()
                                        if x is not None else _null(), items, self.output_type())


def _null():
    raise ValueError("null input")


class TextVec(_Vec):
    name = "toyvec.text"
    inputs = {"text": "string"}

    def text_embedder(self):
        return self.name, self.params.model_dump()

    def __call__(self, batch):
        return self._vectors(batch.column("text").to_pylist(), str.encode)


class BlobVec(_Vec):
    name = "toyvec.blob"
    inputs = {"image": "binary"}

    def text_embedder(self):
        return TextVec.name, {"dim": self.params.dim}

    def __call__(self, batch):
        return self._vectors(batch.column("image").to_pylist(), bytes)


class MuteVec(TextVec):
    """Vectors with no text side."""
    name = "toyvec.mute"

    def text_embedder(self):
        return None


class OrphanVec(TextVec):
    """Names a text side no plugin registers."""
    name = "toyvec.orphan"

    def text_embedder(self):
        return "toyvec.absent", {}


@featurekit.hookimpl
def featurekit_register_extractors():
    return [TextVec, BlobVec, MuteVec, OrphanVec]
