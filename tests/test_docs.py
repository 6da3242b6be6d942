"""The docs are tested: every Python block and every command line of the README and docs/
runs (the output they show is what they print), the plugin example
package in docs/examples/ passes its own tests, every hook is documented, every relative
link leads to a file, and the spec reference is generated from the models."""
import importlib.util
import inspect
import re
import sys
import textwrap
from pathlib import Path

import pytest
from fktest import BASE_SPEC, registry_with

import featurekit.plugins.hookspecs as hookspecs

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
EXAMPLE = DOCS / "examples" / "featurekit-acme"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
README = (ROOT / "README.md").read_text()
TEXT = {page: page.read_text() for page in PAGES}


def blocks(lang: str, pages=PAGES) -> list[tuple[Path, str]]:
    """(page, code) for every ```lang block of `pages`."""
    return [(page, code) for page in pages for code in re.findall(rf"```{lang}\n(.*?)```", TEXT[page], re.S)]


def example_file(code: str) -> Path | None:
    """The example package's file a block shows, when its first line names one (`# path`)."""
    first = code.split("\n", 1)[0]
    if first.startswith("# ") and (EXAMPLE / first[2:].strip()).is_file():
        return EXAMPLE / first[2:].strip()
    return None


def python_block_with(needle: str) -> str:
    found = [code for _, code in blocks("python") if needle in code]
    assert len(found) == 1, needle
    return found[0]


# -- every Python block runs ------------------------------------------------------------

# The tests below run the blocks holding these strings; the plugin page's blocks are the
# example package's files, run by test_the_plugin_example_package_passes_its_tests.
RUNNERS = {
    "duckdb.sql": "test_duckdb_recipe_reads_a_table_with_float16_hiddens",
    "featurekit.read(": "test_read_snippet_runs_on_a_table_with_null_hiddens",
    "featurekit.dataloader(": "test_dataloader_snippet_runs",
    "lancedb.connect(": "test_plain_reader_snippet_reads_a_slice",
    'format="hf"': "test_hf_page_snippet_runs",
    "@featurekit.extractor(": "test_local_function_snippet_runs",
}


def test_every_python_block_is_run_by_a_test():
    assert blocks("python"), "no Python blocks found"
    for page, code in blocks("python"):
        where = f"{page.relative_to(ROOT)}: {code.splitlines()[0]!r}"
        if example_file(code) is not None:
            continue
        runners = [name for needle, name in RUNNERS.items() if needle in code]
        assert len(runners) == 1, f"{where}: no test runs this block; add one and list it in RUNNERS"
        assert runners[0] in globals(), runners[0]


def test_plugin_page_shows_the_example_files_as_they_are():
    shown = [(example_file(code), code) for _, code in blocks("python", [DOCS / "plugins.md"])
             + blocks("toml", [DOCS / "plugins.md"])]
    assert {path.relative_to(EXAMPLE).as_posix() for path, _ in shown if path} == \
        {"pyproject.toml", "featurekit_acme/__init__.py", "tests/test_acme.py"}
    for path, code in shown:
        if path is None:  # not a file of the package (the local function: test_local_function_snippet_runs)
            continue
        assert code.split("\n", 1)[1] == path.read_text(), f"docs/plugins.md shows an old copy of {path}"


def test_the_plugin_example_package_passes_its_tests(monkeypatch, featurekit_project):
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["name"] == "featurekit-acme"
    assert project["entry-points"]["featurekit"] == {"acme": "featurekit_acme"}
    package = load_module(monkeypatch, "featurekit_acme", EXAMPLE / "featurekit_acme" / "__init__.py")
    assert [n for n in dir(package) if n.startswith("featurekit_")] == ["featurekit_register_extractors"]
    tests = load_module(monkeypatch, "test_acme", EXAMPLE / "tests" / "test_acme.py")
    fixtures = {"featurekit_project": featurekit_project}
    names = [n for n in dir(tests) if n.startswith("test_")]
    assert names == ["test_contract", "test_end_to_end", "test_rows_that_fail_are_reported"]
    for name in names:
        fn = getattr(tests, name)
        fn(**{p: fixtures[p] for p in inspect.signature(fn).parameters})


