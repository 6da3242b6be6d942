"""`featurekit search`: exact top-k against numpy, --like and --text, through a vector index,
the gallery, and the errors (non-vector column, unknown key, no text side)."""
import json
import re

import lance
import numpy as np
import pytest
import search_plugin
from search_plugin import toy_vector

import featurekit
from featurekit.errors import UsageError
from featurekit.testing import TestProject

N, DISTINCT = 240, 200  # rows i and i + 200 share a name: equal vectors


def png(i: int) -> bytes:
    return b"\x89PNG fake image " + str(i).encode()


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    p = TestProject(tmp_path_factory.mktemp("search"), plugins=[search_plugin])
    rows = [{"id": i, "name": f"item {i % DISTINCT}" if i != 7 else None, "g": i % 3, "image": png(i % DISTINCT)}
            for i in range(N)]
    p.write({"name_vec": {"extractor": "toyvec.text", "inputs": {"text": "name"}, "on_error": {"max_failure_rate": 0.1}},
             "image_vec": {"extractor": "toyvec.blob", "inputs": {"image": "image"}, "params": {"dim": 16}},
             "mute_vec": {"extractor": "toyvec.mute", "inputs": {"text": "name"}, "on_error": {"max_failure_rate": 0.1}},
             "orphan_vec": {"extractor": "toyvec.orphan", "inputs": {"text": "name"},
                            "on_error": {"max_failure_rate": 0.1}}}, rows)
    assert p.apply().ok
    return p


def brute_force(proj, column: str, query: np.ndarray, k: int, keep=lambda row: True):
    """The exact nearest rows by cosine distance, from the stored vectors, in numpy."""
    rows = [r for r in proj.table().to_pylist() if r[column] is not None and keep(r)]
    vectors = np.array([r[column] for r in rows], dtype=np.float64)
    d = 1 - vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    order = np.argsort(d, kind="stable")[:k]
    return [rows[i]["id"] for i in order], d[order]


def search(proj, column, **kw):
    return featurekit.search(proj.project(), column, **kw)


def test_text_search_returns_the_exact_top_k(proj):
    result = search(proj, "name_vec", text="item 5", k=12)
    ids, distances = brute_force(proj, "name_vec", toy_vector(b"item 5", 8), 12)
    assert [h.key for h in result.hits] == ids
    np.testing.assert_allclose([h.distance for h in result.hits], distances, atol=1e-6)
    assert {result.hits[0].key, result.hits[1].key} == {5, 205} and result.hits[1].distance < 1e-6
    assert result.index is None and result.hits[0].values == {"name": "item 5"}  # the text it was made from


def test_where_filters_before_the_k_nearest_are_taken(proj):
    result = search(proj, "name_vec", text="item 5", k=10, where="g = 1 AND id < 150")
    ids, _ = brute_force(proj, "name_vec", toy_vector(b"item 5", 8), 10, lambda r: r["g"] == 1 and r["id"] < 150)
    assert [h.key for h in result.hits] == ids and len(ids) == 10


def test_like_leaves_the_row_itself_out_but_keeps_its_copies(proj):
    """--like 12: the 12 nearest other rows; row 212 has the same image (distance 0) and is first."""
    result = search(proj, "image_vec", like=12, k=12)
    query = toy_vector(png(12), 16)
    ids, distances = brute_force(proj, "image_vec", query, 13, lambda r: r["id"] != 12)
    assert [h.key for h in result.hits] == ids[:12]
    assert result.hits[0].key == 212 and result.hits[0].distance == pytest.approx(0, abs=1e-6)
    assert 12 not in [h.key for h in result.hits]
    assert [h.key for h in search(proj, "image_vec", like="12", k=3).hits] == ids[:3]  # a key typed as text


def test_an_image_column_is_queried_with_its_text_side(proj):
    result = search(proj, "image_vec", text="a red stop sign", k=5)
    ids, _ = brute_force(proj, "image_vec", toy_vector(b"a red stop sign", 16), 5)
    assert [h.key for h in result.hits] == ids


def test_rows_without_a_vector_are_never_found(proj):
    found = [h.key for h in search(proj, "name_vec", text="x", k=N).hits]
    assert 7 not in found and len(found) == N - 1  # row 7's name is null: its vector failed


