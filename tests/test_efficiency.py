"""Issue 13: each distinct input computed once (within and across applies), row errors
reported by the extractor, and as few Lance versions as the work needs."""
import json

import lance
import pyarrow as pa
import pytest
from fktest import registry_with

import featurekit
from featurekit.table.metadata import FAILED_SEP


class Counting(featurekit.Extractor):
    """Length of a text; counts every input it is passed. Fails on texts containing 'bad'."""

    name = "acme.counting"
    inputs = {"text": pa.string()}
    reuse_values = True  # shares even where keying would not pay: these tests are about sharing
    seen: list[str] = []

    def output_type(self):
        return pa.int64()

    def __call__(self, batch):
        texts = batch.column("text").to_pylist()
        Counting.seen.extend(texts)
        if any("bad" in t for t in texts):
            raise ValueError("cannot read bad text")
        return pa.array([len(t) * 7 for t in texts], pa.int64())


class Reporting(Counting):
    """The same, reporting failed rows with featurekit.RowErrors instead of raising."""

    name = "acme.reporting"

    def __call__(self, batch):
        texts = batch.column("text").to_pylist()
        Reporting.seen.extend(texts)
        return featurekit.RowErrors.map(lambda t: len(t) * 7 if "bad" not in t else int("bad"), texts, pa.int64())


SPEC = """\
featurekit: 1
name: efficiency
engine: {kind: local, checkpoint_seconds: CHECKPOINT}
table: {db: data, name: t, fragment_rows: 10}
source: {format: jsonl, path: raw/*.jsonl, key: id}
features:
  n:
    extractor: EXTRACTOR
    inputs: {text: text}
    on_error: {max_failure_rate: 1.0}
  words:
    extractor: text.word_count
    inputs: {text: text}
"""


def write(tmp_path, texts, start=0, file="a.jsonl", extractor="acme.counting", checkpoint=30):
    (tmp_path / "raw").mkdir(parents=True, exist_ok=True)
    (tmp_path / "raw" / file).write_text("".join(json.dumps({"id": start + i, "text": t}) + "\n"
                                                 for i, t in enumerate(texts)))
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("EXTRACTOR", extractor).replace("CHECKPOINT", str(checkpoint)))
    return spec


def table(tmp_path):
    return lance.dataset(str(tmp_path / "data" / "t.lance")).to_table().sort_by("id")


# duplicates inside a fragment and across fragments (10 rows a fragment)
TEXTS = [f"text {i % 7}" + "x" * (i % 7) for i in range(45)]


def test_each_distinct_input_is_computed_once_and_every_row_gets_its_value(tmp_path):
    Counting.seen = []
    spec = write(tmp_path, TEXTS)
    result = featurekit.apply(spec, registry=registry_with(Counting))
    assert sorted(Counting.seen) == sorted(set(TEXTS))  # once per distinct input, across fragments
    t = table(tmp_path)
    assert t.column("n").to_pylist() == [len(x) * 7 for x in TEXTS]  # equal to computing every row
    run = result.run.features["n"]
    assert (run.rows, run.distinct, run.passed, run.computed) == (45, 7, 7, 45)
    assert result.plan.step("n").action == "create"


def test_a_new_row_whose_input_was_computed_before_takes_its_value_without_a_call(tmp_path):
    Counting.seen = []
    reg = registry_with(Counting)
    featurekit.apply(write(tmp_path, TEXTS), registry=reg)
    Counting.seen = []
    write(tmp_path, ["text 3xxx", "brand new", "text 5xxxxx", "brand new"], start=100, file="b.jsonl")
    result = featurekit.apply(tmp_path / "spec.yaml", registry=reg)
    assert Counting.seen == ["brand new"]
    t = table(tmp_path)
    assert t.column("n").to_pylist() == [len(x) * 7 for x in t.column("text").to_pylist()]
    run = result.run.features["n"]
    assert (run.rows, run.distinct, run.reused) == (4, 3, 3)
    assert featurekit.apply(tmp_path / "spec.yaml", registry=reg).run is None  # nothing left to do


