"""Hugging Face datasets in and out: `source: {format: hf}` reads what `save_to_disk` wrote (a
Dataset or a DatasetDict, images included) or a hub id already in the local cache, offline; and
`featurekit.read(..., format="hf")` hands a slice's split back as a `datasets.Dataset`. The
references are `datasets` itself: `load_from_disk` / `load_dataset` of the same data."""
from __future__ import annotations

import io

import lance
import numpy as np
import pyarrow as pa
import pytest

import featurekit

datasets = pytest.importorskip("datasets")
PIL = pytest.importorskip("PIL.Image")

SPEC = """\
featurekit: 1
name: hf
table: {{db: data, name: t}}
source: {{format: hf, path: {path}, key: id{options}}}
features:
  qlen: {{extractor: text.length, inputs: {{text: question}}}}
  nbytes: {{extractor: acme.nbytes, inputs: {{image: image}}}}
slices:
  all:
    where: "qlen > 0"
    split: {{by: id, seed: 0, fractions: {{train: 0.5, val: 0.5}}}}
"""


def nbytes_extractor():
    class NBytes(featurekit.Extractor):
        name = "acme.nbytes"
        inputs = {"image": "binary"}

        def output_type(self):
            return pa.int64()

        def __call__(self, batch):
            return pa.compute.binary_length(batch.column("image")).cast(pa.int64())

    return NBytes


def registry():
    from fktest import registry_with
    return registry_with(nbytes_extractor())


def picture(i: int):
    """A small real image, different for every i (PIL makes it; datasets encodes it as PNG)."""
    rng = np.random.default_rng(i)
    return PIL.fromarray(rng.integers(0, 255, (6 + i % 3, 5, 3), dtype=np.uint8))


FEATURES = None


def features():
    return datasets.Features({"id": datasets.Value("int64"), "question": datasets.Value("string"),
                              "label": datasets.ClassLabel(names=["no", "yes"]), "image": datasets.Image()})


def dataset(ids):
    return datasets.Dataset.from_dict(
        {"id": list(ids), "question": [f"question {i}?" * (1 + i % 2) for i in ids],
         "label": [i % 2 for i in ids], "image": [picture(i) for i in ids]}, features=features())


def write_spec(root, path, options="", spec=SPEC):
    (root / "spec.yaml").write_text(spec.format(path=path, options=options))
    return root / "spec.yaml"


def table(root) -> pa.Table:
    return lance.dataset(str(root / "data" / "t.lance")).to_table().sort_by("id")


def test_a_dataset_dict_saved_to_disk_ingests_with_images_and_splits(tmp_path):
    dd = datasets.DatasetDict({"train": dataset(range(0, 6)), "test": dataset(range(6, 9))})
    dd.save_to_disk(str(tmp_path / "hfdata"))
    spec = write_spec(tmp_path, "hfdata")
    result = featurekit.apply(spec, registry=registry())
    assert result.ok and result.run.ingested == 9
    got = table(tmp_path)
    reference = datasets.load_from_disk(str(tmp_path / "hfdata"))
    for split, ds in reference.items():
        # the reference's own decoding: the image bytes as datasets stored them, labels as indices
        ref = ds.cast_column("image", datasets.Image(decode=False))
        rows = {r["id"]: r for r in ref}
        mine = got.filter(pa.compute.equal(got.column("split"), split))
        assert sorted(mine.column("id").to_pylist()) == sorted(rows)
        for r in mine.to_pylist():
            assert r["image"] == rows[r["id"]]["image"]["bytes"]
            assert r["question"] == rows[r["id"]]["question"] and r["label"] == rows[r["id"]]["label"]
            assert r["nbytes"] == len(rows[r["id"]]["image"]["bytes"])
            assert r["qlen"] == len(r["question"])
    assert got.schema.field("image").type in (pa.binary(), pa.large_binary())
    # nothing changed: the next apply reads nothing and writes nothing
    again = featurekit.apply(spec, registry=registry())
    assert again.plan.is_noop


def test_a_changed_dataset_is_noticed_and_class_labels_can_be_names(tmp_path):
    dataset(range(4)).save_to_disk(str(tmp_path / "one"))
    spec = write_spec(tmp_path, "one", ", options: {class_labels: name, split_column: null}")
    assert featurekit.apply(spec, registry=registry()).run.ingested == 4
    got = table(tmp_path)
    assert got.column("label").to_pylist() == ["no", "yes", "no", "yes"] and "split" not in got.column_names
    dataset(range(6)).save_to_disk(str(tmp_path / "two"))
    spec = write_spec(tmp_path, "two", ", options: {class_labels: name, split_column: null}")
    assert featurekit.apply(spec, registry=registry()).run.ingested == 2


