"""A 64-bit content hash per row of an Arrow table, computed column-wise with numpy.

Why: keyed ingest must notice that the source row behind a key changed. Hashing rows one
by one in Python costs ~8 s per million rows; this costs a fraction of that, so a source
whose files changed can be compared in full on every apply.

Properties the ingest relies on:
- A row's hash depends on its values and column names, not on column order, chunking,
  offsets width (string ~ large_string) or integer width.
- A null value (or a missing column) contributes nothing: adding a column that is null for
  old rows changes none of their hashes.
- Bytes of a string and items of a list are weighted by random odd 64-bit coefficients
  chosen by position (a fixed table), so reorderings change the hash; random weights
  avoid the algebraic collisions of polynomial hashes (powers of one base). Values are
  then mixed with splitmix64 and their length.
Types numpy cannot see through (unions, maps, ...) fall back to hashing Python values.
"""
from __future__ import annotations

import binascii
import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

U64 = np.uint64
CHUNK_BYTES = 1 << 17  # bytes of variable-width data hashed at a time: temporaries stay in cache
_M1, _M2 = U64(0xBF58476D1CE4E5B9), U64(0x94D049BB133111EB)
_GOLDEN = U64(0x9E3779B97F4A7C15)
_POSITIONS = 1 << 16
_WEIGHTS = np.random.default_rng(20240601).integers(0, 2**63, size=_POSITIONS, dtype=np.int64).astype(U64) \
    * U64(2) + U64(1)  # fixed forever: stored hashes depend on it


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, element-wise (uint64 arithmetic wraps)."""
    x = x.astype(U64, copy=True)
    x ^= x >> U64(30)
    x *= _M1
    x ^= x >> U64(27)
    x *= _M2
    x ^= x >> U64(31)
    return x


def _salt(text: str) -> np.uint64:
    return U64(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little"))


def row_hashes(table: pa.Table | pa.RecordBatch) -> list[str]:
    """One 16-hex-digit hash per row."""
    n = table.num_rows
    total = np.zeros(n, dtype=U64)
    with np.errstate(over="ignore"):
        for name in table.column_names:
            column = table.column(name)
            array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            h = _hash_array(array)
            contrib = _mix(h ^ _salt("column:" + name))
            contrib[_nulls(array)] = U64(0)
            total += contrib
        total = _mix(total ^ _GOLDEN)
    hexed = binascii.hexlify(total.astype(">u8").tobytes()).decode()
    return [hexed[i:i + 16] for i in range(0, 16 * n, 16)]


def _nulls(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.zeros(len(array), dtype=bool)
    return np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _hash_array(array: pa.Array) -> np.ndarray:
    """uint64 per value; the value at a null slot is arbitrary (callers mask it)."""
    t = array.type
    if pa.types.is_dictionary(t):
        return _hash_array(array.dictionary_decode())
    if isinstance(t, pa.ExtensionType):
        return _hash_array(array.storage)
    if pa.types.is_null(t):
        return np.zeros(len(array), dtype=U64)
    if pa.types.is_boolean(t):
        return _mix(np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=U64) + _salt("bool"))
    if pa.types.is_integer(t):
        return _mix(array.cast(pa.int64(), safe=False).fill_null(0).to_numpy().view(U64) ^ _salt("int"))
    if pa.types.is_floating(t):
        values = array.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        values = np.where(np.isnan(values), np.nan, values)  # one NaN, whatever its payload
        return _mix(values.view(U64) ^ _salt("float"))
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return _hash_bytes(array.cast(pa.large_string()), _salt("str"))
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return _hash_bytes(array.cast(pa.large_binary()), _salt("bytes"))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _hash_list(array)
    if pa.types.is_struct(t):
        return _hash_struct(array)
    if _fixed_width(t):
        return _hash_fixed(array)
    return _hash_python(array)


def _fixed_width(t: pa.DataType) -> bool:
    try:
        return t.bit_width % 8 == 0 and t.bit_width > 0
    except ValueError:
        return False


def _hash_fixed(array: pa.Array) -> np.ndarray:
    """Temporal, decimal, fixed-size binary...: their value bytes, hashed as a string."""
    width = array.type.bit_width // 8
    data = np.frombuffer(array.buffers()[1], dtype=np.uint8)[array.offset * width:(array.offset + len(array)) * width]
    offsets = np.arange(len(array) + 1, dtype=np.int64) * width
    return _hash_ranges(data, offsets, _salt("fixed:" + str(array.type)))


def _hash_bytes(array: pa.Array, salt: np.uint64) -> np.ndarray:
    """Strings and binaries: mix every byte with its position in the value, sum per value."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8) if array.buffers()[2] is not None \
        else np.zeros(0, dtype=np.uint8)
    return _hash_ranges(data, offsets, salt)


