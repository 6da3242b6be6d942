"""Extractors for the Geneva engine's tests (a module of its own: Ray workers import it by name).

`FKG_CALLS` (an environment variable naming a file): every row an extractor computes is
appended to it, so a test can count what was recomputed, whichever process computed it.
`FKG_HEALED` (a file name): once that file exists, rows containing 'bad' stop failing.
`FKG_NO_SLEEP` (set, in a test's own process): `fkg.flaky` skips its `sleep` param, which only
paces Geneva's workers; a local reference apply then takes no time and writes the same table.
"""
from __future__ import annotations

import os
import time

import pyarrow as pa

import featurekit


def _log(texts) -> None:
    path = os.environ.get("FKG_CALLS")
    if path:
        with open(path, "a") as fh:
            fh.writelines(f"{t}\n" for t in texts)


class Flaky(featurekit.Extractor):
    """Characters of a string; a row containing 'bad' raises (a per-row failure)."""

    name = "fkg.flaky"
    version = "1"
    inputs = {"text": "string"}

    class Params(featurekit.Extractor.Params):
        sleep: float = 0.0  # seconds a row: makes a backfill long enough to interrupt

    def output_type(self) -> pa.DataType:
        return pa.int32()

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        texts = batch.column("text").to_pylist()
        healed = os.path.exists(os.environ.get("FKG_HEALED", "/nonexistent"))
        if not healed and any(t and "bad" in t for t in texts):
            raise ValueError(f"bad row in {len(texts)}")
        if not os.environ.get("FKG_NO_SLEEP"):
            time.sleep(self.params.sleep * len(texts))
        _log(texts)
        return pa.array([None if t is None else len(t) for t in texts], pa.int32())


class Stats(featurekit.Extractor):
    """Two outputs from one call: characters and words."""

    name = "fkg.stats"
    version = "1"
    inputs = {"text": "string"}

    def output_types(self) -> dict[str, pa.DataType]:
        return {"chars": pa.int64(), "words": pa.int32()}

    def __call__(self, batch: pa.RecordBatch):
        texts = batch.column("text").to_pylist()
        return {"chars": pa.array([len(t or "") for t in texts], pa.int64()),
                "words": pa.array([len((t or "").split()) for t in texts], pa.int32())}


class Doubled(featurekit.Extractor):
    """Reads another feature: rows whose upstream failed are blocked, not computed."""

    name = "fkg.doubled"
    version = "1"
    inputs = {"n": "integer"}

    def output_type(self) -> pa.DataType:
        return pa.int64()

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        return pa.array([None if v is None else 2 * v for v in batch.column("n").to_pylist()], pa.int64())


class Shared(featurekit.Extractor):
    """Words of a string; always shares values by input (`reuse_values`), on either engine."""

    name = "fkg.shared"
    version = "1"
    inputs = {"text": "string"}
    reuse_values = True

    def output_type(self) -> pa.DataType:
        return pa.list_(pa.float16(), 4)

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        texts = batch.column("text").to_pylist()
        _log(texts)
        return pa.array([[len(t), t.count(" "), len(set(t)), 1.5] for t in texts], pa.list_(pa.float16(), 4))


class NeedsGpu(featurekit.Extractor):
    name = "fkg.gpu"
    version = "1"
    inputs = {"text": "string"}
    resources = featurekit.Resources(gpus=1)

    def output_type(self) -> pa.DataType:
        return pa.int32()

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        return pa.array([0] * batch.num_rows, pa.int32())


@featurekit.hookimpl
def featurekit_register_extractors():
    return [Flaky, Stats, Doubled, Shared, NeedsGpu]
