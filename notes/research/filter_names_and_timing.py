import time, lance, pyarrow as pa
schema = pa.schema([pa.field("id", pa.int64()), pa.field("Label", pa.string()), pa.field("my col", pa.string())])
ds = lance.write_dataset(schema.empty_table(), "memory://chk")
try: lance.write_dataset(schema.empty_table(), "memory://chk"); print("second write same memory:// name: ok")
except Exception as e: print("second write same memory:// name:", type(e).__name__, str(e)[:100])
for f in ["ID = 1", "Label = 'x'", "`Label` = 'x'", "\"Label\" = 'x'", "`my col` = 'a'", "_rowid > 3", "score > 0.5; DELETE FROM t", "id > 1 garbage"]:
    try: ds.count_rows(filter=f); r = "accepted"
    except Exception as e: r = type(e).__name__ + ": " + str(e).splitlines()[0][:120]
    print(f"{f!r:32} -> {r}")
t = time.perf_counter()
for i in range(200): ds.count_rows(filter="id > 1 AND Label = 'x'")
print(f"count_rows check: {(time.perf_counter() - t) / 200 * 1000:.2f} ms each (200 runs)")
t = time.perf_counter()
for i in range(50): lance.write_dataset(schema.empty_table(), f"memory://chk{i}")
print(f"empty memory:// dataset creation: {(time.perf_counter() - t) / 50 * 1000:.2f} ms each")
