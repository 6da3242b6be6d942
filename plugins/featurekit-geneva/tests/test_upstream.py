"""The fix featurekit carries for Geneva 0.17's selected-rows path, against Geneva's own code.

`upstream.arrow_selected_rows` replaces `BackfillUDFTask.apply` for filtered batches; its
output must be exactly what Geneva's own (per-row `as_py`) path returns, for every shape a
backfill hands it. The reference is Geneva's original method, called on the same batch.
No Ray needed.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

pytest.importorskip("geneva")
import pyarrow as pa  # noqa: E402

from featurekit_geneva import upstream  # noqa: E402
from featurekit_geneva._geneva import load  # noqa: E402

WIDTH = 6  # fp16[2x3], small; the benchmark measures fp16[400x2048]
VALUE = pa.list_(pa.float16(), WIDTH)
STRUCT = pa.struct([("h", VALUE), ("_fk_h", pa.string())])


def _double(q: pa.Array, state: pa.Array) -> pa.Array:
    """As featurekit's UDF: the state column is an input (checkpoint identity) and an output."""
    n = np.asarray(q.to_pylist(), dtype=np.float16)
    flat = np.repeat(n * 2, WIDTH)
    values = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float16()), WIDTH)
    return pa.StructArray.from_arrays([values, pa.array([f"fp{int(x)}" for x in n])], fields=list(STRUCT))


@pytest.fixture(scope="module")
def geneva_task():
    load()
    from geneva.apply.task import BackfillUDFTask
    from geneva.transformer import UDF

    upstream.arrow_selected_rows()
    original = getattr(BackfillUDFTask, upstream._ORIGINAL_APPLY)
    udf = UDF(func=_double, name="double", data_type=STRUCT, input_columns=["q", "_fk_h"])
    fields = tuple(o.field for o in upstream.unpacked_udf_plan(udf).outputs)

    def make(defer: bool = False):  # use_blob_v2: as Geneva's backfills set it
        return BackfillUDFTask(udfs={"h": udf}, where="q > 0", unpack_fields=fields, defer_carry_forward=defer,
                               use_blob_v2=True)
    return make, original, BackfillUDFTask.apply


def _batch(selected: list[bool], carry: bool):
    from geneva.transformer import BACKFILL_SELECTED
    n = len(selected)
    cols = {"q": pa.array(np.arange(1, n + 1, dtype=np.float64)), "_fk_h": pa.array(["old"] * (n - 2) + [None, "x!err"])}
    if carry:  # the output columns as they are in the table: some values, some nulls
        old = pa.FixedSizeListArray.from_arrays(pa.array(np.full(n * WIDTH, 7, np.float16)), WIDTH)
        cols["h"] = pa.array(old.to_pylist()[:-1] + [None], VALUE)
    cols["_rowaddr"] = pa.array(np.arange(n) + (3 << 32), pa.uint64())
    cols[BACKFILL_SELECTED] = pa.array(selected)
    return pa.record_batch(list(cols.values()), names=list(cols))


CASES = {
    "mixed, carried": ([True, False, True, True, False, False, True], True),
    "mixed, no carried columns": ([False, True, False, True], False),
    "all selected": ([True] * 5, True),
    "none selected": ([False] * 4, True),
    "two rows, one selected": ([False, True], True),
}


