"""The shape of the package, checked: every command has its Python function, layers import only
downward (no circles, no other module's private names), the public surface is explicit, an
apply opens its table once, and failures a caller may act on have their own error types."""
from __future__ import annotations

import ast
from pathlib import Path

import pyarrow as pa
import pytest

import featurekit

PACKAGE = Path(featurekit.__file__).parent

# Lowest first: a subpackage may import its own layer and the ones before it, never a later one.
LAYERS = [
    {"_version", "errors", "lifetime"},
    {"spec"},
    {"plugins"},
    {"table"},
    {"ingest"},
    {"planning"},
    {"curation"},
    {"checks"},
    {"engine"},
    {"training"},
    {"builtin", "commands"},
    {"api", "progress", "testing", "pytest_plugin"},
    {"cli", "__main__", "__init__"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, str]]:
    """(module imported, name imported) for every featurekit import outside `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom):
            continue
        base = package[: len(package) - node.level + 1] if node.level else []
        target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
        if target == "featurekit" or target.startswith("featurekit."):
            out += [(target, alias.name) for alias in node.names]
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, imported in _imports(name, path):
            graph[name].add(f"{target}.{imported}" if f"{target}.{imported}" in modules else target)
    return graph


def _layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if part in names)


def test_every_cli_command_has_its_python_function_and_result_type():
    from featurekit.api import COMMANDS
    from featurekit.cli import cli
    assert set(cli.commands) == set(COMMANDS)
    for command, function in COMMANDS.items():
        assert getattr(featurekit, function.__name__) is function, command  # featurekit.<function>
        assert function.__doc__ and function.__name__ in featurekit.__all__, command
    for name in ("Plan", "ApplyResult", "Status", "SliceReport", "TrainResult", "EvalResult", "ApplyLog", "SpecDiff",
                 "BranchReport", "BenchResult", "CompactResult", "Validation", "PluginsReport", "Graph", "RunResult"):
        assert name in featurekit.__all__ and getattr(featurekit, name).__doc__ is not None, name
    assert featurekit.read.__module__ == "featurekit.training.read" and callable(featurekit.dataloader)


def test_the_public_surface_is_explicit():
    for name in featurekit.__all__:
        assert getattr(featurekit, name) is not None, name
    assert "Engine" in featurekit.__all__ and featurekit.Engine.fill.__doc__


def test_layers_import_only_downward_without_circles_or_private_names():
    graph = _graph()
    upward = [(a, b) for a, targets in graph.items() for b in targets if _layer(b) > _layer(a)]
    assert upward == []
    private = [(name, target, imported) for name, path in _modules().items()
               for target, imported in _imports(name, path)
               if imported.startswith("_") and not imported.startswith("__") and target != name]
    assert private == []
    seen: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1 and nxt != node:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in seen:
                visit(nxt, stack + [nxt])
        seen[node] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])


def test_at_most_twelve_modules_sit_at_the_top():
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 12, sorted(top)


def test_an_apply_opens_its_table_once_and_follows_its_own_writes(project, monkeypatch):
    """Every version an apply makes comes back from the write that made it: the table is
    opened once (plus once to read its columns while the spec is resolved)."""
    import lance
    opened: list[str] = []
    real = lance.dataset

    def counting(uri, *args, **kwargs):
        import traceback
        opened.append(str(uri) + "\n" + "".join(traceback.format_stack(limit=5)[:-1]))
        return real(uri, *args, **kwargs)

    spec = project.spec.read_text().replace("slices:\n", "  words:\n    extractor: text.word_count\n"
                                            "    inputs: {text: question}\nslices:\n")
    project.spec.write_text(spec)
    assert featurekit.apply(project.spec).ok  # creates the table
    project.add_rows(20, start=40)
    spec = project.spec.read_text().replace("text_dense:", "wordy:\n    where: \"words > 4\"\n  text_dense:")
    project.spec.write_text(spec)
    monkeypatch.setattr(lance, "dataset", counting)
    result = featurekit.apply(project.spec)
    assert result.ok and result.run.ingested == 20 and "wordy" in result.run.slices
    mine = [u for u in opened if Path(u.split("\n")[0]).name == "textvqa.lance"]
    assert len(mine) == 2, opened  # the spec's column peek, and the apply's one handle


def test_a_held_lock_and_a_conflicting_commit_have_their_own_errors(project):
    from featurekit.table.datafiles import file_version, replacement, write_fragment_columns
    from featurekit.table.handle import Table
    from featurekit.table.lock import table_lock
    assert featurekit.apply(project.spec).ok
    loaded = featurekit.load_spec(project.spec)
    with table_lock(Table.of(loaded).ref), pytest.raises(featurekit.LockHeld) as held:
        featurekit.apply(project.spec)
    assert isinstance(held.value, featurekit.RunError) and held.value.exit_code == 1
    assert held.value.table == str(project.root / "data" / "textvqa.lance")
    first, second = Table.of(loaded), Table.of(loaded)
    read = first.version

    def replace(table: Table) -> int:
        ds = table.dataset
        values = pa.table({"question_length": pa.array([7] * ds.get_fragment(0).physical_rows, pa.int32())})
        files = [write_fragment_columns(ds, 0, values)]
        return table.commit(replacement(files, file_version(ds)), read, what="feature 'question_length'")

    assert replace(first) == read + 1 and first.version == read + 1  # the handle moved with its write
    with pytest.raises(featurekit.CommitConflict, match="another writer changed the same fragments"):
        replace(second)
    assert isinstance(featurekit.CommitConflict("x"), featurekit.TableError)
