"""Read YAML keeping where every key and value stands, so errors can point at it.

`load_document(path)` returns plain Python data plus a map from key paths to
(line, col), 1-based. Duplicate keys are errors (PyYAML silently keeps the last one).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem, SpecError

Loc = tuple[Any, ...]


@dataclass
class Document:
    """Parsed YAML with the position of every node, keyed by its path."""

    file: str
    data: Any
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def position(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """Where `loc` stands; for a missing path, the nearest existing ancestor."""
        loc = tuple(loc)
        while loc:
            table = self.key_positions if key else self.positions
            if loc in table:
                return table[loc]
            if loc in self.positions:
                return self.positions[loc]
            loc = loc[:-1]
        return self.positions.get((), (1, 1))

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        line, col = self.position(loc, key=key)
        return Problem(self.file, line, col, format_loc(loc), message)


def format_loc(loc: Loc) -> str:
    """('features', 'x', 'inputs', 0) -> 'features.x.inputs[0]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, doc: Document):
        self.doc = doc
        self.constructor = yaml.SafeLoader("")  # only used to construct scalars
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.doc.positions[loc] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, loc + (i,)) for i, child in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict:
        out: dict = {}
        first_seen: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(Problem(self.doc.file, *_mark(key_node), "/".join(map(str, loc)) or "(root)",
                                             "YAML merge keys (<<) are not supported in specs"))
                continue
            key = self.constructor.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                self.problems.append(self.doc.problem(loc, "a mapping key must be a plain scalar"))
                continue
            if key in first_seen:
                line, col = first_seen[key]
                self.problems.append(Problem(
                    self.doc.file, *_mark(key_node), format_loc(loc + (key,)),
                    f"duplicate key {key!r} (first defined at line {line}); remove one of them"))
                continue
            first_seen[key] = _mark(key_node)
            self.doc.key_positions[loc + (key,)] = _mark(key_node)
            out[key] = self.build(value_node, loc + (key,))
        return out


def load_document(path: str | Path, text: str | None = None) -> Document:
    """Parse a YAML file into a `Document`; raise `SpecError` on syntax errors."""
    path = Path(path)
    shown = str(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError([Problem(shown, 1, 1, "(file)", "no such file")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError([Problem(shown, 1, 1, "(file)", f"cannot read the file: {exc}")]) from None
    doc = Document(shown, None)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(filter(None, [exc.context, exc.problem]))
        raise SpecError([Problem(shown, line, col, "(yaml)", f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(shown, 1, 1, "(yaml)", f"invalid YAML: {exc}")]) from None
    if node is None:
        raise SpecError([Problem(shown, 1, 1, "(root)",
                                 "the file is empty; a spec starts with 'featurekit: 1'")])
    builder = _Builder(doc)
    doc.data = builder.build(node, ())
    if builder.problems:
        raise SpecError(builder.problems)
    return doc
