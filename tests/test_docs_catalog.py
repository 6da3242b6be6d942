"""`featurekit docs SPEC --out DIR`: the catalog's numbers against brute force over the rows,
and the page opened as a user opens it, in a real headless browser (Debian's chromium, driven
by Playwright; nothing downloaded, nothing fetched by the page)."""
from __future__ import annotations

import os
import re
import shutil
import statistics

import lance
import pytest
from fktest import BASE_SPEC

import featurekit

SPEC = BASE_SPEC.replace(
    "  question_length:\n    extractor: text.length\n",
    "  question_length:\n    description: Characters in the question <b>not bold</b>.\n"
    "    extractor: text.length\n    checks: [not_null, {range: {min: 1, max: 30}, severity: warn}]\n",
).replace(
    "  ocr_token_count:\n",
    "  ocr_token_count:\n    description: OCR tokens found on the image.\n",
).replace(
    'where: "ocr_token_count >= 8"',
    'where: "ocr_token_count >= 3"\n    split: {by: question, seed: 0, fractions: {train: 0.5, val: 0.5}}\n'
    "    checks: [{min_rows: 5}, no_leaks]",
) + """  short_questions:
    where: "question_length < 25"
"""
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def catalog(project, tmp_path):
    project.write_spec(SPEC)
    assert featurekit.apply(project.spec).run.ingested == 40
    return featurekit.docs(project.spec, tmp_path / "site")


def test_the_numbers_are_the_tables(project, catalog):
    rows = project.dataset().to_table().to_pylist()
    assert catalog.rows == len(rows) == 40 and catalog.exists
    features = {f.name: f for f in catalog.features}
    assert list(features) == list(featurekit.load_spec(project.spec).features)
    for f in catalog.features:
        for col in f.columns:
            values = [r[col.name] for r in rows]
            assert col.rows == len(values) and col.nulls == sum(v is None for v in values)
            present = [v for v in values if v is not None]
            if isinstance(present[0], int):
                assert col.stats["min"] == min(present) and col.stats["max"] == max(present)
                assert col.stats["mean"] == pytest.approx(statistics.mean(present), rel=1e-3)
            elif isinstance(present[0], str):
                assert col.stats["distinct"] == len(set(present))
                top_value, top_count = col.stats["top"][0]
                assert top_count == max(present.count(v) for v in set(present)) == present.count(top_value)
        assert f.computed == sum(r[f"_fk_{f.name}"] == f.fingerprint for r in rows) == f.scope_rows
    assert features["question_length"].description == "Characters in the question <b>not bold</b>."
    assert features["question_type"].description is None
    raw = {c.name: c for c in catalog.columns}
    assert set(raw) == {"question_id", "image_id", "question", "answer", "ocr_tokens"}
    assert raw["ocr_tokens"].nulls == sum(r["ocr_tokens"] is None for r in rows)
    lengths = [len(r["ocr_tokens"]) for r in rows if r["ocr_tokens"] is not None]
    assert raw["ocr_tokens"].stats["max length"] == max(lengths)
    # checks and their last results are the apply's; slices counted as Lance counts them
    checked = featurekit.check(project.spec)
    shown = {(c["check"], c["column"]): c["outcome"] for f in catalog.features for c in f.checks}
    shown |= {(c["check"], c["column"]): c["outcome"] for s in catalog.slices for c in s.checks}
    assert shown == {(r.check, r.column): r.outcome for r in checked.results}
    assert shown[("range", "question_length")] == "warn"  # questions up to 35 characters
    dense = next(s for s in catalog.slices if s.name == "text_dense")
    for split in ("train", "val"):
        assert dense.splits[split] == sum(r["text_dense"] == split for r in rows)
    assert dense.gallery == "slice-text_dense.html" and (catalog.path.parent / dense.gallery).is_file()
    assert catalog.applies[0]["did"][0] == "ingested 40" and catalog.applies[0]["checks"]["warn"] == 1


def chromium():
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(".ci/run installs Debian's chromium: it is missing")
        pytest.skip("no chromium (apt-get install -y chromium)")
    return path