def test_local_function_snippet_runs(tmp_path):
    """docs/plugins.md's function in features.py and the spec naming it: apply, then a body edit plans stale."""
    import json

    import lance
    import yaml

    import featurekit

    code = python_block_with("@featurekit.extractor(")
    spec = next(c for _, c in blocks("yaml", [DOCS / "plugins.md"]) if "plugins: [features.py]" in c)
    (tmp_path / "features.py").write_text(code)
    (tmp_path / "spec.yaml").write_text(spec)
    questions = ["why is the sky blue", None, "rhythm", ""]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps({"id": i, "question": q}) + "\n"
                                                      for i, q in enumerate(questions)))
    assert featurekit.apply(tmp_path / "spec.yaml").ok
    t = lance.dataset(str(tmp_path / "data" / "questions.lance")).to_table().sort_by("id")
    letters = yaml.safe_load(spec)["features"]["question_vowels"]["params"]["letters"]
    assert t.column("question_vowels").to_pylist() == [sum(c in letters for c in (q or "")) for q in questions]
    (tmp_path / "features.py").write_text(code.replace("sum(c in letters", "sum(2 * (c in letters)"))
    reason = featurekit.plan(tmp_path / "spec.yaml").step("question_vowels").reasons[0]
    shown = re.search(r"`(code changed: function vowels \(features.py:\d+\))`", TEXT[DOCS / "plugins.md"]).group(1)
    assert reason.startswith(shown + ", code:")


