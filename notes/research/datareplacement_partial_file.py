import os, shutil, uuid, lance, pyarrow as pa
from lance.file import LanceFileWriter
from lance.fragment import DataFile
uri = "/tmp/research/q2c.lance"; shutil.rmtree(uri, ignore_errors=True)
ds = lance.write_dataset(pa.table({"id": pa.array(range(4), pa.int64())}), uri)
ds.add_columns(pa.schema([pa.field("f", pa.float32()), pa.field("st", pa.string())])); ds = lance.dataset(uri)
def repl(ds, cols):
    t = pa.table(cols); name = uuid.uuid4().hex + ".lance"
    w = LanceFileWriter(os.path.join(uri, "data", name), t.schema); w.write_batch(t); w.close()
    return lance.LanceDataset.commit(uri, lance.LanceOperation.DataReplacement([lance.LanceOperation.DataReplacementGroup(0, DataFile.create(ds, name))]), read_version=ds.version)
ds = repl(ds, {"f": pa.array([1.0] * 4, pa.float32()), "st": pa.array(["a"] * 4)})
# sparse update of f only -> f moves to its own file
md, fields = ds.get_fragment(0).update_columns(pa.table({"_rowid": pa.array([2], pa.uint64()), "f": pa.array([9.0], pa.float32())}))
ds = lance.LanceDataset.commit(uri, lance.LanceOperation.Update(updated_fragments=[md], fields_modified=fields, update_mode="rewrite_columns"), read_version=ds.version)
print("files:", [d.fields for d in ds.get_fragment(0).data_files()])
for label, cols in [("f+st (spans 2 files)", {"f": pa.array([3.0] * 4, pa.float32()), "st": pa.array(["c"] * 4)}),
                    ("st only (part of a file)", {"st": pa.array(["d"] * 4)})]:
    try:
        ds = repl(ds, cols); print(label, "OK ->", [d.fields for d in ds.get_fragment(0).data_files()], ds.to_table().to_pylist()[2])
    except Exception as e: print(label, "FAILS:", type(e).__name__, str(e)[:250])
