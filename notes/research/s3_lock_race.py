import socket, threading, lance, pyarrow as pa, boto3
from moto.server import ThreadedMotoServer
from lance.commit import CommitConflictError
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port); server.start()
ep = f"http://127.0.0.1:{port}"
boto3.client("s3", endpoint_url=ep, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1").create_bucket(Bucket="fkit")
SO = {"aws_endpoint": ep, "aws_access_key_id": "t", "aws_secret_access_key": "t", "region": "us-east-1", "allow_http": "true"}
uri = "s3://fkit/l.lance"
lance.write_dataset(pa.table({"id": [1]}), uri, storage_options=SO)
T, ROUNDS = 4, 15
def race(fn):
    bad = 0
    for r in range(ROUNDS):
        barrier = threading.Barrier(T); wins = []
        def go(i):
            ds = lance.dataset(uri, storage_options=SO); barrier.wait()
            try: fn(ds, r, i); wins.append(i)
            except (ValueError, CommitConflictError, OSError): pass
        ts = [threading.Thread(target=go, args=(i,)) for i in range(T)]; [t.start() for t in ts]; [t.join() for t in ts]
        bad += len(wins) != 1
    return bad
def tag_lock(ds, r, i): ds.tags.create(f"lock{r}", ds.version)
def cfg_lock(ds, r, i):
    lance.LanceDataset.commit(uri, lance.LanceOperation.UpdateConfig(config_updates=lance.LanceOperation.UpdateMap({f"fk.lock{r}": str(i)}, replace=False)),
                              read_version=ds.version, storage_options=SO)
print(f"tags.create lock: rounds without exactly one winner: {race(tag_lock)}/{ROUNDS} ({T} threads each)")
print(f"UpdateConfig lock: rounds without exactly one winner: {race(cfg_lock)}/{ROUNDS}")
server.stop()
