"""A digest of a function's code that changes with what it computes, not with how it is written.

The function's syntax tree (docstrings left out; comments, blank lines and formatting are not
in it) together with the module-level statements it reaches by name, transitively: the
helpers it calls, the constants and imports it uses. Editing an unrelated function of the
same file changes nothing. The tree is written out field by field, leaving out empty fields,
so a Python release that adds an empty field (3.12's ``type_params``) keeps the digest.
What an imported module does is not covered (a package's version is not code in the file).
"""
from __future__ import annotations

import ast
import hashlib
from typing import Any

DIGEST_CHARS = 16


def code_digest(tree: ast.Module, name: str, first_line: int) -> str | None:
    """The digest of function `name` defined at `first_line` (its first decorator's line, as
    `co_firstlineno` says) in `tree`, or None when it is not found there."""
    node = _function_node(tree, name, first_line)
    if node is None:
        return None
    bindings = _top_level_bindings(tree)
    reached: dict[int, ast.stmt] = {id(node): node}
    todo: list[ast.AST] = [node]
    while todo:
        for used in _names(todo.pop()):
            for stmt in bindings.get(used, ()):
                if id(stmt) not in reached:
                    reached[id(stmt)] = stmt
                    todo.append(stmt)
    text = "\n".join(sorted(canonical(stmt) for stmt in reached.values()))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def _function_node(tree: ast.Module, name: str, first_line: int) -> ast.AST | None:
    found = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            line = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            if line == first_line or node.lineno == first_line:
                return node
            found = found or node
    return found


def _top_level_bindings(tree: ast.Module) -> dict[str, list[ast.stmt]]:
    """Name -> the module-level statements binding it (defs, classes, assignments, imports)."""
    out: dict[str, list[ast.stmt]] = {}
    for stmt in tree.body:
        for bound in _bound_names(stmt):
            out.setdefault(bound, []).append(stmt)
    return out


def _bound_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return [a.asname or a.name.split(".")[0] for a in stmt.names]
    targets: list[ast.AST] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        targets = [stmt.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def canonical(node: Any) -> str:
    """`node` written out without positions, docstrings or empty fields."""
    if isinstance(node, ast.AST):
        parts = [type(node).__name__]
        for field in node._fields:
            value = getattr(node, field, None)
            if field == "body" and isinstance(value, list):
                value = _without_docstring(node, value)
            if value is None or value == [] or field == "type_comment":
                continue
            parts.append(f"{field}={canonical(value)}")
        return "(" + " ".join(parts) + ")"
    if isinstance(node, list):
        return "[" + ", ".join(canonical(v) for v in node) + "]"
    return repr(node)


def _without_docstring(owner: ast.AST, body: list) -> list:
    if isinstance(owner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and body \
            and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:] or [ast.Pass()]
    return body