def test_an_input_key_ending_in_a_zero_byte_is_found_in_the_table(tmp_path):
    """numpy's fixed-width bytes drop trailing zero bytes; such keys must still match."""
    from featurekit.planning.inputkeys import input_hashes
    reg = registry_with(Counting)
    spec = write(tmp_path, ["seed"])
    fingerprint = featurekit.load_spec(spec, registry=reg).features["n"].fingerprint
    texts = [f"t{i}" for i in range(5000)]
    keys = input_hashes(pa.table({"text": texts}), fingerprint).to_pylist()
    zero_ended = [t for t, k in zip(texts, keys) if k.endswith(b"\x00")][:3]
    assert len(zero_ended) == 3
    featurekit.apply(write(tmp_path, zero_ended), registry=reg)
    Counting.seen = []
    write(tmp_path, zero_ended, start=100, file="b.jsonl")  # the same inputs under new keys
    result = featurekit.apply(tmp_path / "spec.yaml", registry=reg)
    assert Counting.seen == [] and result.run.features["n"].reused == 3


def test_values_read_back_after_a_checkpoint_are_not_recomputed(tmp_path, monkeypatch):
    """With no memory for shared values, a duplicate reads the value its committed row holds."""
    Counting.seen = []
    spec = write(tmp_path, TEXTS, checkpoint=0.000001)  # a commit after every fragment
    spec.write_text(spec.read_text().replace("checkpoint_seconds:", "reuse_memory_mb: 0, checkpoint_seconds:"))
    featurekit.apply(spec, registry=registry_with(Counting))
    assert sorted(Counting.seen) == sorted(set(TEXTS))
    assert table(tmp_path).column("n").to_pylist() == [len(x) * 7 for x in TEXTS]


def test_row_errors_are_shared_by_equal_inputs_and_retried_next_apply(tmp_path):
    Counting.seen = []
    texts = ["ok", "bad one", "ok", "bad one", "fine", "bad one"]
    reg = registry_with(Counting)
    result = featurekit.apply(write(tmp_path, texts), registry=reg)
    run = result.run.features["n"]
    assert (run.computed, run.failed) == (3, 3)
    # one distinct input: halving passes it in its batch, in its half, then alone; never per row
    assert Counting.seen.count("bad one") == 3
    states = table(tmp_path).column("_fk_n").to_pylist()
    assert [s.split("!", 1)[1] if "!" in s else None for s in states] == \
        [None, "ValueError: cannot read bad text", None, "ValueError: cannot read bad text", None,
         "ValueError: cannot read bad text"]
    Counting.seen = []
    again = featurekit.apply(tmp_path / "spec.yaml", registry=reg)
    assert Counting.seen == ["bad one"]  # the failed input, once, for its three rows
    assert again.run.version_after == again.run.version_before  # failed the same way: no version


def test_row_errors_reported_by_the_extractor_cost_no_extra_calls(tmp_path, run_cli):
    texts = [f"row {i}" + (" bad" if i % 10 == 3 else "") for i in range(100)]
    Reporting.seen, Counting.seen = [], []
    featurekit.apply(write(tmp_path / "r", texts, extractor="acme.reporting"), registry=registry_with(Reporting))
    assert len(Reporting.seen) == 100  # each row passed once
    halving = featurekit.apply(write(tmp_path / "h", texts), registry=registry_with(Counting))
    assert len(Counting.seen) > 100  # the fallback passes rows again to isolate the ones that raise
    run = halving.run.features["n"]
    assert run.passed == len(Counting.seen) and (run.computed, run.failed) == (90, 10)
    reported = table(tmp_path / "r")
    assert reported.column("n").to_pylist() == table(tmp_path / "h").column("n").to_pylist()
    from featurekit.progress import render_summary
    assert f"{run.passed} passed to the extractor" in render_summary(halving, 1.0)
    assert "isolated by halving" in render_summary(halving, 1.0)


