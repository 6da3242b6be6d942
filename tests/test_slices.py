"""Curation slices end to end, checked against an independent pure-Python computation.

The reference below does what the spec's words say, with all-pairs Hamming distances and a
plain union-find, over the rows in storage (arrival) order: duplicates agree on `by` and
are within `max_distance` bits; a group keeps its earliest row; rows sharing `split.by` or
near-duplicate images form a split group, placed by BLAKE2b-8 of the JSON of
[seed, value of the group's earliest row] against the cumulative fractions.
"""
import hashlib
import json
import random

import lance
import pyarrow as pa
import pytest
from fktest import Project, registry_with

import featurekit

SPEC = """\
featurekit: 1
name: curation
table: {db: data, name: t, fragment_rows: 40}
source: {format: jsonl, path: "raw/*.jsonl", key: id}
features:
  qlen:
    extractor: text.length
    inputs: {text: question}
slices:
  train_set:
    where: "qlen >= 5"
    dedupe: {by: [question], near: {column: h, max_distance: 3}}
    split: {by: image_id, seed: 7, fractions: {train: 0.7, val: 0.2, test: 0.1}}
"""

QUESTIONS = ["what is it?", "who?", "what brand?", "how many?", "what does it say?", "is it red?"]


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)  # no rows yet: each test writes its own


def make_rows(start, n, images, rng, max_flips=3):
    """Rows over a set of images; each image has a base hash, and each row's image is a
    copy of it with up to `max_flips` bits flipped (a re-encode), so near duplicates abound.
    With max_flips=1 all copies of an image are within 2 bits: a new row can join a group
    but never bridge two."""
    rows = []
    for i in range(start, start + n):
        image_id, base = rng.choice(images)
        flips = rng.sample(range(64), rng.randint(0, max_flips))
        h = base ^ sum(1 << b for b in flips)
        rows.append({"id": i, "image_id": image_id, "question": rng.choice(QUESTIONS), "h": h & (2 ** 63 - 1)})
    return rows


def write(project, rows, name):
    path = project.root / "raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def images(rng, n, start=0):
    return [(f"img{k}", rng.getrandbits(63)) for k in range(start, start + n)]


def split_of(value, seed, fractions):
    u = int.from_bytes(hashlib.blake2b(json.dumps([seed, value], sort_keys=True).encode(),
                                       digest_size=8).digest(), "big") / 2 ** 64
    acc = 0.0
    for name, frac in fractions.items():
        acc += frac
        if u < acc:
            return name
    return name


class UnionFind:
    def __init__(self, n):
        self.parent = list(range(n))

    def find(self, x):
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def reference(rows, *, min_qlen=5, by=("question",), d=3, split_by="image_id", seed=7,
              fractions=(("train", 0.7), ("val", 0.2), ("test", 0.1))):
    """key -> split for members; key -> keeper key for removed duplicates."""
    fractions = dict(fractions)
    cand = [r for r in rows if len(r["question"]) >= min_qlen]
    n = len(cand)
    dup, grp = UnionFind(n), UnionFind(n)
    for a in range(n):
        for b in range(a + 1, n):
            ha, hb = cand[a]["h"], cand[b]["h"]
            near = ha is not None and hb is not None and (ha ^ hb).bit_count() <= d  # no hash: near nothing
            if near and all(cand[a][c] == cand[b][c] for c in by):
                dup.union(a, b)
            if near or cand[a][split_by] == cand[b][split_by]:
                grp.union(a, b)
    members, keepers = {}, {}
    for a in range(n):
        root = grp.find(a)  # the smallest index: the group's earliest row
        split = split_of(cand[root][split_by], seed, fractions)
        k = dup.find(a)
        if k == a:
            members[cand[a]["id"]] = split
        else:
            keepers[cand[a]["id"]] = cand[k]["id"]
    return members, keepers


