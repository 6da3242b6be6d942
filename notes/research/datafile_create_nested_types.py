import shutil, uuid, os, lance, pyarrow as pa
from lance.file import LanceFileWriter
from lance.fragment import DataFile
uri = "/tmp/research/q1c.lance"; shutil.rmtree(uri, ignore_errors=True)
T = {"l": pa.list_(pa.string()), "s": pa.struct([("a", pa.int32()), ("b", pa.string())]), "m": pa.map_(pa.string(), pa.int32())}
ds = lance.write_dataset(pa.table({"id": pa.array(range(4), pa.int64())}), uri)
ds.add_columns(pa.schema([pa.field(c, t) for c, t in T.items()]))
ds = lance.dataset(uri)
print("after add_columns(schema):", ds.get_fragment(0).data_files())
tbl = pa.table({"l": pa.array([["a"], None, [], ["b", "c"]], T["l"]),
                "s": pa.array([{"a": 1, "b": "x"}, None, {"a": 3, "b": None}, {"a": 4, "b": "y"}], T["s"]),
                "m": pa.array([[("k", 1)], None, [], [("q", 2), ("r", 3)]], T["m"])})
name = uuid.uuid4().hex + ".lance"
w = LanceFileWriter(os.path.join(uri, "data", name), tbl.schema, version=ds.data_storage_version); w.write_batch(tbl); w.close()
auto = DataFile.create(ds, name)
print("DataFile.create:", auto)
try:
    ds2 = lance.LanceDataset.commit(uri, lance.LanceOperation.DataReplacement([lance.LanceOperation.DataReplacementGroup(0, auto)]), read_version=ds.version)
    print("commit with DataFile.create: OK", ds2.to_table().to_pylist()[:2])
except Exception as e:
    print("commit with DataFile.create rejected:", type(e).__name__, str(e)[:300])
# Lance's own writer layout for nested columns (reference): merge_columns on a fresh dataset
uri2 = "/tmp/research/q1c_ref.lance"; shutil.rmtree(uri2, ignore_errors=True)
ds = lance.write_dataset(pa.table({"id": pa.array(range(4), pa.int64())}), uri2)
frag = ds.get_fragment(0)
md, schema = frag.merge_columns(lambda b: tbl.to_batches()[0], columns=["id"])
print("merge_columns data files:", md.data_files())
# equality of DataFile.create-commit readback
ds = lance.dataset(uri)
print("readback equal:", all(ds.to_table().column(c).combine_chunks().equals(tbl.column(c).combine_chunks()) for c in T))
# does the leaf-only file survive drop_columns / compaction of one nested column?
ds.drop_columns(["s"]); ds = lance.dataset(uri); print("after drop s:", ds.get_fragment(0).data_files()[-1], ds.to_table().to_pylist()[3])