def test_one_version_per_feature_per_checkpoint_and_none_when_nothing_changes(tmp_path):
    spec = write(tmp_path, TEXTS)
    reg = registry_with(Counting)
    featurekit.apply(spec, registry=reg)
    ds = lance.dataset(str(tmp_path / "data" / "t.lance"))
    ops = [type(ds.read_transaction(v).operation).__name__ for v in range(1, ds.version + 1)]
    # ingest, one add of every new column, one fill per feature, one last commit (log + metadata)
    assert ops == ["Overwrite", "Merge", "DataReplacement", "DataReplacement", "UpdateConfig"]
    log = featurekit.status(spec, registry=reg).history[-1]
    assert (log["version_from"], log["version_to"]) == (None, ds.version)
    assert [log["features"][f]["versions"] for f in ("n", "words")] in ([[3], [4]], [[4], [3]])
    assert featurekit.apply(spec, registry=reg).run is None
    assert lance.dataset(str(tmp_path / "data" / "t.lance")).version == ds.version


def test_a_recompute_writes_its_new_metadata_with_the_log_in_one_commit(tmp_path):
    reg = registry_with(Counting, Reporting)
    featurekit.apply(write(tmp_path, TEXTS), registry=reg)
    before = lance.dataset(str(tmp_path / "data" / "t.lance")).version
    spec = write(tmp_path, TEXTS, extractor="acme.reporting")
    result = featurekit.apply(spec, registry=reg)
    assert result.plan.step("n").action == "recompute"
    ds = lance.dataset(str(tmp_path / "data" / "t.lance"))
    ops = [type(ds.read_transaction(v).operation).__name__ for v in range(before + 1, ds.version + 1)]
    assert ops == ["DataReplacement", "UpdateConfig"]
    md = ds.schema.field("n").metadata
    assert md[b"featurekit.extractor"] == b"acme.reporting"
    assert ds.checkout_version(ds.version - 1).schema.field("n").metadata[b"featurekit.extractor"] == b"acme.counting"
    assert featurekit.plan(spec, registry=reg).is_noop


def test_the_plan_counts_distinct_inputs_and_says_how_values_will_be_shared(tmp_path):
    spec = write(tmp_path, TEXTS)
    plan = featurekit.plan(spec, registry=registry_with(Counting))
    assert "45 rows, 7 distinct inputs (shared)" in plan.render()  # reuse_values = True
    assert plan.step("n").sharing == "shared" and json.loads(plan.to_json())["features"][0]["sharing"] == "shared"
    spec.write_text(spec.read_text().replace("acme.counting", "acme.cheap"))
    plan = featurekit.plan(spec, registry=registry_with(Cheap))  # no reuse_values: the apply times it
    assert "45 rows, 7 distinct inputs (shared if it pays)" in plan.render()


def test_worker_processes_also_compute_each_distinct_input_once(tmp_path):
    spec = write(tmp_path, TEXTS)
    spec.write_text(spec.read_text().replace("    on_error: {max_failure_rate: 1.0}\n",
                                             "    on_error: {max_failure_rate: 1.0}\n    resources: {workers: 2}\n"))
    result = featurekit.apply(spec, registry=registry_with(Counting))
    run = result.run.features["n"]
    assert (run.rows, run.distinct, run.passed) == (45, 7, 7)
    assert table(tmp_path).column("n").to_pylist() == [len(x) * 7 for x in TEXTS]


class Switching(Counting):
    """Counting, whose sharing of values a test switches on and off (a plugin release)."""

    name = "acme.switching"
    reuse_values = False