def stored(project):
    ds = lance.dataset(str(project.root / "data" / "t.lance"))
    t = ds.to_table(columns=["id", "train_set", "_fk_train_set"], with_row_address=True).sort_by("_rowaddr")
    members, keepers, states = {}, {}, {}
    for key, split, state in zip(*(t.column(c).to_pylist() for c in ["id", "train_set", "_fk_train_set"])):
        states[key] = state
        if split is not None:
            members[key] = split
        elif "duplicate:" in state:
            keepers[key] = int(state.split(":", 2)[2])
    return members, keepers, states


def table_rows(project):
    ds = lance.dataset(str(project.root / "data" / "t.lance"))
    return ds.to_table(columns=["id", "image_id", "question", "h"], with_row_address=True).sort_by("_rowaddr").to_pylist()


def test_membership_keepers_and_splits_equal_an_independent_computation(project):
    rng = random.Random(1)
    write(project, make_rows(0, 150, images(rng, 40), rng), "a.jsonl")
    spec = project.write_spec(SPEC)
    result = featurekit.apply(spec)
    assert result.ok
    members, keepers, _ = stored(project)
    want_members, want_keepers = reference(table_rows(project))
    assert members == want_members
    assert keepers == want_keepers
    assert len(keepers) > 10 and len(set(members.values())) == 3  # the data exercised every step
    run = result.run.slices["train_set"]
    assert run.examined == 150 and sum(run.added.values()) == len(members)
    assert run.removed["where"] == 150 - len(want_members) - len(want_keepers)


def test_appended_rows_never_move_existing_rows_and_equal_the_full_computation(project):
    rng = random.Random(2)
    imgs = images(rng, 30)
    write(project, make_rows(0, 120, imgs, rng, max_flips=1), "a.jsonl")
    spec = project.write_spec(SPEC)
    featurekit.apply(spec)
    before_members, before_keepers, before_states = stored(project)
    # new rows on existing images and on new ones: joins groups, forms groups, never bridges two
    write(project, make_rows(120, 60, imgs + images(rng, 10, start=100), rng, max_flips=1), "b.jsonl")
    plan = featurekit.plan(spec)
    assert plan.slice_step("train_set").action == "fill"
    result = featurekit.apply(spec)
    assert result.run.slices["train_set"].examined == 60  # only the new rows
    members, keepers, states = stored(project)
    for key, state in before_states.items():
        assert states[key] == state  # every existing row kept its split, keeper and state
    for key, split in before_members.items():
        assert members[key] == split
    want_members, want_keepers = reference(table_rows(project))
    assert (members, keepers) == (want_members, want_keepers)
    assert any(keepers[k] < 120 for k in keepers if k >= 120)  # new duplicates of old keepers
    assert featurekit.plan(spec).is_noop


def test_a_new_row_bridging_two_splits_moves_nothing_and_is_counted_as_a_leak(project):
    spec = project.write_spec(SPEC.replace("dedupe: {by: [question], near: {column: h, max_distance: 3}}",
                                           "dedupe: {by: [question], near: {column: h, max_distance: 2}}"))
    fractions = {"train": 0.7, "val": 0.2, "test": 0.1}
    a = next(f"a{k}" for k in range(1000) if split_of(f"a{k}", 7, fractions) == "train")
    b = next(f"b{k}" for k in range(1000) if split_of(f"b{k}", 7, fractions) == "val")
    write(project, [{"id": 1, "image_id": a, "question": "what is it?", "h": 0},
                    {"id": 2, "image_id": b, "question": "who is it?", "h": 0b1111}], "a.jsonl")
    featurekit.apply(spec)
    assert stored(project)[0] == {1: "train", 2: "val"}
    # 2 bits from each: a near duplicate of both images, so it joins both split groups
    write(project, [{"id": 3, "image_id": "c", "question": "how many?", "h": 0b0011}], "b.jsonl")
    result = featurekit.apply(spec)
    assert stored(project)[0] == {1: "train", 2: "val", 3: "train"}  # the earliest group's split
    assert result.run.slices["train_set"].leaks == [{"keys": ["3"], "splits": ["train", "val"]}]


