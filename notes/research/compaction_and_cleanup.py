import os, shutil, uuid, time, datetime, lance, pyarrow as pa
from lance.file import LanceFileWriter
from lance.fragment import DataFile
uri = "/tmp/research/q5.lance"; shutil.rmtree(uri, ignore_errors=True)
def du(p): return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs)
N, R = 4, 50
ds = lance.write_dataset(pa.table({"id": pa.array(range(N * R), pa.int64()),
                                   "img": pa.array([os.urandom(2000) for _ in range(N * R)], pa.binary())}), uri, max_rows_per_file=R)
FEATS = {"A": [pa.field("a", pa.list_(pa.string())), pa.field("a_state", pa.string())],
         "B": [pa.field("b", pa.struct([("x", pa.int32())])), pa.field("b_state", pa.string())]}
def fill(ds, feat, val, frags=None):
    cols = FEATS[feat]; groups = []
    for fr in ds.get_fragments():
        if frags is not None and fr.fragment_id not in frags: continue
        n = fr.physical_rows
        t = pa.table({cols[0].name: pa.array([[val]] * n if feat == "A" else [{"x": len(val)}] * n, cols[0].type),
                      cols[1].name: pa.array([val] * n)})
        name = uuid.uuid4().hex + ".lance"
        w = LanceFileWriter(os.path.join(uri, "data", name), t.schema, version=ds.data_storage_version); w.write_batch(t); w.close()
        groups.append(lance.LanceOperation.DataReplacementGroup(fr.fragment_id, DataFile.create(ds, name)))
    return lance.LanceDataset.commit(uri, lance.LanceOperation.DataReplacement(groups), read_version=ds.version)
for f in FEATS:
    ds.add_columns(pa.schema(FEATS[f])); ds = lance.dataset(uri); ds = fill(ds, f, f + "1")
ds = fill(ds, "A", "A2")   # recompute A: its old files become garbage
ds.tags.create("pinned", ds.version); pinned = ds.version
ds = fill(ds, "A", "A3")
before = ds.to_table(columns=["id", "a", "a_state", "b", "b_state"])
print("files per fragment before:", [[ (d.fields) for d in f.data_files()] for f in ds.get_fragments()][0], "x", len(ds.get_fragments()))
# 1. compaction that leaves fragments as they are (already at target) -> no-op
print("compact default target (1M rows):", ds.optimize.compact_files())
ds = lance.dataset(uri)
print("after: fragments", len(ds.get_fragments()), "files/frag", [len(f.data_files()) for f in ds.get_fragments()])
print("   first fragment files:", [d.fields for d in ds.get_fragment(ds.get_fragments()[0].fragment_id).data_files()])
print("   values equal:", ds.to_table(columns=before.column_names).equals(before))
# 2. DataReplacement of feature A after compaction (columns now share a file with id/img/B)
try:
    ds = fill(ds, "A", "A4"); print("DataReplacement after compaction: OK, files/frag", [[d.fields for d in f.data_files()] for f in ds.get_fragments()][0])
    print("   A:", set(ds.to_table(columns=["a_state"]).column(0).to_pylist()), "B intact:", set(ds.to_table(columns=["b_state"]).column(0).to_pylist()))
except Exception as e:
    print("DataReplacement after compaction FAILS:", type(e).__name__, str(e)[:300])
# 3. cleanup: tagged version kept? bytes freed
ds = lance.dataset(uri)
print("versions:", [v["version"] for v in ds.versions()], "pinned tag ->", pinned, "disk before", du(uri))
try:
    ds.cleanup_old_versions(older_than=datetime.timedelta(0), delete_unverified=True)
except Exception as e: print("cleanup with a tagged old version (default):", type(e).__name__, str(e)[:200])
exp = ds.explain_cleanup_old_versions(older_than=datetime.timedelta(0), error_if_tagged_old_versions=False, include_files=True)
print("explain: stats", exp.stats.bytes_removed, exp.stats.old_versions, "files", len(exp.candidate_files), "warnings", exp.warnings)
st = ds.cleanup_old_versions(older_than=datetime.timedelta(0), delete_unverified=True, error_if_tagged_old_versions=False)
print("cleanup stats: bytes_removed", st.bytes_removed, "old_versions", st.old_versions, "data_files_removed", st.data_files_removed, "disk after", du(uri))
ds = lance.dataset(uri)
print("versions left:", [v["version"] for v in ds.versions()])
p = lance.dataset(uri, version="pinned")
print("pinned readable:", set(p.to_table(columns=["a_state"]).column(0).to_pylist()), p.count_rows())