def _hash_ranges(data: np.ndarray, offsets: np.ndarray, salt: np.uint64) -> np.ndarray:
    """uint64 per range [offsets[i], offsets[i+1]) of `data` bytes, in chunks of rows."""
    n = len(offsets) - 1
    out = np.empty(n, dtype=U64)
    start = 0
    while start < n:
        stop = start + 1
        limit = offsets[start] + CHUNK_BYTES
        stop = max(stop, int(np.searchsorted(offsets, limit, side="right")) - 1)
        stop = min(stop, n)
        out[start:stop] = _hash_chunk(data, offsets[start:stop + 1], salt)
        start = stop
    return out


def _hash_chunk(data: np.ndarray, offsets: np.ndarray, salt: np.uint64) -> np.ndarray:
    lengths = np.diff(offsets)
    first, last = int(offsets[0]), int(offsets[-1])
    weighted = _weights(_positions(offsets - first, lengths, last - first))
    weighted *= data[first:last].astype(U64) + U64(1)
    return _mix(_sum_ranges(weighted, offsets - first, lengths) ^ _mix(lengths.astype(U64) + salt))


def _positions(starts: np.ndarray, lengths: np.ndarray, total: int) -> np.ndarray:
    """For every element of concatenated ranges, its position inside its range."""
    position = np.arange(total, dtype=np.int64)
    position -= np.repeat(starts[:-1], lengths)
    return position


def _weights(position: np.ndarray) -> np.ndarray:
    """A random odd coefficient per position (beyond the table, mixed with the wrap count)."""
    weights = _WEIGHTS[position & (_POSITIONS - 1)]
    if len(position) and position.max() >= _POSITIONS:
        weights ^= _mix((position >> 16).astype(U64)) << U64(1)
    return weights


def _sum_ranges(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    sums = np.zeros(len(lengths), dtype=U64)
    nonempty = lengths > 0
    if nonempty.any():
        sums[nonempty] = np.add.reduceat(values, starts[:-1][nonempty])
    return sums


def _hash_list(array: pa.Array) -> np.ndarray:
    """Lists: each item's hash mixed with its position, summed per list, with the length."""
    lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    items = pc.list_flatten(array)  # the items of non-null lists, in order
    item_hash = _hash_array(items) if len(items) else np.zeros(0, dtype=U64)
    item_hash = np.where(_nulls(items), U64(0x5BD1E995), item_hash) if len(items) else item_hash
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    weighted = _weights(_positions(offsets, lengths, len(items)))
    weighted *= _mix(item_hash ^ _salt("item"))
    return _mix(_sum_ranges(weighted, offsets, lengths) ^ _mix(lengths.astype(U64) + _salt("list")))


def _hash_struct(array: pa.StructArray) -> np.ndarray:
    total = np.zeros(len(array), dtype=U64)
    for i in range(array.type.num_fields):
        name = array.type.field(i).name
        child = array.field(i)
        contrib = _mix(_hash_array(child) ^ _salt("field:" + name))
        contrib[_nulls(child)] = U64(0)
        total += contrib
    return _mix(total ^ _salt("struct"))


def _hash_python(array: pa.Array) -> np.ndarray:
    """Anything else: hash the Python value's repr (slow, rare)."""
    out = [int.from_bytes(hashlib.blake2b(repr(v).encode(), digest_size=8).digest(), "little")
           for v in array.to_pylist()]
    return np.array(out, dtype=U64)
