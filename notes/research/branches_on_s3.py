import os, socket, time, uuid, lance, pyarrow as pa, boto3
from moto.server import ThreadedMotoServer
from lance.file import LanceFileWriter
from lance.fragment import DataFile
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port); server.start()
ep = f"http://127.0.0.1:{port}"
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1")
s3.create_bucket(Bucket="fkit")
SO = {"aws_endpoint": ep, "aws_access_key_id": "t", "aws_secret_access_key": "t", "region": "us-east-1", "allow_http": "true"}
def T(label, f):
    t=time.perf_counter()
    try: r = f(); print("OK  ", label, "->", r, f"({time.perf_counter()-t:.2f}s)"); return r
    except Exception as e: print("FAIL", label, "->", type(e).__name__, str(e)[:300])
import sys
uri = sys.argv[1] if len(sys.argv) > 1 else "s3://fkit/t.lance"
so = SO if uri.startswith("s3") else None
ds = lance.write_dataset(pa.table({"id": pa.array(range(8), pa.int64())}), uri, max_rows_per_file=4, storage_options=so)
print("uri", ds.uri, "init opts", ds.initial_storage_options)
ds.add_columns(pa.schema([pa.field("f", pa.float32())])); ds = lance.dataset(uri, storage_options=so)
b = T("create_branch", lambda: ds.create_branch("exp", ds.version))
print("b.uri", b.uri, b.initial_storage_options)
b2 = T("open tree", lambda: lance.dataset(uri + "/tree/exp", storage_options=so))
print("b2.uri", b2.uri, b2.version)
T("frag files on branch", lambda: [(d.path, d.fields, getattr(d, "base_id", None)) for f in b2.get_fragments() for d in f.data_files()])
T("base_paths", lambda: b2.base_paths() if callable(b2.base_paths) else b2.base_paths)
T("add_columns on branch", lambda: b2.add_columns(pa.schema([pa.field("g", pa.string()), pa.field("_fk_g", pa.string())])))
b2 = lance.dataset(uri + "/tree/exp", storage_options=so)
print("branch schema", b2.schema.names, "v", b2.version, "; main", lance.dataset(uri, storage_options=so).schema.names)
name = uuid.uuid4().hex + ".lance"
sch = pa.schema([pa.field("g", pa.string()), pa.field("_fk_g", pa.string())])
def wr():
    w = LanceFileWriter(f"{b2.uri}/data/{name}", sch, version=b2.data_storage_version, storage_options=b2.initial_storage_options)
    w.write_batch(pa.table({"g": ["x"]*4, "_fk_g": ["fp"]*4}, schema=sch)); w.close(); return True
T("write file branch", wr)
op = lance.LanceOperation.DataReplacement([lance.LanceOperation.DataReplacementGroup(0, DataFile.create(b2, name))])
T("commit DR on branch (ds obj)", lambda: lance.LanceDataset.commit(b2, op, read_version=b2.version).version)
b2 = lance.dataset(uri + "/tree/exp", storage_options=so)
T("branch g", lambda: b2.to_table(columns=["g"]).column(0).to_pylist())
T("commit by uri string tree", lambda: lance.LanceDataset.commit(uri + "/tree/exp", lance.LanceOperation.DataReplacement([lance.LanceOperation.DataReplacementGroup(1, DataFile.create(b2, name))]), read_version=b2.version, storage_options=so).version)
T("update_field_metadata on branch", lambda: b2.update_field_metadata({"g": {"featurekit.x": "1"}}))
T("update_schema_metadata on branch", lambda: b2.update_schema_metadata({"featurekit.applies": "[]"}))
b2 = lance.dataset(uri + "/tree/exp", storage_options=so)
print("branch ver", b2.version, "meta", b2.schema.metadata, b2.schema.field("g").metadata)
T("append branch", lambda: lance.write_dataset(pa.table({"id": pa.array([100], pa.int64()), "f": pa.array([1.0], pa.float32())}), b2, mode="append").version)
T("append branch via uri", lambda: lance.write_dataset(pa.table({"id": pa.array([101], pa.int64()), "f": pa.array([1.0], pa.float32())}), uri+"/tree/exp", mode="append", storage_options=so).version)
b2 = lance.dataset(uri + "/tree/exp", storage_options=so)
print("branch rows", b2.count_rows(), b2.version, b2.schema.names)
T("branch version pin", lambda: lance.dataset(uri + "/tree/exp", version=3, storage_options=so).version)
T("tags on branch ds", lambda: b2.tags.create("exp-v", b2.version))
T("tags list main", lambda: lance.dataset(uri, storage_options=so).tags.list())
T("tags list branch", lambda: b2.tags.list())
T("open tag from main", lambda: (lance.dataset(uri, version="exp-v", storage_options=so).version, lance.dataset(uri, version="exp-v", storage_options=so).uri))
T("branches list", lambda: lance.dataset(uri, storage_options=so).branches.list())
T("branches list from branch", lambda: b2.branches.list())
T("branch versions", lambda: [v["version"] for v in b2.versions()])
m = lance.dataset(uri, storage_options=so)
print("main", m.version, m.schema.names, m.count_rows())
T("tree open missing", lambda: lance.dataset(uri + "/tree/nope", storage_options=so))
if so:
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="fkit")["Contents"])
    print("\n".join(keys))
server.stop()
