"""The column-wise BLAKE2b against hashlib's, at the block boundaries and past them."""
import hashlib

import numpy as np
import pyarrow as pa
import pytest

from featurekit.planning import inputkeys
from featurekit.planning.blake2 import BLOCK, MAX_BLOCKS, short_digests


def _messages(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.bytes(int(k)) for k in lengths]


def _digests(messages, size=16):
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in messages])]).astype(np.int64)
    data = np.frombuffer(b"".join(messages), dtype=np.uint8)
    return [bytes(d) for d in short_digests(offsets, data, size)]


@pytest.mark.parametrize("size", [16, 32, 64])
def test_equals_hashlib_at_every_block_boundary(size):
    edges = [0, 1, 63, 64, 127, 128, 129, 255, 256, 257, 383, 384, 385, MAX_BLOCKS * BLOCK - 1, MAX_BLOCKS * BLOCK]
    lengths = edges + list(np.random.default_rng(1).integers(0, MAX_BLOCKS * BLOCK + 1, 3000))
    messages = _messages(lengths)
    assert _digests(messages, size) == [hashlib.blake2b(m, digest_size=size).digest() for m in messages]


def test_a_message_over_the_limit_is_refused_and_none_is_fine():
    assert _digests([]) == []
    with pytest.raises(ValueError, match="longer than"):
        _digests([b"x" * (MAX_BLOCKS * BLOCK + 1)])


def test_input_keys_are_the_same_whichever_way_they_are_hashed():
    """Column-wise (short messages) and hashlib row by row (`_hash_rows_streamed`, also the
    path of long values) give the same keys, so keys stored by either match."""
    cases = [
        (["text"], [pa.array(["a", None, "", "what is on sign 3?", "é" * 20, "x" * 300])]),
        (["a", "b"], [pa.array([1, None, 3, 4, 5, 6]), pa.array([b"\x00", b"", None, b"zz" * 100, b"q", b"r"])]),
        (["v"], [pa.array([[1.0, 2.0], [3.0, 4.0], None, [0.0, -0.0], [1, 2], [5, 6]], pa.list_(pa.float32(), 2))]),
        (["l"], [pa.array([["a"], [], None, ["b", "c"], ["a"], ["x"]])]),
        (["s"], [pa.array(["short"] * 5 + ["y" * 2000])]),  # one long value: the whole batch streams
        (["t"], [pa.array([f"q{i}" for i in range(100)]).slice(7, 6)]),  # a slice: offsets not at 0
    ]
    for names, arrays in cases:
        n = len(arrays[0])
        assert inputkeys._hash_rows(names, arrays, "fp", n).equals(inputkeys._hash_rows_streamed(names, arrays, "fp", n))
