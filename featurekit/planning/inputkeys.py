"""A content hash per row of an extractor's input batch: the key of content-addressed compute.

Why: the same image often appears in several rows (easy-vqa: ~10 questions an image;
TextVQA ~1.6). An extractor's output depends only on its inputs (and on its fingerprint),
so rows with equal inputs can share one computed value. The key must identify the input
values exactly, image bytes included: it is BLAKE2b-128 over the feature's fingerprint, then,
per logical input in name order, the input's name and a tagged encoding of the row's value. 128 bits make an
accidental collision negligible (rowhash's fast 64-bit sums are for change detection, not
for handing one row's value to another).

Equal values hash equal across widths (string ~ large_string, int32 ~ int64, list ~
large_list), so a table whose column was widened keeps its keys.

Cost: rows are first grouped by exact equality in Arrow/numpy (`distinct_rows`: dictionary
encoding of strings and bytes, bit patterns of numbers), and BLAKE2b runs once per distinct
input, not once per row (benchmarks/apply.py section 9 prints the cost of a key); a batch of
a million rows with a tenth distinct hashes 100,000 inputs. Types that cannot be grouped that way (lists, structs,
vectors) are hashed row by row.
"""
from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DIGEST = 16
HASH_TYPE = pa.binary(DIGEST)  # fixed_size_binary(16), the type of `_fkin_<feature>` columns
TIMINGS = 3  # key_seconds: timings taken, the fastest kept
SHORT = 1024  # messages up to this many bytes are assembled column-wise; longer ones stream


def input_hashes(batch: pa.RecordBatch | pa.Table, salt: str = "") -> pa.FixedSizeBinaryArray:
    """One 16-byte key per row of `batch` (columns named by the extractor's logical inputs).

    `salt`: the feature's fingerprint, so a key never outlives the definition it was computed
    for (an engine that rewrites values but not keys cannot leave a key naming old inputs)."""
    names = sorted(batch.column_names)
    arrays = [_array(batch.column(name)) for name in names]
    grouped = distinct_rows(arrays, batch.num_rows)
    if grouped is None:  # not groupable exactly: every row is hashed
        return _hash_rows(names, arrays, salt, batch.num_rows)
    first, inverse = grouped
    index = pa.array(first, pa.int64())
    keys = _hash_rows(names, [a.take(index) for a in arrays], salt, len(first))
    return keys.take(pa.array(inverse, pa.int64()))


