import shutil, os, uuid, lance, pyarrow as pa, pyarrow.compute as pc
from lance.fragment import DataFile
from lance.file import LanceFileWriter
uri = "/tmp/research/q2.lance"
def fresh():
    shutil.rmtree(uri, ignore_errors=True)
    n = 8
    ds = lance.write_dataset(pa.table({"id": pa.array(range(n), pa.int64()),
                                       "img": pa.array([os.urandom(1000) for _ in range(n)], pa.binary())}),
                             uri, max_rows_per_file=4)
    ds.add_columns(pa.schema([pa.field("feat", pa.list_(pa.string())), pa.field("state", pa.string())]))
    return lance.dataset(uri)
def files(ds, k=1):
    return [(os.path.basename(d.path)[:8], d.fields) for d in ds.get_fragment(k).data_files()]
def show(tag, ds, k=1):
    print(f"{tag}: v{ds.version} frag{k} files={files(ds, k)}")
    print("   ", ds.to_table(columns=["id", "feat", "state"], with_row_address=True).to_pylist()[3:7])

# (a) fragment.update_columns + Update(rewrite_columns): fill the all-null columns of fragment 1
ds = fresh(); frag = ds.get_fragment(1)
addr = frag.to_table(columns=[], with_row_address=True).column("_rowaddr")
src = pa.table({"_rowaddr": addr, "feat": pa.array([["v%d" % i] for i in range(4)], pa.list_(pa.string())),
                "state": pa.array(["ok"] * 4)})
show("before", ds)
for key in ["_rowid", "_rowaddr"]:
    try:
        s = src.rename_columns([key, "feat", "state"]) if key == "_rowid" else src
        md, fields = frag.update_columns(s, left_on=key)
        print(f"update_columns(left_on={key}) ok; fields_modified={fields}; new files={[(os.path.basename(d.path)[:8], d.fields) for d in md.data_files()]}")
        break
    except Exception as e:
        print(f"update_columns(left_on={key}) failed:", type(e).__name__, str(e)[:200])
ds = lance.LanceDataset.commit(uri, lance.LanceOperation.Update(updated_fragments=[md], fields_modified=fields,
                               update_mode="rewrite_columns"), read_version=ds.version)
show("(a) after update_columns", ds)
# (b) sparse: update 1 row's feat in fragment 1 via update_columns (left outer join keeps others)
frag = ds.get_fragment(1)
one = pa.table({"_rowid": pa.array([addr[1].as_py()], pa.uint64()), "feat": pa.array([["NEW"]], pa.list_(pa.string()))})
md, fields = frag.update_columns(one)
ds = lance.LanceDataset.commit(uri, lance.LanceOperation.Update(updated_fragments=[md], fields_modified=fields,
                               update_mode="rewrite_columns"), read_version=ds.version)
show("(b) after sparse update_columns of feat only", ds)

# (c) merge_columns / add_columns on an existing column name
ds = fresh()
try:
    ds.get_fragment(1).merge_columns(lambda b: pa.record_batch({"feat": pa.array([["x"]] * b.num_rows, pa.list_(pa.string()))}), columns=["id"])
    print("merge_columns on existing name: no error")
except Exception as e:
    print("merge_columns on existing name:", type(e).__name__, str(e)[:160])
try:
    ds.add_columns(lambda b: pa.record_batch({"feat": pa.array([["x"]] * b.num_rows, pa.list_(pa.string()))}), read_columns=["id"])
    print("add_columns on existing name: no error")
except Exception as e:
    print("add_columns on existing name:", type(e).__name__, str(e)[:160])

# (d) merge_insert rewrite_columns keyed on id (public, dataset level)
ds = fresh()
res = (ds.merge_insert("id").when_matched_update_all().write_mode("rewrite_columns")
       .execute(pa.table({"id": pa.array([5, 6], pa.int64()), "feat": pa.array([["m5"], ["m6"]], pa.list_(pa.string())),
                          "state": pa.array(["ok", "ok"])})))
ds = lance.dataset(uri); print("merge_insert result", res); show("(d) after merge_insert rewrite_columns", ds)

# (e) DataOverlay: sparse values for 2 rows of fragment 1, no rewrite of the column
ds = fresh()
ovl = pa.table({"feat": pa.array([["o1"], ["o3"]], pa.list_(pa.string())), "state": pa.array(["ok", "ok"])})
name = uuid.uuid4().hex + ".lance"
w = LanceFileWriter(os.path.join(uri, "data", name), ovl.schema, version=ds.data_storage_version); w.write_batch(ovl); w.close()
df = DataFile.create(ds, name)
op = lance.LanceOperation.DataOverlay([lance.LanceOperation.DataOverlayGroup(1, [lance.LanceOperation.DataOverlayFile(df, [1, 3])])])
try:
    ds = lance.LanceDataset.commit(uri, op, read_version=ds.version)
    show("(e) after DataOverlay offsets [1,3]", ds)
    print("    filter on overlaid col:", ds.to_table(columns=["id"], filter="state = 'ok'").column("id").to_pylist())
    print("    fragment metadata:", ds.get_fragment(1).metadata)
    ds.optimize.compact_files(target_rows_per_fragment=100); ds = lance.dataset(uri)
    print("    after compaction:", ds.to_table(columns=["id", "feat"]).to_pylist()[4:8], [len(f.data_files()) for f in ds.get_fragments()])
except Exception as e:
    print("DataOverlay failed:", type(e).__name__, str(e)[:300])
