import os, shutil, uuid, datetime, lance, pyarrow as pa
from lance.file import LanceFileWriter
from lance.fragment import DataFile
uri = "/tmp/research/q5b.lance"; shutil.rmtree(uri, ignore_errors=True)
ds = lance.write_dataset(pa.table({"id": pa.array(range(200), pa.int64())}), uri, max_rows_per_file=50)
ds.add_columns(pa.schema([pa.field("f", pa.float32())])); ds = lance.dataset(uri)
def fill(ds, val):
    g = []
    for fr in ds.get_fragments():
        name = uuid.uuid4().hex + ".lance"
        w = LanceFileWriter(os.path.join(uri, "data", name), pa.schema([pa.field("f", pa.float32())])); w.write_batch(pa.table({"f": pa.array([val] * fr.physical_rows, pa.float32())})); w.close()
        g.append(lance.LanceOperation.DataReplacementGroup(fr.fragment_id, DataFile.create(ds, name)))
    return lance.LanceDataset.commit(uri, lance.LanceOperation.DataReplacement(g), read_version=ds.version)
ds = fill(ds, 1.0)
print("compact target 50 (fragments already full):", ds.optimize.compact_files(target_rows_per_fragment=50),
      [len(f.data_files()) for f in lance.dataset(uri).get_fragments()])
# branch from current version, then main recomputes f and cleans up everything old
b = ds.create_branch("exp", ds.version)
ds = fill(lance.dataset(uri), 2.0)
st = ds.cleanup_old_versions(older_than=datetime.timedelta(0), delete_unverified=True)
print("main cleanup: removed", st.old_versions, "versions", st.bytes_removed, "bytes")
bb = lance.dataset(uri).checkout_version(("exp", None))
print("branch still reads its base values:", set(bb.to_table().column("f").to_pylist()), "main:", set(lance.dataset(uri).to_table().column("f").to_pylist()))
print("explain referenced_branches:", [(r.name, r.referenced_version, r.cleanup_candidate) for r in ds.explain_cleanup_old_versions(older_than=datetime.timedelta(0)).referenced_branches])
