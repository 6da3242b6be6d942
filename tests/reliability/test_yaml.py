"""Issue 12, item 5: reading a spec is bounded. Alias bombs, deep nesting, unknown tags and
numbers out of range are spec errors at their place: exit 2, nothing written."""
import os
import tracemalloc

import pytest

from featurekit.errors import SpecError
from featurekit.spec.document import load_document

from .conftest import TALLY

BOMB = "".join(f"{a}: &{a} [{','.join([f'*{p}'] * 9)}]\n" for p, a in zip("abcdefgh", "bcdefghi"))
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB
HEAD = "featurekit: 1\nname: x\ntable: {db: data, name: t}\nsource: {format: jsonl, path: rows.jsonl, key: id}\n"
FEATURE = "features:\n  n:\n    extractor: text.length\n    inputs: {text: question}\n"

HOSTILE = [
    ("alias bomb", HEAD + "x_bomb:\n" + "".join("  " + line + "\n" for line in BOMB.splitlines()),
     "aliases expand to more than 10000 values"),
    ("deep flow nesting", HEAD + "features: " + "[" * 50000 + "]" * 50000 + "\n", "nested deeper than 64 levels"),
    ("deep block nesting", HEAD + "".join(" " * i + "k:\n" for i in range(200)) + " " * 200 + "v\n",
     "nested deeper than 64 levels"),
    ("python tag", HEAD + FEATURE + "    description: !!python/object/apply:os.system [echo hi]\n",
     "unknown YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("custom tag", HEAD + FEATURE + "    description: !vault secret\n", "unknown YAML tag '!vault'"),
    ("tag on a key", HEAD + "features:\n  !custom n:\n    extractor: text.length\n", "unknown YAML tag '!custom'"),
    ("batch_size 2**62", HEAD + FEATURE + f"    resources: {{batch_size: {2 ** 62}}}\n",
     "features.n.resources.batch_size: input should be less than or equal to 16777216"),
    ("fragment_rows 2**62", HEAD.replace("name: t}", f"name: t, fragment_rows: {2 ** 62}}}") + FEATURE,
     "table.fragment_rows: input should be less than or equal to 1073741824"),
    ("int beyond 64 bits", HEAD + FEATURE + f"    resources: {{workers: {2 ** 70}}}\n", "does not fit in 64 bits"),
    ("nan cpus", HEAD + FEATURE + "    resources: {cpus: .nan}\n", "features.n.resources.cpus"),
]


def test_a_400_byte_alias_bomb_stays_small():
    assert len(BOMB) < 400
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match="aliases expand to more than 10000 values"):
            load_document("bomb.yaml", BOMB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize("name,text,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_specs_are_spec_errors_with_a_place_and_write_nothing(tmp_path, run_apply, name, text, message):
    (tmp_path / "rows.jsonl").write_text('{"id": 1, "question": "q?"}\n')
    (tmp_path / "spec.yaml").write_text(text)
    TALLY["bad_inputs"] += 1
    code, err = run_apply(tmp_path)
    assert code == 2, err
    assert "Traceback" not in err and message in err
    line = next(line for line in err.splitlines() if message in line)
    assert line.startswith("spec.yaml:") and line.split(":")[1].isdigit() and line.split(":")[2].isdigit()
    assert err.rstrip().endswith("nothing was written")
    assert not os.path.exists(tmp_path / "data")


@pytest.fixture
def run_apply(capsys, monkeypatch):
    from featurekit.cli import main

    def run(root):
        monkeypatch.chdir(root)
        code = main(["apply", "spec.yaml"])
        return code, capsys.readouterr().err

    return run