def key_seconds(batch: pa.RecordBatch | pa.Table, salt: str = "", rows: int = 8192) -> float:
    """Seconds to key one distinct input like those of `batch`, measured on `rows` of them (its
    rows repeated as needed: keying is column-wise, so a small batch would show its set-up, not
    its cost a row)."""
    if not batch.num_rows:
        return 0.0
    names = sorted(batch.column_names)
    arrays = [_array(batch.column(name)) for name in names]
    per_row = max(1, sum(a.nbytes for a in arrays) // batch.num_rows)
    rows = min(rows, max(batch.num_rows, (16 << 20) // per_row))  # at most ~16 MB of inputs
    copies = max(1, -(-rows // batch.num_rows))
    tiled = [pa.concat_arrays([a] * copies) for a in arrays]
    _hash_rows(names, [a.slice(0, 8) for a in arrays], salt, min(8, batch.num_rows))  # warm up
    fastest = None
    for _ in range(TIMINGS):  # the fastest of a few: a busy machine only adds time
        t0 = time.perf_counter()
        _hash_rows(names, tiled, salt, len(tiled[0]))
        seconds = time.perf_counter() - t0
        fastest = seconds if fastest is None else min(fastest, seconds)
    return fastest / len(tiled[0])


def distinct_count(batch: pa.RecordBatch | pa.Table) -> int:
    """How many distinct rows `batch` has (what `input_hashes` would give distinct keys for)."""
    arrays = [_array(batch.column(name)) for name in batch.column_names]
    grouped = distinct_rows(arrays, batch.num_rows)
    if grouped is None:
        return pc.count_distinct(input_hashes(batch)).as_py()
    return len(grouped[0])


def distinct_rows(arrays: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows grouped by exact equality of all `arrays`: (the first row of each group, each row's
    group), or None when a column's type cannot be grouped without reading it value by value.
    Groups are never coarser than the keys: two rows in one group encode identically (a NULL is
    its own value, never an empty one; numbers are grouped by their bits). Arrow's hash-based
    dictionary encoding does the grouping: no sort, no Python per row."""
    combined, groups = np.zeros(n, dtype=np.int64), 1
    for array in arrays:
        codes = _codes(array)
        if codes is None:
            return None
        codes, k = codes
        combined, groups = _dense(combined * k + codes) if groups > 1 else (codes, k)
    first = np.empty(groups, dtype=np.int64)
    first[combined[::-1]] = np.arange(n - 1, -1, -1)  # the earliest row of each group is written last
    return first, combined


def _dense(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes 0..k-1 for the distinct `values`, in order of first appearance."""
    encoded = pc.dictionary_encode(pa.array(values, pa.int64()))
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)


def _codes(array: pa.Array) -> tuple[np.ndarray, int] | None:
    """(codes, how many): equal codes for identical values, NULL a code of its own."""
    t = array.type
    if pa.types.is_dictionary(t):
        array, t = array.dictionary_decode(), array.type.value_type
    if isinstance(t, pa.ExtensionType):
        array, t = array.storage, array.type.storage_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t):
        values = (array.cast(pa.int8()) if pa.types.is_boolean(t) else array).fill_null(0).to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f":
            values = values.view(f"u{values.dtype.itemsize}")  # by bits: -0.0 is not 0.0, as in the key
        array = pa.array(np.where(np.asarray(array.is_valid().to_numpy(zero_copy_only=False), bool), values, 0)
                         .astype(values.dtype), mask=~np.asarray(array.is_valid().to_numpy(zero_copy_only=False), bool)) \
            if array.null_count else pa.array(values)
    elif not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or
              pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) or pa.types.is_string_view(t) or
              pa.types.is_binary_view(t)):
        return None
    encoded = pc.dictionary_encode(array)
    k = len(encoded.dictionary)
    codes = pc.fill_null(encoded.indices, k).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, k + (1 if array.null_count else 0)  # every code in 0..k-1 (and k) is some row's


def _array(column) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _hash_rows(names: list[str], arrays: list[pa.Array], salt: str, n: int) -> pa.FixedSizeBinaryArray:
    """BLAKE2b-128 of each row's message: the salt, a NUL, then per input its name (JSON) and
    its tagged encoding (`_encode`). Short messages (text, numbers, file names) are assembled
    column-wise by Arrow, then hashed by hashlib in one list comprehension (faster here than
    BLAKE2b done column-wise in numpy, which was tried and removed); long ones (image
    bytes) stream through hashlib where they lie, one row at a time."""
    payload = _payloads(names, arrays, salt, n)
    if payload is None:
        return _hash_rows_streamed(names, arrays, salt, n)
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(message, digest_size=DIGEST).digest() for message in payload.to_pylist()])
    return pa.FixedSizeBinaryArray.from_buffers(HASH_TYPE, n, [None, pa.py_buffer(digests)])


def _payloads(names: list[str], arrays: list[pa.Array], salt: str, n: int) -> pa.LargeBinaryArray | None:
    """Each row's whole message as one binary value, when every message is short (None: not)."""
    limit = SHORT
    prefix = salt.encode() + b"\x00"
    parts: list = [pa.scalar(prefix, pa.large_binary())]
    lengths = np.full(n, len(prefix), dtype=np.int64)
    for name, array in zip(names, arrays):
        tag = json.dumps(name).encode() + b"\x00"
        encoded = _encoded_column(array, limit)
        if encoded is None:
            return None
        lengths += len(tag) + pc.binary_length(encoded).to_numpy(zero_copy_only=False).astype(np.int64)
        if n and lengths.max() > limit:
            return None
        parts += [pa.scalar(tag, pa.large_binary()), encoded]
    if n == 0:
        return pa.array([], pa.large_binary())
    joined = pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary()))
    return joined if isinstance(joined, pa.Array) else pa.array([joined.as_py()] * n, pa.large_binary())


def _encoded_column(array: pa.Array, limit: int) -> pa.LargeBinaryArray | None:
    """`_encode` of every row as a binary column: strings and bytes built by Arrow from their
    buffers, other types row by row; None when a value is longer than `limit`."""
    t = array.type
    if pa.types.is_dictionary(t):
        array, t = array.dictionary_decode(), array.type.value_type
    if isinstance(t, pa.ExtensionType):
        array, t = array.storage, array.type.storage_type
    text = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if text or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or \
            pa.types.is_fixed_size_binary(t):
        values = array.cast(pa.large_binary())
        sizes = pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False).astype("<u8")
        if len(sizes) and int(sizes.max()) > limit:
            return None
        size_bytes = pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), len(sizes), [None, pa.py_buffer(sizes.tobytes())])
        tagged = pc.binary_join_element_wise(pa.scalar(b"s" if text else b"b", pa.large_binary()),
                                             size_bytes.cast(pa.large_binary()), values,
                                             pa.scalar(b"", pa.large_binary()))
        return pc.if_else(values.is_valid(), tagged, pa.scalar(b"\x00", pa.large_binary())) if values.null_count \
            else tagged
    encoded = pa.array(list(_encode(array)), pa.large_binary())
    sizes = pc.binary_length(encoded)
    return None if len(encoded) and pc.max(sizes).as_py() > limit else encoded


