"""Near-duplicate search on vectors (embeddings): pairs within a cosine distance.

The distance of two stored vectors a, b is ``1 - a.b / sqrt((a.a) (b.b))`` computed in float64
from the stored values (float16 and float32 widen exactly, and each dot product is correctly
rounded: `cosine_distance64`), and a pair is near when it is ``<= t``. Candidates
come from float32 matrix products of unit vectors; a pair whose float32 distance is within
`MARGIN` of `t` is decided again in float64, so the float32 rounding (about 1e-6 for 512
dimensions) never decides a pair: the result is the exact all-pairs answer's on every pair
compared. A vector that is NULL, zero or not finite is near nothing.

Small inputs are compared all against all, in blocks (`exact_pairs`). Larger ones are
clustered first (k-means on a sample, in the `PROJECTED_DIMS` main directions of the unit
vectors, `CLUSTER_SIZE` rows a cluster, seeded: the same vectors give the same clusters) and
compared exactly within clusters. Each vector has a home (its nearest centroid) and is a guest
in every other centroid that may hold a vector within `t` of it: by the triangle inequality
(a projection never lengthens a distance), y within distance e of x (Euclidean, e = sqrt(2t)
for unit vectors) has x within d(x, c_y) <= d(x, c_x) + 2e of y's home c_y. Comparing each cluster's home
vectors with its home and guest vectors then finds every pair, as long as no vector needs more
than `probes` guest clusters; on real embeddings few do, on vectors spread evenly over the
sphere every one does, and then the nearest `probes` are used (recall measured in
benchmarks/curation.py, section 4). `ClusterStats` says how many vectors were capped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MARGIN = 1e-4              # float32 distances this close to the threshold are decided in float64
EXACT_PAIRS = 25_000_000   # at most this many pairs: compare all against all
BLOCK = 1 << 24            # similarities held at once (64 MB of float32)
CLUSTER_SIZE = 500         # rows per cluster, on average
PROBES = 2                 # guest clusters per vector, at most
PROJECTED_DIMS = 64        # clusters are found on this many principal directions
KMEANS_ITERATIONS = 8
SAMPLE_PER_CLUSTER = 40


@dataclass
class ClusterStats:
    """What one clustered search did (None fields: it compared all pairs)."""

    clusters: int = 0
    capped: int = 0          # vectors that needed more than `probes` guest clusters
    compared: int = 0        # similarities computed within clusters
    extra: dict = field(default_factory=dict)


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float32 unit vectors, valid): rows that are zero or not finite are invalid (and zero)."""
    v = np.asarray(vectors)
    out = np.zeros(v.shape, np.float32)
    valid = np.zeros(len(v), bool)
    step = max(1, BLOCK // max(v.shape[1] if v.ndim == 2 else 1, 1))
    for start in range(0, len(v), step):
        chunk = v[start:start + step].astype(np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64))
        ok = np.isfinite(norms) & (norms > 0)
        chunk[~ok] = 0
        chunk /= np.where(ok, norms, 1.0)[:, None].astype(np.float32)
        out[start:start + step] = chunk
        valid[start:start + step] = ok
    return out, valid


def cosine_distance64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``1 - a.b / sqrt((a.a) (b.b))`` in float64 of the stored values, each dot product
    correctly rounded (`math.fsum` of the products, which are exact for float16 and float32
    values): the definition, the same on every machine whatever the BLAS."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    out = np.empty(len(a))
    for k in range(len(a)):
        x, y = a[k], b[k]
        out[k] = 1.0 - math.fsum(x * y) / math.sqrt(math.fsum(x * x) * math.fsum(y * y))
    return out


