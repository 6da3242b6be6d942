"""Near duplicates on vectors (`near: {column, max_cosine_distance}`), against an exact
all-pairs computation in float64 over the stored values (float16 widens exactly):
``distance = 1 - a.b / (|a| |b|) <= t``. featurekit's candidates come from float32 products
and pairs within 1e-4 of the threshold are decided in float64, so the two agree exactly, the
boundary included (tested with thresholds equal to a pair's float64 distance and one ulp below).
"""
import math
import re

import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fktest import Project
from test_slices import UnionFind, split_of

import featurekit
from featurekit.curation.vectordup import ClusterStats, near_vector_pairs

DIM = 32


def planted(n, dim=DIM, topics=20, seed=0, share=0.3, t=0.05, dtype=np.float16):
    """Unit vectors around `topics` centres; the last `share` are copies of earlier ones moved
    by a cosine distance drawn uniformly in [0, 1.2 t] (some just past the threshold)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(topics, dim))
    base = centers[rng.integers(0, topics, n)] + rng.normal(size=(n, dim)) * 0.8
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    k = int(n * share)
    src = rng.integers(0, n - k, k)
    noise = rng.normal(size=(k, dim))
    noise -= (noise * base[src]).sum(1, keepdims=True) * base[src]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    angle = np.arccos(1 - rng.uniform(0, 1.2 * t, k))
    base[n - k:] = base[src] * np.cos(angle)[:, None] + noise * np.sin(angle)[:, None]
    return base.astype(dtype)


def definition(a, b):
    """The distance as featurekit defines it, pair by pair in plain Python: float64, correctly
    rounded dot products (math.fsum of exact products)."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    dot = math.fsum(x * y for x, y in zip(a, b))
    return 1.0 - dot / math.sqrt(math.fsum(x * x for x in a) * math.fsum(y * y for y in b))


def distances64(a, b):
    """All pairs: numpy float64 (error ~1e-15), then pairs within 1e-9 of `near` by the definition."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return 1.0 - (a64 @ b64.T) / np.sqrt(np.outer((a64 * a64).sum(1), (b64 * b64).sum(1)))


def brute(a, b, t):
    d = distances64(a, a if b is None else b)
    unsure = np.abs(d - t) <= 1e-9
    for x, y in zip(*np.nonzero(unsure)):
        d[x, y] = definition(a[x], (a if b is None else b)[y])
    i, j = np.nonzero(d <= t)
    return {(x, y) for x, y in zip(i.tolist(), j.tolist()) if b is not None or x < y}


def pairs(i, j):
    got = list(zip(i.tolist(), j.tolist()))
    assert len(got) == len(set(got))  # each pair once
    return set(got)


@pytest.mark.parametrize("exact_pairs", [10 ** 12, 0], ids=["all-pairs", "clustered"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_self_join_equals_the_exact_all_pairs_computation(exact_pairs, dtype):
    v = planted(3000, dtype=dtype, seed=1)
    stats = ClusterStats()
    got = pairs(*near_vector_pairs(v, None, 0.05, exact_pairs=exact_pairs, cluster_size=150, stats=stats))
    want = brute(v, None, 0.05)
    assert got == want and len(want) > 500
    if exact_pairs == 0:
        assert stats.clusters == 20 and stats.compared < 3000 * 3000 / 2  # clustered: fewer comparisons


@pytest.mark.parametrize("exact_pairs", [10 ** 12, 0], ids=["all-pairs", "clustered"])
def test_cross_join_equals_the_exact_all_pairs_computation(exact_pairs):
    v = planted(4000, seed=2)
    old, new = v[:3000], v[3000:]
    got = pairs(*near_vector_pairs(new, old, 0.05, exact_pairs=exact_pairs, cluster_size=150))
    assert got == brute(new, old, 0.05) and len(got) > 200


@pytest.mark.parametrize("exact_pairs", [10 ** 12, 0], ids=["all-pairs", "clustered"])
def test_the_threshold_is_inclusive_in_float64_of_the_stored_values(exact_pairs):
    v = planted(1200, seed=3)
    d = distances64(v, v)
    np.fill_diagonal(d, np.inf)
    # a pair's exact distance as the threshold: in; one float64 step below: out
    for x, y in [np.unravel_index(np.argmin(np.where(d > 0.02, d, np.inf)), d.shape),
                 np.unravel_index(np.argmin(np.where(d > 0.045, d, np.inf)), d.shape)]:
        t = definition(v[x], v[y])
        at = pairs(*near_vector_pairs(v, None, t, exact_pairs=exact_pairs, cluster_size=100))
        below = pairs(*near_vector_pairs(v, None, float(np.nextafter(t, 0)), exact_pairs=exact_pairs,
                                         cluster_size=100))
        key = (min(x, y), max(x, y))
        assert key in at and key not in below
        assert at == brute(v, None, t)


def test_zero_and_not_finite_vectors_are_near_nothing():
    v = planted(50, seed=4, dtype=np.float32)
    v[3] = 0
    v[7] = v[8] = 0
    v[9, 0] = np.nan
    v[10] = v[9]
    got = pairs(*near_vector_pairs(v, None, 0.05))
    assert not any({3, 7, 8, 9, 10} & {a, b} for a, b in got)


# -- end to end: a slice deduping on a vector column -----------------------------------------

SPEC = """\
featurekit: 1
name: vdedupe
table: {db: data, name: t, fragment_rows: 300}
source: {format: parquet, path: "raw/*.parquet", key: id}
slices:
  curated:
    where: "quality >= 1"
    dedupe: {near: {column: emb, max_cosine_distance: 0.05}}
    split: {by: image_id, seed: 3, fractions: {train: 0.8, val: 0.2}}
