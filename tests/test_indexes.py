"""`indexes:` in the spec: validated against the columns, built by apply, kept up to date after
appends, used by reads (Lance's query plan names the index), dropped by apply --prune."""
import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fktest import Project

import featurekit
from featurekit.table.indexes import ROWS_PER_PARTITION, partitions_for

DIM = 16
SPEC = """\
featurekit: 1
name: indexed
table: {db: data, name: t, fragment_rows: 250}
source: {format: parquet, path: "raw/*.parquet", key: id}
features:
  tlen:
    extractor: text.length
    inputs: {text: text}
indexes:
  emb: {type: IVF_PQ, num_partitions: 4, num_sub_vectors: 4}
  kind: {type: BITMAP}
  text: {type: FTS}
  tlen: {type: BTREE}
"""


def vectors(n, seed):
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def write(project, start, n, name, seed):
    rng = np.random.default_rng(seed)
    path = project.root / "raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    words = np.array(["red", "green", "blue", "stop", "sign", "bus"])
    pq.write_table(pa.table({
        "id": np.arange(start, start + n),
        "kind": rng.integers(0, 4, n).astype(str),
        "text": [" ".join(rng.choice(words, 3)) + f" n{i}" for i in range(start, start + n)],
        "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors(n, seed).ravel()), DIM)}), path)


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    write(p, 0, 1000, "a.parquet", 1)
    p.write_spec(SPEC)
    return p


def dataset(project):
    return lance.dataset(str(project.root / "data" / "t.lance"))


def ours(ds):
    """column -> (index name, fragments it covers) for featurekit's indexes."""
    return {ix.field_names[0]: (ix.name, {f for s in ix.segments for f in s.fragment_ids})
            for ix in ds.describe_indices() if ix.name.startswith("fk_")}


def fragments(ds):
    return {f.fragment_id for f in ds.get_fragments()}


def test_apply_builds_every_declared_index_and_reads_use_them(project):
    plan = featurekit.plan(project.spec)
    assert [(i.column, i.action) for i in plan.indexes] == [
        ("emb", "create"), ("kind", "create"), ("text", "create"), ("tlen", "create")]
    result = featurekit.apply(project.spec)
    assert result.ok and set(result.run.indexes) == {"emb", "kind", "text", "tlen"}
    ds = dataset(project)
    built = ours(ds)
    assert set(built) == {"emb", "kind", "text", "tlen"}
    assert all(covered == fragments(ds) for _, covered in built.values())
    assert featurekit.plan(project.spec).is_noop  # built once: the next plan has nothing to do
    # the query plans name featurekit's indexes
    assert f"@{built['kind'][0]}(Bitmap)" in ds.scanner(filter="kind = '2'").explain_plan()
    assert f"@{built['tlen'][0]}(BTree)" in ds.scanner(filter="tlen > 20").explain_plan()
    assert f"ANNSubIndex: name={built['emb'][0]}" in ds.scanner(
        nearest={"column": "emb", "q": vectors(1, 9)[0], "k": 5}).explain_plan()
    assert "MatchQuery: column=text" in ds.scanner(full_text_query="stop").explain_plan()
    # and give what a scan without them gives
    table = ds.to_table(columns=["id", "kind", "tlen", "text"])
    assert ds.count_rows(filter="kind = '2'") == table.column("kind").to_pylist().count("2")
    assert ds.count_rows(filter="tlen > 20") == sum(t > 20 for t in table.column("tlen").to_pylist())
    hits = set(ds.to_table(full_text_query="n17", columns=["id"]).column("id").to_pylist())
    assert hits == {17}


def test_appended_rows_are_added_to_the_indexes_by_the_next_apply(project):
    featurekit.apply(project.spec)
    before = ours(dataset(project))
    write(project, 1000, 300, "b.parquet", 2)
    plan = featurekit.plan(project.spec)
    steps = {i.column: i for i in plan.indexes}
    assert {c: s.action for c, s in steps.items()} == {c: "optimize" for c in ("emb", "kind", "text", "tlen")}
    assert steps["kind"].rows == 300
    status = featurekit.status(project.spec)
    assert {i.column: (i.state, i.unindexed) for i in status.indexes} == {c: ("stale", 300) for c in steps}
    result = featurekit.apply(project.spec)
    assert result.run.indexes["kind"] == "300 row(s) added"
    ds = dataset(project)
    after = ours(ds)
    assert {c: n for c, (n, _) in after.items()} == {c: n for c, (n, _) in before.items()}  # optimized, not rebuilt
    assert all(covered == fragments(ds) for _, covered in after.values())  # the new fragments are indexed
    assert ds.count_rows(filter="kind = '1' AND id >= 1000") == \
        ds.to_table(columns=["kind", "id"]).filter(pa.compute.greater_equal(pa.compute.field("id"), 1000)) \
          .column("kind").to_pylist().count("1")
    assert set(ds.to_table(full_text_query="n1200", columns=["id"]).column("id").to_pylist()) == {1200}
    # the appended row itself is found through the (optimized) vector index
    q = vectors(300, 2)[200]
    near = ds.to_table(nearest={"column": "emb", "q": q, "k": 1, "nprobes": 4, "refine_factor": 10}, columns=["id"])
    assert near.column("id").to_pylist() == [1200]
    assert featurekit.plan(project.spec).is_noop


def test_status_says_which_indexes_have_rows_to_add(project):
    featurekit.apply(project.spec)
    write(project, 1000, 250, "b.parquet", 2)
    ds = dataset(project)
    lance.write_dataset(pa.table({"id": np.arange(5000, 5010), "kind": ["x"] * 10, "text": ["t"] * 10,
                                  "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors(10, 3).ravel()), DIM)}),
                        ds.uri, mode="append")  # rows written behind featurekit's back
    status = featurekit.status(project.spec)
    kind = next(i for i in status.indexes if i.column == "kind")
    assert (kind.state, kind.unindexed) == ("stale", 10 + 250)


def test_a_changed_definition_rebuilds_and_prune_drops_what_the_spec_no_longer_declares(project):
    featurekit.apply(project.spec)
    ds = dataset(project)
    ds.create_scalar_index("id", "BTREE", name="by_hand")  # not featurekit's: never touched
    old = ours(dataset(project))
    spec = project.write_spec(SPEC.replace("kind: {type: BITMAP}", "kind: {type: BTREE}")
                              .replace("  text: {type: FTS}\n", ""))
    plan = featurekit.plan(spec)
    steps = {i.column: i for i in plan.indexes}
    assert steps["kind"].action == "recreate" and steps["kind"].old == old["kind"][0]
    assert steps["text"].action == "keep"  # orphaned, kept without --prune
    featurekit.apply(spec)
    now = ours(dataset(project))
    assert now["kind"][0] != old["kind"][0] and "text" in now
    assert "@" + now["kind"][0] + "(BTree)" in dataset(project).scanner(filter="kind = '1'").explain_plan()
    plan = featurekit.plan(spec, prune=True)
    assert {i.column: i.action for i in plan.indexes}["text"] == "drop"
    featurekit.apply(spec, prune=True)
    names = {ix.name for ix in dataset(project).describe_indices()}
    assert "text" not in ours(dataset(project)) and "by_hand" in names
    assert featurekit.plan(spec, prune=True).is_noop


def test_a_recomputed_feature_gets_its_index_rebuilt(project):
    featurekit.apply(project.spec)
    spec = project.write_spec(SPEC.replace("tlen:\n    extractor: text.length",
                                           "tlen:\n    extractor: text.word_count"))
    plan = featurekit.plan(spec)
    assert {i.column: i.action for i in plan.indexes}["tlen"] == "create"
    featurekit.apply(spec)
    ds = dataset(project)
    assert ours(ds)["tlen"][1] == fragments(ds)
    words = ds.to_table(columns=["text"]).column("text").to_pylist()
    assert ds.count_rows(filter="tlen = 4") == sum(len(t.split()) == 4 for t in words) > 0


def test_small_tables_train_fewer_partitions_and_rebuild_with_the_declared_number_once_grown():
    assert partitions_for(256, 100_000) == 256
    assert partitions_for(256, 1000) == 16            # 1000 // 32 = 31 -> 16
    assert partitions_for(256, 10) == 1
    assert partitions_for(4, 4 * ROWS_PER_PARTITION) == 4


@pytest.mark.parametrize("index", ["{type: IVF_PQ, num_partitions: 256, num_sub_vectors: 4}",
                                   "{type: IVF_HNSW_SQ, num_partitions: 256, metric: l2}"])
def test_small_table_builds_and_searches(tmp_path, index):
    p = Project(tmp_path)
    write(p, 0, 40, "a.parquet", 4)
    p.write_spec(SPEC.replace("{type: IVF_PQ, num_partitions: 4, num_sub_vectors: 4}", index))
    assert featurekit.apply(p.spec).ok
    ds = dataset(p)
    assert "emb" in ours(ds)
    q = vectors(40, 4)[7]
    got = ds.to_table(nearest={"column": "emb", "q": q, "k": 1, "refine_factor": 40}, columns=["id"])
    assert got.column("id").to_pylist() == [7]


@pytest.mark.parametrize("indexes, where, message", [
    ("nope: {type: BTREE}", "indexes.nope", "unknown column 'nope'"),
    ("emb: {type: BITMAP}", "indexes.emb.type", "a BITMAP index needs an integer, string or boolean column with few "
                                                 "distinct values; column 'emb' is fixed_size_list<element: float>[16] "
                                                 "(vector indexes: IVF_PQ or IVF_HNSW_SQ)"),
    ("text: {type: IVF_PQ}", "indexes.text.type", "a IVF_PQ index needs a vector column (a fixed-size list of "
                                                  "float16/float32/float64); column 'text' is string"),
    ("tlen: {type: FTS}", "indexes.tlen.type", "a FTS index needs a string column; column 'tlen' is int32"),
    ("emb: {type: IVF_PQ, num_sub_vectors: 5}", "indexes.emb.num_sub_vectors",
     "num_sub_vectors 5 must divide the vector's dimension 16"),
    ("kind: {type: BITMAP, num_partitions: 8}", "indexes.kind",
     "num_partitions is for vector indexes (IVF_PQ, IVF_HNSW_SQ), not BITMAP"),
    ("kind: {type: HASH}", "indexes.kind.type", "input should be 'IVF_PQ', 'IVF_HNSW_SQ', 'BTREE', 'BITMAP' or 'FTS' (got 'HASH')"),
])
def test_bad_indexes_are_spec_errors_at_their_place(project, indexes, where, message):
    head = SPEC.split("indexes:")[0]
    spec = project.write_spec(head + "indexes:\n  " + indexes + "\n")
    problems = featurekit.validate(spec).problems
    assert len(problems) == 1, problems
    p = problems[0]
    assert p.path == where and message in p.message, p
    assert str(p).startswith(f"{spec}:{p.line}:{p.col}: {where}: ")
    assert spec.read_text().splitlines()[p.line - 1].strip().startswith(indexes.split(":")[0])


def test_validate_cli_exits_2_and_writes_nothing(project, run_cli):
    head = SPEC.split("indexes:")[0]
    spec = project.write_spec(head + "indexes:\n  text: {type: IVF_PQ}\n")
    code, out, err = run_cli("apply", spec)
    assert code == 2 and "indexes.text.type" in (out + err)
    assert not (project.root / "data").exists()