def load_module(monkeypatch, name: str, path: Path):
    """Import the file at `path` as module `name`, for this test only."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_duckdb_recipe_reads_a_table_with_float16_hiddens(project, capsys):
    """The DuckDB sentence (docs/storage.md), checked: a float16 column breaks every direct
    query, and the scanner of the other columns it shows works and counts what pylance counts."""
    import duckdb
    import lance
    import pyarrow as pa

    import featurekit

    class Hiddens(featurekit.Extractor):
        name = "acme.hiddens"
        inputs = {"text": "string"}

        def output_type(self):
            return pa.list_(pa.float16(), 4)

        def __call__(self, batch):
            return pa.array([[len(t)] * 4 for t in batch.column("text").to_pylist()], pa.list_(pa.float16(), 4))

    spec = project.write_spec(BASE_SPEC.replace("slices:\n", "  hiddens:\n    extractor: acme.hiddens\n"
                                                "    inputs: {text: question}\nslices:\n")
                              .replace("text_dense:", "text_dense:\n    split: {fractions: {train: 0.5, val: 0.5}}"))
    assert featurekit.apply(spec, registry=registry_with(Hiddens)).ok
    ds = lance.dataset(project.uri)  # noqa: F841 (the query below names it)
    try:
        duckdb.sql("select count(*) from ds").fetchall()
        raise AssertionError("DuckDB learned float16: update docs/storage.md")
    except duckdb.NotImplementedException as exc:
        assert "Unsupported Internal Arrow Type e" in str(exc)
    code = textwrap.dedent(python_block_with("duckdb.sql")).replace("specs/data/textvqa_qwen.lance", project.uri)
    capsys.readouterr()
    exec(compile(code, "docs:duckdb", "exec"), {})
    shown = capsys.readouterr().out
    counts = lance.dataset(project.uri).to_table(columns=["text_dense"]).column("text_dense").value_counts()
    for row in counts.to_pylist():
        assert f"{row['values'] if row['values'] is not None else 'NULL'}" in shown and str(row["counts"]) in shown


def hiddens_project(project, only: bool = True):
    """The project with a `vision_tower_hiddens` feature (fp16 rows of shape [3, 2] holding the
    question id), computed for the text_dense slice's rows (`only`) or every row, and a
    train/val split."""
    import pyarrow as pa

    import featurekit

    class Hiddens(featurekit.Extractor):
        name = "acme.hiddens"
        inputs = {"n": "integer"}

        def output_type(self):
            return pa.list_(pa.float16(), 6)

        def output_metadata(self):
            return {"shape": "[3, 2]"}

        def __call__(self, batch):
            return pa.array([[float(n)] * 6 for n in batch.column("n").to_pylist()], pa.list_(pa.float16(), 6))

    spec = project.write_spec(BASE_SPEC.replace("slices:\n", "  vision_tower_hiddens:\n    tier: 3\n"
                                                "    extractor: acme.hiddens\n    inputs: {n: question_id}\n"
                                                + ("    only: text_dense\n" if only else "") + "slices:\n")
                              .replace('where: "ocr_token_count >= 8"', 'where: "ocr_token_count >= 8"\n'
                                       '    split: {fractions: {train: 0.5, val: 0.5}}'))
    reg = registry_with(Hiddens)
    assert featurekit.apply(spec, registry=reg).ok
    return featurekit.load_spec(spec, registry=reg)


def test_read_snippet_runs_on_a_table_with_null_hiddens(project, capsys):
    """The read recipe (docs/training.md) on a table where rows outside the slice have NULL
    hiddens (what broke the old recipe: 'zero_copy_only was True')."""
    import lance
    import numpy as np

    import featurekit

    spec = hiddens_project(project)
    code = python_block_with("featurekit.read(").replace('"specs/textvqa-qwen.yaml"', "SPEC")
    ns = {"SPEC": spec}
    exec(compile(code, "docs:read", "exec"), ns)
    t = lance.dataset(project.uri).to_table(filter="text_dense = 'val'", columns=["question_id"])
    want = sorted(t.column("question_id").to_pylist())
    got = ns["out"]
    assert sorted(got["question_id"].tolist()) == want and len(want) > 0
    assert tuple(got["vision_tower_hiddens"].shape) == (len(want), 3, 2)
    ids = got["question_id"].numpy()
    assert np.array_equal(got["vision_tower_hiddens"].numpy()[:, 0, 0], ids.astype(np.float16))
    whole = featurekit.read(ns["SPEC"], ["vision_tower_hiddens"], format="numpy")
    assert whole.skipped == 40 - lance.dataset(project.uri).count_rows(filter="text_dense IS NOT NULL")
    # torch tensors own writable memory (no read-only Arrow buffers underneath)
    got["vision_tower_hiddens"][0, 0, 0] = 7
    got["question_id"][0] = -1
    again = featurekit.read(ns["SPEC"], ["question_id", "vision_tower_hiddens"], slice="text_dense", split="val",
                            format="torch")
    assert -1 not in again["question_id"].tolist() and float(again["vision_tower_hiddens"].min()) >= 0
    # a split the slice does not have is an error, as for the loader
    from featurekit.errors import UsageError
    with pytest.raises(UsageError, match="slice 'text_dense' has no split 'tst' \\(it has: train, val\\)"):
        featurekit.read(ns["SPEC"], ["question_id"], slice="text_dense", split="tst")


def test_dataloader_snippet_runs(project):
    """The loader recipe (docs/training.md): three epochs of every row, batches shaped from the
    metadata, and the state it saves resumes a new loader."""
    torch = pytest.importorskip("torch")
    import lance

    import featurekit

    spec = hiddens_project(project, only=False)
    code = python_block_with("featurekit.dataloader(").replace('"specs/textvqa-qwen.yaml"', "SPEC")
    ns = {"SPEC": spec}
    exec(compile(code, "docs:dataloader", "exec"), ns)
    loader, batch, state = ns["loader"], ns["batch"], ns["state"]
    assert loader.version == lance.dataset(project.uri).version and loader.num_rows == 40 and loader.skipped == 0
    assert list(batch) == ["vision"] and batch["vision"].dtype == torch.float16
    assert tuple(batch["vision"].shape[1:]) == (3, 2)
    assert state["version"] == loader.version
    featurekit.dataloader(spec, columns={"vision": "vision_tower_hiddens"}, batch_size=16,
                          version=state["version"]).load_state_dict(state)


def test_plain_reader_snippet_reads_a_slice(project):
    """The plain readers (docs/curation.md) select a slice's splits without featurekit."""
    import lance

    import featurekit

    spec = project.write_spec(BASE_SPEC.replace('where: "ocr_token_count >= 8"', 'where: "ocr_token_count >= 8"\n'
                                                '    split: {fractions: {train: 0.5, val: 0.5}}'))
    assert featurekit.apply(spec).ok
    code = python_block_with("lancedb.connect(").replace("specs/data", str(project.root / "data"))
    ns: dict = {}
    exec(compile(code, "docs:plain-readers", "exec"), ns)
    ds = lance.dataset(project.uri)
    for split, table in (("val", ns["val"]), ("train", ns["train"])):
        assert table.num_rows == ds.count_rows(filter=f"text_dense = '{split}'") > 0
        assert set(table.column("text_dense").to_pylist()) == {split}


# -- the docs say what exists ---------------------------------------------------------------

