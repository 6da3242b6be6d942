import socket, uuid, threading, lance, pyarrow as pa, boto3
from moto.server import ThreadedMotoServer
from lance.file import LanceFileWriter
from lance.fragment import DataFile
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port); server.start()
ep = f"http://127.0.0.1:{port}"
c = boto3.client("s3", endpoint_url=ep, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1")
c.create_bucket(Bucket="fkit")
c.put_object(Bucket="fkit", Key="x", Body=b"1")
try:
    c.put_object(Bucket="fkit", Key="x", Body=b"2", IfNoneMatch="*"); print("moto IGNORES If-None-Match")
except Exception as e: print("moto honours If-None-Match:", str(e)[:120])
SO = {"aws_endpoint": ep, "aws_access_key_id": "t", "aws_secret_access_key": "t", "region": "us-east-1", "allow_http": "true"}
uri = "s3://fkit/r.lance"; N = 6
lance.write_dataset(pa.table({"id": pa.array(range(4 * N), pa.int64())}), uri, storage_options=SO, max_rows_per_file=4)
lance.dataset(uri, storage_options=SO).add_columns(pa.schema([pa.field("f", pa.float32())]))
ds = lance.dataset(uri, storage_options=SO); v = ds.version
ops = []
for k in range(N):
    name = uuid.uuid4().hex + ".lance"
    w = LanceFileWriter(f"{uri}/data/{name}", pa.schema([pa.field("f", pa.float32())]), storage_options=SO)
    w.write_batch(pa.table({"f": pa.array([float(k)] * 4, pa.float32())})); w.close()
    ops.append(lance.LanceOperation.DataReplacement([lance.LanceOperation.DataReplacementGroup(k, DataFile.create(ds, name))]))
barrier = threading.Barrier(N); out = []
def go(k):
    barrier.wait()
    try: out.append(lance.LanceDataset.commit(uri, ops[k], read_version=v, storage_options=SO).version)
    except Exception as e: out.append(type(e).__name__)
ts = [threading.Thread(target=go, args=(k,)) for k in range(N)]; [t.start() for t in ts]; [t.join() for t in ts]
d = lance.dataset(uri, storage_options=SO)
print("commit results:", sorted(map(str, out)), "final version", d.version)
print("fragments filled:", sorted(set(x for x in d.to_table().column("f").to_pylist() if x is not None)))
server.stop()
