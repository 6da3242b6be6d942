import shutil, uuid, os, lance, pyarrow as pa
from lance.file import LanceFileWriter, LanceFileReader
from lance.fragment import DataFile

TYPES = {
    "f_list_str": pa.list_(pa.string()),
    "f_struct": pa.struct([("a", pa.int32()), ("b", pa.string())]),
    "f_map": pa.map_(pa.string(), pa.int32()),
    "f_large_list": pa.large_list(pa.float32()),
    "f_fsl_fsl_f16": pa.list_(pa.list_(pa.float16(), 2), 3),
    "f_plain": pa.float32(),
}
def values(t, n):
    import random; random.seed(0)
    out = []
    for i in range(n):
        if pa.types.is_map(t): out.append([("k%d" % i, i), ("z", -i)] if i % 3 else None)
        elif pa.types.is_struct(t): out.append({"a": i, "b": "s%d" % i} if i % 3 else None)
        elif pa.types.is_fixed_size_list(t): out.append([[float(i), 0.5]] * 3 if i % 3 else None)
        elif pa.types.is_large_list(t): out.append([float(i)] * (i % 4) if i % 3 else None)
        elif pa.types.is_list(t): out.append(["x%d" % i] * (i % 3) if i % 3 else None)
        else: out.append(float(i) if i % 3 else None)
    return pa.array(out, t)

def leaf_layout(ds, names):
    """(fields, column_indices) for a file whose top-level columns are `names` (in file order),
    written with LanceFileWriter at the dataset's storage version.
    File format 2.0: every field (parent and child, pre-order) gets a column index, in order.
    File format >= 2.1: only leaf fields get a column; non-leaf fields get -1.
    A 'leaf' for 2.1+: a field without children in the Lance schema. (Lance's own writer
    treats fixed_size_list children as part of the parent? -> verified below.)"""
    major, minor = (int(v) for v in ds.data_storage_version.split("."))
    fields, idx, col = [], [], 0
    def walk(f):
        nonlocal col
        kids = f.children()
        fields.append(f.id())
        if (major, minor) < (2, 1) or not kids:
            idx.append(col); col += 1
        else:
            idx.append(-1)
        for k in kids: walk(k)
    for n in names:
        walk(ds.lance_schema.field(n))
    return fields, idx

def run(version, cols):
    uri = f"/tmp/research/q1_{version}.lance"
    shutil.rmtree(uri, ignore_errors=True)
    n = 10
    ds = lance.write_dataset(pa.table({"id": pa.array(range(n), pa.int64())}), uri,
                             data_storage_version=version, max_rows_per_file=5)
    ds.add_columns(pa.schema([pa.field(c, TYPES[c]) for c in cols] + [pa.field("state", pa.string())]))
    ds = lance.dataset(uri)
    names = cols + ["state"]
    # dump lance schema tree
    def tree(f, d=0): 
        print("  " * d, f.name(), f.id()); [tree(k, d + 1) for k in f.children()]
    if version == "2.2":
        for c in names: tree(ds.lance_schema.field(c))
    groups, expected = [], {}
    for frag in ds.get_fragments():
        m = frag.physical_rows
        start = frag.fragment_id * 5
        tbl = pa.table({c: values(TYPES[c], n)[start:start + m] for c in cols} | {"state": pa.array(["ok"] * m)})
        expected[frag.fragment_id] = tbl
        name = uuid.uuid4().hex + ".lance"
        w = LanceFileWriter(os.path.join(uri, "data", name), tbl.schema, version=ds.data_storage_version)
        w.write_batch(tbl); w.close()
        fields, idx = leaf_layout(ds, names)
        auto = DataFile.create(ds, name)  # public helper reading the written file
        print(version, "frag", frag.fragment_id, "computed", fields, idx)
        print(version, "frag", frag.fragment_id, "DataFile.create", auto.fields, auto.column_indices,
              auto.file_major_version, auto.file_minor_version)
        major, minor = (int(v) for v in ds.data_storage_version.split("."))
        groups.append(lance.LanceOperation.DataReplacementGroup(
            frag.fragment_id, DataFile(name, fields=fields, column_indices=idx,
                                       file_major_version=major, file_minor_version=minor)))
        # the old way, for the error message
    try:
        bad = [lance.LanceOperation.DataReplacementGroup(g.fragment_id, DataFile(g.new_file.path,
               fields=g.new_file.fields, column_indices=list(range(len(g.new_file.fields))),
               file_major_version=g.new_file.file_major_version, file_minor_version=g.new_file.file_minor_version))
               for g in groups]
        lance.LanceDataset.commit(uri, lance.LanceOperation.DataReplacement(bad), read_version=ds.version)
        print(version, "range(n) indices: ACCEPTED")
        ds = lance.dataset(uri)
        try:
            ds.to_table(); print(version, "range(n) read OK")
        except Exception as e: print(version, "range(n) read fails:", type(e).__name__, str(e)[:200])
        ds = ds.checkout_version(ds.version - 1); ds.restore(); ds = lance.dataset(uri)
    except Exception as e:
        print(version, "range(n) indices rejected:", type(e).__name__, str(e)[:300])
    ds2 = lance.LanceDataset.commit(uri, lance.LanceOperation.DataReplacement(groups), read_version=ds.version)
    got = ds2.to_table()
    want = pa.concat_tables([expected[0], expected[1]])
    for c in names:
        ok = got.column(c).combine_chunks().equals(want.column(c).combine_chunks())
        print(version, c, "read back equal:", ok)
    print(version, "data files per fragment:", [len(f.data_files()) for f in ds2.get_fragments()])
    print(got.slice(1, 1).to_pylist())

for v in ["2.0", "2.1", "2.2"]:
    cols = list(TYPES) if v != "2.0" else [c for c in TYPES if c != "f_map"]
    try:
        run(v, cols)
    except Exception as e:
        print(v, "FAILED", type(e).__name__, e)