def test_the_page_renders_in_a_headless_browser(project, catalog, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    requested, problems = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.on("request", lambda r: requested.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(catalog.path.as_uri())
            assert page.title() == "textvqa-test: featurekit catalog"
            graph = page.locator("svg.fk-graph")
            box = graph.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100
            for name in featurekit.load_spec(project.spec).features:  # every feature: a node and a card
                node = page.locator(f'svg g.node[data-key="feature:{name}"]')
                assert node.is_visible() and node.bounding_box()["width"] > 40
                card = page.locator(f"#feature-{name}")
                assert card.is_visible() and card.locator("h3").inner_text() == name
            for name in ["text_dense", "short_questions"]:
                assert page.locator(f'svg g.node[data-key="slice:{name}"]').is_visible()
                assert page.locator(f"#slice-{name}").is_visible()
            assert page.locator('svg g.node[data-key="column:question"]').is_visible()
            edges = page.locator("svg path.edge")
            # question -> question_length, question_type, text_dense (its split); ocr_tokens -> ocr_token_count;
            # ocr_token_count -> text_dense; question_length -> short_questions
            assert edges.count() == 6
            # the description is text, not markup; a feature without one says how to add it
            desc = page.locator("#feature-question_length .desc")
            assert desc.inner_text() == "Characters in the question <b>not bold</b>."
            assert "description:" in page.locator("#feature-question_type .desc").inner_text()
            checks = page.locator("#feature-question_length li.check")
            assert checks.count() == 2 and "warn" in checks.nth(1).inner_text()
            # a node of the graph leads to its card
            page.locator('svg g.node[data-key="feature:ocr_token_count"]').click()
            assert page.url.endswith("#feature-ocr_token_count")
            assert page.evaluate("document.querySelector(':target').id") == "feature-ocr_token_count"
            assert page.locator("#applies tr").count() == 2  # the header and one apply
            page.screenshot(path=str(tmp_path / "catalog.png"), full_page=True)
            # the gallery link opens the slice's gallery
            page.locator("#slice-text_dense a.gallery").click()
            page.wait_for_load_state()
            assert page.url.endswith("/slice-text_dense.html") and "slice text_dense" in page.content()
        finally:
            browser.close()
    assert problems == []
    assert requested and all(url.startswith("file://") for url in requested), requested
    assert (tmp_path / "catalog.png").stat().st_size > 20_000


def test_graph_edges_never_run_under_a_node():
    """An edge across several layers goes through a gap reserved in each layer it crosses."""
    from featurekit.planning.graph import Graph, Node
    from featurekit.planning.graphsvg import NODE_H, layout
    nodes = {f"feature:{n}": Node("feature", n, 1) for n in "abcd"}
    deps = {"feature:b": ("feature:a",), "feature:c": ("feature:b",), "feature:d": ("feature:a", "feature:c")}
    boxes, routes, width, height = layout(Graph(nodes, deps, {"feature:a": ("x",), "feature:d": ("y",)}))
    assert [round(boxes[f"feature:{n}"].x) for n in "abcd"] == sorted({round(boxes[f"feature:{n}"].x)
                                                                         for n in "abcd"})  # one layer each
    real = [b for b in boxes.values() if b.label]
    for a, b, points in routes:
        assert points[0][0] == boxes[a].x + boxes[a].w and points[-1][0] == boxes[b].x - 2
        for (x0, y0), (x1, y1) in zip(points[1::2], points[2::2]):  # runs across a layer
            assert y0 == y1
            for box in real:
                overlaps_x = box.x < x1 and x0 < box.x + box.w
                assert not (overlaps_x and box.y <= y0 <= box.y + NODE_H), (a, b, box.key)
    assert len(routes) == 6 and width > 0 and height > 0


def test_the_cli_writes_the_catalog_and_refuses_a_file(project, tmp_path, run_cli):
    project.write_spec(SPEC)
    code, out, _ = run_cli("docs", str(project.spec), "--out", str(tmp_path / "before"))
    assert code == 0 and "0 gallery page(s)" in out
    page = (tmp_path / "before" / "index.html").read_text()
    assert "the table does not exist yet" in page and 'id="feature-question_length"' in page
    assert featurekit.apply(project.spec).ok
    code, out, _ = run_cli("docs", str(project.spec), "--out", str(tmp_path / "site"), "--json")
    assert code == 0 and '"rows": 40' in out
    assert re.search(r'"path": ".*index\.html"', out)
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli("docs", str(project.spec), "--out", str(tmp_path / "afile"))
    assert code == 2 and "that is a file" in err
    assert lance.dataset(project.uri).version == featurekit.status(project.spec).version  # nothing written
