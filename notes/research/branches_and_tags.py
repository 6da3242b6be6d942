import os, shutil, uuid, lance, pyarrow as pa
from lance.file import LanceFileWriter
from lance.fragment import DataFile
uri = "/tmp/research/q4.lance"; shutil.rmtree(uri, ignore_errors=True)
def tryp(label, f):
    try: r = f(); print("OK  ", label, "->", r); return r
    except Exception as e: print("FAIL", label, "->", type(e).__name__, str(e)[:200])
def listing(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
ds = lance.write_dataset(pa.table({"id": pa.array(range(8), pa.int64())}), uri, max_rows_per_file=4)   # v1
ds.add_columns(pa.schema([pa.field("f", pa.float32())])); ds = lance.dataset(uri)                     # v2
main_before = listing(uri); main_version = ds.version
b = tryp("create_branch('exp', 2)", lambda: ds.create_branch("exp", 2))
print("     branch ds: uri", b.uri, "version", b.version, "latest", b.latest_version)
tryp("branches.list()", lambda: lance.dataset(uri).branches.list())
tryp("branches.list_ordered()", lambda: lance.dataset(uri).branches.list_ordered())
# checkout a branch
tryp("lance.dataset(uri, version=('exp', None))", lambda: lance.dataset(uri, version=("exp", None)))
tryp("checkout_version(('exp', None)).version", lambda: lance.dataset(uri).checkout_version(("exp", None)).version)
tryp("ds.checkout_version(('exp', None)).uri", lambda: ds.checkout_version(("exp", None)).uri)
tryp("lance.dataset(b.uri).version", lambda: lance.dataset(b.uri).version)
# writes onto the branch
tryp("append via write_dataset(tbl, b, mode='append')", lambda: lance.write_dataset(
    pa.table({"id": pa.array([100, 101], pa.int64()), "f": pa.array([1.0, 2.0], pa.float32())}), b, mode="append").version)
b = lance.dataset(uri).checkout_version(("exp", None))
tryp("add_columns on branch ds", lambda: b.add_columns({"g": "id * 2"}) or lance.dataset(uri).checkout_version(("exp", None)).schema.names)
b = lance.dataset(uri).checkout_version(("exp", None))
print("     checkout_version uri:", b.uri, " vs lance.dataset(tree/exp).uri:", lance.dataset(uri + "/tree/exp").uri)
b = lance.dataset(uri + "/tree/exp")
name = uuid.uuid4().hex + ".lance"
w = LanceFileWriter(os.path.join(b.uri, "data", name), pa.schema([pa.field("f", pa.float32())]))
w.write_batch(pa.table({"f": pa.array([7.0] * 4, pa.float32())})); w.close()
print("     file written into", os.path.join(b.uri, "data"))
tryp("DataFile.create(b, name)", lambda: DataFile.create(b, name))
op = lance.LanceOperation.DataReplacement([lance.LanceOperation.DataReplacementGroup(0, DataFile.create(b, name))])
tryp("commit(b, DataReplacement, read_version=b.version)", lambda: lance.LanceDataset.commit(b, op, read_version=b.version).version)
b = lance.dataset(uri).checkout_version(("exp", None))
print("     branch rows:", b.to_table().to_pylist()[:2], "... n =", b.count_rows(), "version", b.version)
m = lance.dataset(uri)
print("     main version", m.version, "schema", m.schema.names, "rows", m.count_rows(), "f:", m.to_table().column("f").to_pylist()[:4])
after = listing(uri)
print("     main-side files unchanged:", [p for p in main_before if p not in after] == [], "new files:", [p for p in after if p not in main_before])
print("     main _versions:", sorted(os.listdir(os.path.join(uri, "_versions"))))
print("     main versions():", [v["version"] for v in m.versions()])
# tags
tryp("tags.create('base', 2)", lambda: m.tags.create("base", 2))
tryp("tags.create('exp-head', ('exp', None))", lambda: m.tags.create("exp-head", ("exp", None)))
tryp("tags.list()", lambda: m.tags.list())
tryp("lance.dataset(uri, version='base').version", lambda: lance.dataset(uri, version="base").version)
tryp("lance.dataset(uri, version='exp-head') names", lambda: (lance.dataset(uri, version="exp-head").version, lance.dataset(uri, version="exp-head").schema.names))
tryp("create_branch from tag 'base'", lambda: m.create_branch("exp2", "base").version)
tryp("branch of branch ('exp', 4)", lambda: m.create_branch("exp3", ("exp", 4)).version)
tryp("branches.list() parent info", lambda: {k: (v["parent_branch"], v["parent_version"]) for k, v in lance.dataset(uri).branches.list().items()})
tryp("delete branch exp3", lambda: m.branches.delete("exp3"))
print("     tree:", listing(os.path.join(uri, "tree"))[:20])
print("     _refs:", listing(os.path.join(uri, "_refs")))
