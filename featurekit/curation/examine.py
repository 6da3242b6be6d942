"""Decide slice membership for rows not examined yet, given the rows examined before.

Pure computation, no Lance: the engine reads the columns, this decides, the engine writes.
A full recompute is the same call with no examined rows.

Dedupe: rows are duplicates when they agree on every ``dedupe.by`` column and (with
``near``) their hashes differ in at most ``max_distance`` bits, or their vectors are within
``max_cosine_distance`` (`vectordup`); duplicates chain into
groups. A group keeps one row: an existing keeper if the group has one (a row appended
later never displaces a keeper), else its earliest row (row-address order = arrival order).

Split: rows sharing the ``split.by`` value, or near-duplicate images (any ``by`` values),
form one split group. A group with rows already assigned keeps their split (existing rows
never move); a new group goes where its earliest row's value hashes to. When new rows
bridge groups already in different splits, nothing moves and the bridge is reported as a leak.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .neardup import components, near_pairs
from .split import split_index
from .vectordup import near_vector_pairs

DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
WHERE = "where"
FROM = "from"
BLOCKED = "blocked"
STEPS = (FROM, WHERE, DUPLICATE, NEAR_DUPLICATE)
NONE = np.iinfo(np.int64).max


@dataclass
class Rows:
    """Rows in row-address order (arrival order), with what dedupe and split compare."""

    keys: pa.Array                      # row keys, for keeper references and reports
    exact: np.ndarray | None = None     # codes of the dedupe.by values: equal code, equal values
    hashes: np.ndarray | None = None    # uint64 near-duplicate hashes
    split_codes: np.ndarray | None = None  # codes of the split.by values
    split_values: list | None = None    # the split.by values themselves (hashed for new groups)
    parent_split: list | None = None    # `from:` slice's split per row (inherited without split:)
    hash_valid: np.ndarray | None = None  # False where a row has no hash/vector (near nothing); None: all have one
    vectors: np.ndarray | None = None   # (rows, dim) near-duplicate vectors (float16/32/64 as stored)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Examined(Rows):
    """Rows examined before with this definition that passed `where`: members and removed duplicates."""

    split: np.ndarray = field(default_factory=lambda: np.zeros(0, object))  # each row's split group's split
    keeper: pa.Array | None = None      # the key of each row's keeper (a member: its own)
    member: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


@dataclass
class Outcome:
    """Per new row: kept or not, its split group's split, its keeper's key (its own when
    kept), and whether it was removed as a near (not exact) duplicate."""

    kept: np.ndarray
    split: np.ndarray          # object array of split names
    keeper: pa.Array           # keys as text
    near: np.ndarray
    leaks: list[dict] = field(default_factory=list)  # split groups new rows bridged across splits


@dataclass(frozen=True)
class Rules:
    by: tuple[str, ...] = ()
    near_distance: int | None = None
    near_cosine: float | None = None  # vectors within this cosine distance are near (instead of hashes)
    split_seed: int | None = None
    fractions: dict | None = None   # None: no split step
    default_split: str = "all"

    @property
    def has_near(self) -> bool:
        return self.near_distance is not None or self.near_cosine is not None


def examine(new: Rows, old: Examined, rules: Rules) -> Outcome:
    n_old, n_new = len(old), len(new)
    total = n_old + n_new
    # node ids: examined rows first (they win ties), then new rows; each part in arrival order
    near = _near_edges(new, old, rules) if rules.has_near else None
    keepers = _keepers(new, old, rules, total, near)[n_old:]
    splits, leaks = _splits(new, old, rules, total, near)
    kept = keepers == np.arange(n_old, total)
    all_keepers = pa.concat_arrays([old.keeper.cast(pa.string()), new.keys]) if n_old else new.keys
    keeper = all_keepers.take(pa.array(keepers))
    if rules.near_cosine is not None:
        all_vectors = np.concatenate([old.vectors, new.vectors]) if n_old else new.vectors
        near_removed = ~kept & np.any(all_vectors[keepers] != new.vectors, axis=1)
    elif rules.near_distance is not None:
        all_hashes = np.concatenate([old.hashes, new.hashes]) if n_old else new.hashes
        near_removed = ~kept & (all_hashes[keepers] != new.hashes)
    else:
        near_removed = np.zeros(n_new, bool)
    return Outcome(kept, np.asarray(splits, dtype=object), keeper, near_removed, leaks)


def _keepers(new: Rows, old: Examined, rules: Rules, total: int, near) -> np.ndarray:
    """For every node, the node of its group's keeper (itself when kept)."""
    n_old = len(old)
    if not rules.by and not rules.has_near:
        return np.arange(total)
    if near is not None:
        i, j = near
        if rules.by:
            codes = np.concatenate([old.exact, new.exact]) if n_old else new.exact
            same = codes[i] == codes[j]
            i, j = i[same], j[same]
    else:
        codes = np.concatenate([old.exact, new.exact]) if n_old else new.exact
        i, j = star_edges(codes)
    labels = components(total, i, j)
    # an existing group's keeper: the earliest of its members, or of the keepers its removed rows name
    anchor = np.full(total, NONE, np.int64)
    if n_old:
        # examined rows: members anchor at themselves, removed rows at the member they name
        member_nodes = np.flatnonzero(old.member)
        idx = pc.index_in(old.keeper, value_set=old.keys.filter(pa.array(old.member)))
        named = idx.to_numpy(zero_copy_only=False)
        valid = ~np.asarray(pc.is_null(idx).to_numpy(zero_copy_only=False), bool)
        anchor[:n_old][valid] = member_nodes[named[valid].astype(np.int64)]
    best = np.full(total, NONE, np.int64)
    np.minimum.at(best, labels, anchor)
    group = best[labels]
    return np.where(group == NONE, labels, group)


