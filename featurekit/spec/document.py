"""Read YAML keeping where every key and value stands, so errors can point at it.

`load_document(path)` returns plain Python data plus a map from key paths to
(line, col), 1-based. Duplicate keys are errors (PyYAML silently keeps the last one).

A spec may come from anywhere, so reading it is bounded: only a regular file is read (a FIFO
would block, /dev/zero never ends), at most MAX_SPEC_BYTES of it; nesting deeper than MAX_DEPTH,
aliases expanding to more than MAX_ALIAS_NODES values (a 400-byte "billion laughs" would
otherwise build gigabytes), tags other than YAML's plain ones (``!!python/object``,
``!custom``) and integers wider than 64 bits are spec errors at their place.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem, SpecError

Loc = tuple[Any, ...]
MAX_DEPTH = 64
MAX_SPEC_BYTES = 8 * 1024 * 1024  # a spec of 8,000 features is about 0.5 MB
_FAST = getattr(yaml, "CSafeLoader", None)  # libyaml: the same nodes and marks, ~10x faster
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
        text = read_spec_text(path, shown)
    elif "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise SpecError([Problem(shown, line, 1, "(file)", "the file holds a NUL character; a spec is text")])
    doc = Document(shown, None)
    try:
        _check_depth(text, shown)
        node = _compose(text)
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


def read_spec_text(path: Path, shown: str) -> str:
    """The text of the spec at `path`: a regular file of at most MAX_SPEC_BYTES of UTF-8."""
    def fail(message: str, line: int = 1, col: int = 1):
        raise SpecError([Problem(shown, line, col, "(file)", message)]) from None

    try:  # non-blocking: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        fail("no such file")
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        fail(f"cannot read the file: {exc}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode) else \
                "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "not a regular file"
            fail(f"{what}, not a spec file; a spec is a YAML file")
        if info.st_size > MAX_SPEC_BYTES:
            fail(f"the file is {info.st_size:,} bytes; a spec is at most {MAX_SPEC_BYTES:,} (is this a spec?)")
        chunks, size = [], 0
        while size <= MAX_SPEC_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_SPEC_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_SPEC_BYTES:
            fail(f"the file is more than {MAX_SPEC_BYTES:,} bytes; a spec is at most that (is this a spec?)")
    except OSError as exc:
        fail(f"cannot read the file: {exc}")
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[:exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        fail(f"byte 0x{data[exc.start]:02x} is not UTF-8; a spec is UTF-8 text (re-save it as UTF-8)", line, col)
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        fail("the file holds a NUL character; a spec is text", line)
    return text


def _compose(text: str) -> yaml.Node | None:
    """The YAML node tree; libyaml when installed, PyYAML's own parser for its error messages."""
    if _FAST is not None:
        try:
            return yaml.compose(text, Loader=_FAST)
        except yaml.YAMLError:
            pass  # read again below: the pure-Python parser words its errors the way the tests expect
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _check_depth(text: str, shown: str) -> None:
    """Refuse deep nesting before composing (PyYAML's composer recurses per level; its
    parser, used here, does not, but its scanner is quadratic in unclosed brackets, so
    those are counted on the text first)."""
    where = _deep_brackets(text)
    if where is not None:
        raise SpecError([Problem(shown, *where, "(yaml)", f"nested deeper than {MAX_DEPTH} levels")])
    depth = 0
    try:
        events = list(yaml.parse(text, Loader=_FAST)) if _FAST is not None else None
    except yaml.YAMLError:
        events = None  # reported by the composer, in PyYAML's words
    for event in events if events is not None else yaml.parse(text, Loader=yaml.SafeLoader):
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
