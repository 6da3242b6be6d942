"""Extractors that misbehave on purpose, registered as a plugin (in-process through
`registry()`, in subprocesses with FEATUREKIT_PLUGINS=reliability.faults).

Rows are chosen by content: a question containing a marker word makes the extractor
raise, hang, or block, so a test says which rows go wrong by writing them."""
from __future__ import annotations

import ctypes
import hashlib
import math
import signal
import time

import pyarrow as pa

import featurekit


class _Text(featurekit.Extractor):
    inputs = {"text": pa.string()}

    def output_type(self):
        return pa.int32()

    def lengths(self, batch):
        return [len(t or "") for t in batch.column("text").to_pylist()]


class SlowLength(_Text):
    """text.length, slowly: a fill takes long enough to be killed in the middle."""

    name = "faults.slow_length"

    class Params(featurekit.Extractor.Params):
        seconds: float = 0.02  # per call

    def __call__(self, batch):
        time.sleep(self.params.seconds)
        return pa.array(self.lengths(batch), pa.int32())


class Raises(_Text):
    """Raises on rows containing "BOOM"."""

    name = "faults.raises"

    def __call__(self, batch):
        texts = batch.column("text").to_pylist()
        if any("BOOM" in (t or "") for t in texts):
            raise ValueError("BOOM in the row")
        return pa.array(self.lengths(batch), pa.int32())


class Hangs(_Text):
    """Sleeps (interruptibly) for an hour on rows containing "HANG"."""

    name = "faults.hangs"

    def __call__(self, batch):
        if any("HANG" in (t or "") for t in batch.column("text").to_pylist()):
            time.sleep(3600)
        return pa.array(self.lengths(batch), pa.int32())


class Stuck(_Text):
    """On rows containing "STUCK", a C call that holds the GIL with SIGALRM blocked: no
    alarm and no thread of the worker can run; only ending the worker stops it."""

    name = "faults.stuck"

    def __call__(self, batch):
        if any("STUCK" in (t or "") for t in batch.column("text").to_pylist()):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            ctypes.PyDLL(None).sleep(3600)  # PyDLL: the GIL stays held
        return pa.array(self.lengths(batch), pa.int32())


class WrongLength(_Text):
    name = "faults.wrong_length"

    def __call__(self, batch):
        return pa.array(self.lengths(batch)[:-1], pa.int32())


class WrongType(_Text):
    name = "faults.wrong_type"

    def __call__(self, batch):
        return pa.array([str(n) for n in self.lengths(batch)], pa.string())


class NotANumber(featurekit.Extractor):
    """NaN for rows containing "NAN": a legitimate float, stored as such."""

    name = "faults.nan"
    inputs = {"text": pa.string()}

    def output_type(self):
        return pa.float64()

    def __call__(self, batch):
        return pa.array([math.nan if "NAN" in (t or "") else float(len(t or ""))
                         for t in batch.column("text").to_pylist()], pa.float64())


class BadText(featurekit.Extractor):
    """Returns strings whose bytes are not UTF-8: must never reach the table."""

    name = "faults.bad_text"
    inputs = {"text": pa.string()}

    def output_type(self):
        return pa.string()

    def __call__(self, batch):
        n = batch.num_rows
        offsets = pa.array([2 * i for i in range(n + 1)], pa.int32()).buffers()[1]
        return pa.Array.from_buffers(pa.string(), n, [None, offsets, pa.py_buffer(b"\xe9\xe9" * n)])


class ByteSum(featurekit.Extractor):
    """Sum of a blob's bytes: changes whenever the file's content does."""

    name = "faults.byte_sum"
    inputs = {"data": "binary"}

    def output_type(self):
        return pa.int64()

    def __call__(self, batch):
        return pa.array([None if b is None else sum(b) for b in batch.column("data").to_pylist()], pa.int64())


class Bloat(featurekit.Extractor):
    """`times` characters of hash output per row: incompressible text that fills a disk."""

    name = "faults.bloat"
    inputs = {"text": pa.string()}

    class Params(featurekit.Extractor.Params):
        times: int = 1000

    def output_type(self):
        return pa.large_string()

    def __call__(self, batch):
        return pa.array([hashlib.shake_256((t or "").encode()).hexdigest(self.params.times // 2)
                         for t in batch.column("text").to_pylist()], pa.large_string())


EXTRACTORS = [SlowLength, Raises, Hangs, Stuck, WrongLength, WrongType, NotANumber, BadText, ByteSum, Bloat]


@featurekit.hookimpl
def featurekit_register_extractors():
    return list(EXTRACTORS)