@pytest.mark.parametrize("value", [0, 7, -3, 2 ** 40, "img7", 1.5, True, None])
def test_a_split_value_hashes_as_the_json_of_seed_and_value(value):
    from featurekit.curation.split import split_index, unit_hash
    fractions = {"train": 0.7, "val": 0.2, "test": 0.1}
    u = int.from_bytes(hashlib.blake2b(json.dumps([7, value]).encode(), digest_size=8).digest(), "big") / 2 ** 64
    assert unit_hash(value, 7) == u
    assert list(fractions)[split_index([value], 7, fractions)[0]] == split_of(value, 7, fractions)


def test_near_duplicates_under_other_split_by_values_land_in_their_groups_split_across_appends(project):
    """Near-duplicate images filed under different `split.by` values (a re-upload under a new
    id) are one split group: each row goes where the group's earliest row's value hashes,
    never where its own value would. Within one apply and when appended to a group that exists."""
    rng = random.Random(5)
    questions = [q for q in QUESTIONS if len(q) >= 5]
    fractions = {"train": 0.7, "val": 0.2, "test": 0.1}

    def row(i, image_id, base):
        return {"id": i, "image_id": image_id, "question": rng.choice(questions),
                "h": base ^ (1 << rng.randrange(64) if rng.random() < 0.7 else 0) & (2 ** 63 - 1)}

    imgs = images(rng, 40)
    first = []
    for k, (image_id, base) in enumerate(imgs):
        group = [row(0, image_id, base), row(0, image_id, base)]
        if k < 24:  # a copy under another id: before the original (the group's earliest) or after it
            group.insert(0 if k % 2 else 2, row(0, f"alias{k}", base))
        first += group
    first = [{**r, "id": i} for i, r in enumerate(first)]
    write(project, first, "a.jsonl")
    spec = project.write_spec(SPEC.replace("max_distance: 3", "max_distance: 2"))
    assert featurekit.apply(spec).ok
    before_members, _, before_states = stored(project)
    assert (before_members, stored(project)[1]) == reference(table_rows(project), d=2)
    # appended: copies of old images under new ids (joining existing groups), and new images
    # with copies under two ids (new groups), the copy first in half of them
    second, n = [], len(first)
    for k, (_, base) in enumerate(imgs):
        second.append(row(n + len(second), f"late{k}", base))
    for k, (image_id, base) in enumerate(images(rng, 20, start=100)):
        pair = [row(0, image_id, base), row(0, f"copy{k}", base)]
        second += [{**r, "id": n + len(second) + m} for m, r in enumerate(pair[::-1] if k % 2 else pair)]
    write(project, second, "b.jsonl")
    result = featurekit.apply(spec)
    assert result.ok and result.run.slices["train_set"].examined == len(second)
    assert result.run.slices["train_set"].leaks == []
    members, keepers, states = stored(project)
    for key, state in before_states.items():
        assert states[key] == state  # existing rows never move
    assert (members, keepers) == reference(table_rows(project), d=2)
    h = {r["id"]: r["h"] for r in table_rows(project)}
    kinds = {k: states[k].split("!", 1)[1].split(":", 1)[0] for k in keepers}
    assert kinds == {k: "near_duplicate" if h[k] != h[v] else "duplicate" for k, v in keepers.items()}
    assert set(kinds.values()) == {"near_duplicate", "duplicate"}
    # the data reaches the case: many new rows' own value hashes to another split than their group's
    own = {r["id"]: split_of(r["image_id"], 7, fractions) for r in second}
    group_split = {**members, **{k: members.get(v) for k, v in keepers.items()}}
    assert sum(own[k] != group_split[k] for k in own if k in group_split) >= 10
    assert sum(split_of(r["image_id"], 7, fractions) != members.get(r["id"], split_of(r["image_id"], 7, fractions))
               for r in first) >= 5


