import socket, threading, lance, pyarrow as pa, boto3, logging
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False); server.start()
ep = f"http://127.0.0.1:{port}"
boto3.client("s3", endpoint_url=ep, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1").create_bucket(Bucket="fkit")
SO = {"aws_endpoint": ep, "aws_access_key_id": "t", "aws_secret_access_key": "t", "region": "us-east-1", "allow_http": "true"}
wins = []
for r in range(8):
    res = []
    bar = threading.Barrier(3)
    def go(i):
        bar.wait()
        try:
            lance.write_dataset(pa.table({"id": [i]}), f"s3://fkit/c{r}.lance", mode="create", storage_options=SO); res.append("ok")
        except Exception as e:
            res.append(type(e).__name__ + ": " + str(e)[:90])
    ts = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    [t.start() for t in ts]; [t.join() for t in ts]
    wins.append(res.count("ok"))
    if r == 0: print(res)
print("winners per round:", wins)
ds = lance.dataset("s3://fkit/c0.lance", storage_options=SO)
ds2 = lance.dataset("s3://fkit/c0.lance", storage_options=SO)
ds2.tags.create("x", 1)
print("old object sees new tag:", "x" in ds.tags.list())
server.stop()
