import time, lance, pyarrow as pa
schema = pa.schema([pa.field("id", pa.int64()), pa.field("label", pa.string()), pa.field("score", pa.float32()),
                    pa.field("tags", pa.list_(pa.string())), pa.field("meta", pa.struct([("w", pa.int32())]))])
t0 = time.perf_counter()
ds = lance.write_dataset(schema.empty_table(), "memory://fk_filter_check")
print(f"empty memory:// dataset: {1000 * (time.perf_counter() - t0):.1f} ms; version {ds.version}; rows {ds.count_rows()}")
CASES = ["score > 0.5 AND label = 'cat'", "meta.w = 3", "array_has_any(tags, ['a'])", "label LIKE 'c%'", "id IN (1, 2)",
         "score >", "scroe > 0.5", "nope.w = 1", "label = 5", "id = 'x'", "DROP TABLE t", "score > 0.5; DELETE", "regexp_like(label, '^a')", "unknown_fn(id)"]
for how in ["scanner(filter=)", "scanner+explain_plan", "count_rows(filter=)", "to_table(filter=,limit=0)"]:
    print(f"-- {how}")
    for f in CASES:
        t = time.perf_counter()
        try:
            if how == "scanner(filter=)": ds.scanner(filter=f)
            elif how == "scanner+explain_plan": ds.scanner(filter=f).explain_plan()
            elif how == "count_rows(filter=)": ds.count_rows(filter=f)
            else: ds.to_table(filter=f, limit=0)
            r = "accepted"
        except Exception as e:
            r = f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"
        print(f"   {1000 * (time.perf_counter() - t):6.2f} ms  {f!r:38} -> {r}")