class CountingTower(featurekit.Extractor):
    """A tier-3 stand-in that records every row it is called on."""

    name = "acme.tower"
    inputs = {"key": "integer"}
    log = None

    def output_type(self):
        return pa.int64()

    def __call__(self, batch):
        keys = batch.column("key").to_pylist()
        with open(CountingTower.log, "a") as fh:
            fh.writelines(f"{k}\n" for k in keys)
        return pa.array(keys, pa.int64())


def test_only_runs_the_heavy_extractor_on_exactly_the_slice_rows(project, tmp_path):
    rng = random.Random(3)
    write(project, make_rows(0, 100, images(rng, 25), rng), "a.jsonl")
    CountingTower.log = str(tmp_path / "calls.txt")
    spec = project.write_spec(SPEC.replace("slices:", "  tower:\n    tier: 3\n    extractor: acme.tower\n"
                                           "    inputs: {key: id}\n    only: train_set\nslices:"))
    reg = registry_with(CountingTower)
    featurekit.apply(spec, registry=reg)
    members, _, _ = stored(project)
    calls = open(CountingTower.log).read().split()
    assert sorted(map(int, calls)) == sorted(members)  # each slice row once, no other row
    status = {f.name: f for f in featurekit.status(spec, registry=reg).features}["tower"]
    assert (status.computed, status.pending, status.failed, status.outside) == (len(members), 0, 0, 100 - len(members))
    write(project, make_rows(100, 30, images(rng, 5, start=50), rng), "b.jsonl")
    featurekit.apply(spec, registry=reg)
    members_after, _, _ = stored(project)
    calls = open(CountingTower.log).read().split()
    assert sorted(map(int, calls)) == sorted(members_after)  # the new slice rows, once


def test_a_changed_definition_is_stale_with_its_reason_and_recomputed(project):
    rng = random.Random(4)
    write(project, make_rows(0, 60, images(rng, 20), rng), "a.jsonl")
    spec = project.write_spec(SPEC)
    featurekit.apply(spec)
    spec = project.write_spec(SPEC.replace("qlen >= 5", "qlen >= 10"))
    step = featurekit.plan(spec).slice_step("train_set")
    assert step.action == "recompute"
    assert step.reasons == ('where changed: "qlen >= 5" -> "qlen >= 10"',)
    assert "~ slice train_set: stale: examine 60 row(s) again" in featurekit.plan(spec).render()
    featurekit.apply(spec)
    members, keepers, _ = stored(project)
    assert (members, keepers) == reference(table_rows(project), min_qlen=10)


def test_rows_waiting_for_an_upstream_value_are_examined_once_it_exists(project):
    class Flaky(featurekit.Extractor):
        name = "acme.flaky"
        inputs = {"text": "string"}
        fail = True

        def output_type(self):
            return pa.int64()

        def __call__(self, batch):
            out = []
            for t in batch.column("text").to_pylist():
                if Flaky.fail and t == "who?":
                    raise ValueError("flaky")
                out.append(len(t))
            return pa.array(out, pa.int64())

    rng = random.Random(5)
    write(project, make_rows(0, 50, images(rng, 20), rng), "a.jsonl")
    spec = project.write_spec(SPEC.replace("text.length", "acme.flaky").replace(
        "inputs: {text: question}", "inputs: {text: question}\n    on_error: {max_failure_rate: 1}"))
    reg = registry_with(Flaky)
    result = featurekit.apply(spec, registry=reg)
    waiting = result.run.slices["train_set"].blocked
    assert waiting == sum(1 for r in table_rows(project) if r["question"] == "who?") > 0
    Flaky.fail = False
    assert featurekit.plan(spec, registry=reg).slice_step("train_set").rows == waiting
    featurekit.apply(spec, registry=reg)
    members, keepers, _ = stored(project)
    assert (members, keepers) == reference(table_rows(project))


