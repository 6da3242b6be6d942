"""Feature columns of any Arrow type the table holds: stored and read back as computed."""
import lance
import pyarrow as pa
import pytest
from fktest import BASE_SPEC, registry_with

import featurekit

TYPES = {
    "list<string>": (pa.list_(pa.string()), lambda q: q.split()[:3]),
    "large_list<float32>": (pa.large_list(pa.float32()), lambda q: [float(len(q)), 0.5]),
    "struct": (pa.struct([("n", pa.int32()), ("first", pa.string())]),
               lambda q: {"n": len(q), "first": q.split()[0]}),
    "map": (pa.map_(pa.string(), pa.int32()), lambda q: [(w, len(w)) for w in q.split()[:2]]),
    "fixed_size_list<fixed_size_list<float16>>": (pa.list_(pa.list_(pa.float16(), 2), 3),
                                                  lambda q: [[len(q) % 7, 1.0]] * 3),
}


def extractor_for(kind: str):
    typ, fn = TYPES[kind]

    class Nested(featurekit.Extractor):
        name = "acme.nested"
        inputs = {"text": pa.string()}

        def output_type(self):
            return typ

        def __call__(self, batch):
            return pa.array([None if q.startswith("Who") else fn(q) for q in batch.column("text").to_pylist()], typ)

    return Nested


@pytest.mark.parametrize("kind", list(TYPES))
def test_a_nested_output_is_stored_and_read_back(project, kind):
    cls = extractor_for(kind)
    spec = project.write_spec(BASE_SPEC.replace("slices:\n", "  nested:\n    extractor: acme.nested\n"
                                                "    inputs: {text: question}\nslices:\n"))
    result = featurekit.apply(spec, registry=registry_with(cls))
    assert result.ok and result.run.features["nested"].computed == 40
    table = lance.dataset(project.uri).to_table(columns=["question_id", "question", "nested"]).sort_by("question_id")
    typ, fn = TYPES[kind]
    expected = pa.array([None if q.startswith("Who") else fn(q) for q in table.column("question").to_pylist()], typ)
    assert table.column("nested").type == typ
    assert table.column("nested").to_pylist() == expected.to_pylist()
    assert featurekit.plan(spec, registry=registry_with(cls)).is_noop