def test_every_hook_is_documented_in_the_code_and_in_the_docs():
    hooks = [n for n in dir(hookspecs) if n.startswith("featurekit_")]
    assert hooks == ["featurekit_register_engines", "featurekit_register_extractors",
                     "featurekit_register_sources", "featurekit_register_trainers"]
    for name in hooks:
        assert getattr(hookspecs, name).__doc__.strip()
        assert name in TEXT[DOCS / "plugins.md"]


def test_readme_commands_name_existing_files():
    for path in ("specs/easyvqa-qwen.yaml", "examples/make_easyvqa.py", "examples/make_tiny_qwen.py",
                 "examples/make_tiny_clip.py", "plugins/featurekit-clip",
                 "specs/textvqa-qwen.yaml", "examples/make_sample.py", "plugins/featurekit-image",
                 "plugins/featurekit-qwen", "constraints.txt"):
        assert path in README and (ROOT / path).exists()


def test_the_readme_is_a_front_page():
    assert len(README) <= 12_000
    for page in sorted(DOCS.glob("*.md")):
        assert f"(docs/{page.name})" in README, f"README.md does not link docs/{page.name}"


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_leads_to_a_file():
    pages = PAGES + sorted(DOCS.glob("examples/*/README.md"))
    checked = 0
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links in code are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto:
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.relative_to(ROOT)}: link to {target} leads nowhere"
            if fragment and file.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", file.read_text(), flags=re.S), re.M)
                assert fragment in {anchor(h) for h in headings}, f"{page.relative_to(ROOT)}: no heading #{fragment}"
            checked += 1
    assert checked > 20


def test_whole_specs_in_the_docs_fit_the_json_schema(run_cli, monkeypatch):
    """Every YAML block of the docs that is a whole spec passes the schema `featurekit schema`
    prints with the installed plugins (as the README's do in test_graph_and_cli)."""
    import json

    import jsonschema
    import yaml

    monkeypatch.delenv("FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD")
    code, out, _ = run_cli("schema")
    assert code == 0
    validator = jsonschema.Draft202012Validator(json.loads(out))
    specs = [(page, code) for page, code in blocks("yaml") if "featurekit: 1" in code]
    assert len(specs) >= 2
    for page, text in specs:
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(yaml.safe_load(text))]
        assert errors == [], f"{page.relative_to(ROOT)}: {errors}"


def test_the_spec_reference_is_generated_from_the_models(run_cli):
    code, out, err = run_cli("schema", "--markdown")
    assert code == 0
    committed = (DOCS / "reference.md").read_text()
    assert out == committed, "docs/reference.md is stale: FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD=1 " \
                             "featurekit schema --markdown > docs/reference.md"
    assert "| `fragment_rows` | `int` | `8192` |" in out


# -- every command line of the README and docs/ runs ---------------------------------------
# A line of a ```bash block, or a `$ ` line of an output block, is a command; each is run by
# one of the tests named in COMMANDS (as written, in a copy of the repository's specs and
# examples in tmp_path; featurekit in this process, python scripts as subprocesses). The
# exceptions say so: the install lines are checked against the files they name (not run:
# they install), `python -m pytest` is this suite, and Geneva's apply runs as --dry-run
# (Geneva needs a Ray cluster); the README's main job runs in plugins/featurekit-qwen's
# test_quickstart.py (a smaller easy-vqa sample, fewer steps).