def test_a_slice_from_another_keeps_its_splits_and_applies_its_own_steps(project):
    rng = random.Random(6)
    write(project, make_rows(0, 80, images(rng, 20), rng), "a.jsonl")
    spec = project.write_spec(SPEC + "  what_only:\n    from: train_set\n    where: \"question LIKE 'what%'\"\n")
    featurekit.apply(spec)
    members, _, _ = stored(project)
    t = lance.dataset(str(project.root / "data" / "t.lance")).to_table(columns=["id", "question", "what_only"])
    got = {k: s for k, s, q in zip(*(t.column(c).to_pylist() for c in ["id", "what_only", "question"])) if s}
    assert got == {k: s for k, s in members.items()
                   if next(r for r in table_rows(project) if r["id"] == k)["question"].startswith("what")}
    # read and the loader take the splits a `from:` slice inherits, and "all" of an unsplit slice
    train = featurekit.read(spec, ["id"], slice="what_only", split="train", format="arrow").data
    assert sorted(train.column("id").to_pylist()) == sorted(k for k, s in got.items() if s == "train")
    spec = project.write_spec(SPEC + "  what_only:\n    from: train_set\n    where: \"question LIKE 'what%'\"\n"
                              "  long_q:\n    where: \"qlen > 9\"\n")
    featurekit.apply(spec)
    assert featurekit.read(spec, ["id"], slice="long_q", split="all", format="arrow").data.num_rows == \
        sum(len(r["question"]) > 9 for r in table_rows(project))
    assert featurekit.dataloader(spec, slice="what_only", split="val", columns=["id"], batch_size=4).num_rows == \
        sum(s == "val" for s in got.values())


def test_slices_survive_compaction_and_the_next_apply_is_a_noop(project):
    rng = random.Random(8)
    write(project, make_rows(0, 100, images(rng, 30), rng), "a.jsonl")
    spec = project.write_spec(SPEC)
    featurekit.apply(spec)
    before = stored(project)[:2]
    ds = lance.dataset(str(project.root / "data" / "t.lance"))
    ds.optimize.compact_files(target_rows_per_fragment=1000)
    assert len(lance.dataset(ds.uri).get_fragments()) == 1
    assert stored(project)[:2] == before
    assert featurekit.plan(spec).is_noop


@pytest.mark.parametrize("where,message", [
    ("qlen >>= 4", "spec.yaml:11:12: slices.train_set.where: invalid SQL filter: cannot parse qlen >>= 4: "
                   "expected an expression, found '>=' (at character 7)"),
    ("qlen > 'long'", "spec.yaml:11:12: slices.train_set.where: invalid SQL filter: Error resolving filter "
                      "expression qlen > 'long': Received literal Utf8(\"long\") and could not convert to literal "
                      "of type 'Int32'"),
    ("qlen > 1; DROP TABLE t", "spec.yaml:11:12: slices.train_set.where: a filter is one SQL expression; "
                               "remove the ';'"),
    ("qlne >= 4", "spec.yaml:11:12: slices.train_set.where: unknown column 'qlne': not in the table, the source "
                  "or any feature's outputs; did you mean 'qlen'?"),
])
def test_a_bad_filter_is_a_spec_error_at_its_place(project, run_cli, where, message):
    write(project, make_rows(0, 5, images(random.Random(0), 3), random.Random(0)), "a.jsonl")
    project.write_spec(SPEC.replace("qlen >= 5", where))
    code, out, err = run_cli("validate", "spec.yaml", cwd=project.root)
    assert code == 2
    assert err.splitlines()[0] == message
    assert not (project.root / "data").exists()


