import os, socket, time, uuid, lance, pyarrow as pa, boto3
from moto.server import ThreadedMotoServer
from lance.file import LanceFileWriter, LanceFileReader
from lance.fragment import DataFile
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port); server.start()
endpoint = f"http://127.0.0.1:{port}"
boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
             region_name="us-east-1").create_bucket(Bucket="fkit")
SO = {"aws_endpoint": endpoint, "aws_access_key_id": "test", "aws_secret_access_key": "test",
      "region": "us-east-1", "allow_http": "true"}
uri = "s3://fkit/t.lance"
def step(name, f):
    t = time.perf_counter()
    try:
        r = f(); print(f"OK   {name} ({time.perf_counter() - t:.2f}s)"); return r
    except Exception as e:
        print(f"FAIL {name}: {type(e).__name__}: {str(e)[:250]}")
ds = step("write_dataset", lambda: lance.write_dataset(pa.table({"id": pa.array(range(8), pa.int64())}), uri,
                                                      storage_options=SO, max_rows_per_file=4))
step("add_columns(schema) nulls", lambda: ds.add_columns(pa.schema([pa.field("feat", pa.list_(pa.string())), pa.field("state", pa.string())])))
ds = step("lance.dataset(uri, storage_options)", lambda: lance.dataset(uri, storage_options=SO))
print("  version", ds.version, "rows", ds.count_rows(), "ds.uri", ds.uri)
name = uuid.uuid4().hex + ".lance"
tbl = pa.table({"feat": pa.array([["a"], None, ["b", "c"], []], pa.list_(pa.string())), "state": pa.array(["ok"] * 4)})
def write_file():
    w = LanceFileWriter(f"{uri}/data/{name}", tbl.schema, version=ds.data_storage_version, storage_options=SO)
    w.write_batch(tbl); w.close(); return w.size_bytes
step("LanceFileWriter(s3://.../data/x.lance, storage_options)", write_file)
step("LanceFileWriter without storage_options (env has no creds)", lambda: LanceFileWriter(f"{uri}/data/zz.lance", tbl.schema).close())
df = step("DataFile.create(ds, name)", lambda: DataFile.create(ds, name)); print("  ", df)
grp = [lance.LanceOperation.DataReplacementGroup(1, df)]
ds2 = step("commit DataReplacement (storage_options)", lambda: lance.LanceDataset.commit(
    uri, lance.LanceOperation.DataReplacement(grp), read_version=ds.version, storage_options=SO))
ds2 = step("commit DataReplacement passing the dataset object", lambda: lance.LanceDataset.commit(
    ds, lance.LanceOperation.DataReplacement(grp), read_version=ds.version)) if ds2 is None else ds2
print("  read back:", lance.dataset(uri, storage_options=SO).to_table().column("feat").to_pylist())
# update_columns on S3 (uses the dataset's storage options)
ds = lance.dataset(uri, storage_options=SO); frag = ds.get_fragment(0)
addr = frag.to_table(columns=[], with_row_address=True).column("_rowaddr")
src = pa.table({"_rowid": addr, "feat": pa.array([["u"]] * 4, pa.list_(pa.string())), "state": pa.array(["ok"] * 4)})
def upd():
    md, fields = frag.update_columns(src)
    return lance.LanceDataset.commit(ds, lance.LanceOperation.Update(updated_fragments=[md], fields_modified=fields,
                                     update_mode="rewrite_columns"), read_version=ds.version)
d3 = step("fragment.update_columns + Update commit on s3", upd)
print("  read back:", lance.dataset(uri, storage_options=SO).to_table().column("feat").to_pylist())
step("merge_insert rewrite_columns on s3", lambda: lance.dataset(uri, storage_options=SO).merge_insert("id").when_matched_update_all()
     .write_mode("rewrite_columns").execute(pa.table({"id": pa.array([7], pa.int64()), "state": pa.array(["m"])})))
step("compact_files on s3", lambda: lance.dataset(uri, storage_options=SO).optimize.compact_files())
step("tags/branch on s3", lambda: (lance.dataset(uri, storage_options=SO).tags.create("t1", 2),
                                   lance.dataset(uri, storage_options=SO).create_branch("exp", 2)))
print("  branches:", lance.dataset(uri, storage_options=SO).branches.list())
print("  objects:", sorted(o["Key"] for o in boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
      aws_secret_access_key="test", region_name="us-east-1").list_objects_v2(Bucket="fkit")["Contents"] if "_versions" in o["Key"] or "tree" in o["Key"] or "_refs" in o["Key"]))
server.stop()
