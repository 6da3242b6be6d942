import lance, pyarrow as pa
ds = lance.write_dataset(pa.schema([pa.field("id", pa.int64()), pa.field("score", pa.float32())]).empty_table(), "memory://chk")
for f in ["id > 1 garbage", "score > 0.5; DELETE", "id > 1", "id > 1 AND score < 2", "id > 1 -- comment", "id > 1) OR (1=1"]:
    for wrap in [False, True]:
        g = f"({f})" if wrap else f
        try: ds.count_rows(filter=g); r = "accepted"
        except Exception as e: r = type(e).__name__ + ": " + str(e).splitlines()[0][:110]
        print(f"{g!r:30} -> {r}")
# what does the trailing junk do? real data
ds = lance.write_dataset(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "score": pa.array([0.1, 0.6, 0.9], pa.float32())}), "memory://chk2")
print("rows for 'id > 1 garbage':", ds.count_rows(filter="id > 1 garbage"), "| 'score > 0.5; DELETE':", ds.count_rows(filter="score > 0.5; DELETE"))