def _splits(new: Rows, old: Examined, rules: Rules, total: int, near) -> tuple[list, list[dict]]:
    """The split of every new row's split group, and the leaks new rows create."""
    n_old, n_new = len(old), len(new)
    if rules.fractions is None:
        return (list(new.parent_split) if new.parent_split is not None else [rules.default_split] * n_new), []
    codes = np.concatenate([old.split_codes, new.split_codes]) if n_old else new.split_codes
    i, j = star_edges(codes)
    if near is not None:
        i, j = np.concatenate([i, near[0]]), np.concatenate([j, near[1]])
    labels = components(total, i, j)
    anchor = np.full(total, NONE, np.int64)
    anchor[:n_old] = np.arange(n_old)
    first_old = np.full(total, NONE, np.int64)
    np.minimum.at(first_old, labels, anchor)
    names = list(rules.fractions)
    new_labels = labels[n_old:]
    fresh = first_old[new_labels] == NONE
    out: list = [None] * n_new
    if fresh.any():
        heads = np.unique(new_labels[fresh])
        idx = split_index([new.split_values[h - n_old] for h in heads], rules.split_seed, rules.fractions)
        head_split = dict(zip(heads.tolist(), (names[x] for x in idx)))
        for k in np.flatnonzero(fresh):
            out[k] = head_split[int(new_labels[k])]
    for k in np.flatnonzero(~fresh):
        out[k] = old.split[int(first_old[new_labels[k]])]
    return out, _leaks(new, old, labels, fresh)


def _leaks(new: Rows, old: Examined, labels: np.ndarray, fresh: np.ndarray) -> list[dict]:
    """Split groups that new rows joined and whose existing rows sit in more than one split."""
    n_old = len(old)
    joined = np.unique(labels[n_old:][~fresh])
    if not len(joined) or not n_old:
        return []
    old_labels = labels[:n_old]
    in_joined = np.isin(old_labels, joined)
    spans: dict[int, set] = {}
    for n in np.flatnonzero(in_joined):
        spans.setdefault(int(old_labels[n]), set()).add(old.split[n])
    leaks = []
    for label, splits in spans.items():
        if len(splits) > 1:
            bridging = new.keys.take(pa.array(np.flatnonzero(labels[n_old:] == label))).to_pylist()
            leaks.append({"keys": bridging, "splits": sorted(splits)})
    return leaks


def _near_edges(new: Rows, old: Examined, rules: Rules) -> tuple[np.ndarray, np.ndarray]:
    """Near pairs among new rows and between new and examined rows, as node ids."""
    n_old = len(old)
    search = near_searcher(rules)
    new_values, old_values = (new.vectors, old.vectors) if rules.near_cosine is not None else (new.hashes, old.hashes)

    def valid(rows: Rows, idx: np.ndarray) -> np.ndarray:
        return np.ones(len(idx), bool) if rows.hash_valid is None else rows.hash_valid[idx]

    i, j = search(new_values, None)
    keep = valid(new, i) & valid(new, j)  # a row without a hash is near nothing
    edges_i, edges_j = [i[keep] + n_old], [j[keep] + n_old]
    if n_old:
        ni, oj = search(new_values, old_values)
        keep = valid(new, ni) & valid(old, oj)
        edges_i.append(ni[keep] + n_old)
        edges_j.append(oj[keep])
    return np.concatenate(edges_i), np.concatenate(edges_j)


def near_searcher(rules: Rules):
    """``search(left, right or None) -> (i, j)``: near pairs by the rules' hash distance or cosine distance."""
    if rules.near_cosine is not None:
        return lambda a, b: near_vector_pairs(a, b, rules.near_cosine)
    return lambda a, b: near_pairs(a, b, rules.near_distance)


def star_edges(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining every node to the first node with the same code (groups without all pairs)."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]
    head = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
    keep = head != order
    return head[keep], order[keep]


def encode(columns: list[pa.Array]) -> np.ndarray:
    """int64 codes for rows of several columns: equal codes exactly when every value is equal
    (nulls equal each other, as in GROUP BY)."""
    n = len(columns[0]) if columns else 0
    code = np.zeros(n, np.int64)
    for col in columns:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        try:
            enc = pc.dictionary_encode(col, null_encoding="encode")
            part = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            size = len(enc.dictionary) + 1
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            seen: dict = {}
            part = np.array([seen.setdefault(json.dumps(v, sort_keys=True, default=str), len(seen))
                             for v in col.to_pylist()], np.int64)
            size = len(seen) + 1
        code = code * size + part
        _, code = np.unique(code, return_inverse=True)  # keep codes small for the next column
        code = code.astype(np.int64)
    return code