QUICKSTART = "test_quickstart_commands_run_and_their_shown_output_is_what_they_print"
QWEN = "test_the_qwen_commands_run_on_a_small_sample"
COMMANDS = {
    "python -m pytest": "test_the_readme_test_command_is_what_ci_runs",
    "featurekit validate specs/textvqa.yaml": QUICKSTART,
    "featurekit plan specs/textvqa.yaml": QUICKSTART,
    "featurekit apply specs/textvqa.yaml": QUICKSTART,
    "featurekit status specs/textvqa.yaml": QUICKSTART,
    "featurekit slice specs/textvqa.yaml text_dense": QUICKSTART,
    "featurekit graph specs/textvqa.yaml --format mermaid": QUICKSTART,
    "featurekit graph specs/textvqa.yaml": QUICKSTART,
    "featurekit schema > featurekit.schema.json": QUICKSTART,
    "featurekit apply specs/textvqa-variant.yaml --branch dense6 --tag dense6-v1": QUICKSTART,
    "featurekit branches specs/textvqa.yaml": QUICKSTART,
    "featurekit search specs/textvqa.yaml --column clip_image --like 218 -k 4 --show image_id": QUICKSTART,
    "featurekit search specs/textvqa.yaml --column clip_image --text \"a red stop sign\" -k 3 "
    "--where \"text_dense = 'train'\" --gallery near.html": QUICKSTART,
    "featurekit plugins": "test_the_plugin_page_commands_run",
    "python -m pytest docs/examples/featurekit-acme": "test_the_plugin_page_commands_run",
    "pip install -e docs/examples/featurekit-acme": "test_install_lines_name_what_exists",
    'pip install -e ".[geneva]" -e plugins/featurekit-geneva': "test_install_lines_name_what_exists",
    "featurekit apply SPEC --engine geneva": "test_the_geneva_engine_line_runs_dry",
    "featurekit validate spec.yaml": "test_the_validate_example_is_what_validate_prints",
    "featurekit diff specs/textvqa.yaml HEAD~1": "test_the_git_history_commands_run",
    "featurekit diff specs/textvqa.yaml v1.0 v1.1 --json": "test_the_git_history_commands_run",
    "featurekit plan specs/textvqa.yaml --against HEAD": "test_the_git_history_commands_run",
    "featurekit apply specs/textvqa-qwen.yaml --sample 64 --select vision_tower_hiddens": QWEN,
    "featurekit bench specs/textvqa-qwen.yaml --recipe qlora --rows 256": QWEN,
    "featurekit docs specs/textvqa.yaml --out catalog": "test_the_catalog_command_runs",
}
MAIN_JOB = "plugins/featurekit-qwen/tests/test_quickstart.py::test_the_readme_main_job_runs_end_to_end"


def command_lines(pages=PAGES) -> list[tuple[Path, str]]:
    """(page, command) for every line of a ```bash block and every `$ ` line of an output
    block, its trailing comment dropped."""
    out = []
    for page in pages:
        for lang, code in re.findall(r"```(\w*)\n(.*?)```", TEXT[page], re.S):
            if lang == "bash":
                lines = code.splitlines()
            elif lang == "":
                lines = [line[2:] for line in code.splitlines() if line.startswith("$ ")]
            else:
                continue
            out += [(page, re.sub(r"\s+#.*$", "", line).strip()) for line in lines if line.strip()]
    return out


def is_main_job(line: str) -> bool:
    return line.startswith("pip install -c constraints.txt") and " && featurekit train " in line


def test_every_command_line_is_run_by_a_test():
    lines = command_lines()
    assert len(lines) >= 20
    for page, line in lines:
        if is_main_job(line):
            path, name = MAIN_JOB.split("::")
            assert f"def {name}(" in (ROOT / path).read_text()
            continue
        assert line in COMMANDS, f"{page.relative_to(ROOT)}: no test runs {line!r}; add one and list it in COMMANDS"
        assert COMMANDS[line] in globals(), COMMANDS[line]
    shown = {line for _, line in lines}
    assert set(COMMANDS) <= shown, f"listed but in no page: {set(COMMANDS) - shown}"


