import shutil, os, uuid, lance, pyarrow as pa
from lance.fragment import DataFile
from lance.file import LanceFileWriter
uri = "/tmp/research/q2o2.lance"; shutil.rmtree(uri, ignore_errors=True)
ds = lance.write_dataset(pa.table({"id": pa.array(range(8), pa.int64())}), uri, max_rows_per_file=4)
ds.add_columns(pa.schema([pa.field("feat", pa.float32())])); ds = lance.dataset(uri)
ovl = pa.table({"feat": pa.array([1.5, 3.5], pa.float32())})
name = uuid.uuid4().hex + ".lance"
w = LanceFileWriter(os.path.join(uri, "data", name), ovl.schema, version=ds.data_storage_version); w.write_batch(ovl); w.close()
op = lance.LanceOperation.DataOverlay([lance.LanceOperation.DataOverlayGroup(1, [lance.LanceOperation.DataOverlayFile(DataFile.create(ds, name), [1, 3])])])
ds = lance.LanceDataset.commit(uri, op, read_version=ds.version)
print("filter feat > 1:", ds.to_table(filter="feat > 1").column("id").to_pylist())
print("compact:", ds.optimize.compact_files(target_rows_per_fragment=100))
ds = lance.dataset(uri)
print("after compaction:", ds.to_table().column("feat").to_pylist(), [f.metadata.overlays for f in ds.get_fragments()])