@pytest.mark.parametrize("defer", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_the_arrow_path_returns_what_genevas_own_path_returns(geneva_task, case, defer):
    make, original, patched = geneva_task
    selected, carry = CASES[case]
    batch = _batch(selected, carry)
    task = make(defer)
    want, got = original(task, batch), patched(task, batch)
    assert got.schema == want.schema
    assert got.to_pylist() == want.to_pylist()
    assert _arrow_path_taken(task, batch) == any(selected), "the fix fell back to Geneva's per-row path"
    computed = [r for r, s in zip(got.to_pylist(), selected if not defer else [True] * got.num_rows) if s]
    assert all(r["_fk_h"].startswith("fp") for r in computed)  # the selected rows carry the UDF's values


def _arrow_path_taken(task, batch) -> bool:
    """Whether the fix handled `batch` itself (Geneva's original saw no selection column)."""
    from geneva.apply.task import BackfillUDFTask
    from geneva.transformer import BACKFILL_SELECTED
    original = getattr(BackfillUDFTask, upstream._ORIGINAL_APPLY)
    seen = []
    upstream._apply_selected(lambda t, b: seen.append(BACKFILL_SELECTED in b.schema.names) or original(t, b),
                             task, batch)
    return seen == [False]


def test_the_fix_is_installed_once_and_only_for_filtered_arrow_batches(geneva_task):
    from geneva.apply.task import BackfillUDFTask
    make, original, patched = geneva_task
    upstream.arrow_selected_rows()  # idempotent: the original is kept once
    assert getattr(BackfillUDFTask, upstream._ORIGINAL_APPLY) is original
    batch = _batch([True, False], True)
    unfiltered = batch.drop_columns([batch.schema.names[-1]])  # no selection column: Geneva's path as is
    assert patched(make(), unfiltered).to_pylist() == original(make(), unfiltered).to_pylist()


def test_the_unpickled_feature_udf_installs_the_fix(tmp_path):
    """Geneva's appliers unpickle featurekit's UDF before the first batch: that installs the fix."""
    import pickle
    import subprocess
    import sys
    code = ("import pickle, sys; from featurekit_geneva._geneva import load; load();"
            "from geneva.apply.task import BackfillUDFTask as T;"
            "assert not hasattr(T, '_featurekit_original_apply');"
            "pickle.loads(sys.stdin.buffer.read());"
            "assert hasattr(T, '_featurekit_original_apply'), 'not installed'")
    from featurekit_geneva.udf import FeatureUDF
    udf = FeatureUDF.__new__(FeatureUDF)
    udf.__dict__.update(task=None, columns=["q"], type=STRUCT)
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(udf), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_genevas_selected_rows_path_is_the_one_the_fix_replaces():
    """When Geneva stops converting selected rows one by one (or moves `apply`), this fails:
    check whether the fix is still needed and drop it (upstream.arrow_selected_rows)."""
    load()
    from geneva.apply.task import BackfillUDFTask
    from geneva.transformer import BACKFILL_SELECTED, UDFArgType  # noqa: F401
    source = inspect.getsource(getattr(BackfillUDFTask, upstream._ORIGINAL_APPLY, BackfillUDFTask.apply))
    assert "filtered_val.as_py()" in source and "has_backfill_selected" in source
    assert {"defer_carry_forward", "use_blob_v2", "unpack_fields"} <= {f.name for f in BackfillUDFTask.__attrs_attrs__}
    assert callable(BackfillUDFTask._output_column_names) and callable(BackfillUDFTask._output_fields)
    from geneva.apply.blob_range import blob_v2_field_paths
    assert not blob_v2_field_paths(pa.schema([pa.field("h", VALUE)]))  # not a blob: the fix applies


def test_a_branch_is_placed_under_its_own_root_and_opened_there(tmp_path):
    """Branches on Geneva: Geneva's multi-base placement would put a branch's new files beside
    main's (its fragments' first files are main's, base 0); `own_root_placement` answers "no
    placement" for such a dataset only, and `BranchNamespace` hands Geneva the branch's root."""
    import lance
    from geneva.utils.multi_base import FragmentBasePlacement

    from featurekit_geneva.namespace import BranchNamespace, properties
    load()
    main = lance.write_dataset(pa.table({"q": [1, 2, 3]}), str(tmp_path / "db" / "t.lance"))
    main.create_branch("exp", main.version)
    branch = lance.dataset(str(tmp_path / "db" / "t.lance" / "tree" / "exp"))
    original = getattr(FragmentBasePlacement, upstream._ORIGINAL_PLACEMENT, FragmentBasePlacement.from_dataset)
    assert original(branch).data_dir_for_frag(0) == str(tmp_path / "db" / "t.lance" / "data")  # main's folder
    upstream.own_root_placement()
    upstream.own_root_placement()  # idempotent
    assert FragmentBasePlacement.from_dataset(branch) is None    # Geneva's single-base path: the branch's root
    assert FragmentBasePlacement.from_dataset(main) is None      # single-base main: as before (no bases)

    ns = BranchNamespace(**properties(str(tmp_path / "db"), "t", "exp", None))
    from lance_namespace import DescribeTableRequest
    assert ns.describe_table(DescribeTableRequest(id=["t"])).location.rstrip("/").endswith("t.lance/tree/exp")
    geneva = load()
    gtable = geneva.connect(namespace_client_impl=f"{BranchNamespace.__module__}.BranchNamespace",
                            namespace_client_properties=properties(str(tmp_path / "db"), "t", "exp", None)).open_table("t")
    assert gtable.uri.rstrip("/").endswith("t.lance/tree/exp") and gtable.get_reference().open().to_lance().uri == gtable.uri


def _python(code: str) -> list:
    """Run `code` in a fresh interpreter (imports are per process) and return what it prints as JSON."""
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


API = "lance_namespace_urllib3_client.api.table_api"


def test_the_rest_client_still_imports_its_api_modules_for_any_of_its_submodules():
    """The cost lancedb_import.lazy_rest_client avoids: importing the models (as lance_namespace does)
    runs the client's `__init__`, which imports every API module. When this fails, the client
    has become lazy upstream: drop the workaround (featurekit/table/lancedb_import.py)."""
    assert _python(f"import json, sys, lance_namespace_urllib3_client.models\nprint(json.dumps({API!r} in sys.modules))")


def test_geneva_imports_without_the_rest_clients_api_modules_which_still_load_when_used(tmp_path):
    (loaded_by_geneva, dir_namespace_tables, api_after_use, version, lazy_again) = _python(f"""
import json, sys
from featurekit.table.lancedb_import import lazy_rest_client
first = lazy_rest_client()
import geneva, lance_namespace
loaded = {API!r} in sys.modules
ns = lance_namespace.connect("dir", {{"root": {str(tmp_path)!r}}})
tables = ns.list_tables(lance_namespace.ListTablesRequest(id=[])).tables
from lance_namespace_urllib3_client import TableApi, ApiClient
import lance_namespace_urllib3_client as client
print(json.dumps([loaded, tables, {API!r} in sys.modules and TableApi.__name__ == "TableApi", client.__version__,
                  [first, lazy_rest_client()]]))
""")
    assert loaded_by_geneva is False          # geneva (lancedb, lance_namespace) imported without them
    assert dir_namespace_tables == []         # the directory namespace Geneva uses works
    assert api_after_use is True              # a name of the client's own loads its __init__ then
    assert version and lazy_again == [True, False]  # installed once; a second call does nothing
