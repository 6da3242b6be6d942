"""Issue 21: the spec loader and `validate` under fuzzing. Random YAML documents, random
edits of a valid spec and random specs built from the spec's JSON Schema end in a project or
in a SpecError/UsageError (exit 2), never in a traceback, and each within 5 seconds.

Seeded (`derandomize=True`) and bounded, so it runs in CI in a few seconds and fails the same
way every time; no example database is written into the working tree."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from featurekit.api import load_spec  # noqa: E402
from featurekit.errors import SpecError, UsageError  # noqa: E402

from .conftest import TALLY, registry  # noqa: E402

SECONDS = 5.0
REGISTRY = registry()
ROWS = '{"id": 1, "question": "what?", "tags": ["a"], "h": 7, "image_path": "1.png"}\n' \
       '{"id": 2, "question": "who?", "tags": [], "h": 9, "image_path": "2.png"}\n'
VALID = {
    "featurekit": 1, "name": "fuzz", "table": {"db": "data", "name": "t"},
    "source": {"format": "jsonl", "path": "rows.jsonl", "key": "id", "files": {"image": "image_path"}},
    "features": {"qlen": {"extractor": "text.length", "inputs": {"text": "question"}},
                 "n": {"extractor": "text.count", "inputs": {"items": "tags"}},
                 "twice": {"extractor": "sql", "params": {"expr": "qlen * 2", "type": "int64"}}},
    "slices": {"s": {"where": "qlen > 1", "dedupe": {"by": ["question"], "near": {"column": "h", "max_distance": 1}},
                     "split": {"by": "id", "fractions": {"train": 0.5, "val": 0.5}}},
               "t": {"from": "s", "where": "n >= 0"}},
}
EXAMPLES = int(os.environ.get("FEATUREKIT_FUZZ_EXAMPLES", "40"))  # more, locally, to search harder
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=EXAMPLES,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "rows.jsonl").write_text(ROWS)
    for name in ("1.png", "2.png"):
        (root / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    return root


def check(folder: Path, text: str | bytes) -> None:
    """Loading and validating `text` ends in a project or a spec/usage error, in time."""
    path = folder / "spec.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    TALLY["bad_inputs"] += 1
    start = time.monotonic()
    try:
        load_spec(path, registry=REGISTRY)
    except (SpecError, UsageError) as exc:
        assert str(exc) and "Traceback" not in str(exc)
    seconds = time.monotonic() - start
    assert seconds < SECONDS, f"{seconds:.1f}s to validate:\n{text!r}"
    assert not (folder / "data").exists(), "validate wrote the table"


def local(spec):
    """Keep a generated spec on this machine: the table in the test's folder (an s3:// db
    would be looked up over the network), the source a file beside it (a glob like /** would
    walk the disk). Everything else stays as generated."""
    if isinstance(spec, dict):
        if isinstance(spec.get("table"), dict) and "://" in str(spec["table"].get("db", "")):
            spec["table"]["db"] = "data"
        if isinstance(spec.get("source"), dict) and "path" in spec["source"]:
            spec["source"]["path"] = "rows.jsonl"
    return spec


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(),
                    st.text(max_size=12), st.sampled_from(["qlen", "question", "_fk_qlen", "_fkin_qlen", "", "..",
                                                           "qlen > 1) OR (1=1", "qlen / 0 > 1", "a/b", "memory://x",
                                                           "text.length", "sql", "\x00", "\udcff", "1e309"]))
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                         max_leaves=20)


def dump(value) -> str:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False)


@FUZZ
@given(documents)
def test_random_yaml_documents(folder, document):
    check(folder, dump(document))


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_bytes_and_text(folder, text):
    check(folder, text)


def paths(value, prefix=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield prefix + (k,)
            yield from paths(v, prefix + (k,))


@FUZZ
@given(st.data())
def test_random_edits_of_a_valid_spec(folder, data):
    import copy
    spec = copy.deepcopy(VALID)
    every = list(paths(spec))
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(every))
        parent = spec
        for part in where[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            if data.draw(st.booleans()):
                parent[where[-1]] = data.draw(documents)
            else:
                parent.pop(where[-1], None)
    check(folder, dump(local(spec)))


def without_conditions(schema):
    """The same specs, with each ``allOf: [{if: {properties: {k: {const: v}}}, then: ...}]`` (one
    per extractor or trainer: its params and inputs) turned into ``anyOf`` one variant per
    value: hypothesis-jsonschema can only meet an ``if`` by rejection, which takes minutes."""
    if isinstance(schema, list):
        return [without_conditions(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: without_conditions(v) for k, v in schema.items()}
    conditions = schema.get("allOf")
    if not conditions or not all("if" in c and "then" in c for c in conditions):
        return schema
    base = {k: v for k, v in schema.items() if k != "allOf"}
    variants = []
    for c in conditions:
        (key, const), = ((k, v["const"]) for k, v in c["if"]["properties"].items())
        properties = {**base.get("properties", {}), **c["then"].get("properties", {}), key: {"const": const}}
        variants.append({**base, "properties": properties})
    return {"anyOf": variants}


@pytest.fixture(scope="module")
def schema_specs():
    """Specs from the JSON Schema, built section by section (one strategy per extractor's
    variant of a feature): drawing from the whole schema at once takes seconds an example."""
    from_schema = pytest.importorskip("hypothesis_jsonschema").from_schema

    from featurekit.commands.schema import spec_schema
    schema = without_conditions(spec_schema(REGISTRY))
    defs = schema["$defs"]

    def of(sub):
        return from_schema({**sub, "$defs": defs})

    def variants(name):
        sub = defs[name]
        return st.one_of([of(v) for v in sub["anyOf"]]) if "anyOf" in sub else of(sub)

    names = st.sampled_from(["qlen", "n", "s", "t", "question", "_fk_x", "_fkin_qlen", "source", "a-b", ""]) | \
        st.text(max_size=6)
    sections = {key: st.dictionaries(names, variants(model), max_size=3)
                for key, model in (("features", "FeatureSpec"), ("slices", "SliceSpec"), ("recipes", "RecipeSpec"))}
    return st.fixed_dictionaries(
        {"featurekit": st.sampled_from([1, 1, 1, 2]), "name": st.text(max_size=8), "table": of(defs["TableSpec"])},
        optional={"engine": of(schema["properties"]["engine"]), "source": of(defs["SourceSpec"]), **sections})


@settings(FUZZ, max_examples=max(1, EXAMPLES * 2 // 3))
@given(st.data())
def test_random_specs_from_the_json_schema(folder, schema_specs, data):
    check(folder, dump(local(data.draw(schema_specs))))


def test_the_valid_spec_is_valid(folder):
    (folder / "spec.yaml").write_text(dump(VALID))
    project = load_spec(folder / "spec.yaml", registry=REGISTRY)
    assert list(project.slices) == ["s", "t"]