def test_round_trip_back_to_datasets_equal_values(tmp_path):
    dd = datasets.DatasetDict({"train": dataset(range(0, 8)), "test": dataset(range(8, 12))})
    dd.save_to_disk(str(tmp_path / "hfdata"))
    spec = write_spec(tmp_path, "hfdata")
    assert featurekit.apply(spec, registry=registry()).ok
    out = featurekit.read(spec, ["id", "question", "label", "image", "split"], format="hf", registry=registry())
    back = out.data
    assert isinstance(back, datasets.Dataset) and back.num_rows == 12
    assert isinstance(back.features["image"], datasets.Image)
    original = {r["id"]: r for s in dd.values() for r in s}
    for r in back:
        o = original[r["id"]]
        assert r["question"] == o["question"] and r["label"] == o["label"]
        assert np.array_equal(np.asarray(r["image"]), np.asarray(o["image"]))  # the same pixels, decoded by PIL
    # named by what was read: the same read is the same Dataset to datasets' caches, another is not
    again = featurekit.read(spec, ["id", "question", "label", "image", "split"], format="hf", registry=registry())
    fewer = featurekit.read(spec, ["id", "question"], format="hf", registry=registry())
    assert again.data._fingerprint == back._fingerprint != fewer.data._fingerprint
    # a slice's split, as training reads it
    train = featurekit.read(spec, ["id", "qlen", "image"], slice="all", split="train", format="hf",
                            registry=registry()).data
    t = table(tmp_path)
    want = sorted(t.filter(pa.compute.equal(t.column("all"), "train")).column("id").to_pylist())
    assert sorted(train["id"]) == want and 0 < len(want) < 12
    assert train.features["qlen"] == datasets.Value("int32")  # text.length's type
    # image columns are explicit too; a non-binary column is refused
    plain = featurekit.read(spec, ["id", "image"], format="hf", images=[], registry=registry()).data
    assert plain.features["image"] == datasets.Value("large_binary")
    with pytest.raises(featurekit.UsageError, match="'id' is not a binary column"):
        featurekit.read(spec, ["id"], format="hf", images=["id"], registry=registry())


def test_read_hf_builds_the_dataset_on_the_arrow_buffers(tmp_path):
    """No row goes through Python: the Dataset's image bytes are the very buffer Arrow read."""
    from featurekit.training.hfdataset import to_dataset
    blobs = pa.array([io.BytesIO(b"\x89PNG....").getvalue(), None, b"\x89PNG..."], pa.large_binary())
    tbl = pa.table({"id": [1, 2, 3], "image": blobs})
    ds = to_dataset(tbl)
    storage = ds.data.table.column("image").chunk(0).field("bytes")
    assert storage.buffers()[2].address == blobs.buffers()[2].address
    assert ds.cast_column("image", datasets.Image(decode=False))[1]["image"] is None


def _prepare_in_cache(cache, hub_id, splits: dict, rows=None):
    """Fill the datasets cache the way load_dataset(hub_id) does after a download: a builder
    with the hub id as repo_id, prepared under <cache>/<user>___<name>/<config>/<version>/<hash>."""
    class Tiny(datasets.GeneratorBasedBuilder):
        def _info(self):
            return datasets.DatasetInfo(features=features())

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name=s, gen_kwargs={"ids": ids}) for s, ids in splits.items()]

        def _generate_examples(self, ids):
            for row in (rows(ids) if rows else dataset(ids)):
                yield row["id"], row

    builder = Tiny(cache_dir=str(cache), repo_id=hub_id, dataset_name=hub_id.split("/")[-1], config_name="default",
                   hash="0123abcd")
    builder.download_and_prepare()


