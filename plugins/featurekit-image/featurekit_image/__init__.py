"""featurekit-image: perceptual hashes and cheap image features, one row per image blob.

A blob that is not a decodable image is reported as that row's error (`featurekit.RowErrors`):
featurekit records it in the state column and retries it next apply, every other row of the
batch keeps its value, and no row is computed twice (never a NULL that looks computed).
"""
from __future__ import annotations

import io

import pyarrow as pa
from pydantic import Field

import featurekit

__version__ = "0.1.0"


def _open(blob: bytes):
    from PIL import Image
    if blob is None:
        raise ValueError("no image (null)")
    img = Image.open(io.BytesIO(blob))
    img.load()
    return img


class _HashExtractor(featurekit.Extractor):
    inputs = {"image": "binary"}
    resources = featurekit.Resources(batch_size=256)

    class Params(featurekit.Extractor.Params):
        hash_size: int = Field(8, ge=2, le=8, description="side of the hash grid; hash_size**2 bits (<= 64)")

    def output_type(self) -> pa.DataType:
        return pa.uint64()

    def _hash(self, img):
        raise NotImplementedError

    def __call__(self, batch: pa.RecordBatch) -> featurekit.RowErrors:
        return featurekit.RowErrors.map(lambda blob: int(str(self._hash(_open(blob))), 16),
                                        batch.column("image").to_pylist(), pa.uint64())


class DHash(_HashExtractor):
    """Difference hash (imagehash.dhash) as an unsigned 64-bit integer."""

    name = "image.dhash"

    def _hash(self, img):
        import imagehash
        return imagehash.dhash(img, hash_size=self.params.hash_size)


class PHash(_HashExtractor):
    """Perceptual (DCT) hash (imagehash.phash) as an unsigned 64-bit integer."""

    name = "image.phash"

    def _hash(self, img):
        import imagehash
        return imagehash.phash(img, hash_size=self.params.hash_size)


class ImageSize(featurekit.Extractor):
    """Width and height in pixels (two columns)."""

    name = "image.size"
    inputs = {"image": "binary"}

    def output_types(self) -> dict[str, pa.DataType]:
        return {"width": pa.int32(), "height": pa.int32()}

    def __call__(self, batch: pa.RecordBatch) -> featurekit.RowErrors:
        sizes = featurekit.RowErrors.map(lambda b: _open(b).size, batch.column("image").to_pylist())
        pairs = [s or (None, None) for s in sizes.values]
        return featurekit.RowErrors({"width": pa.array([w for w, _ in pairs], pa.int32()),
                                     "height": pa.array([h for _, h in pairs], pa.int32())}, sizes.errors)


class ImageFormat(featurekit.Extractor):
    """The container format Pillow detects (PNG, JPEG, ...)."""

    name = "image.format"
    inputs = {"image": "binary"}

    def output_type(self) -> pa.DataType:
        return pa.string()

    def __call__(self, batch: pa.RecordBatch) -> featurekit.RowErrors:
        return featurekit.RowErrors.map(lambda b: _open(b).format, batch.column("image").to_pylist(), pa.string())


def hamming(a: int, b: int) -> int:
    """Bits that differ between two hashes."""
    return (a ^ b).bit_count()


@featurekit.hookimpl
def featurekit_register_extractors():
    return [DHash, PHash, ImageSize, ImageFormat]