def test_a_feature_stored_without_input_keys_keeps_working_when_its_extractor_starts_sharing(tmp_path):
    """A table from before input keys (or from a release that did not share values): retries,
    fills and recomputes still commit; the key column comes when the columns are recreated."""
    reg = registry_with(Switching)
    texts = ["a", "bad one", "a", "cc"]
    spec = write(tmp_path, texts, extractor="acme.switching")
    try:
        featurekit.apply(spec, registry=reg)
        assert "_fkin_n" not in lance.dataset(str(tmp_path / "data" / "t.lance")).schema.names
        Switching.reuse_values = True
        write(tmp_path, ["cc", "dd"], start=10, file="b.jsonl", extractor="acme.switching")
        result = featurekit.apply(spec, registry=reg)  # new rows filled, the failed row retried
        assert result.ok and result.run.features["n"].computed == 2
        Switching.version = "2"                         # a recompute of every row
        result = featurekit.apply(spec, registry=reg)
        assert result.ok and result.run.features["n"].computed == 5
        t = table(tmp_path)
        assert t.column("n").to_pylist() == [None if "bad" in x else len(x) * 7 for x in t.column("text").to_pylist()]
        Switching.reuse_values = False                  # and back, with an output type change
        Switching.output_type = lambda self: pa.int32()
        assert featurekit.apply(spec, registry=reg).ok
        ds = lance.dataset(str(tmp_path / "data" / "t.lance"))
        assert ds.schema.field("n").type == pa.int32() and "_fkin_n" not in ds.schema.names
        t = table(tmp_path)
        assert t.column("n").to_pylist() == [None if "bad" in x else len(x) * 7 for x in t.column("text").to_pylist()]
    finally:
        Switching.reuse_values, Switching.version = False, "1"
        del Switching.output_type


def test_the_shared_value_memory_stays_within_its_budget_when_a_piece_repeats_keys(tmp_path):
    """Pieces classified while earlier ones are in flight (the worker-pool path), each repeating
    its keys: every pin is released, so old values leave the memory as new ones come."""
    from featurekit.engine.reuse import Reuse
    from featurekit.planning.inputkeys import input_hashes
    from featurekit.table.handle import Table
    from featurekit.table.ref import TableRef
    reuse = Reuse(Table(TableRef(str(tmp_path / "none.lance"))), "_fk_n", "fp", "_fkin_n", {"n": pa.binary()}, budget_bytes=10_000)
    addr = 0
    for g in range(20):
        keys = [f"k{g}_{i}" for i in range(3)]
        pieces = [reuse.classify(input_hashes(pa.table({"t": k}), "fp")) for k in (keys, keys + keys)]
        for piece in pieces:
            n = len(piece.hashes)
            values = {"n": pa.array([b"x" * 3000 for _ in piece.compute], pa.binary())}
            out, _ = reuse.resolve(piece, values, None, list(range(addr, addr + n)))
            addr += n
            assert out["n"].to_pylist() == [b"x" * 3000] * n
    assert reuse.memo_bytes <= 10_000 and len(reuse.memo) == 3
    assert reuse.computes == 60 and reuse.recomputed == 0  # each key once


class Placeholder(featurekit.Extractor):
    """Reports its failed row with a placeholder of another type there."""

    name = "acme.placeholder"
    inputs = {"text": pa.string()}

    def output_type(self):
        return pa.float64()

    def __call__(self, batch):
        texts = batch.column("text").to_pylist()
        return featurekit.RowErrors([float(len(t)) if "bad" not in t else "n/a" for t in texts],
                                    [None if "bad" not in t else "bad text" for t in texts])


def test_a_placeholder_at_a_failed_row_is_stored_as_null(tmp_path):
    spec = write(tmp_path, ["ab", "bad", "abc"], extractor="acme.placeholder")
    result = featurekit.apply(spec, registry=registry_with(Placeholder))
    assert (result.run.features["n"].computed, result.run.features["n"].failed) == (2, 1)
    assert table(tmp_path).column("n").to_pylist() == [2.0, None, 3.0]


class ImageSize(featurekit.Extractor):
    name = "acme.image_size"
    inputs = {"image": "binary"}

    def output_type(self):
        return pa.int64()

    def __call__(self, batch):
        return pa.array([len(x or b"") for x in batch.column("image").to_pylist()], pa.int64())


