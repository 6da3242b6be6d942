"""Two DataReplacements of different columns of one fragment, committed from the same read
version (as two concurrent Geneva jobs of two features do): both commit, both values kept.
Observed (pylance 14.0.2): A 4, B 5; a = [1.0]*4 + [None]*4, b = [2.0]*4 + [None]*4."""
import uuid, shutil, lance, pyarrow as pa
from lance.file import LanceFileWriter
from lance.fragment import DataFile
uri = "/tmp/fk_research_dr/t.lance"; shutil.rmtree(uri, ignore_errors=True)
lance.write_dataset(pa.table({"id": pa.array(range(8), pa.int64())}), uri, max_rows_per_file=4)
ds = lance.dataset(uri)
ds.add_columns(pa.schema([pa.field("a", pa.float32())]))
ds = lance.dataset(uri); ds.add_columns(pa.schema([pa.field("b", pa.float32())]))
ds = lance.dataset(uri); v = ds.version
print("files frag0", [ (f.path, f.fields) for f in ds.get_fragment(0).metadata.files ])
def op(col, val):
    name = uuid.uuid4().hex + ".lance"
    w = LanceFileWriter(f"{uri}/data/{name}", pa.schema([pa.field(col, pa.float32())])); w.write_batch(pa.table({col: pa.array([val]*4, pa.float32())})); w.close()
    df = DataFile.create(ds, name)
    return lance.LanceOperation.DataReplacement([lance.LanceOperation.DataReplacementGroup(0, df)])
oa, ob = op("a", 1.0), op("b", 2.0)
print("A", lance.LanceDataset.commit(uri, oa, read_version=v).version)
try:
    print("B", lance.LanceDataset.commit(uri, ob, read_version=v).version)
except Exception as e:
    print("B failed:", type(e).__name__, str(e)[:200])
print(lance.dataset(uri).to_table().to_pydict())
