import os, sys, uuid, shutil, time, threading, socket, lance, pyarrow as pa, boto3
from lance.file import LanceFileWriter
from lance.fragment import DataFile
from lance.commit import CommitConflictError
MODE = sys.argv[1]
if MODE == "s3":
    from moto.server import ThreadedMotoServer
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port); server.start()
    ep = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=ep, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1").create_bucket(Bucket="fkit")
    SO = {"aws_endpoint": ep, "aws_access_key_id": "t", "aws_secret_access_key": "t", "region": "us-east-1", "allow_http": "true"}
    root = "s3://fkit"
else:
    SO = None; root = "/tmp/research/q3c"; shutil.rmtree(root, ignore_errors=True); os.makedirs(root)
def new(name):
    uri = f"{root}/{name}.lance"
    lance.write_dataset(pa.table({"id": pa.array(range(8), pa.int64())}), uri, storage_options=SO, max_rows_per_file=4)
    ds = lance.dataset(uri, storage_options=SO); ds.add_columns(pa.schema([pa.field("f", pa.float32())]))
    return uri, lance.dataset(uri, storage_options=SO)
def repl(ds, uri, frag, val):
    name = uuid.uuid4().hex + ".lance"
    w = LanceFileWriter(f"{uri}/data/{name}", pa.schema([pa.field("f", pa.float32())]), storage_options=SO,
                        version=ds.data_storage_version)
    w.write_batch(pa.table({"f": pa.array([val] * 4, pa.float32())})); w.close()
    return lance.LanceOperation.DataReplacement([lance.LanceOperation.DataReplacementGroup(frag, DataFile.create(ds, name))])
def tryc(label, f):
    try: r = f(); print(f"{MODE} {label}: committed v{r.version}")
    except Exception as e: print(f"{MODE} {label}: {type(e).__module__}.{type(e).__name__} retryable={getattr(e, 'retryable', '-')} isOSError={isinstance(e, OSError)}: {str(e)[:170]}")
# 1. two DataReplacements of the same fragment from the same read_version
uri, ds = new("a"); v = ds.version
op1, op2 = repl(ds, uri, 0, 1.0), repl(ds, uri, 0, 2.0)
tryc("DR frag0 #1", lambda: lance.LanceDataset.commit(uri, op1, read_version=v, storage_options=SO))
tryc("DR frag0 #2 same read_version", lambda: lance.LanceDataset.commit(uri, op2, read_version=v, storage_options=SO))
# 2. DR on another fragment, same read_version
op3 = repl(ds, uri, 1, 3.0)
tryc("DR frag1 same stale read_version", lambda: lance.LanceDataset.commit(uri, op3, read_version=v, storage_options=SO))
print("   values:", lance.dataset(uri, storage_options=SO).to_table().column("f").to_pylist())
# 3. max_retries=0 with a stale read_version and a compatible op
uri, ds = new("b"); v = ds.version
op = repl(ds, uri, 0, 5.0)
lance.write_dataset(pa.table({"id": pa.array([99], pa.int64()), "f": pa.array([0.0], pa.float32())}), uri, mode="append", storage_options=SO)
tryc("DR after concurrent append, max_retries=0", lambda: lance.LanceDataset.commit(uri, op, read_version=v, storage_options=SO, max_retries=0))
# 4. DR after a concurrent drop of the column / a concurrent compaction
uri, ds = new("c"); v = ds.version; op = repl(ds, uri, 0, 6.0)
lance.dataset(uri, storage_options=SO).optimize.compact_files(target_rows_per_fragment=100)
tryc("DR after concurrent compaction", lambda: lance.LanceDataset.commit(uri, op, read_version=v, storage_options=SO))
# 5. tag as a lock: concurrent create of the same tag
uri, ds = new("d")
res = []
def grab(i):
    try: lance.dataset(uri, storage_options=SO).tags.create("featurekit-writer-lock", 1); res.append(("won", i))
    except Exception as e: res.append((type(e).__name__ + ": " + str(e)[:80], i))
ts = [threading.Thread(target=grab, args=(i,)) for i in range(6)]
[t.start() for t in ts]; [t.join() for t in ts]
print(f"{MODE} 6 concurrent tags.create same name:", sorted(set(r[0] for r in res)), "winners:", sum(r[0] == "won" for r in res))
# 6. UpdateConfig same key from same read_version
uri, ds = new("e"); v = ds.version
op_a = lance.LanceOperation.UpdateConfig(config_updates=lance.LanceOperation.UpdateMap({"fk.lock": "A"}, replace=False))
op_b = lance.LanceOperation.UpdateConfig(config_updates=lance.LanceOperation.UpdateMap({"fk.lock": "B"}, replace=False))
tryc("UpdateConfig fk.lock=A", lambda: lance.LanceDataset.commit(uri, op_a, read_version=v, storage_options=SO))
tryc("UpdateConfig fk.lock=B same read_version", lambda: lance.LanceDataset.commit(uri, op_b, read_version=v, storage_options=SO))
print("   config:", lance.dataset(uri, storage_options=SO).config())
if MODE == "s3": server.stop()
