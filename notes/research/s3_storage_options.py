import socket, lance, pyarrow as pa, boto3
from moto.server import ThreadedMotoServer
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port); server.start()
ep = f"http://127.0.0.1:{port}"
boto3.client("s3", endpoint_url=ep, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1").create_bucket(Bucket="fkit")
FULL = {"aws_endpoint": ep, "aws_access_key_id": "t", "aws_secret_access_key": "t", "region": "us-east-1", "allow_http": "true"}
variants = {"full": FULL}
for k in ["allow_http", "region"]:
    variants["without " + k] = {a: b for a, b in FULL.items() if a != k}
variants["aws_region instead of region"] = {**{a: b for a, b in FULL.items() if a != "region"}, "aws_region": "us-east-1"}
variants["endpoint instead of aws_endpoint"] = {**{a: b for a, b in FULL.items() if a != "aws_endpoint"}, "endpoint": ep}
for i, (name, so) in enumerate(variants.items()):
    try:
        lance.write_dataset(pa.table({"id": [1]}), f"s3://fkit/o{i}.lance", storage_options=so)
        print(f"{name}: OK", lance.dataset(f"s3://fkit/o{i}.lance", storage_options=so).count_rows())
    except Exception as e: print(f"{name}: {type(e).__name__}: {str(e)[:150]}")
server.stop()
