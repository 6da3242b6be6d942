"""BLAKE2b over many short messages at once, in numpy: the same digests as `hashlib.blake2b`
(RFC 7693; no key, no salt, no personalisation), computed column-wise.

Why: input keys hash one short message per distinct input (a question, a file name, a
number). `hashlib` needs a Python call per message (~3 us each here); the compression
function done on whole columns of words costs well under 1 us a message for messages of a
block or two, with no Python per message. Long messages (image bytes) are cheaper through
`hashlib`, which streams them at C speed: `short_digests` is for messages of at most
`MAX_BLOCKS` blocks, and the caller sends longer ones there.
"""
from __future__ import annotations

import numpy as np

BLOCK = 128
MAX_BLOCKS = 8          # messages up to 1 KiB: longer ones are hashed by hashlib, one call each
CHUNK = 16_384          # messages compressed together (their words fit the CPU's cache)

IV = np.array([0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
               0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179], dtype=np.uint64)
SIGMA = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
         (14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3),
         (11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4),
         (7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8),
         (9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13),
         (2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9),
         (12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11),
         (13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10),
         (6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5),
         (10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0))
ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def short_digests(offsets: np.ndarray, data: np.ndarray, digest_size: int = 16) -> np.ndarray:
    """The BLAKE2b digest of each message `data[offsets[i]:offsets[i+1]]`, as an
    (n, digest_size) uint8 array. Every message must be at most `MAX_BLOCKS` blocks long."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    n = len(lengths)
    out = np.empty((n, digest_size), dtype=np.uint8)
    if n == 0:
        return out
    blocks = np.maximum(1, (lengths + BLOCK - 1) // BLOCK)
    if int(blocks.max()) > MAX_BLOCKS:
        raise ValueError(f"short_digests: a message is longer than {MAX_BLOCKS * BLOCK} bytes")
    padded_data = np.concatenate([np.asarray(data, dtype=np.uint8), np.zeros(MAX_BLOCKS * BLOCK, dtype=np.uint8)])
    for b in np.unique(blocks).tolist():  # messages of one block count together: no padding wasted
        rows = np.flatnonzero(blocks == b)
        step = max(1, CHUNK // b)
        for at in range(0, len(rows), step):
            part = rows[at:at + step]
            padded = _padded(offsets[part], lengths[part], padded_data, b)
            out[part] = _digests(padded, lengths[part], b, digest_size)
    return out


def _padded(starts: np.ndarray, lengths: np.ndarray, data: np.ndarray, blocks: int) -> np.ndarray:
    """The messages in rows of `blocks` blocks, zero-padded (`data` ends with `MAX_BLOCKS`
    blocks of spare bytes, so every row can be gathered whole, then cut at its length)."""
    columns = np.arange(blocks * BLOCK, dtype=np.int64)
    padded = data[starts[:, None] + columns[None, :]]
    padded[columns[None, :] >= lengths[:, None]] = 0
    return padded


def _digests(padded: np.ndarray, lengths: np.ndarray, blocks: int, digest_size: int) -> np.ndarray:
    k = len(lengths)
    h = np.repeat(IV[:, None], k, axis=1)
    h[0] ^= np.uint64(0x01010000 ^ digest_size)
    words = padded.view("<u8").reshape(k, blocks, 16)
    lengths = lengths.astype(np.uint64)
    for j in range(blocks):
        m = np.ascontiguousarray(words[:, j, :].T)   # 16 rows of k words
        counter = np.minimum(lengths, np.uint64((j + 1) * BLOCK))
        _compress(h, m, counter, last=j == blocks - 1)
    return np.ascontiguousarray(h.T).view(np.uint8).reshape(k, 64)[:, :digest_size]


def _compress(h: np.ndarray, m: np.ndarray, counter: np.ndarray, last: bool) -> None:
    """BLAKE2b's F on every column at once (messages under 2**64 bytes: t's high word is 0)."""
    v = np.empty((16, h.shape[1]), dtype=np.uint64)
    v[:8] = h
    v[8:] = IV[:, None]
    v[12] ^= counter
    if last:
        v[14] ^= ALL_ONES
    tmp = np.empty(h.shape[1], dtype=np.uint64)

    def rotr(x: np.ndarray, n: int) -> None:
        np.right_shift(x, np.uint64(n), out=tmp)
        np.left_shift(x, np.uint64(64 - n), out=x)
        np.bitwise_or(x, tmp, out=x)

    def g(a: int, b: int, c: int, d: int, x: np.ndarray, y: np.ndarray) -> None:
        va, vb, vc, vd = v[a], v[b], v[c], v[d]
        for word, r1, r2 in ((x, 32, 24), (y, 16, 63)):  # G's two halves: a word each, its rotations
            va += vb
            va += word
            vd ^= va
            rotr(vd, r1)
            vc += vd
            vb ^= vc
            rotr(vb, r2)

    for r in range(12):
        s = SIGMA[r % 10]
        g(0, 4, 8, 12, m[s[0]], m[s[1]])
        g(1, 5, 9, 13, m[s[2]], m[s[3]])
        g(2, 6, 10, 14, m[s[4]], m[s[5]])
        g(3, 7, 11, 15, m[s[6]], m[s[7]])
        g(0, 5, 10, 15, m[s[8]], m[s[9]])
        g(1, 6, 11, 12, m[s[10]], m[s[11]])
        g(2, 7, 8, 13, m[s[12]], m[s[13]])
        g(3, 4, 9, 14, m[s[14]], m[s[15]])
    h ^= v[:8]
    h ^= v[8:]
