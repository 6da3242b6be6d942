"""The training loader on real Lance tables built by `featurekit apply` (no mocks).

One table for the module: 120 rows in fragments of 16, a fp16[4 x 64] feature stored in
Lance's plain layout (read straight from the files) that fails on some rows (NULLs to
skip), a small int32[3] feature (read through Lance), deleted rows, and slices
materialized by the same apply (`split_of` reads the split each row got).
"""
from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pyarrow as pa
import pytest
import yaml

import featurekit
from featurekit.errors import UsageError
from featurekit.plugins.trainer import Trainer
from featurekit.testing import TestProject
from featurekit.training.dataloader import DataLoader, dataloader

torch = pytest.importorskip("torch")

ROWS, SHAPE = 120, (4, 64)


def failing(i: int) -> bool:  # fragments 0, 2 and 4 get nullable pages, the others plain ones
    return i in (5, 40, 41, 77)


def deleted(i: int) -> bool:
    return i % 13 == 0


SPLITS: dict[int, str | None] = {}  # filled from the table by the `table` fixture


def split_of(i: int) -> str | None:
    return SPLITS[i]


def hid_values(i: int) -> np.ndarray:
    return (np.arange(SHAPE[0] * SHAPE[1]) % 251 + i).astype(np.float16).reshape(SHAPE)


class Hiddens(featurekit.Extractor):
    name = "t.hiddens"
    version = "1"
    inputs = {"n": "integer"}
    resources = featurekit.Resources(batch_size=8)

    def output_type(self):
        return pa.list_(pa.float16(), SHAPE[0] * SHAPE[1])

    def output_metadata(self):
        return {"shape": f"[{SHAPE[0]}, {SHAPE[1]}]"}

    def __call__(self, batch):
        ids = batch.column("n").to_pylist()
        if any(failing(i) for i in ids):
            raise ValueError("odd image")
        flat = np.concatenate([hid_values(i).reshape(-1) for i in ids])
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float16()), SHAPE[0] * SHAPE[1])


class Small(featurekit.Extractor):
    name = "t.small"
    version = "1"
    inputs = {"n": "integer"}

    def output_type(self):
        return pa.list_(pa.int32(), 3)

    def __call__(self, batch):
        ids = np.asarray(batch.column("n").to_pylist(), np.int32)
        flat = np.stack([ids, ids * 2, ids * 3], axis=1).reshape(-1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), 3)


class Noop(Trainer):
    name = "t.noop"
    columns = {"vision": "list", "extra": "list", "length": "integer"}


def plugin():
    mod = types.ModuleType("loader_test_plugin")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: [Hiddens, Small])
    mod.featurekit_register_trainers = featurekit.hookimpl(lambda: [Noop])
    return mod


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """(TestProject, uri, live ids, ids with a hiddens value)."""
    import lance
    p = TestProject(tmp_path_factory.mktemp("loader"), plugins=[plugin()])
    p.write({"hid": {"tier": 3, "extractor": "t.hiddens", "inputs": {"n": "id"},
                     "on_error": {"max_failure_rate": 0.5}},
             "early": {"tier": 3, "extractor": "t.hiddens", "inputs": {"n": "id"}, "only": "first",
                       "on_error": {"max_failure_rate": 0.5}},
             "small": {"extractor": "t.small", "inputs": {"n": "id"}},
             "qlen": {"extractor": "text.length", "inputs": {"text": "question"}}},
            rows=[{"id": i, "question": "q" * (i % 7 + 1)} for i in range(ROWS)],
            slices={"text_dense": {"where": "qlen % 4 <> 3", "split": {"fractions": {"train": 0.8, "val": 0.2}}},
                    "everything": {"where": "qlen >= 0"}, "first": {"where": "id < 40"}})
    spec = yaml.safe_load(p.spec_path.read_text())
    spec["table"]["fragment_rows"] = 16
    spec["recipes"] = {"r": {"trainer": "t.noop", "slice": "text_dense", "split": "train",
                             "columns": {"vision": "hid", "extra": "small", "length": "qlen"}}}
    p.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert p.apply().ok
    uri = p.project().table_uri
    ds = lance.dataset(uri)
    ds.delete("id % 13 = 0")
    t = lance.dataset(uri).to_table(columns=["id", "text_dense"])
    SPLITS.update(zip(t.column("id").to_pylist(), t.column("text_dense").to_pylist()))
    assert set(SPLITS.values()) == {"train", "val", None}
    live = [i for i in range(ROWS) if not deleted(i)]
    return p, uri, live, [i for i in live if not failing(i)]