def run_line(root: Path, line: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a documented line in `root` as a shell would: `featurekit ...` in this process (the
    same program as the command), `python ...` as a subprocess; `> file` writes stdout there."""
    import contextlib
    import io
    import os
    import shlex
    import subprocess

    from featurekit.cli import main
    line, _, target = line.partition(" > ")
    argv = shlex.split(line)
    if argv[0] == "python":
        proc = subprocess.run([sys.executable, *argv[1:]], cwd=root, capture_output=True, text=True,
                              env={**os.environ, **(env or {})})
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        assert argv[0] == "featurekit", line
        here = os.getcwd()
        out_io, err_io = io.StringIO(), io.StringIO()
        os.chdir(root)
        try:
            with contextlib.redirect_stdout(out_io), contextlib.redirect_stderr(err_io):
                code = main(argv[1:])
        finally:
            os.chdir(here)
        out, err = out_io.getvalue(), err_io.getvalue()
    if target:
        (root / target.strip()).write_text(out)
    return code, out, err


def output_block(page: Path, command: str) -> str:
    """The output a page shows under `$ command` (up to the end of its block)."""
    found = [code for lang, code in re.findall(r"```(\w*)\n(.*?)```", TEXT[page], re.S)
             if not lang and code.startswith(f"$ {command}\n")]
    assert len(found) == 1, (page, command)
    return found[0].split("\n", 1)[1]


def copy_repository_files(root: Path, *specs: str) -> Path:
    import shutil
    (root / "specs").mkdir(parents=True)
    for name in specs:
        shutil.copy(ROOT / "specs" / name, root / "specs" / name)
    shutil.copytree(ROOT / "examples", root / "examples")
    return root


@pytest.fixture(scope="module")
def textvqa(tmp_path_factory):
    """The quickstart's sample, as README says: make_sample.py's default 400 rows."""
    root = copy_repository_files(tmp_path_factory.mktemp("quickstart"), "textvqa.yaml", "textvqa-variant.yaml")
    for line in ("python examples/make_sample.py specs/raw", "python examples/make_tiny_clip.py specs/models/tiny-clip"):
        code, _, err = run_line(root, line, {"HF_HUB_OFFLINE": "1"})
        assert code == 0, err
    return root


STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.mark.xdist_group("docs-textvqa")
def test_quickstart_commands_run_and_their_shown_output_is_what_they_print(textvqa, monkeypatch):
    import json
    monkeypatch.delenv("FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD")  # textvqa.yaml uses featurekit-image
    pytest.importorskip("featurekit_image")
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", README, re.S).group(1)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.strip().splitlines()]
    assert len(lines) == 8
    outputs = {}
    for line in lines:
        code, out, err = run_line(textvqa, line)
        assert code == 0, f"{line}\n{out}\n{err}"
        outputs[line] = out
    assert json.loads((textvqa / "featurekit.schema.json").read_text())["properties"]["features"]
    assert outputs["featurekit graph specs/textvqa.yaml --format mermaid"].startswith("graph LR")
    # the outputs the docs show are the ones these commands print (timestamps aside)
    graph = run_line(textvqa, "featurekit graph specs/textvqa.yaml")[1]
    assert graph == output_block(DOCS / "spec.md", "featurekit graph specs/textvqa.yaml")
    slice_shown = output_block(DOCS / "curation.md", "featurekit slice specs/textvqa.yaml text_dense")
    assert STAMP.sub("<time>", outputs["featurekit slice specs/textvqa.yaml text_dense"]) == \
        STAMP.sub("<time>", slice_shown), "docs/curation.md shows an old `featurekit slice` output"
    # docs/experiments.md: a variant on a branch, then the branches
    for line in ("featurekit apply specs/textvqa-variant.yaml --branch dense6 --tag dense6-v1",
                 "featurekit branches specs/textvqa.yaml"):
        code, out, err = run_line(textvqa, line)
        assert code == 0, f"{line}\n{out}\n{err}"
    assert "branch dense6: from main version" in out and "dense6-v1: branch dense6 version" in out
    assert 'definition.where "ocr_token_count >= 4" -> "ocr_token_count >= 6"' in out
    # docs/curation.md: search (the tiny CLIP's last digits may differ across CPUs: the rows are compared)
    like = "featurekit search specs/textvqa.yaml --column clip_image --like 218 -k 4 --show image_id"
    code, out, err = run_line(textvqa, like)
    shown = output_block(DOCS / "curation.md", like)
    assert code == 0, err
    assert out.splitlines()[:2] == shown.splitlines()[:2]
    assert [line.split()[1] for line in out.splitlines()[2:]] == [line.split()[1] for line in shown.splitlines()[2:]]
    code, out, err = run_line(textvqa, "featurekit search specs/textvqa.yaml --column clip_image --text \"a red stop "
                                       "sign\" -k 3 --where \"text_dense = 'train'\" --gallery near.html")
    assert code == 0 and err == "wrote near.html\n", err
    assert len(out.splitlines()) == 5 and (textvqa / "near.html").read_text().count("<figure class=member>") == 3


def test_the_validate_example_is_what_validate_prints(tmp_path):
    """docs/spec.md's `featurekit validate spec.yaml`: a spec with those two mistakes where the
    output says they are gives exactly that output."""
    (tmp_path / "spec.yaml").write_text(
        "featurekit: 1\nname: demo\ntable: {db: data, name: demo}\nsource:\n  format: jsonl\n"
        "  path: raw/*.jsonl\n  key: id\nfeatures:\n  question_length:\n    extractor: text.lenght\n"
        "    inputs: {text: question}\n  n:\n    extractor: text.length\n    inputs: {text: question}\n"
        "    tier: 4\n")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_text('{"id": 1, "question": "what is it?"}\n')
    code, out, err = run_line(tmp_path, "featurekit validate spec.yaml")
    assert code == 2 and out == ""
    assert err == output_block(DOCS / "spec.md", "featurekit validate spec.yaml")


def test_the_git_history_commands_run(tmp_path, monkeypatch):
    """docs/experiments.md's diff and plan --against, in a git repository whose spec was
    committed and tagged v1.0 then v1.1, and edited since."""
    import shutil
    import subprocess
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    monkeypatch.delenv("FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD")  # textvqa.yaml uses featurekit-image
    pytest.importorskip("featurekit_image")
    root = copy_repository_files(tmp_path, "textvqa.yaml")
    spec = root / "specs" / "textvqa.yaml"

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                       capture_output=True)

    git("init", "-q")
    git("add", "specs/textvqa.yaml")
    git("commit", "-q", "-m", "v1.0")
    git("tag", "v1.0")
    spec.write_text(spec.read_text().replace("seed: 0", "seed: 1"))
    git("commit", "-q", "-am", "v1.1")
    git("tag", "v1.1")
    spec.write_text(spec.read_text().replace("max_distance: 3", "max_distance: 5"))
    outputs = {}
    for line in ("featurekit diff specs/textvqa.yaml HEAD~1", "featurekit diff specs/textvqa.yaml v1.0 v1.1 --json",
                 "featurekit plan specs/textvqa.yaml --against HEAD"):
        code, out, err = run_line(root, line)
        assert code == 0, f"{line}\n{out}\n{err}"
        outputs[line] = out
    assert "seed" in outputs["featurekit diff specs/textvqa.yaml HEAD~1"]
    assert "seed" in outputs["featurekit diff specs/textvqa.yaml v1.0 v1.1 --json"]
    assert "max_distance" in outputs["featurekit plan specs/textvqa.yaml --against HEAD"]


def test_the_plugin_page_commands_run(tmp_path, monkeypatch):
    """docs/plugins.md: after installing the example package, `featurekit plugins` lists it and
    its tests pass (the install is stood in for by putting it on the path)."""
    import os
    example = str(EXAMPLE)
    monkeypatch.syspath_prepend(example)
    monkeypatch.setenv("FEATUREKIT_PLUGINS", "featurekit_acme")
    code, out, err = run_line(tmp_path, "featurekit plugins")
    assert code == 0, err
    assert re.search(r"^featurekit_acme .*\n  extractors: acme\.\w+, acme\.\w+$", out, re.M), out
    env = {"PYTHONPATH": os.pathsep.join([example, os.environ.get("PYTHONPATH", "")]),
           "FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    # -n 0: its 3 tests in one process (this repository's addopts would start xdist workers for them)
    code, out, err = run_line(ROOT, "python -m pytest docs/examples/featurekit-acme -q -p no:cacheprovider -n 0", env)
    assert code == 0, out + err
    assert "3 passed" in out


def test_install_lines_name_what_exists():
    """The install lines are not run (they would change this environment): each `-e` names a
    folder with a pyproject.toml declaring the extras asked for."""
    import shlex

    import tomllib
    lines = [line for _, line in command_lines() if line.startswith("pip install")]
    assert len(lines) == 3
    for line in lines:
        for part in line.split(" && ")[:1]:
            args = shlex.split(part)
            targets = [args[i + 1] for i, a in enumerate(args) if a == "-e"]
            assert targets, line
            for target in targets:
                path, _, extras = target.partition("[")
                project = tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]
                for extra in filter(None, extras.rstrip("]").split(",")):
                    assert extra in project.get("optional-dependencies", {}), (line, path, extra)
            if "-c" in args:
                assert (ROOT / args[args.index("-c") + 1]).is_file()


def test_the_readme_test_command_is_what_ci_runs():
    """`python -m pytest` is this suite: not run from inside it; CI (.ci/run) runs exactly it."""
    assert "\npython -m pytest\n" in (ROOT / ".ci" / "run").read_text()


def test_the_geneva_engine_line_runs_dry(textvqa, monkeypatch):
    """Geneva needs a Ray cluster: the line runs with --dry-run (the engine is found, the plan
    printed, nothing computed), SPEC being the quickstart's spec."""
    monkeypatch.delenv("FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD")
    pytest.importorskip("featurekit_geneva")
    code, out, err = run_line(textvqa, "featurekit apply specs/textvqa.yaml --engine geneva --dry-run")
    assert code == 0, err
    assert out.startswith("plan for textvqa-sample:")


@pytest.fixture(scope="module")
def qwen_sample(tmp_path_factory):
    """The textvqa-qwen spec on 24 sample rows with the tiny random model."""
    pytest.importorskip("featurekit_qwen")
    pytest.importorskip("peft")
    root = copy_repository_files(tmp_path_factory.mktemp("qwen"), "textvqa-qwen.yaml")
    code, _, err = run_line(root, "python examples/make_sample.py specs/raw --rows 24", {"HF_HUB_OFFLINE": "1"})
    assert code == 0, err
    from featurekit_qwen.tiny import build_tiny_qwen  # what make_tiny_qwen.py writes, without a process of its own
    build_tiny_qwen(root / "specs" / "models" / "tiny-qwen", initializer_range=0.2)
    return root


def test_the_qwen_commands_run_on_a_small_sample(qwen_sample, monkeypatch):
    """docs/experiments.md's `apply --sample` (after the tiers below 3, so the tower's slice
    exists) and docs/training.md's bench on the qlora recipe's columns."""
    monkeypatch.delenv("FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run_line(qwen_sample, "featurekit apply -q specs/textvqa-qwen.yaml --tier 2")[0] == 0
    code, out, err = run_line(qwen_sample, "featurekit apply specs/textvqa-qwen.yaml --sample 64 "
                                           "--select vision_tower_hiddens")
    assert code == 0, out + err
    assert "nothing was written" in out and "  vision_tower_hiddens " in out
    assert run_line(qwen_sample, "featurekit apply -q specs/textvqa-qwen.yaml")[0] == 0
    code, out, err = run_line(qwen_sample, "featurekit bench specs/textvqa-qwen.yaml --recipe qlora --rows 256")
    assert code == 0, out + err
    assert "Parquet, sequential" in out and "featurekit shuffled" in out


def test_hf_page_snippet_runs(tmp_path, monkeypatch):
    """docs/huggingface.md: its spec and its Python block as written, in a folder of their own:
    a DatasetDict with images saved to disk, applied, a slice's split read back as a Dataset."""
    import lance
    datasets = pytest.importorskip("datasets")
    monkeypatch.delenv("FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD")  # the spec uses featurekit-image's dhash
    pytest.importorskip("featurekit_image")
    specs = [code for _, code in blocks("yaml", [DOCS / "huggingface.md"]) if "featurekit: 1" in code]
    assert len(specs) == 1
    (tmp_path / "spec.yaml").write_text(specs[0])
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(python_block_with('format="hf"'), "docs:huggingface", "exec"), ns)
    ds = lance.dataset(str(tmp_path / "data" / "vqa.lance"))
    want = sorted(ds.to_table(filter="tuning = 'train'", columns=["question_id"]).column("question_id").to_pylist())
    assert sorted(ns["train"]["question_id"]) == want and 0 < len(want) < 8
    assert isinstance(ns["train"].features["image"], datasets.Image)
    assert ds.count_rows(filter="dhash IS NOT NULL") == 10 and ds.count_rows(filter="split = 'test'") == 2


@pytest.mark.xdist_group("docs-textvqa")  # with the quickstart test: one worker builds `textvqa`
def test_the_catalog_command_runs(textvqa, tmp_path, monkeypatch):
    """docs/catalog.md: the catalog of the running example, with a card per feature and the graph."""
    import shutil

    import featurekit
    monkeypatch.delenv("FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD")  # textvqa.yaml uses featurekit-image
    pytest.importorskip("featurekit_image")
    root = copy_repository_files(tmp_path, "textvqa.yaml")
    assert run_line(root, "python examples/make_sample.py specs/raw --rows 60")[0] == 0
    models = Path("specs") / "models" / "tiny-clip"  # clip_image's model, as the quickstart's fixture made it
    shutil.copytree(textvqa / models, root / models)
    assert run_line(root, "featurekit apply specs/textvqa.yaml")[0] == 0
    code, out, err = run_line(root, "featurekit docs specs/textvqa.yaml --out catalog")
    assert code == 0, err
    page = (root / "catalog" / "index.html").read_text()
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="fk-graph"' in page
    for name in featurekit.load_spec(root / "specs" / "textvqa.yaml").features:
        assert f'id="feature-{name}"' in page and f'data-key="feature:{name}"' in page
    assert (root / "catalog" / "slice-text_dense.html").is_file()