def test_existing_keepers_are_never_displaced_when_a_new_row_bridges_their_groups(project):
    spec = project.write_spec(SPEC.replace("max_distance: 3", "max_distance: 2"))
    write(project, [{"id": 1, "image_id": "a", "question": "what is it?", "h": 0},
                    {"id": 2, "image_id": "b", "question": "what is it?", "h": 0b1111}], "a.jsonl")
    featurekit.apply(spec)
    members, keepers, _ = stored(project)
    assert set(members) == {1, 2} and keepers == {}
    write(project, [{"id": 3, "image_id": "c", "question": "what is it?", "h": 0b0011}], "b.jsonl")
    featurekit.apply(spec)
    members, keepers, _ = stored(project)
    assert set(members) == {1, 2} and keepers == {3: 1}  # both keepers stay; the bridge is a duplicate


def test_each_split_read_with_plain_lancedb_equals_slice_keys(project, run_cli):
    import lancedb
    rng = random.Random(9)
    write(project, make_rows(0, 120, images(rng, 40), rng), "a.jsonl")
    project.write_spec(SPEC)
    assert run_cli("apply", "-q", "spec.yaml", cwd=project.root)[0] == 0
    tbl = lancedb.connect(str(project.root / "data")).open_table("t")
    for split in ("train", "val", "test"):
        code, out, err = run_cli("slice", "spec.yaml", "train_set", "--keys", split)
        assert code == 0
        plain = tbl.search().where(f"train_set = '{split}'").select(["id"]).limit(None).to_arrow()
        assert sorted(map(int, out.split())) == sorted(plain.column("id").to_pylist()) and out.strip()
    code, out, err = run_cli("slice", "spec.yaml", "train_set", "--keys", "holdout")
    assert code == 2 and "slice 'train_set' has no split 'holdout'; its splits: train, val, test" in err


def test_slice_json_and_text_report_what_the_table_holds(project, run_cli):
    rng = random.Random(10)
    write(project, make_rows(0, 90, images(rng, 25), rng), "a.jsonl")
    project.write_spec(SPEC)
    run_cli("apply", "-q", "spec.yaml", cwd=project.root)
    members, keepers, states = stored(project)
    code, out, err = run_cli("slice", "spec.yaml", "train_set", "--json")
    report = json.loads(out)
    assert report["slice"] == "train_set" and report["table_version"] == lance.dataset(
        str(project.root / "data" / "t.lance")).version
    assert report["splits"] == {s: list(members.values()).count(s) for s in ("train", "val", "test")}
    removed = {step: sum(1 for s in states.values() if "!" in s and s.split("!")[1].split(":")[0] == step)
               for step in ("where", "duplicate", "near_duplicate")}
    assert report["removed"] == {k: v for k, v in removed.items() if v}
    assert report["leaks"] == 0 and report["fresh"] is True
    biggest = report["groups"][0]
    assert biggest["size"] == max(list(keepers.values()).count(k) for k in set(keepers.values())) + 1
    assert all(keepers[int(r)] == int(biggest["keeper"]) for r in biggest["removed"])
    code, text, err = run_cli("slice", "spec.yaml", "train_set")
    assert text.startswith(f"slice train_set: {len(members)} of 90 rows")
    assert "largest duplicate groups (keeper: removed rows):" in text


def test_the_gallery_is_one_static_page_with_the_images_inline(project, run_cli):
    import base64

    from PIL import Image
    rng = random.Random(11)
    rows = make_rows(0, 40, images(rng, 10), rng)
    files = {}
    for r in rows:
        path = project.root / "raw" / f"{r['image_id']}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (r["h"] % 255, 0, 0)).save(path)
        files[r["image_id"]] = path.read_bytes()
        r["image_path"] = f"raw/{r['image_id']}.png"
    write(project, rows, "a.jsonl")
    project.write_spec(SPEC.replace('key: id}', 'key: id, files: {image: image_path}}'))
    run_cli("apply", "-q", "spec.yaml", cwd=project.root)
    code, out, err = run_cli("slice", "spec.yaml", "train_set", "--gallery", "g.html")
    assert code == 0 and err == "wrote g.html\n"
    page = (project.root / "g.html").read_text()
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    for split in ("train", "val"):
        assert f"<h2>{split}: sample rows</h2>" in page
    assert "largest duplicate groups" in page
    shown = {base64.b64decode(src) for src in __import__("re").findall(r"data:image/png;base64,([^']+)", page)}
    assert shown and shown <= set(files.values())