def near_vector_pairs(left: np.ndarray, right: np.ndarray | None, max_cosine_distance: float, *,
                      exact_pairs: int = EXACT_PAIRS, probes: int = PROBES, cluster_size: int = CLUSTER_SIZE,
                      stats: ClusterStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i into left, j into right) within `max_cosine_distance`; with
    ``right=None`` the search is within `left` and returns each pair once with i < j."""
    self_join = right is None
    ul, vl = unit_rows(left)
    ur, vr = (ul, vl) if self_join else unit_rows(right)
    if not len(ul) or not len(ur):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if len(ul) * len(ur) <= exact_pairs:
        i, j = _all_pairs(ul, ur, max_cosine_distance, self_join)
    else:
        i, j = _clustered(ul, vl, None if self_join else ur, None if self_join else vr, max_cosine_distance,
                          probes, cluster_size, stats if stats is not None else ClusterStats())
    keep = vl[i] & vr[j]
    i, j = i[keep], j[keep]
    return _decide(left, left if self_join else right, i, j, max_cosine_distance, ul, ur)


def _decide(left, right, i, j, t, ul, ur):
    """Keep the candidate pairs within `t`: float32 says so clearly, or float64 does."""
    if not len(i):
        return i, j
    d32 = 1.0 - np.einsum("ij,ij->i", ul[i], ur[j]).astype(np.float64)
    sure = d32 <= t - MARGIN
    close = ~sure & (d32 <= t + MARGIN)
    if close.any():
        sure[close] = cosine_distance64(np.asarray(left)[i[close]], np.asarray(right)[j[close]]) <= t
    return i[sure], j[sure]


def _candidates(a: np.ndarray, b: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (into a, into b) whose float32 distance is within `t` + MARGIN, in blocks of rows of a."""
    step = max(1, BLOCK // max(len(b), 1))
    floor = np.float32(1.0 - t - MARGIN)
    out_i, out_j = [], []
    bt = np.ascontiguousarray(b.T)
    for start in range(0, len(a), step):
        sims = a[start:start + step] @ bt
        r, c = np.nonzero(sims >= floor)
        out_i.append(r.astype(np.int64) + start)
        out_j.append(c.astype(np.int64))
    if not out_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(out_i), np.concatenate(out_j)


def _all_pairs(ul: np.ndarray, ur: np.ndarray, t: float, self_join: bool) -> tuple[np.ndarray, np.ndarray]:
    i, j = _candidates(ul, ur, t)
    if self_join:
        keep = i < j
        i, j = i[keep], j[keep]
    return i, j


# -- clustered ----------------------------------------------------------------------------

def projection(units: np.ndarray, dims: int = PROJECTED_DIMS, seed: int = 0) -> np.ndarray | None:
    """An orthonormal (d, dims) basis of the sample's main directions (PCA without centring), or
    None when the vectors are short already. Projecting never lengthens a distance, so the
    triangle-inequality guests found in the projected space are still guests enough."""
    if units.shape[1] <= dims:
        return None
    rng = np.random.default_rng(seed)
    sample = units[np.sort(rng.choice(len(units), min(len(units), 20_000), replace=False))]
    _, vectors = np.linalg.eigh((sample.T @ sample).astype(np.float64))
    return np.ascontiguousarray(vectors[:, ::-1][:, :dims]).astype(np.float32)


def kmeans(points: np.ndarray, k: int, seed: int = 0, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Euclidean k-means on a sample of `points`: (k, d) centroids, the same for the same input."""
    rng = np.random.default_rng(seed)
    n = len(points)
    sample = points[np.sort(rng.choice(n, min(n, k * SAMPLE_PER_CLUSTER), replace=False))]
    centroids = sample[np.sort(rng.choice(len(sample), k, replace=False))].copy()
    for _ in range(iterations):
        home = _nearest(sample, centroids, 1)[0][:, 0]
        sums = np.zeros(centroids.shape, np.float64)
        np.add.at(sums, home, sample)
        counts = np.bincount(home, minlength=k)
        empty = counts == 0
        sums[empty] = sample[rng.choice(len(sample), int(empty.sum()), replace=False)]  # re-seed empty clusters
        counts[empty] = 1
        centroids = (sums / counts[:, None]).astype(np.float32)
    return centroids


def _nearest(points: np.ndarray, centroids: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The `m` nearest centroids of each point, nearest first: (indices, Euclidean distances)."""
    m = min(m, len(centroids))
    idx = np.empty((len(points), m), np.int64)
    dist = np.empty((len(points), m), np.float32)
    step = max(1, BLOCK // len(centroids))
    ct = np.ascontiguousarray(centroids.T)
    half_sq = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
    for start in range(0, len(points), step):
        chunk = points[start:start + step]
        score = chunk @ ct - half_sq  # larger: nearer (|x - c|^2 = |x|^2 - 2 score)
        top = np.argpartition(-score, m - 1, axis=1)[:, :m] if m < score.shape[1] else \
            np.tile(np.arange(score.shape[1]), (len(score), 1))
        ts = np.take_along_axis(score, top, axis=1)
        order = np.argsort(-ts, axis=1, kind="stable")
        idx[start:start + step] = np.take_along_axis(top, order, axis=1)
        sq = np.einsum("ij,ij->i", chunk, chunk)[:, None] - 2 * np.take_along_axis(ts, order, axis=1)
        dist[start:start + step] = np.sqrt(np.maximum(sq, 0))
    return idx, dist


def _memberships(points: np.ndarray, valid: np.ndarray, centroids: np.ndarray, t: float, probes: int,
                 stats: ClusterStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(home cluster per row, guest rows, their clusters): the guests of a row are the centroids
    within its home distance + 2e (e = sqrt(2t), the Euclidean radius of `t` for unit vectors),
    at most `probes` of them."""
    idx, dist = _nearest(points, centroids, probes + 2)
    home = idx[:, 0]
    reach = dist[:, :1] + 2.0 * np.sqrt(2.0 * t) + 1e-4
    inside = dist <= reach
    inside[:, 0] = False
    if idx.shape[1] > probes + 1:
        stats.capped += int((inside[:, probes + 1] & valid).sum())  # one more would have been needed
        inside[:, probes + 1:] = False
    rows, cols = np.nonzero(inside & valid[:, None])
    return home, rows.astype(np.int64), idx[rows, cols]


def _groups(cluster: np.ndarray, k: int) -> list[np.ndarray]:
    """Row indices per cluster."""
    order = np.argsort(cluster, kind="stable")
    bounds = np.searchsorted(cluster[order], np.arange(k + 1))
    return [order[bounds[c]:bounds[c + 1]] for c in range(k)]


def _clustered(ul, vl, ur, vr, t, probes, cluster_size, stats):
    self_join = ur is None
    both = ul if self_join else np.concatenate([ul, ur])
    valid = vl if self_join else np.concatenate([vl, vr])
    k = int(max(1, min(len(both) // cluster_size, 1 << 16)))
    basis = projection(both[valid] if valid.any() else both)
    points = both if basis is None else both @ basis
    centroids = kmeans(points[valid] if valid.any() else points, min(k, max(int(valid.sum()), 1)))
    stats.clusters = len(centroids)
    home, guest_rows, guest_cluster = _memberships(points, valid, centroids, t, probes, stats)
    del points
    k = len(centroids)
    homes = _groups(home, k)
    guests = _groups(guest_cluster, k)
    guests = [guest_rows[g] for g in guests]
    n_left = len(ul)
    out_i, out_j = [], []
    for c in range(k):
        h, g = homes[c], guests[c]
        if self_join:
            members = np.concatenate([h, g])
            if not len(h) or len(members) < 2:
                continue
            a, b = h, members
        else:  # right rows at home here against every left row here: a pair is found at the right row's home
            a = h[h >= n_left]
            members = np.concatenate([h, g])
            b = members[members < n_left]
            if not len(a) or not len(b):
                continue
        ci, cj = _candidates(both[a], both[b], t)
        stats.compared += len(a) * len(b)
        gi, gj = a[ci], b[cj]
        if self_join:
            gi, gj = np.minimum(gi, gj), np.maximum(gi, gj)
            keep = gi != gj
            out_i.append(gi[keep])
            out_j.append(gj[keep])
        else:
            out_i.append(gj)             # left row
            out_j.append(gi - n_left)    # right row
    if not out_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    width = np.int64(len(ur) if not self_join else len(ul))
    key = np.unique(i * width + j)  # a pair met in two clusters: once
    return key // width, key % width
