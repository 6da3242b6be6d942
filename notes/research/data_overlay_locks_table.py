import shutil, os, uuid, lance, pyarrow as pa
from lance.fragment import DataFile
from lance.file import LanceFileWriter
uri = "/tmp/research/q2o.lance"; shutil.rmtree(uri, ignore_errors=True)
ds = lance.write_dataset(pa.table({"id": pa.array(range(8), pa.int64())}), uri, max_rows_per_file=4)
ds.add_columns(pa.schema([pa.field("feat", pa.float32())])); ds = lance.dataset(uri)
ovl = pa.table({"feat": pa.array([1.5, 3.5], pa.float32())})
name = uuid.uuid4().hex + ".lance"
w = LanceFileWriter(os.path.join(uri, "data", name), ovl.schema, version=ds.data_storage_version); w.write_batch(ovl); w.close()
op = lance.LanceOperation.DataOverlay([lance.LanceOperation.DataOverlayGroup(1, [lance.LanceOperation.DataOverlayFile(DataFile.create(ds, name), [1, 3])])])
ds = lance.LanceDataset.commit(uri, op, read_version=ds.version)
print("read:", ds.to_table().column("feat").to_pylist())
for what, f in [("append", lambda: lance.write_dataset(pa.table({"id": pa.array([9], pa.int64()), "feat": pa.array([0.0], pa.float32())}), uri, mode="append")),
                ("add_columns", lambda: lance.dataset(uri).add_columns({"x": "id * 2"})),
                ("delete", lambda: lance.dataset(uri).delete("id = 0")),
                ("tags.create", lambda: lance.dataset(uri).tags.create("t", 3)),
                ("cleanup", lambda: lance.dataset(uri).cleanup_old_versions(older_than=__import__('datetime').timedelta(0))),
                ("restore v2", lambda: lance.dataset(uri, version=2).restore())]:
    try: f(); print(what, "OK")
    except Exception as e: print(what, "FAILS:", type(e).__name__, str(e)[:130])
print("version now", lance.dataset(uri).version)
