"""Split assignment: a pure function of (value, seed), so appending rows never moves one.

Each distinct value is hashed with the seed (BLAKE2b over the JSON of both) to a number
in [0, 1), and lands in the first split whose cumulative fraction exceeds it, in the
order the spec lists the splits.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np


def unit_hash(value, seed: int) -> float:
    """A value's position in [0, 1) for this seed; the same on every machine and run:
    BLAKE2b-8 of ``json.dumps([seed, value], sort_keys=True)``, as a fraction of 2**64."""
    return _unit(_payload(value, seed))


def _payload(value, seed: int) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"[{seed}, {value}]"  # what json.dumps writes, without its cost
    return json.dumps([seed, value], sort_keys=True, default=str)


def _unit(payload: str) -> float:
    return int.from_bytes(hashlib.blake2b(payload.encode(), digest_size=8).digest(), "big") / 2.0 ** 64


def split_index(values: Sequence, seed: int, fractions: Mapping[str, float]) -> np.ndarray:
    """For each value, the index of its split in `fractions` (distinct values hashed once)."""
    cumulative = np.cumsum(list(fractions.values()))
    cumulative[-1] = 1.0 + 1e-9  # fractions add up to 1 within rounding: nothing falls off the end
    slot: dict = {}
    index = np.empty(len(values), np.int64)
    for i, v in enumerate(values):
        try:
            index[i] = slot.setdefault(v if not isinstance(v, float) else ("f", v), len(slot))
        except TypeError:  # unhashable (a list): by its JSON
            index[i] = slot.setdefault(("json", json.dumps(v, sort_keys=True, default=str)), len(slot))
    distinct = [None] * len(slot)
    for k, n in slot.items():
        distinct[n] = json.loads(k[1]) if isinstance(k, tuple) and k[0] == "json" else (
            k[1] if isinstance(k, tuple) and k[0] == "f" else k)
    units = np.array([unit_hash(v, seed) for v in distinct])
    return np.searchsorted(cumulative, units, side="right")[index]