"""


def write(project, ids, vectors, name, seed):
    rng = np.random.default_rng(seed)
    n = len(ids)
    path = project.root / "raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
    pq.write_table(pa.table({"id": ids, "image_id": (ids // 3).astype(np.int64), "quality": rng.integers(0, 4, n),
                             "emb": emb}), path)


def stored(project):
    ds = lance.dataset(str(project.root / "data" / "t.lance"))
    t = ds.to_table(columns=["id", "image_id", "quality", "emb", "curated", "_fk_curated"],
                    with_row_address=True).sort_by("_rowaddr")
    return t


def reference(t, threshold=0.05, seed=3, fractions=(("train", 0.8), ("val", 0.2))):
    """key -> split for members, key -> keeper for removed rows: union-find over the exact
    float64 pairs among rows passing `where`, earliest row kept; split groups join near pairs
    and equal image_id, placed by the group's earliest row's image_id."""
    rows = [r for r in t.to_pylist() if r["quality"] >= 1]
    v = np.array([r["emb"] for r in rows], np.float16)
    near = brute(v, None, threshold)
    n = len(rows)
    dup, grp = UnionFind(n), UnionFind(n)
    for a, b in near:
        dup.union(a, b)
        grp.union(a, b)
    first = {}
    for a in range(n):
        first.setdefault(rows[a]["image_id"], a)
        grp.union(a, first[rows[a]["image_id"]])
    members, keepers = {}, {}
    for a in range(n):
        split = split_of(rows[grp.find(a)]["image_id"], seed, dict(fractions))
        k = dup.find(a)
        if k == a:
            members[rows[a]["id"]] = split
        else:
            keepers[rows[a]["id"]] = rows[k]["id"]
    return members, keepers


def outcome(t):
    members, keepers, states = {}, {}, {}
    for key, split, state in zip(*(t.column(c).to_pylist() for c in ["id", "curated", "_fk_curated"])):
        states[key] = state
        if split is not None:
            members[key] = split
        elif "duplicate:" in state:
            keepers[key] = int(state.split(":", 2)[2])
    return members, keepers, states


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)


def test_slice_membership_equals_the_exact_reference(project):
    v = planted(900, seed=5)
    write(project, np.arange(900), v, "a.parquet", 5)
    spec = project.write_spec(SPEC)
    result = featurekit.apply(spec)
    assert result.ok
    t = stored(project)
    members, keepers, _ = outcome(t)
    want_members, want_keepers = reference(t)
    assert (members, keepers) == (want_members, want_keepers)
    assert len(keepers) > 100 and set(members.values()) == {"train", "val"}
    assert result.run.slices["curated"].removed["near_duplicate"] == len(keepers)


def test_exact_copies_are_duplicates_near_ones_near_duplicates(project):
    v = planted(300, seed=6, share=0.0)
    v[200] = v[10]                                            # the same vector: a duplicate
    v[201] = (v[11].astype(np.float64) * 0.999 + 0.001 * v[12]).astype(np.float16)  # close: a near duplicate
    write(project, np.arange(300), v, "a.parquet", 6)
    spec = project.write_spec(SPEC.replace('where: "quality >= 1"', 'where: "quality >= 0"'))
    featurekit.apply(spec)
    _, _, states = outcome(stored(project))
    assert states[200].split("!")[1].startswith("duplicate:") and states[200].endswith(":10")
    assert states[201].split("!")[1].startswith("near_duplicate:") and states[201].endswith(":11")


def test_appended_rows_never_move_existing_ones_and_find_their_keepers(project):
    v = planted(1200, seed=7, share=0.25)
    order = np.arange(1200)
    first, later = order[:900], order[900:]  # the later rows hold copies of first rows and of each other
    write(project, first, v[first], "a.parquet", 7)
    spec = project.write_spec(SPEC)
    featurekit.apply(spec)
    before = outcome(stored(project))
    write(project, later, v[later], "b.parquet", 9)
    result = featurekit.apply(spec)
    assert result.run.slices["curated"].examined == 300
    t = stored(project)
    members, keepers, states = outcome(t)
    for key, state in before[2].items():
        assert states[key] == state  # every existing row kept its split, keeper and state
    want_members, want_keepers = reference(t)
    # the same rows kept and removed, by the same keepers, as a computation over all rows at once
    # (splits may differ: an appended row bridging two split groups moves neither, a leak)
    assert (set(members), keepers) == (set(want_members), want_keepers)
    assert result.run.slices["curated"].leaks  # this data has bridges: reported, nothing moved
    assert any(keepers[k] < 900 for k in keepers if k >= 900)  # appended near copies of old keepers
    assert featurekit.plan(spec).is_noop


def test_vector_rows_without_a_value_are_near_nothing(project):
    v = planted(200, seed=10, share=0.5)
    ids = np.arange(200)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), DIM)
    mask = np.zeros(200, bool)
    mask[[150, 160, 170]] = True
    emb = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), DIM, mask=pa.array(mask))
    (project.root / "raw").mkdir(parents=True)
    pq.write_table(pa.table({"id": ids, "image_id": ids, "quality": np.ones(200, np.int64), "emb": emb}),
                   project.root / "raw" / "a.parquet")
    spec = project.write_spec(SPEC)
    featurekit.apply(spec)
    members, keepers, _ = outcome(stored(project))
    assert {150, 160, 170} <= set(members) and not {150, 160, 170} & set(keepers.values())


@pytest.mark.parametrize("near, message", [
    ("{column: emb, max_distance: 3}", "column 'emb' is fixed_size_list<element: halffloat>[32]; near duplicates "
                                        "need a 64-bit integer hash (uint64 or int64: image.dhash or image.phash "
                                        "give uint64); for a vector column use max_cosine_distance"),
    ("{column: id, max_cosine_distance: 0.1}", "column 'id' is int64; max_cosine_distance compares vectors (a "
                                               "fixed-size list of floats, e.g. an embedding); for a 64-bit hash "
                                               "use max_distance (bits)"),
    ("{column: emb, max_cosine_distance: 0.1, max_distance: 2}", "near needs max_distance (bits, for a hash "
                                                                  "column) or max_cosine_distance (for a vector "
                                                                  "column), exactly one"),
])
def test_a_threshold_that_does_not_fit_the_column_is_a_spec_error(project, near, message):
    write(project, np.arange(10), planted(10, seed=11), "a.parquet", 11)
    spec = project.write_spec(SPEC.replace("{near: {column: emb, max_cosine_distance: 0.05}}", "{near: " + near + "}"))
    problems = featurekit.validate(spec).problems
    assert len(problems) == 1 and message in problems[0].message, problems
    assert problems[0].path.startswith("slices.curated.dedupe.near")


def test_the_gallery_shows_each_near_duplicates_cosine_distance_from_its_keeper(project, run_cli):
    v = planted(300, seed=5)
    write(project, np.arange(300), v, "a.parquet", 5)
    spec = project.write_spec(SPEC)
    featurekit.apply(spec)
    code, _, _ = run_cli("slice", spec, "curated", "--gallery", project.root / "g.html")
    assert code == 0
    page = (project.root / "g.html").read_text()
    _, keepers, _ = outcome(stored(project))
    shown = [float(x) for x in re.findall(r"near duplicate, cosine distance ([0-9.e-]+)", page)]
    exact = sorted(definition(v[k], v[keep]) for k, keep in keepers.items())
    assert shown and all(min(abs(x - d) for d in exact) <= 5e-3 * max(x, 1e-3) for x in shown)
