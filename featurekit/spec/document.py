"""Read YAML keeping where every key and value stands, so errors can point at it.

`load_document(path)` returns plain Python data plus a map from key paths to
(line, col), 1-based. Duplicate keys are errors (PyYAML silently keeps the last one).

A spec may come from anywhere, so reading it is bounded: nesting deeper than MAX_DEPTH,
aliases expanding to more than MAX_ALIAS_NODES values (a 400-byte "billion laughs" would
otherwise build gigabytes), tags other than YAML's plain ones (``!!python/object``,
``!custom``) and integers wider than 64 bits are spec errors at their place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem, SpecError

Loc = tuple[Any, ...]
MAX_DEPTH = 64
MAX_ALIAS_NODES = 10_000
INT64 = (-(1 << 63), (1 << 63) - 1)
_CORE = "tag:yaml.org,2002:"
SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
COLLECTION_TAGS = {yaml.MappingNode: _CORE + "map", yaml.SequenceNode: _CORE + "seq"}


class _Limit(Exception):
    """Reading stops here: the spec is too big or too deep to be a spec."""

    def __init__(self, node: yaml.Node, message: str):
        self.node, self.message = node, message


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
        self.seen: set[int] = set()  # nodes built once; building one again is an alias expanding
        self.expanded = 0

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self._count(node, loc)
        self.doc.positions[loc] = _mark(node)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag != COLLECTION_TAGS[type(node)]:
            self._problem(node, loc, f"unknown YAML tag {node.tag!r}; specs use plain mappings and lists")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, loc + (i,)) for i, child in enumerate(node.value)]
        return self._scalar(node, loc)

    def _count(self, node: yaml.Node, loc: Loc) -> None:
        if len(loc) > MAX_DEPTH:
            raise _Limit(node, f"nested deeper than {MAX_DEPTH} levels")
        if id(node) in self.seen:
            self.expanded += 1
            if self.expanded > MAX_ALIAS_NODES:
                raise _Limit(node, f"aliases expand to more than {MAX_ALIAS_NODES} values (a YAML alias bomb?); "
                                   "write the values out, or share less")
        else:
            self.seen.add(id(node))

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        """A plain YAML value; unknown tags and unrepresentable numbers are problems."""
        if node.tag not in SCALAR_TAGS:
            self._problem(node, loc, f"unknown YAML tag {node.tag!r}; specs use plain values")
            return None
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            self._problem(node, loc, f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}: {exc}")
            return None
        if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
            self._problem(node, loc, f"integer {node.value} does not fit in 64 bits")
            return None
        return value

    def _problem(self, node: yaml.Node, loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.doc.file, *_mark(node), format_loc(loc), message))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict:
        out: dict = {}
        first_seen: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(Problem(self.doc.file, *_mark(key_node), "/".join(map(str, loc)) or "(root)",
                                             "YAML merge keys (<<) are not supported in specs"))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, loc, "a mapping key must be a plain scalar")
                continue
            self._count(key_node, loc)
            key = self._scalar(key_node, loc)
            if key is None and key_node.tag != _CORE + "null":
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
        _check_depth(text, shown)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise SpecError([Problem(shown, 1, 1, "(yaml)", f"nested deeper than {MAX_DEPTH} levels")]) from None
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
    try:
        doc.data = builder.build(node, ())
    except _Limit as exc:
        raise SpecError([Problem(shown, *_mark(exc.node), "(yaml)", exc.message)]) from None
    if builder.problems:
        raise SpecError(builder.problems)
    return doc


def _check_depth(text: str, shown: str) -> None:
    """Refuse deep nesting before composing (PyYAML's composer recurses per level; its
    parser, used here, does not, but its scanner is quadratic in unclosed brackets, so
    those are counted on the text first)."""
    where = _deep_brackets(text)
    if where is not None:
        raise SpecError([Problem(shown, *where, "(yaml)", f"nested deeper than {MAX_DEPTH} levels")])
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise SpecError([Problem(shown, mark.line + 1, mark.column + 1, "(yaml)",
                                         f"nested deeper than {MAX_DEPTH} levels")])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _deep_brackets(text: str) -> tuple[int, int] | None:
    """Where unclosed [ and { (outside quotes and comments) first exceed MAX_DEPTH."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth, line, col, quote, comment, prev = 0, 1, 0, None, False, "\n"
    for ch in text:
        col += 1
        if ch == "\n":
            line, col, comment = line + 1, 0, False
        elif comment:
            pass
        elif quote is not None:
            if ch == quote and not (quote == '"' and prev == "\\"):
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and prev in " \t\n":
            comment = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, col
        elif ch in "]}":
            depth = max(0, depth - 1)
        prev = ch
    return None