def test_selecting_a_slice_without_its_upstream_features_is_refused_before_anything_is_written(project, run_cli):
    rng = random.Random(5)
    write(project, make_rows(0, 30, images(rng, 10), rng), "a.jsonl")
    project.write_spec(SPEC)
    code, out, err = run_cli("apply", "spec.yaml", "--select", "train_set", cwd=project.root)
    assert code == 2
    assert "slice 'train_set' reads feature 'qlen', which is not in the table yet" in err
    assert "select '+train_set'" in err
    assert not (project.root / "data" / "t.lance").exists()  # refused at plan time: no table was created
    code, out, err = run_cli("apply", "-q", "spec.yaml", "--select", "+train_set", cwd=project.root)
    assert code == 0, err
    members, _, _ = stored(project)
    assert members


def test_rows_without_a_hash_are_near_nothing_and_do_not_blur_the_others(project):
    """A NULL hash among the rows examined used to turn every hash of the batch into a float64
    (53 bits), so true near duplicates went unseen and hashless rows all matched each other."""
    rng = random.Random(11)
    imgs = [(f"img{k}", rng.getrandbits(63) | (1 << 62) | 0x3FF) for k in range(20)]  # low bits set
    rows = make_rows(0, 80, imgs, rng, max_flips=1)
    for r in rows[::9]:
        r["h"] = None
    write(project, rows, "a.jsonl")
    spec = project.write_spec(SPEC)
    assert featurekit.apply(spec).ok
    assert stored(project)[:2] == reference(table_rows(project))
    more = make_rows(80, 30, imgs, rng, max_flips=1)
    for r in more[::4]:
        r["h"] = None
    write(project, more, "b.jsonl")
    assert featurekit.apply(spec).ok
    members, keepers, _ = stored(project)
    assert (members, keepers) == reference(table_rows(project))
    assert any(k >= 80 and keepers[k] < 80 for k in keepers)  # appended near duplicates found their keepers


def test_duplicates_of_a_deleted_keeper_are_examined_again(project):
    """Pruning a keeper: the rows it removed are examined again in the same apply, as the
    reference over the remaining rows says (one becomes the keeper, the other its duplicate)."""
    rows = [{"id": 1, "image_id": "a", "question": "what is it?", "h": 1 << 40},
            {"id": 2, "image_id": "b", "question": "what is it?", "h": (1 << 40) | 1},
            {"id": 3, "image_id": "c", "question": "what is it?", "h": (1 << 40) | 2},
            {"id": 4, "image_id": "d", "question": "who?", "h": 7}]
    write(project, rows, "a.jsonl")
    spec = project.write_spec(SPEC.replace('where: "qlen >= 5"', 'where: "qlen >= 1"')
                              + "  child:\n    from: train_set\n")
    featurekit.apply(spec)
    members, keepers, _ = stored(project)
    assert keepers == {2: 1, 3: 1}
    write(project, rows[1:], "a.jsonl")  # row 1, the keeper, leaves the source
    plan = featurekit.plan(spec, prune=True)
    assert plan.slice_step("train_set").action == "fill"
    assert featurekit.apply(spec, prune=True).ok
    members, keepers, states = stored(project)
    want = reference(table_rows(project), min_qlen=1)
    assert (members, keepers) == want
    assert keepers == {3: 2} and 2 in members
    assert not any("!where" in s for s in states.values())
    assert featurekit.plan(spec).is_noop
    # the `from:` slice follows: the row its parent keeps now is in it, with the parent's split
    t = lance.dataset(str(project.root / "data" / "t.lance")).to_table(columns=["id", "train_set", "child"])
    child = {k: c for k, c in zip(t.column("id").to_pylist(), t.column("child").to_pylist()) if c}
    assert child == members
