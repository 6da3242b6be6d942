"""Verified: (fields, column_indices) for a LanceFileWriter file committed with DataReplacement."""
import os, shutil, uuid, lance, pyarrow as pa
from lance.file import LanceFileWriter
from lance.fragment import DataFile

def data_file_layout(ds, names):
    """(fields, column_indices) for a data file whose top-level columns are `names`, in file order.
    Lance's own writers (and DataFile.create) list only LEAF field ids for format >= 2.1, numbered
    0..k-1; for format 2.0 every field, parents included, in pre-order, numbered 0..n-1."""
    v = tuple(int(x) for x in ds.data_storage_version.split("."))
    fields = []
    def walk(f):
        kids = f.children()
        if v < (2, 1) or not kids:
            fields.append(f.id())
        for k in kids:
            walk(k)
    for n in names:
        walk(ds.lance_schema.field(n))
    return fields, list(range(len(fields)))

TYPES = {"l": pa.list_(pa.string()), "s": pa.struct([("a", pa.int32()), ("b", pa.string())]),
         "m": pa.map_(pa.string(), pa.int32()), "ll": pa.large_list(pa.float32()),
         "ff": pa.list_(pa.list_(pa.float16(), 2), 3), "state": pa.string()}
def column(name, n, v20):
    rows = {"l": lambda i: ["x%d" % i] * (i % 3), "s": lambda i: {"a": i, "b": None if i % 2 else "s"},
            "m": lambda i: [("k", i)] * (i % 2), "ll": lambda i: [float(i)] * (i % 4),
            "ff": lambda i: [[float(i), 0.5]] * 3, "state": lambda i: "ok"}[name]
    null_ok = not (v20 and name == "s")  # 2.0 cannot store struct nulls
    return pa.array([None if (i % 5 == 4 and null_ok) else rows(i) for i in range(n)], TYPES[name])

for version in ["2.0", "2.1", "2.2"]:
    names = [c for c in TYPES if not (c == "m" and version != "2.2")]  # map needs format 2.2
    uri = f"/tmp/research/q1f_{version}.lance"; shutil.rmtree(uri, ignore_errors=True)
    ds = lance.write_dataset(pa.table({"id": pa.array(range(10), pa.int64())}), uri,
                             data_storage_version=version, max_rows_per_file=5)
    ds.add_columns(pa.schema([pa.field(c, TYPES[c]) for c in names])); ds = lance.dataset(uri)
    full = pa.table({c: column(c, 10, version == "2.0") for c in names})
    groups = []
    for fr in ds.get_fragments():
        part = full.slice(fr.fragment_id * 5, fr.physical_rows)
        name = uuid.uuid4().hex + ".lance"
        w = LanceFileWriter(os.path.join(uri, "data", name), part.schema, version=ds.data_storage_version)
        w.write_batch(part); w.close()
        fields, idx = data_file_layout(ds, names)
        auto = DataFile.create(ds, name)
        assert (auto.fields, auto.column_indices) == (fields, idx), (auto, fields, idx)
        major, minor = (int(x) for x in ds.data_storage_version.split("."))
        groups.append(lance.LanceOperation.DataReplacementGroup(fr.fragment_id, DataFile(
            name, fields=fields, column_indices=idx, file_major_version=major, file_minor_version=minor)))
    ds = lance.LanceDataset.commit(uri, lance.LanceOperation.DataReplacement(groups), read_version=ds.version)
    got = ds.to_table(columns=names)
    print(version, names, "layout", fields, idx, "== DataFile.create; read back equal:",
          all(got.column(c).combine_chunks().equals(full.column(c).combine_chunks()) for c in names))