def test_plan_never_reads_image_structs_to_count_distinct_inputs(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import featurekit.planning.distinct
    (tmp_path / "raw").mkdir()
    images = pa.array([{"bytes": bytes([i % 5]) * 1000, "path": f"{i}.png"} for i in range(20)],
                      pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"id": list(range(20)), "image": images}), tmp_path / "raw" / "a.parquet")
    spec = tmp_path / "spec.yaml"
    spec.write_text("featurekit: 1\nname: hf\ntable: {db: data, name: t}\n"
                    "source: {format: parquet, path: raw/*.parquet, key: id}\n"
                    "features:\n  s: {extractor: acme.image_size, inputs: {image: image}}\n")
    reg = registry_with(ImageSize)
    featurekit.apply(spec, registry=reg)
    spec.write_text(spec.read_text() + "  s2: {extractor: acme.image_size, inputs: {image: image}}\n")
    hashed = []
    monkeypatch.setattr(featurekit.planning.distinct, "distinct_count", lambda t, *a: hashed.append(t) or 0)
    assert featurekit.plan(spec, registry=reg).step("s2").distinct is None
    assert hashed == []  # the plan read no image bytes
    result = featurekit.apply(spec, registry=reg)  # the apply still computes each distinct image once
    assert result.run.features["s2"].passed == 5


def test_input_keys_of_unsigned_vectors_beyond_int64():
    """A uint64 vector holding 2**63 or more is keyed (it used to stop the apply)."""
    from featurekit.planning.inputkeys import input_hashes
    big = pa.array([[2 ** 64 - 1, 1], [5, 6], [2 ** 64 - 1, 1]], pa.list_(pa.uint64(), 2))
    keys = input_hashes(pa.table({"v": big})).to_pylist()
    assert keys[0] == keys[2] != keys[1]
    assert input_hashes(pa.table({"v": pa.array([[5, 6]], pa.list_(pa.int64(), 2))})).to_pylist()[0] == keys[1]


class Cheap(featurekit.Extractor):
    """As cheap as a Python extractor gets, with no `reuse_values` set: featurekit decides."""

    name = "acme.cheap"
    inputs = {"text": pa.string()}
    calls = 0

    def output_type(self):
        return pa.int64()

    def __call__(self, batch):
        type(self).calls += batch.num_rows
        return pa.array([len(t) for t in batch.column("text").to_pylist()], pa.int64())


class Slow(Cheap):
    """A row costs a millisecond: sharing values pays as soon as inputs repeat."""

    name = "acme.slow"
    seconds = 0.001

    def __call__(self, batch):
        import time
        time.sleep(self.seconds * batch.num_rows)
        return super().__call__(batch)


def _apply_counted(tmp_path, cls, texts: list[str], fragment_rows: int):
    """Apply `cls` as feature n over `texts`: its run, and the table (values checked)."""
    spec = write(tmp_path, texts, extractor=cls.name)
    spec.write_text(spec.read_text().replace("fragment_rows: 10", f"fragment_rows: {fragment_rows}"))
    cls.calls = 0
    run = featurekit.apply(spec, registry=registry_with(cls)).run.features["n"]
    got = table(tmp_path)
    assert got.column("n").to_pylist() == [len(t) for t in got.column("text").to_pylist()]
    return run, got


@pytest.mark.parametrize("cls, shared", [(Cheap, False), (Slow, True)])
def test_sharing_values_is_decided_by_what_it_saves(tmp_path, cls, shared):
    """No `reuse_values`: a cheap extractor over inputs that repeat little computes row by row
    without input keys; one whose rows cost more than keying shares. Values are right either
    way, and no row is computed twice."""
    run, got = _apply_counted(tmp_path, cls, [f"q{i % 1500}" for i in range(1800)], 400)  # a few repeated
    keys = got.column("_fkin_n")
    if shared:
        assert run.sharing.startswith("shared") and cls.calls == 1500 == run.distinct
        assert keys.null_count == 0 and len(set(keys.to_pylist())) == 1500
    else:
        assert run.sharing.startswith("not shared: a row computes in") and run.distinct is None
        assert cls.calls == 1800 and keys.null_count == 1800  # each row once, the sampled ones included


class Moderate(Slow):
    """A row costs 200 us: sharing pays when inputs repeat a lot, not when all differ."""

    name = "acme.moderate"
    seconds = 2e-4


