"""pylance 14.0.2 `commit_lock=` and transaction properties on moto S3: what a fencing
commit lock can do (featurekit `table/lease.py`, notes/storage.md).

Run: python notes/research/commit_lock_fencing.py   (needs moto[server], boto3)
"""
import contextlib
import logging
import socket
import threading

import boto3
import lance
import pyarrow as pa
from moto.server import ThreadedMotoServer

logging.getLogger("werkzeug").setLevel(logging.ERROR)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
srv.start()
ep = f"http://127.0.0.1:{port}"
boto3.client("s3", endpoint_url=ep, aws_access_key_id="t", aws_secret_access_key="t",
             region_name="us-east-1").create_bucket(Bucket="bkt-fk")
so = {"aws_endpoint": ep, "region": "us-east-1", "allow_http": "true", "aws_access_key_id": "t",
      "aws_secret_access_key": "t"}
uri = "s3://bkt-fk/t.lance"

ds = lance.write_dataset(pa.table({"a": [1]}), uri, storage_options=so, transaction_properties={"w": "g1"})
print("1. transaction_properties recorded:", ds.read_transaction(ds.version).transaction_properties)

calls = []


@contextlib.contextmanager
def ok(version):
    calls.append(version)
    yield


ds = lance.write_dataset(pa.table({"a": [2]}), uri, mode="append", commit_lock=ok, storage_options=so)
print("2. commit_lock called with the version being written:", calls)


@contextlib.contextmanager
def refuse(version):
    raise RuntimeError(f"lease lost at {version}")
    yield


try:
    lance.write_dataset(pa.table({"a": [3]}), uri, mode="append", commit_lock=refuse, storage_options=so)
except OSError as exc:
    print("3. a raising commit_lock -> OSError:", str(exc)[:160])
print("   rows after:", lance.dataset(uri, storage_options=so).to_table().column("a").to_pylist())

frag = lance.fragment.LanceFragment.create(uri, pa.table({"a": [4]}), storage_options=so)
tx = lance.Transaction(ds.version, lance.LanceOperation.Append([frag]), transaction_properties={"w": "g3"})
ds2 = lance.LanceDataset.commit(uri, tx, commit_lock=ok, storage_options=so)
print("4. LanceDataset.commit(Transaction(..., transaction_properties)):",
      ds2.read_transaction(ds2.version).transaction_properties)

calls.clear()
ds2.add_columns(pa.schema([pa.field("b", pa.int32())]))
print("5. the dataset a commit_lock commit returns keeps the lock for later commits:", calls)


@contextlib.contextmanager
def calls_lance(version):
    try:
        lance.dataset(uri, storage_options=so).tags.list()
        print("6. a Lance call inside commit_lock: worked")
    except BaseException as exc:  # pyo3 PanicException derives from BaseException
        print("6. a Lance call inside commit_lock:", type(exc).__name__, str(exc)[:90])
    box = []
    t = threading.Thread(target=lambda: box.append(lance.dataset(uri, storage_options=so).tags.list()))
    t.start()
    t.join()
    print("   the same from a thread of its own: worked", box[0] == {})
    yield


lance.write_dataset(pa.table({"a": [5], "b": pa.array([1], pa.int32())}), uri, mode="append", commit_lock=calls_lance, storage_options=so)
srv.stop()