def _hash_rows_streamed(names: list[str], arrays: list[pa.Array], salt: str, n: int) -> pa.FixedSizeBinaryArray:
    """`_hash_rows` with hashlib, one row at a time (long values are hashed where they lie)."""
    seed = hashlib.blake2b(salt.encode() + b"\x00", digest_size=DIGEST)
    hashers = [seed.copy() for _ in range(n)]
    for name, array in zip(names, arrays):
        tag = json.dumps(name).encode() + b"\x00"
        for h, part in zip(hashers, _encode(array)):
            h.update(tag)
            h.update(part)
    return pa.array([h.digest() for h in hashers], HASH_TYPE)


def _encode(array: pa.Array):
    """Per row, bytes that identify the value (type class, length and content)."""
    t = array.type
    if pa.types.is_dictionary(t):
        array, t = array.dictionary_decode(), array.type.value_type
    if isinstance(t, pa.ExtensionType):
        array, t = array.storage, array.type.storage_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return _buffers(array.cast(pa.large_string()), b"s")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return _buffers(array.cast(pa.large_binary()), b"b")
    if pa.types.is_fixed_size_binary(t):
        return _buffers(array.cast(pa.large_binary()), b"b")
    if pa.types.is_fixed_size_list(t) and _primitive(t.value_type):
        return _fixed_list(array)
    return _python(array)


def _primitive(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _buffers(array: pa.Array, tag: bytes):
    """Strings and binaries straight from the offsets and data buffers (no copies)."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    data = memoryview(array.buffers()[2] or b"")
    valid = _valid(array)
    for i in range(len(array)):
        if not valid[i]:
            yield b"\x00"
            continue
        start, stop = int(offsets[i]), int(offsets[i + 1])
        yield tag + (stop - start).to_bytes(8, "little") + data[start:stop]


def _fixed_list(array: pa.FixedSizeListArray):
    """A fixed-size list of numbers (an embedding): its values as float64 or int64 bytes."""
    size = array.type.list_size
    items = array.values.slice(array.offset * size, len(array) * size)
    if items.null_count:
        yield from _python(array)
        return
    item = array.type.value_type
    # unsigned stays unsigned (a uint64 of 2**63 or more does not fit an int64); values both
    # types can hold give the same bytes either way
    wide = pa.float64() if pa.types.is_floating(item) else pa.uint64() if pa.types.is_unsigned_integer(item) \
        else pa.int64()
    values = items.cast(wide).to_numpy(zero_copy_only=False)
    valid = _valid(array)
    for i in range(len(array)):
        yield (b"l" + size.to_bytes(8, "little") + values[i * size:(i + 1) * size].tobytes()) if valid[i] else b"\x00"


def _python(array: pa.Array):
    """Anything else (numbers, lists of strings, structs): canonical JSON of the Python value."""
    for value in array.to_pylist():
        yield b"\x00" if value is None else b"j" + json.dumps(value, sort_keys=True, default=repr).encode()


def _valid(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    return np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def small_inputs(types: list[pa.DataType]) -> bool:
    """Inputs cheap to read up front: strings, numbers, booleans (not bytes, lists or structs)."""
    return all(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or
               pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_dictionary(t) for t in types)


def sharing_mode(f, columns) -> str:
    """How an apply gives a feature's rows with equal inputs one value, as far as the spec
    tells: "not shared" (the extractor's `reuse_values = False`), "shared by input key" (bulky
    inputs such as images, a timeout or several workers: keyed piece by piece), "shared"
    (`reuse_values = True`), or "shared if it pays" (small inputs: the apply times the
    extractor on a sample against keying, and says what it chose). `columns`: the project's
    columns by name (`Project.columns`; a type of None is unknown)."""
    forced = getattr(f.extractor_cls, "reuse_values", None)
    if forced is False:
        return "not shared"
    types = [columns[c].type for c in f.inputs.values() if c in columns and columns[c].type is not None]
    if len(types) < len(f.inputs) or not small_inputs(types) or f.resources.timeout or (f.resources.workers or 0) > 1:
        return "shared by input key"
    return "shared" if forced is True else "shared if it pays"