@pytest.mark.parametrize("distinct, shared", [(3000, False), (300, True)])
def test_sharing_weighs_how_often_inputs_repeat(tmp_path, distinct, shared):
    """The same extractor over the same number of rows: every input different, grouping and
    keying cost more than they save (rows compute as usual, no keys); each input ten times,
    every distinct input is computed once. Values right both ways."""
    # repeats scattered over the table
    run, got = _apply_counted(tmp_path, Moderate, [f"q{(i * 7919) % distinct}" for i in range(3000)], 500)
    if shared:
        assert run.sharing.startswith("shared") and Moderate.calls == distinct == run.distinct
    else:
        assert run.sharing.startswith("not shared"), run.sharing
        assert Moderate.calls == 3000 and got.column("_fkin_n").null_count == 3000


@pytest.mark.parametrize("distinct, shared", [(3000, False), (300, True)])
def test_on_a_large_table_how_often_inputs_repeat_is_estimated_before_every_row_is_read(tmp_path, monkeypatch,
                                                                                          distinct, shared):
    """A table past `GATED_ROWS` (lowered here): random rows estimate the share of distinct
    inputs first; inputs that do not repeat are never read and grouped as a whole, inputs that
    repeat ten times go on to be shared exactly as on a small table."""
    from featurekit.engine import shared as sharing
    monkeypatch.setattr(sharing, "GATED_ROWS", 1000)
    monkeypatch.setattr(sharing, "ESTIMATE_ROWS", 512)
    grouped = []
    real = sharing._grouped
    monkeypatch.setattr(sharing, "_grouped", lambda task, table: grouped.append(table.num_rows) or real(task, table))
    run, got = _apply_counted(tmp_path, Moderate, [f"q{(i * 7919) % distinct}" for i in range(3000)], 500)
    if shared:
        assert run.sharing.startswith("shared") and Moderate.calls == distinct == run.distinct
        assert 3000 in grouped  # the estimate let every row be read and grouped
    else:
        assert "estimated on 512 random rows" in run.sharing and "about 100%" in run.sharing, run.sharing
        assert 3000 not in grouped and Moderate.calls == 3000 and got.column("_fkin_n").null_count == 3000