def ids_of(loader) -> list[int]:
    return [i for b in loader for i in b["id"].tolist()]


@pytest.mark.parametrize("direct", [True, False])
def test_every_row_exactly_once_per_epoch_and_failed_rows_skipped(table, direct):
    _, uri, live, good = table
    loader = DataLoader(uri, columns=["id", "hid"], batch_size=8, direct=direct)
    assert (loader.reads[1].locations is not None) == direct
    assert loader.num_rows == len(good) and loader.skipped == len(live) - len(good)
    first, second = ids_of(loader), ids_of(loader)
    assert sorted(first) == sorted(second) == good
    assert first != second  # the second pass is the next epoch
    assert len(loader) == -(-len(good) // 8)


@pytest.mark.parametrize("direct", [True, False])
def test_rows_a_feature_was_never_computed_for_are_skipped(table, direct):
    _, uri, live, good = table
    loader = DataLoader(uri, columns=["early", "id"], batch_size=8, direct=direct)
    assert (loader.reads[0].locations is not None) == direct
    want = [i for i in good if i < 40]
    assert sorted(ids_of(loader)) == want and loader.skipped == len(live) - len(want)


@pytest.mark.parametrize("direct", [True, False])
def test_values_equal_what_pylance_reads(table, direct):
    import lance
    _, uri, _, good = table
    ds = lance.dataset(uri)
    want = ds.to_table(columns=["id", "hid", "small", "qlen", "question"]).to_pydict()
    by_id = {i: k for k, i in enumerate(want["id"])}
    loader = DataLoader(uri, columns=["id", "hid", "small", "qlen", "question"], batch_size=7, direct=direct)
    seen = 0
    for b in loader:
        assert b["hid"].dtype == torch.float16 and tuple(b["hid"].shape[1:]) == SHAPE
        assert b["small"].dtype == torch.int32 and tuple(b["small"].shape[1:]) == (3,)
        assert isinstance(b["question"], list)
        for j, i in enumerate(b["id"].tolist()):
            k = by_id[i]
            assert np.array_equal(b["hid"][j].numpy().reshape(-1), np.asarray(want["hid"][k], np.float16))
            assert np.array_equal(b["hid"][j].numpy(), hid_values(i))
            assert b["small"][j].tolist() == want["small"][k]
            assert b["qlen"][j].item() == want["qlen"][k] and b["question"][j] == want["question"][k]
            seen += 1
    assert seen == len(good)


def test_order_is_a_function_of_seed_epoch_and_version(table):
    _, uri, _, _ = table
    a = ids_of(DataLoader(uri, columns=["id"], batch_size=5, seed=3, epoch=2))
    assert a == ids_of(DataLoader(uri, columns=["id"], batch_size=5, seed=3, epoch=2))
    assert a == ids_of(DataLoader(uri, columns=["id"], batch_size=9, seed=3, epoch=2, threads=1, prefetch=1))
    assert a != ids_of(DataLoader(uri, columns=["id"], batch_size=5, seed=3, epoch=3))
    assert a != ids_of(DataLoader(uri, columns=["id"], batch_size=5, seed=4, epoch=2))
    assert ids_of(DataLoader(uri, columns=["id"], shuffle=False)) == sorted(a)


def test_set_epoch_replays_an_epoch(table):
    _, uri, _, _ = table
    loader = DataLoader(uri, columns=["id"], batch_size=8)
    e0, e1 = ids_of(loader), ids_of(loader)
    loader.set_epoch(0)
    assert ids_of(loader) == e0 and loader.epoch == 1 and ids_of(loader) == e1


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_are_disjoint_equal_and_cover_the_split(table, world_size):
    _, uri, _, good = table
    chosen = good[:60]  # 60 rows: both world sizes divide it
    where = f"id IN ({', '.join(map(str, chosen))})"
    shards = [ids_of(DataLoader(uri, columns=["id", "hid"], filter=where, batch_size=4, rank=r,
                                world_size=world_size)) for r in range(world_size)]
    assert len({len(s) for s in shards}) == 1
    assert sorted(i for s in shards for i in s) == chosen  # disjoint, and the union is the split
    lens = {len(DataLoader(uri, columns=["id"], filter=where, batch_size=4, rank=r, world_size=world_size))
            for r in range(world_size)}
    assert lens == {-(-60 // world_size // 4)}


@pytest.mark.parametrize("drop_last", [False, True])
def test_uneven_shards_stay_equal_like_distributed_sampler(table, drop_last):
    _, uri, _, good = table
    chosen = good[:61]
    where = f"id IN ({', '.join(map(str, chosen))})"
    shards = [ids_of(DataLoader(uri, columns=["id"], filter=where, batch_size=4, rank=r, world_size=3,
                                drop_last=drop_last)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    everything = [i for s in shards for i in s]
    if drop_last:  # 60 rows read, one left out of this epoch
        assert len(everything) == len(set(everything)) == 60 and set(everything) < set(chosen)
    else:  # padded with two rows read twice
        assert len(everything) == 63 and set(everything) == set(chosen)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_yields_exactly_the_remaining_rows(table, num_workers):
    _, uri, _, good = table
    full = ids_of(DataLoader(uri, columns=["id", "hid"], batch_size=8, seed=1, epoch=4))
    loader = DataLoader(uri, columns=["id", "hid"], batch_size=8, seed=1, epoch=4, num_workers=num_workers)
    seen = []
    for k, b in enumerate(loader):
        seen += b["id"].tolist()
        if k == 2:
            break
    state = loader.state_dict()
    loader.close()
    assert state["position"] == 24 and state["epoch"] == 4
    resumed = DataLoader(uri, columns=["id", "hid"], batch_size=8, seed=1, epoch=0)
    resumed.load_state_dict(state)
    rest = ids_of(resumed)
    assert seen + rest == full and sorted(seen + rest) == good
    assert resumed.state_dict()["epoch"] == 5 and resumed.state_dict()["position"] == 0


def test_state_from_another_version_is_refused(table):
    _, uri, _, _ = table
    loader = DataLoader(uri, columns=["id"])
    state = {**loader.state_dict(), "version": loader.version - 1}
    with pytest.raises(UsageError, match="version"):
        loader.load_state_dict(state)


def test_a_pinned_loader_ignores_later_writes(table, tmp_path):
    import shutil

    import lance
    _, uri, _, good = table
    copy = str(tmp_path / "copy.lance")
    shutil.copytree(uri, copy)
    loader = DataLoader(copy, columns=["id", "hid"], batch_size=8, seed=5)
    before = [(b["id"].tolist(), b["hid"].clone()) for b in DataLoader(copy, columns=["id", "hid"], batch_size=8,
                                                                        seed=5)]
    pinned = loader.version
    ds = lance.dataset(copy)
    ds.delete("id < 60")
    ds.insert(ds.to_table(filter="id >= 60").set_column(0, "id", pa.array(range(1000, 1000 + ds.count_rows()))))
    assert lance.dataset(copy).version > pinned
    after = [(b["id"].tolist(), b["hid"]) for b in loader]
    assert [i for i, _ in after] == [i for i, _ in before] and sorted(i for ids, _ in after for i in ids) == good
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(before, after))
    assert loader.version == pinned
    again = DataLoader(copy, columns=["id", "hid"], version=pinned, batch_size=8, seed=5)
    assert ids_of(again) == [i for ids, _ in before for i in ids]


def test_recipe_gives_split_columns_and_logical_names(table):
    import lance
    p, uri, live, good = table
    loader = dataloader(p.project(), recipe="r", batch_size=6)
    train = [i for i in good if split_of(i) == "train"]
    ids = []
    for b in loader:
        assert set(b) == {"vision", "extra", "length"}
        assert tuple(b["vision"].shape[1:]) == SHAPE
        ids += b["extra"][:, 0].tolist()
    assert sorted(ids) == train
    assert loader.version == lance.dataset(uri).version
    val = dataloader(p.project(), recipe="r", split="val", columns=["id"])
    assert sorted(ids_of(val)) == [i for i in live if split_of(i) == "val"]  # no hiddens asked: none skipped
    whole = dataloader(p.project(), slice="text_dense", columns=["id"])
    assert sorted(ids_of(whole)) == [i for i in live if split_of(i) is not None]
    unsplit = dataloader(p.project(), slice="everything", columns=["id"])
    assert sorted(ids_of(unsplit)) == live


def test_spec_errors_name_the_fix(table):
    p, _, _, _ = table
    with pytest.raises(UsageError, match="no split 'test'"):
        dataloader(p.project(), slice="text_dense", split="test", columns=["id"])
    with pytest.raises(UsageError, match="no recipe 'nope'"):
        dataloader(p.project(), recipe="nope")
    with pytest.raises(UsageError, match="no column 'nope'"):
        dataloader(p.project(), columns=["nope"])
    with pytest.raises(UsageError, match="needs a slice"):
        dataloader(p.project(), split="train", columns=["id"])


def test_a_slice_not_materialized_yet_is_a_usage_error(table, tmp_path):
    p, uri, _, _ = table
    import lance
    before = max(v["version"] for v in lance.dataset(uri).versions()
                 if "text_dense" not in lance.dataset(uri, version=v["version"]).schema.names)
    with pytest.raises(UsageError, match="not materialized"):
        dataloader(p.project(), slice="text_dense", columns=["id"], version=before)


def test_worker_processes_yield_what_threads_yield(table):
    _, uri, _, _ = table
    a = [(b["id"].tolist(), b["hid"]) for b in DataLoader(uri, columns=["id", "hid"], batch_size=8, seed=2)]
    with DataLoader(uri, columns=["id", "hid"], batch_size=8, seed=2, num_workers=2) as loader:
        b = [(x["id"].tolist(), x["hid"]) for x in loader]
        assert list(next(iter(DataLoader(uri, columns=["hid", "id"], num_workers=2)))) == ["hid", "id"]
        assert [i for i, _ in a] == [i for i, _ in b]
        assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
        second = [i for x in loader for i in x["id"].tolist()]  # the same workers, next epoch
        assert sorted(second) == sorted(i for ids, _ in a for i in ids) and second != [i for ids, _ in a for i in ids]


def test_shuffle_quality_is_reported(table):
    _, uri, _, _ = table
    q = DataLoader(uri, columns=["id"], batch_size=16).shuffle_quality()
    assert abs(q["correlation"]) < 0.3 and q["fragments_per_batch"] > 3
    seq = DataLoader(uri, columns=["id"], batch_size=16, shuffle=False).shuffle_quality()
    assert seq["correlation"] > 0.99 and seq["fragments_per_batch"] <= 2


def test_import_featurekit_stays_light_and_exports_dataloader():
    code = ("import sys, featurekit; assert 'torch' not in sys.modules and 'featurekit.training.dataloader' not in sys.modules; "
            "f = featurekit.dataloader; assert callable(f) and 'torch' not in sys.modules; "
            "import featurekit.training.dataloader as m; from featurekit.training.dataloader import DataLoader; "
            "assert callable(featurekit.dataloader)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_kept_by_the_trainer_are_never_overwritten(table, num_workers):
    """Buffers are recycled only once nothing refers to them: keep every batch (one of them
    only through a view) for a whole epoch, and they must all still hold their own rows."""
    _, uri, _, good = table
    with DataLoader(uri, columns=["id", "hid"], batch_size=4, prefetch=2, num_workers=num_workers) as loader:
        for _ in range(2):
            kept = list(loader)
            first_ids, view = kept[0]["id"].tolist(), kept[0]["hid"][1:]
            del kept[0]
            for b in kept + [{"id": torch.tensor(first_ids[1:]), "hid": view}]:
                for j, i in enumerate(b["id"].tolist()):
                    assert np.array_equal(b["hid"][j].numpy(), hid_values(i))
            assert len(kept) * 4 >= len(good) - 4


def test_buffer_pools_hand_out_a_buffer_again_only_when_released():
    from featurekit.training.batches import BufferPool, ColumnRead
    from featurekit.training.prefetch import SLAB, SlabPool
    pool = BufferPool(2)
    held = torch.from_numpy(pool.get((4, 3), "float16"))
    other = pool.get((4, 3), "float16")
    assert not np.shares_memory(other, held.numpy())
    del other
    view = held[1:]
    del held
    assert not np.shares_memory(pool.get((4, 3), "float16"), view.numpy())  # a view keeps it
    del view
    assert np.shares_memory(pool.get((4, 3), "float16"), pool._free[((4, 3), "float16")][0])
    slabs = SlabPool([ColumnRead("h", "h", "tensor", (3,), "float16")], 4, 2)
    first, second = slabs.acquire(), slabs.acquire()
    assert (first, second, slabs.acquire()) == (0, 1, -1)
    batch = slabs.wrap({"h": None, "id": 7, SLAB: (first, 2)})
    assert list(batch) == ["h", "id"] and tuple(batch["h"].shape) == (2, 3)
    assert slabs.acquire() == -1  # slab 0 is in the trainer's hands, slab 1 in a worker's
    del batch
    assert slabs.acquire() == 0


def test_bench_command_prints_its_table(table, run_cli, monkeypatch):
    p, _, _, _ = table
    monkeypatch.setitem(sys.modules, "loader_test_plugin", plugin())
    monkeypatch.setenv("FEATUREKIT_PLUGINS", "loader_test_plugin")
    code, out, err = run_cli("bench", p.spec_path, "--recipe", "r", "--rows", "24", "--batch-size", "8")
    assert code == 0, err
    for reader in ("featurekit shuffled", "featurekit sequential", "LanceDB Permutation shuffled",
                   "Parquet, same shuffled order", "page cache (os.preadv)"):
        assert reader in out
    assert "24 rows" in out and "shuffle quality" in out
    code, out, err = run_cli("bench", p.spec_path, "--rows", "16", "--json", "--quiet")
    assert code == 0, err
    result = json.loads(out)
    assert result["columns"] == {"hid": "hid", "early": "early", "small": "small"}
    assert all(m["rows_per_s"] > 0 for m in result["measures"])
    code, _, err = run_cli("bench", p.spec_path, "--recipe", "nope")
    assert code == 2 and "no recipe 'nope'" in err


def test_direct_reads_follow_the_table_through_compaction(table, tmp_path):
    """Compaction rewrites fragments into files holding every column: still read directly."""
    import shutil

    import lance
    _, uri, _, good = table
    copy = str(tmp_path / "compacted.lance")
    shutil.copytree(uri, copy)
    lance.dataset(copy).optimize.compact_files(target_rows_per_fragment=50)
    ds = lance.dataset(copy)
    assert all(len(f.data_files()) == 1 and len(f.data_files()[0].fields) > 2 for f in ds.get_fragments())
    loader = DataLoader(copy, columns=["id", "hid"], batch_size=16)
    assert loader.reads[1].locations is not None and loader.skipped == 4 - sum(deleted(i) for i in (5, 40, 41, 77))
    ids = []
    for b in loader:
        for j, i in enumerate(b["id"].tolist()):
            assert np.array_equal(b["hid"][j].numpy(), hid_values(i))
        ids += b["id"].tolist()
    assert sorted(ids) == good


def test_only_layouts_recognised_whole_are_read_directly():
    from featurekit.table.pages import parse_page
    plain = ("PageLayout { layout: Some( FullZipLayout( FullZipLayout { bits_rep: 0, bits_def: 0, num_items: 16, "
             "num_visible_items: 16, value_compression: Some( CompressiveEncoding { compression: Some( FixedSizeList( "
             "FixedSizeList { items_per_value: 256, has_validity: false, values: Some( CompressiveEncoding { "
             "compression: Some( Flat( Flat { bits_per_value: 16, data: None, }, ), ), }, ), }, ), ), }, ), "
             "layers: [ RepdefAllValidItem, ], details: Some( BitsPerValue( 4096, ), ), }, ), ), }")
    page = parse_page(plain, [(64, 16 * 512)], 256, 2)
    assert page is not None and (page.rows, page.position, page.stride, page.prefix) == (16, 64, 512, 0)
    assert parse_page(plain, [(64, 16 * 512 - 1)], 256, 2) is None          # sizes must add up
    assert parse_page(plain, [(64, 16 * 512)], 128, 2) is None              # another list size
    assert parse_page(plain.replace("Flat( Flat { bits_per_value: 16, data: None, }, )",
                                    "General( General { compression: Zstd, }, )"), [(64, 100)], 256, 2) is None
    assert parse_page(plain.replace("FullZipLayout( FullZipLayout", "MiniBlockLayout( MiniBlockLayout"),
                      [(64, 16 * 512)], 256, 2) is None


def test_bench_reads_a_branch(tmp_path, run_cli, monkeypatch):
    p = TestProject(tmp_path, plugins=[plugin()])
    p.write({"hid": {"extractor": "t.hiddens", "inputs": {"n": "id"}, "on_error": {"max_failure_rate": 0.5}},
             "small": {"extractor": "t.small", "inputs": {"n": "id"}}},
            rows=[{"id": i, "question": "q"} for i in range(40)])
    monkeypatch.setitem(sys.modules, "loader_test_plugin", plugin())
    monkeypatch.setenv("FEATUREKIT_PLUGINS", "loader_test_plugin")
    assert run_cli("apply", "-q", p.spec_path)[0] == 0
    code, out, err = run_cli("apply", "-q", p.spec_path, "--branch", "copy")  # nothing to compute: only the branch
    assert code == 0, err
    code, out, err = run_cli("bench", p.spec_path, "--branch", "copy", "--columns", "hid", "--rows", "16")
    assert code == 0, err
    assert "(branch copy)" in out and "featurekit shuffled" in out and "page cache (os.preadv)" in out
    assert "LanceDB Permutation shuffled" in out and "skipped: LanceDB 0.40 opens a table's main line only" in out


def test_a_state_from_another_filter_or_columns_is_refused(table):
    from featurekit.errors import UsageError
    _, uri, _, _ = table
    a = DataLoader(uri, columns=["id"], batch_size=4, filter="id >= 0")
    next(iter(a))
    state = a.state_dict()
    with pytest.raises(UsageError, match="cannot resume: the state has rows_filter='id >= 0'"):
        DataLoader(uri, columns=["id"], batch_size=4, filter="id >= 1").load_state_dict(state)
    with pytest.raises(UsageError, match="cannot resume: the state has columns="):
        DataLoader(uri, columns=["id", "qlen"], batch_size=4, filter="id >= 0").load_state_dict(state)
    DataLoader(uri, columns=["id"], batch_size=4, filter="id >= 0").load_state_dict(state)  # the same: fine


def test_each_iter_is_a_full_pass_unless_a_state_was_loaded(table):
    _, uri, live, _ = table
    loader = DataLoader(uri, columns=["id"], batch_size=8, seed=1)
    first = next(iter(loader))["id"]                 # a peek: the pass is abandoned
    ids = [i for b in loader for i in b["id"].tolist()]
    assert sorted(ids) == sorted(live) and ids[:8] == first.tolist()  # the same epoch, from its start
    assert loader.epoch == 1
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    resumed = DataLoader(uri, columns=["id"], batch_size=8, seed=1)
    resumed.load_state_dict(state)
    rest = [i for b in resumed for i in b["id"].tolist()]
    assert len(rest) == len(live) - 8                # a loaded state continues where it was