def test_through_a_vector_index_when_the_column_has_one(tmp_path):
    """An IVF_PQ index on the column (metric l2) is used (the search names it) in its own
    metric; the distances are still the exact cosine ones of the rows found; --exact scans."""
    p = TestProject(tmp_path, plugins=[search_plugin])
    p.write({"v": {"extractor": "toyvec.text", "inputs": {"text": "name"}, "params": {"dim": 16}}},
            [{"id": i, "name": f"n{i}"} for i in range(1200)])
    assert p.apply().ok
    ds = lance.dataset(str(tmp_path / "data" / "test.lance"))
    ds.create_index("v", index_type="IVF_PQ", num_partitions=4, num_sub_vectors=4, metric="l2")
    query = toy_vector(b"n3", 16)
    ids, distances = brute_force(p, "v", query, 10)
    through = search(p, "v", text="n3", k=10)
    assert re.fullmatch(r"v_idx \(IVF_PQ, metric l2\)", through.index)
    assert through.hits[0].key == 3
    found = {h.key: h.distance for h in through.hits}
    assert len(set(found) & set(ids)) >= 7  # approximate, as an index is
    exact = {i: d for i, d in zip(ids, distances)}
    for key in set(found) & set(exact):
        assert found[key] == pytest.approx(exact[key], abs=1e-6)  # cosine distances, not l2
    flat = search(p, "v", text="n3", k=10, exact=True)
    assert flat.index is None and [h.key for h in flat.hits] == ids


def test_errors_name_what_to_do(proj):
    cases = [
        (dict(column="name", text="a"), r"--column name: it is string, not a vector \(a fixed-size list of floats\); "
                                        r"vector columns: image_vec, mute_vec, name_vec, orphan_vec"),
        (dict(column="nope", text="a"), r"--column nope: no such column in the table; vector columns: image_vec"),
        (dict(column="name_vec", like=9999), r"--like 9999: no row with id = 9999"),
        (dict(column="name_vec", like=7), r"--like 7: that row has no name_vec \(not computed yet, failed"),
        (dict(column="name_vec", like="x"), r"--like x: the key column is int64; give a key of that type"),
        (dict(column="mute_vec", text="a"), r"--text: toyvec.mute \(which makes mute_vec\) has no text side to "
                                            r"embed a query with; use --like KEY"),
        (dict(column="orphan_vec", text="a"), r"--text: orphan_vec is queried with extractor 'toyvec.absent', "
                                              r"which is not installed: unknown extractor 'toyvec.absent'"),
        (dict(column="name_vec"), r"give one query: --like KEY"),
        (dict(column="name_vec", like=1, text="a"), r"give one query"),
        (dict(column="name_vec", text="a", where="g = "), r"--where: invalid SQL filter"),
        (dict(column="name_vec", text="a", show=("nope",)), r"--show: no column 'nope'"),
    ]
    for kw, message in cases:
        column = kw.pop("column")
        with pytest.raises(UsageError, match=message):
            search(proj, column, **kw)


def test_a_column_no_feature_of_the_spec_makes_has_no_text_side(tmp_path):
    """A vector column the spec no longer declares (kept until apply --prune): searchable by
    --like, but nothing says how to embed text for it."""
    p = TestProject(tmp_path, plugins=[search_plugin])
    rows = [{"id": i, "name": f"n{i}"} for i in range(20)]
    p.write({"v": {"extractor": "toyvec.text", "inputs": {"text": "name"}}}, rows)
    assert p.apply().ok
    p.write({}, rows)
    with pytest.raises(UsageError, match="--text: v is not a feature of the spec, so no extractor says how to "
                                         "embed text for it; use --like KEY"):
        search(p, "v", text="a")
    ids, _ = brute_force(p, "v", toy_vector(b"n3", 8), 4, lambda r: r["id"] != 3)
    assert [h.key for h in search(p, "v", like=3, k=4).hits] == ids


def test_the_command_line_prints_a_table_json_and_a_gallery(proj, run_cli, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(search_plugin.__file__).parent))
    monkeypatch.setenv("FEATUREKIT_PLUGINS", "search_plugin")
    spec = str(proj.spec_path)
    code, out, err = run_cli("search", spec, "--column", "image_vec", "--like", "12", "-k", "3", "--show", "g")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "image_vec: 3 nearest rows like id = 12, by a flat scan (exact)"
    assert lines[1].split() == ["#", "id", "distance", "g"]
    assert lines[2].split()[:4] == ["1", "212", "0.0000", "2"]
    code, out, err = run_cli("search", spec, "-c", "name_vec", "--text", "item 5", "-k", "4", "--json")
    data = json.loads(out)
    assert code == 0 and data["query"] == {"text": "item 5"} and len(data["hits"]) == 4
    assert data["hits"][0]["values"] == {"name": "item 5"} and data["index"] is None
    page = tmp_path / "near.html"
    code, out, err = run_cli("search", spec, "-c", "image_vec", "--like", "12", "-k", "5", "--gallery", str(page))
    assert code == 0 and err == f"wrote {page}\n"
    html = page.read_text()
    assert html.count("<figure class=member>") == 5 and html.count("<figure class=query>") == 1
    assert html.count("data:image/png;base64,") == 6 and "distance 0.0000" in html
    code, out, err = run_cli("search", spec, "-c", "name", "--text", "a")
    assert code == 2 and err.startswith("error: --column name: it is string, not a vector")
