"""Near-duplicate search and grouping against a brute-force computation."""
import numpy as np
import pytest

from featurekit.curation.examine import encode, star_edges
from featurekit.curation.neardup import components, near_pairs, plan_bands


def planted(n, d, seed=0, share=0.3):
    """Random 64-bit hashes, a share of them copies of earlier ones with up to d bits flipped."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2 ** 64, n, dtype=np.uint64)
    for k in range(int(n * (1 - share)), n):
        src = int(rng.integers(0, k))
        flips = rng.choice(64, size=int(rng.integers(0, d + 1)), replace=False)
        h[k] = h[src] ^ np.uint64(sum(1 << int(b) for b in flips))
    return h


def brute_pairs(a, b, d):
    return {(i, j) for i in range(len(a)) for j in range(len(b))
            if (int(a[i]) ^ int(b[j])).bit_count() <= d}


@pytest.mark.parametrize("d", [0, 1, 3, 4, 7])
def test_self_join_finds_exactly_the_close_pairs(d):
    h = planted(300, d, seed=d)
    i, j = near_pairs(h, None, d)
    expected = {(x, y) for x, y in brute_pairs(h, h, d) if x < y}
    assert set(zip(i.tolist(), j.tolist())) == expected
    assert len(i) == len(expected)  # each pair once


@pytest.mark.parametrize("sizes", [(40, 500), (500, 40)])
def test_cross_join_either_side_smaller(sizes):
    h = planted(sum(sizes), 4, seed=7)
    a, b = h[:sizes[0]], h[sizes[0]:]
    i, j = near_pairs(a, b, 4)
    assert set(zip(i.tolist(), j.tolist())) == brute_pairs(a, b, 4)


def test_band_plan_uses_several_bands_and_a_radius_for_large_inputs():
    plan = plan_bands(1_000_000, 1_000_000, 4)
    assert sum(plan.widths) == 64 and len(plan.widths) > 1
    assert plan.radius == 4 // len(plan.widths)


def union_find_labels(n, pairs):
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [min(k for k in range(n) if find(k) == find(x)) for x in range(n)]


def test_components_label_each_node_with_the_smallest_of_its_component():
    rng = np.random.default_rng(3)
    n = 200
    pairs = [tuple(rng.integers(0, n, 2)) for _ in range(150)]
    i = np.array([p[0] for p in pairs])
    j = np.array([p[1] for p in pairs])
    assert components(n, i, j).tolist() == union_find_labels(n, pairs)


def test_star_edges_join_equal_codes_without_all_pairs():
    codes = np.array([5, 1, 5, 2, 1, 5])
    i, j = star_edges(codes)
    assert len(i) == 3  # 2 edges for the three 5s, 1 for the two 1s
    assert components(6, i, j).tolist() == [0, 1, 0, 3, 1, 0]


def test_encode_treats_equal_values_and_nulls_as_equal():
    import pyarrow as pa
    codes = encode([pa.array(["a", "b", "a", None, None]), pa.array([1, 1, 1, 2, 2])])
    assert codes[0] == codes[2] and codes[3] == codes[4] and codes[0] != codes[1] and codes[1] != codes[3]
    lists = encode([pa.array([["x"], ["y"], ["x"]])])  # types dictionary encoding does not handle
    assert lists[0] == lists[2] != lists[1]


# -- band plans with a radius: inputs large enough that the planner probes perturbed bands --

def brute_force_pairs(a, b, d, self_join):
    """All pairs within d bits by popcount over every pair (blockwise), no bands."""
    found = set()
    for start in range(0, len(a), 256):
        block = a[start:start + 256]
        close = np.bitwise_count(block[:, None] ^ b[None, :]) <= d
        for i, j in zip(*np.nonzero(close)):
            if not self_join or start + i < j:
                found.add((start + int(i), int(j)))
    return found


def needs_a_radius(pairs, a, b, widths):
    """How many pairs differ in every band: found only by probing perturbed band values."""
    count = 0
    for i, j in pairs:
        x, shift, differ = int(a[i]) ^ int(b[j]), 0, True
        for w in widths:
            differ &= ((x >> shift) & ((1 << w) - 1)) != 0
            shift += w
        count += differ
    return count


@pytest.mark.parametrize("n_left, n_right, d", [
    (5_000, None, 6),     # self join, 4 bands of 16 bits, radius 1
    (10_000, None, 10),   # self join, radius 2
    (2_000, 40_000, 4),   # the d=4 on tens of thousands: 3 bands of ~21 bits, radius 1
    (40_000, 2_000, 4),   # the same with the larger side on the left (the smaller one is perturbed)
])
def test_radius_band_plans_find_exactly_the_brute_force_pairs(n_left, n_right, d):
    rng = np.random.default_rng(d)
    if n_right is None:
        left = planted(n_left, d + 1, seed=d, share=0.4)  # copies up to d+1 bits away: the boundary too
        right = left
    else:
        big, small = max(n_left, n_right), min(n_left, n_right)
        table = rng.integers(0, 2 ** 64, big, dtype=np.uint64)
        probes = table[rng.integers(0, big, small)].copy()
        for k in range(small):
            flips = rng.choice(64, size=int(rng.integers(0, d + 2)), replace=False)
            probes[k] ^= np.uint64(sum(1 << int(b) for b in flips))
        left, right = (probes, table) if n_left < n_right else (table, probes)
    plan = plan_bands(min(len(left), len(right)), max(len(left), len(right)), d)
    assert plan.radius > 0, plan  # the radius > 0 path is the one under test
    i, j = near_pairs(left, None if n_right is None else right, d)
    got = set(zip(i.tolist(), j.tolist()))
    expected = brute_force_pairs(left, right, d, self_join=n_right is None)
    assert len(got) == len(i)  # each pair once
    assert got == expected
    assert needs_a_radius(expected, left, right, plan.widths) > 50  # pairs no exact band match finds