def test_a_hub_id_in_the_local_cache_is_read_offline(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    import huggingface_hub.constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # datasets reads these at import: set its copies too
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    _prepare_in_cache(cache, "acme/TinyVqa", {"train": range(5), "validation": range(5, 7)})
    reference = datasets.load_dataset("acme/TinyVqa", cache_dir=str(cache))  # datasets' own offline lookup
    spec = write_spec(tmp_path, "acme/TinyVqa", ", options: {splits: [validation]}")
    assert featurekit.apply(spec, registry=registry()).run.ingested == 2
    got = table(tmp_path)
    ref = reference["validation"].cast_column("image", datasets.Image(decode=False))
    assert got.column("id").to_pylist() == ref["id"]
    assert got.column("image").to_pylist() == [i["bytes"] for i in ref["image"]]
    assert set(got.column("split").to_pylist()) == {"validation"}


def test_bad_hf_sources_are_spec_errors(tmp_path, run_cli):
    dataset(range(2)).save_to_disk(str(tmp_path / "one"))
    (tmp_path / "notadataset").mkdir()
    spec = SPEC.replace("  nbytes: {{extractor: acme.nbytes, inputs: {{image: image}}}}\n", "")
    write_spec(tmp_path, "notadataset", spec=spec)
    code, _, err = run_cli("validate", str(tmp_path / "spec.yaml"))
    assert code == 2 and "is not a Hugging Face dataset folder" in err
    write_spec(tmp_path, "one", ", options: {splits: [nope]}", spec=spec)
    code, _, err = run_cli("validate", str(tmp_path / "spec.yaml"))
    assert code == 2 and "no split 'nope'" in err
    write_spec(tmp_path, "nobody/nothing", ", options: {cache_dir: empty-cache}", spec=spec)
    code, out, err = run_cli("validate", "--strict", str(tmp_path / "spec.yaml"))
    assert code == 2 and "neither a dataset folder" in out + err and "featurekit never downloads" in out + err


def test_images_cached_as_paths_only_are_reported_not_ingested(tmp_path, monkeypatch):
    """The datasets cache keeps an image read from a local file (imagefolder, a builder yielding
    paths) as its path: such rows are named, with the fix; save_to_disk embeds the bytes."""
    for i in range(3):
        picture(i).save(tmp_path / f"{i}.png")
    cache = tmp_path / "hf-cache"
    _prepare_in_cache(cache, "acme/paths", {"train": range(4)},  # rows 0-2 by path, row 3 as an image
                      lambda ids: [{"id": i, "question": "a?", "label": 0,
                                    "image": str(tmp_path / f"{i}.png") if i < 3 else picture(i)} for i in ids])
    spec = write_spec(tmp_path, "acme/paths", f", options: {{cache_dir: {cache}}}")
    result = featurekit.apply(spec, registry=registry())
    assert result.run.ingested == 1 and result.run.skipped_rows == {"file not embedded": 3}
    assert table(tmp_path).column("id").to_pylist() == [3]
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    datasets.load_dataset("acme/paths", cache_dir=str(cache))["train"].save_to_disk(str(tmp_path / "embedded"))
    spec = write_spec(tmp_path, "embedded")
    assert featurekit.apply(spec, registry=registry()).run.ingested == 3
    assert table(tmp_path).column("image").to_pylist()[:3] == [(tmp_path / f"{i}.png").read_bytes() for i in range(3)]


def test_a_dataset_without_an_id_gets_row_keys_across_shards(tmp_path):
    """row_key: '<split>:<position in the split>', counted across the split's shards."""
    dd = datasets.DatasetDict({"train": dataset(range(10)).remove_columns("id"),
                               "test": dataset(range(10, 13)).remove_columns("id")})
    dd.save_to_disk(str(tmp_path / "noid"), num_shards={"train": 3, "test": 1})
    assert len(list((tmp_path / "noid" / "train").glob("*.arrow"))) == 3
    spec = SPEC.replace("key: id", "key: rk").replace("split: {{by: id,", "split: {{by: rk,")
    write_spec(tmp_path, "noid", ", options: {row_key: rk}", spec=spec)
    assert featurekit.apply(tmp_path / "spec.yaml", registry=registry()).run.ingested == 13
    got = {r["rk"]: r for r in lance.dataset(str(tmp_path / "data" / "t.lance")).to_table().to_pylist()}
    reference = datasets.load_from_disk(str(tmp_path / "noid"))
    for split, ds in reference.items():
        for i, row in enumerate(ds):
            assert got[f"{split}:{i}"]["question"] == row["question"]
    assert len(got) == 13
    write_spec(tmp_path, "noid", ", options: {row_key: question}", spec=spec)
    found = featurekit.validate([tmp_path / "spec.yaml"], registry=registry())
    assert any("has a column 'question' already; set source.options.row_key" in str(p) for p in found.problems)