def test_shared_values_equal_a_per_row_computation_with_nulls_empties_and_two_inputs(tmp_path):
    """Rows grouped by value in Arrow (`distinct_rows`): a NULL is not an empty string, and a row
    takes the value of its own inputs, never of another row sharing its first input."""
    class Pair(featurekit.Extractor):
        name = "acme.pair"
        inputs = {"a": pa.string(), "b": pa.string()}
        reuse_values = True

        def output_type(self):
            return pa.string()

        def __call__(self, batch):
            return pa.array([f"{a!r}|{b!r}" for a, b in zip(batch.column("a").to_pylist(),
                                                           batch.column("b").to_pylist())], pa.string())

    values = [None, "", "x", "x" * 100, "x" * 100 + "y"]
    spec = jsonl_project(tmp_path, [{"id": i, "a": values[i % 5], "b": values[(i // 5) % 5]} for i in range(75)],
                         "p: {extractor: acme.pair, inputs: {a: a, b: b}}")
    run = featurekit.apply(spec, registry=registry_with(Pair)).run.features["p"]
    got = lance.dataset(str(tmp_path / "data" / "t.lance")).to_table().sort_by("id")
    want = [f"{a!r}|{b!r}" for a, b in zip(got.column("a").to_pylist(), got.column("b").to_pylist())]
    assert got.column("p").to_pylist() == want and run.distinct == 25 and run.reused == 50


def test_shared_values_fill_partial_fragments_with_deleted_rows_without_reading_inputs(tmp_path, monkeypatch):
    """When values are shared, a fragment is written from the groups alone (its inputs are not
    read again): a retry touching a few rows of fragments that have deleted rows (gaps in the
    offsets) must keep every other row's value and put each retried row's value at its place."""
    class Echo(featurekit.Extractor):
        name = "acme.echo"
        inputs = {"a": pa.string()}
        reuse_values = True
        fail = True
        calls: list = []

        def output_type(self):
            return pa.string()

        def one(self, a):
            if Echo.fail and a is not None and a.endswith("7"):
                raise ValueError("not yet")
            return f"<{a}>"

        def __call__(self, batch):
            texts = batch.column("a").to_pylist()
            Echo.calls.extend(texts)
            return featurekit.RowErrors.map(self.one, texts, pa.string())

    spec = jsonl_project(tmp_path, [{"id": i, "a": None if i % 11 == 0 else f"v{i % 20}"} for i in range(90)],
                         "e: {extractor: acme.echo, inputs: {a: a}, on_error: {max_failure_rate: 1}}")
    reg = registry_with(Echo)
    featurekit.apply(spec, registry=reg)
    uri = str(tmp_path / "data" / "t.lance")
    lance.dataset(uri).delete("id % 5 = 1")  # gaps inside every fragment
    from featurekit.engine import fragment
    reads = []
    real = fragment.FragmentJob._piece
    monkeypatch.setattr(fragment.FragmentJob, "_piece", lambda self, batch: reads.append(1) or real(self, batch))
    Echo.fail, Echo.calls = False, []
    run = featurekit.apply(spec, registry=reg).run.features["e"]
    got = lance.dataset(uri).to_table(columns=["id", "a", "e", "_fk_e"]).sort_by("id").to_pylist()
    assert [r["id"] for r in got] == [i for i in range(90) if i % 5 != 1]
    assert all(r["e"] == f"<{r['a']}>" for r in got)  # retried and kept rows alike, each its own
    assert all(FAILED_SEP not in r["_fk_e"] for r in got)  # no row left failed
    assert sorted(Echo.calls) == ["v17", "v7"] and run.distinct == 2 and run.computed == run.rows
    assert reads == []  # the fragments' inputs were not read: the shared values knew every row


def jsonl_project(tmp_path, rows: list[dict], feature: str, fragment_rows: int = 16):
    """A spec over `rows` (a jsonl source keyed by id) with one feature (a line of YAML)."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"featurekit: 1\nname: t\ntable: {{db: data, name: t, fragment_rows: {fragment_rows}}}\n"
                    f"source: {{format: jsonl, path: raw/*.jsonl, key: id}}\nfeatures:\n  {feature}\n")
    return spec


class Logging(featurekit.Extractor):
    """Length of a text, reporting rows containing 'bad' as failed; every input it is passed is
    logged with the process that computed it (to the file named by FK_TEST_CALLS: forked and
    spawned workers inherit the environment, not a class attribute set in a test)."""

    name = "acme.logging"
    inputs = {"text": pa.string()}
    reuse_values = True

    def output_type(self):
        return pa.int64()

    def __call__(self, batch):
        import os
        texts = batch.column("text").to_pylist()
        with open(os.environ["FK_TEST_CALLS"], "a") as fh:
            fh.writelines(f"{os.getpid()}\t{t}\n" for t in texts)
        return featurekit.RowErrors.map(lambda t: len(t) * 7 if "bad" not in t else int("bad"), texts, pa.int64())


def distinct_inputs_in_workers(monkeypatch, tmp_path, workers: bool = True) -> None:
    """Shared values' distinct inputs go to two worker processes whatever their estimated time
    (`workers`; else never), on any machine; `Logging` writes its calls to tmp_path/calls.tsv."""
    import os

    from featurekit.engine import local
    threshold = 0.0 if workers else 1e9
    monkeypatch.setattr(local, "SHARED_PARALLEL_SECONDS", threshold)  # forked workers ...
    monkeypatch.setattr(local, "PARALLEL_AFTER_SECONDS", threshold)   # ... or spawned (torch loaded by another test)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("FK_TEST_CALLS", str(tmp_path / "calls.tsv"))


def test_distinct_inputs_are_computed_in_worker_processes_once_each_when_that_pays(tmp_path, monkeypatch):
    """The distinct inputs of shared values go to the local engine's worker processes when their
    estimated time pays for them (`LocalEngine.compute_pieces`): each still computed once, in
    order, row errors kept with their rows, every row given its own input's value."""
    import os
    distinct_inputs_in_workers(monkeypatch, tmp_path)
    texts = [("bad " if i % 13 == 0 else "") + f"q{i % 61}" + "x" * (i % 5) for i in range(400)]
    spec = jsonl_project(tmp_path, [{"id": i, "text": t} for i, t in enumerate(texts)],
                         "n: {extractor: acme.logging, inputs: {text: text}, resources: {batch_size: 8},"
                         " on_error: {max_failure_rate: 1.0}}", fragment_rows=50)
    run = featurekit.apply(spec, registry=registry_with(Logging)).run.features["n"]
    calls = [line.split("\t") for line in (tmp_path / "calls.tsv").read_text().splitlines()]
    got = lance.dataset(str(tmp_path / "data" / "t.lance")).to_table().sort_by("id")
    want = [None if "bad" in t else len(t) * 7 for t in got.column("text").to_pylist()]
    assert got.column("n").to_pylist() == want
    assert sorted(t for _, t in calls) == sorted(set(texts))        # each distinct input computed once
    assert len({pid for pid, _ in calls} - {str(os.getpid())}) >= 1  # ... most of them in worker processes
    assert (run.rows, run.distinct, run.reused) == (400, len(set(texts)), 400 - len(set(texts)))
    assert run.sharing == "shared by input (computed once per distinct input)"
    assert run.failed == sum("bad" in t for t in texts)


class Dying(Logging):
    """As Logging, but a worker process passed a text containing 'die' exits at once."""

    name = "acme.dying"

    def __call__(self, batch):
        import os
        if str(os.getpid()) != os.environ["FK_TEST_PARENT"] and any("die" in t for t in batch.column("text").to_pylist()):
            os._exit(1)
        return super().__call__(batch)


def test_distinct_inputs_are_computed_here_when_a_worker_process_dies(tmp_path, monkeypatch):
    import os
    distinct_inputs_in_workers(monkeypatch, tmp_path)
    monkeypatch.setenv("FK_TEST_PARENT", str(os.getpid()))
    texts = [f"q{i % 40}" + (" die" if i % 40 == 30 else "") for i in range(200)]
    spec = jsonl_project(tmp_path, [{"id": i, "text": t} for i, t in enumerate(texts)],
                         "n: {extractor: acme.dying, inputs: {text: text}, resources: {batch_size: 4}}", fragment_rows=50)
    run = featurekit.apply(spec, registry=registry_with(Dying)).run.features["n"]
    got = lance.dataset(str(tmp_path / "data" / "t.lance")).to_table().sort_by("id")
    assert got.column("n").to_pylist() == [len(t) * 7 for t in got.column("text").to_pylist()]
    assert (run.distinct, run.failed) == (40, 0)
    here = [t for pid, t in (line.split("\t") for line in (tmp_path / "calls.tsv").read_text().splitlines())
            if pid == str(os.getpid())]
    assert "q30 die" in here  # the piece the worker died on was computed in this process


@pytest.mark.parametrize("in_workers", [True, False])
def test_every_row_stores_the_key_of_its_own_input_when_keys_are_made_while_values_compute(tmp_path, monkeypatch,
                                                                                           in_workers):
    """On a first apply nothing can be read back, so the distinct inputs are keyed slice by slice
    while their values compute (`_Values.fill`, `key_while_computing`): each row's stored key
    must still be its own input's, as `input_hashes` gives it row by row (many pieces here)."""
    from featurekit.planning.inputkeys import input_hashes
    distinct_inputs_in_workers(monkeypatch, tmp_path, workers=in_workers)
    texts = [f"q{(i * 37) % 97}" + "y" * (i % 3) for i in range(600)]
    spec = jsonl_project(tmp_path, [{"id": i, "text": t} for i, t in enumerate(texts)],
                         "n: {extractor: acme.logging, inputs: {text: text}, resources: {batch_size: 7}}", fragment_rows=64)
    run = featurekit.apply(spec, registry=registry_with(Logging)).run.features["n"]
    got = lance.dataset(str(tmp_path / "data" / "t.lance")).to_table().sort_by("id")
    fingerprint = got.column("_fk_n")[0].as_py().split("!")[0]
    want = input_hashes(pa.table({"text": got.column("text")}), fingerprint)
    assert run.distinct == run.passed == len(set(texts))  # each distinct input passed to the extractor once
    assert got.column("_fkin_n").to_pylist() == want.to_pylist()
