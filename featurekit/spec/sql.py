"""SQL filters in specs, as expression trees.

A `where` (or a ``sql`` extractor's expression) is parsed here into one tree (`parse`) and
re-emitted from it with every operator parenthesized (`Expr.sql`), so that combining it with
another filter (`all_of`) can never change what either side means: ``qlen > 1000) OR (1=1``
is not one expression and is refused, where pasting it into ``(scope) AND (...)`` once gave
``(scope) AND (qlen > 1000) OR (1=1)``. The grammar is the part of DataFusion's SQL that
filters use, with sqlparser's precedences; Lance still plans and checks what is emitted
(`check_filter`), first on an empty table of the columns' types, then on a few rows of
ordinary typed values, so that a filter failing on every row (``x / 0``, ``length()`` of
binary) is a spec error rather than a failed apply. Nothing is ever evaluated as Python.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

SQL_WORDS = {
    "and", "or", "not", "is", "null", "true", "false", "in", "like", "ilike", "between", "case",
    "when", "then", "else", "end", "cast", "as", "distinct", "int", "integer", "bigint", "smallint",
    "tinyint", "float", "double", "real", "varchar", "string", "text", "boolean", "bool", "date",
    "timestamp", "decimal", "interval", "escape", "similar", "to", "array", "struct",
}
_STRING = re.compile(r"'(?:[^']|'')*'")
_TOKEN = re.compile(r'"([^"]+)"|`([^`]+)`|\b([A-Za-z_][A-Za-z0-9_]*)\b(\s*\()?')


class SqlSyntaxError(ValueError):
    """`text` is not one SQL expression; `at` is the 0-based character it stops making sense at."""

    def __init__(self, text: str, at: int, reason: str):
        self.text, self.at, self.reason = text, at, reason
        super().__init__(f"cannot parse {text}: {reason} (at character {at + 1})")


@dataclass(frozen=True)
class Expr:
    """A node of a parsed expression: `kind`, its own `text` (an operator, a name, a literal
    as written) and its operands. `sql` re-emits it with every operation parenthesized."""

    kind: str
    text: str = ""
    args: tuple[Expr, ...] = ()

    @property
    def sql(self) -> str:
        return _emit(self)

    def columns(self) -> list[str]:
        """Column names the expression reads, in order of first use."""
        out: list[str] = []
        stack = [self]
        while stack:
            node = stack.pop()
            if node.kind == "column" and node.text not in out:
                out.append(node.text)
            stack.extend(reversed(node.args))
        return out


_LEX = re.compile(r"""
    (?P<space>\s+|--[^\n]*|/\*(?s:.*?)\*/)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+"|`[^`]+`)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|==|\|\||::|[=<>+\-*/%(),\[\].])
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "is", "null", "true", "false", "in", "like", "ilike", "between", "case",
             "when", "then", "else", "end", "cast", "try_cast", "as", "distinct", "from", "escape",
             "similar", "to", "unknown"}
_TYPED_LITERALS = {"date", "time", "timestamp", "interval", "decimal"}
_COMPARE = {"=", "==", "!=", "<>", "<", "<=", ">", ">="}
# sqlparser's precedences (DataFusion's parser): higher binds tighter
_PREC = {"or": 5, "and": 10, "is": 17, "like": 19, "ilike": 19, "similar": 19, "between": 20, "in": 20,
         **dict.fromkeys(_COMPARE, 20), "+": 30, "-": 30, "*": 40, "/": 40, "%": 40, "||": 40,
         "::": 50, "[": 50, ".": 100}
_NOT_PREC = 15
MAX_SQL_CHARS = 100_000
MAX_SQL_DEPTH = 100


@dataclass(frozen=True)
class _Token:
    kind: str   # number, string, quoted, word, op, end
    text: str
    at: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "word" else ""

    def shown(self) -> str:
        return "the end of the expression" if self.kind == "end" else repr(self.text)


def _tokens(text: str) -> list[_Token]:
    out, at = [], 0
    while at < len(text):
        if text.startswith("/*", at) and "*/" not in text[at + 2:]:
            raise SqlSyntaxError(text, at, "a comment starting here is never closed (*/)")
        m = _LEX.match(text, at)
        if m is None:
            if text[at] == "'":
                raise SqlSyntaxError(text, at, "a string starting here is never closed (')")
            if text[at] in "\"`":
                raise SqlSyntaxError(text, at, f"a quoted name starting here is never closed ({text[at]})")
            if text[at] == ";":
                raise SqlSyntaxError(text, at, "a filter is one SQL expression; remove the ';'")
            raise SqlSyntaxError(text, at, f"unexpected character {text[at]!r}")
        if m.lastgroup != "space":
            out.append(_Token(m.lastgroup, m.group(), at))
        at = m.end()
    out.append(_Token("end", "", len(text)))
    return out


class _Parser:
    """Precedence climbing over the tokens, as sqlparser does it."""

    def __init__(self, text: str):
        self.text, self.toks, self.i, self.depth = text, _tokens(text), 0, 0

    @property
    def tok(self) -> _Token:
        return self.toks[self.i]

    def peek(self, n: int = 1) -> _Token:
        return self.toks[min(self.i + n, len(self.toks) - 1)]

    def take(self) -> _Token:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def fail(self, reason: str, tok: _Token | None = None):
        raise SqlSyntaxError(self.text, (tok or self.tok).at, reason)

    def expect_op(self, op: str, after: str) -> None:
        if self.tok.kind == "op" and self.tok.text == op:
            self.take()
            return
        self.fail(f"expected {op!r} {after}, found {self.tok.shown()}")

    def expect_word(self, word: str, after: str) -> None:
        if self.tok.word == word:
            self.take()
            return
        self.fail(f"expected {word.upper()} {after}, found {self.tok.shown()}")

    def whole(self) -> Expr:
        if self.tok.kind == "end":
            self.fail("the expression is empty")
        expr = self.expr(0)
        if self.tok.kind != "end":
            if self.tok.text == ")":
                self.fail("')' closes a parenthesis that was never opened")
            self.fail(f"{self.tok.shown()} follows a complete expression; join the parts with AND or OR")
        return expr

    # precedence climbing ------------------------------------------------------------------
    def expr(self, prec: int) -> Expr:
        self.depth += 1
        if self.depth > MAX_SQL_DEPTH:
            self.fail(f"nested deeper than {MAX_SQL_DEPTH} levels")
        left = self.prefix()
        while True:
            p = self.next_prec()
            if p <= prec:
                break
            left = self.infix(left, p)
        self.depth -= 1
        return left

    def next_prec(self) -> int:
        tok = self.tok
        if tok.kind == "op":
            return _PREC.get(tok.text, 0)
        word = tok.word
        if word == "not" and self.peek().word in ("in", "like", "ilike", "between", "similar"):
            return _PREC[self.peek().word]
        return _PREC.get(word, 0) if word else 0

    def operand(self, prec: int, after: _Token) -> Expr:
        if self.tok.kind == "end" or (self.tok.kind == "op" and self.tok.text in ")],"):
            self.fail(f"{after.text!r} needs an expression after it, found {self.tok.shown()}")
        return self.expr(prec)

    def infix(self, left: Expr, prec: int) -> Expr:
        tok = self.take()
        word = tok.word
        if tok.kind == "op":
            if tok.text == "::":
                return Expr("cast::", self.type_name(tok), (left,))
            if tok.text == "[":
                index = self.operand(0, tok)
                self.expect_op("]", "to close the '['")
                return Expr("index", "", (left, index))
            if tok.text == ".":
                if self.tok.kind not in ("word", "quoted"):
                    self.fail(f"expected a field name after '.', found {self.tok.shown()}")
                return Expr("field", self.take().text, (left,))
            return Expr("binary", tok.text, (left, self.operand(prec, tok)))
        if word in ("and", "or"):
            return Expr("binary", word.upper(), (left, self.operand(prec, tok)))
        if word == "is":
            return self.is_(left, tok)
        negated = word == "not"
        if negated:
            tok = self.take()
            word = tok.word
        if word == "in":
            self.expect_op("(", "after IN")
            items = [] if self.tok.text == ")" and self.tok.kind == "op" else self.list_()
            self.expect_op(")", "to close the IN list")
            return Expr("in", "NOT IN" if negated else "IN", (left, *items))
        if word == "between":
            low = self.operand(_PREC["between"], tok)
            self.expect_word("and", "in BETWEEN ... AND ...")
            high = self.operand(_PREC["between"], tok)
            return Expr("between", "NOT BETWEEN" if negated else "BETWEEN", (left, low, high))
        if word == "similar":
            self.expect_word("to", "after SIMILAR")
            word = "similar to"
        pattern = self.operand(_PREC["like"], tok)
        args = (left, pattern)
        if self.tok.word == "escape":
            esc = self.take()
            args += (self.operand(_PREC["like"], esc),)
        return Expr("like", ("NOT " if negated else "") + word.upper(), args)

    def is_(self, left: Expr, tok: _Token) -> Expr:
        negated = self.tok.word == "not"
        if negated:
            self.take()
        word = self.tok.word
        if word in ("null", "true", "false", "unknown"):
            self.take()
            return Expr("is", ("NOT " if negated else "") + word.upper(), (left,))
        if word == "distinct":
            self.take()
            self.expect_word("from", "after IS DISTINCT")
            other = self.operand(0, tok)
            return Expr("is", ("NOT " if negated else "") + "DISTINCT FROM", (left, other))
        self.fail(f"expected NULL, TRUE, FALSE or DISTINCT FROM after IS, found {self.tok.shown()}")

    def list_(self) -> list[Expr]:
        items = [self.operand(0, self.toks[self.i - 1])]
        while self.tok.kind == "op" and self.tok.text == ",":
            comma = self.take()
            items.append(self.operand(0, comma))
        return items

    def prefix(self) -> Expr:
        tok = self.tok
        if tok.kind == "end" or (tok.kind == "op" and tok.text in ")],"):
            before = self.toks[self.i - 1] if self.i else None
            if before is None:
                self.fail(f"expected an expression, found {tok.shown()}")
            self.fail(f"{before.text!r} needs an expression after it, found {tok.shown()}")
        self.take()
        if tok.kind == "number":
            return Expr("literal", tok.text)
        if tok.kind == "string":
            return Expr("literal", tok.text)
        if tok.kind == "quoted":
            return Expr("column", tok.text[1:-1].replace('""', '"'), (Expr("quoted", tok.text),))
        if tok.kind == "op":
            if tok.text == "(":
                inner = self.operand(0, tok)
                self.expect_op(")", f"to close the '(' at character {tok.at + 1}")
                return inner
            if tok.text in ("-", "+"):
                return Expr("unary", tok.text, (self.operand(_PREC["*"], tok),))
            if tok.text == "[":
                items = [] if self.tok.text == "]" and self.tok.kind == "op" else self.list_()
                self.expect_op("]", "to close the '['")
                return Expr("array", "", tuple(items))
            if tok.text == "*":
                return Expr("star", "*")
            self.fail(f"expected an expression, found {tok.shown()}", tok)
        word = tok.word
        if word == "not":
            return Expr("not", "NOT", (self.operand(_NOT_PREC, tok),))
        if word in ("null", "true", "false"):
            return Expr("literal", word.upper())
        if word in ("cast", "try_cast") and self.tok.text == "(":
            self.take()
            inner = self.operand(0, tok)
            self.expect_word("as", f"in {word.upper()}(... AS type)")
            type_name = self.type_name(tok, closing=True)
            self.expect_op(")", f"to close {word.upper()}(")
            return Expr("cast", f"{word.upper()}|{type_name}", (inner,))
        if word == "case":
            return self.case(tok)
        if word in _TYPED_LITERALS and self.tok.kind == "string":
            return Expr("literal", f"{tok.text} {self.take().text}")
        if self.tok.kind == "op" and self.tok.text == "(":
            self.take()
            args = [] if self.tok.kind == "op" and self.tok.text == ")" else self.call_args(tok)
            self.expect_op(")", f"to close {tok.text}(")
            return Expr("call", tok.text, tuple(args))
        if word in _KEYWORDS:
            self.fail(f"expected an expression, found {tok.text.upper()}", tok)
        return Expr("column", tok.text, (Expr("name", tok.text),))

    def call_args(self, name: _Token) -> list[Expr]:
        if self.tok.word == "distinct":
            self.fail(f"DISTINCT is not allowed in {name.text}( )")
        return self.list_()

    def case(self, tok: _Token) -> Expr:
        args: list[Expr] = []
        subject = None if self.tok.word == "when" else self.operand(0, tok)
        if self.tok.word != "when":
            self.fail(f"expected WHEN in CASE, found {self.tok.shown()}")
        while self.tok.word == "when":
            when = self.take()
            cond = self.operand(0, when)
            self.expect_word("then", "after CASE ... WHEN ...")
            args += [cond, self.operand(0, when)]
        default = None
        if self.tok.word == "else":
            default = self.operand(0, self.take())
        self.expect_word("end", "to close CASE")
        text = ("S" if subject is not None else "") + ("E" if default is not None else "")
        return Expr("case", text, tuple(x for x in (subject, *args, default) if x is not None)
                    if subject is not None else tuple(args) + ((default,) if default is not None else ()))

    def type_name(self, after: _Token, *, closing: bool = False) -> str:
        if self.tok.kind != "word":
            self.fail(f"expected a type name after {after.text!r}, found {self.tok.shown()}")
        words = [self.take().text]
        while closing and self.tok.kind == "word" and self.tok.word not in _KEYWORDS:
            words.append(self.take().text)
        if self.tok.kind == "op" and self.tok.text == "(":
            start = self.take().at
            while not (self.tok.kind == "op" and self.tok.text == ")"):
                if self.tok.kind not in ("number", "word") and self.tok.text != ",":
                    self.fail(f"expected ')' to close the type's '(', found {self.tok.shown()}")
                self.take()
            end = self.take().at
            words[-1] += self.text[start:end + 1].replace(" ", "")
        return " ".join(words)


def _emit(node: Expr) -> str:
    k, a = node.kind, node.args
    if k == "literal" or k == "star":
        return node.text
    if k == "column":
        return a[0].text if a else node.text
    if k == "binary":
        return f"({_emit(a[0])} {node.text} {_emit(a[1])})"
    if k == "unary":
        return f"({node.text}{_emit(a[0])})"
    if k == "not":
        return f"(NOT {_emit(a[0])})"
    if k == "is":
        rest = f" {_emit(a[1])}" if len(a) > 1 else ""
        return f"({_emit(a[0])} IS {node.text}{rest})"
    if k == "in":
        return f"({_emit(a[0])} {node.text} ({', '.join(map(_emit, a[1:]))}))"
    if k == "between":
        return f"({_emit(a[0])} {node.text} {_emit(a[1])} AND {_emit(a[2])})"
    if k == "like":
        escape = f" ESCAPE {_emit(a[2])}" if len(a) > 2 else ""
        return f"({_emit(a[0])} {node.text} {_emit(a[1])}{escape})"
    if k == "call":
        return f"{node.text}({', '.join(map(_emit, a))})"
    if k == "cast":
        fn, type_name = node.text.split("|", 1)
        return f"{fn}({_emit(a[0])} AS {type_name})"
    if k == "cast::":
        return f"({_emit(a[0])}::{node.text})"
    if k == "index":
        return f"{_emit(a[0])}[{_emit(a[1])}]"
    if k == "field":
        return f"{_emit(a[0])}.{node.text}"
    if k == "array":
        return f"[{', '.join(map(_emit, a))}]"
    if k == "case":
        parts, rest = ["CASE"], list(a)
        if node.text.startswith("S"):
            parts.append(_emit(rest.pop(0)))
        default = rest.pop() if node.text.endswith("E") else None
        for cond, value in zip(rest[::2], rest[1::2]):
            parts += ["WHEN", _emit(cond), "THEN", _emit(value)]
        if default is not None:
            parts += ["ELSE", _emit(default)]
        return "(" + " ".join(parts + ["END"]) + ")"
    raise AssertionError(f"unknown node {k!r}")


def parse(text: str) -> Expr:
    """`text` as one expression tree; `SqlSyntaxError` says where it stops being one."""
    if len(text) > MAX_SQL_CHARS:
        raise SqlSyntaxError(text[:40] + "...", MAX_SQL_CHARS, f"longer than {MAX_SQL_CHARS} characters")
    try:
        return _Parser(text).whole()
    except RecursionError:  # MAX_SQL_DEPTH keeps below Python's limit; a caller deep in its own stack may not
        raise SqlSyntaxError(text, 0, "nested too deeply") from None


def all_of(*filters: str | Expr | None) -> str | None:
    """The filter selecting rows that match every one of `filters` (None: no condition),
    each parsed and combined as a tree: no filter can reach into another."""
    trees = [f if isinstance(f, Expr) else parse(f) for f in filters if f]
    if not trees:
        return None
    tree = trees[0]
    for other in trees[1:]:
        tree = Expr("binary", "AND", (tree, other))
    return tree.sql


def any_of(*filters: str | Expr | None) -> str | None:
    """The filter selecting rows that match at least one of `filters` (None when none is given)."""
    trees = [f if isinstance(f, Expr) else parse(f) for f in filters if f]
    if not trees:
        return None
    tree = trees[0]
    for other in trees[1:]:
        tree = Expr("binary", "OR", (tree, other))
    return tree.sql


def sql_columns(expr: str) -> list[str]:
    """Column names a SQL expression refers to (never evaluated: just read)."""
    try:
        return parse(expr).columns()
    except SqlSyntaxError:
        pass
    cols: list[str] = []  # not one expression (reported elsewhere): the names it seems to use
    for m in _TOKEN.finditer(_STRING.sub("''", expr)):
        name = m.group(1) or m.group(2)
        if name is None:
            word = m.group(3)
            if m.group(4) or word.lower() in SQL_WORDS or word[0].isdigit():
                continue
            name = word
        if name not in cols:
            cols.append(name)
    return cols


def several_statements(expr: str) -> str | None:
    """A filter is one expression: Lance would silently ignore what follows a ';'."""
    if ";" in _STRING.sub("''", expr):
        return "a filter is one SQL expression; remove the ';'"
    return None


def syntax_problem(expr: str, what: str = "filter") -> str | None:
    """Why `expr` is not one SQL expression, or None."""
    try:
        parse(expr)
    except SqlSyntaxError as exc:
        if exc.reason.startswith("a filter is one SQL expression"):
            return exc.reason.replace("filter", what)
        return f"invalid SQL {what}: {exc}"
    return None


def check_filter(expr: str, columns: dict[str, Any]) -> str | None:
    """Why `expr` is not a filter Lance can run over `columns` (name -> Arrow type), or None.

    The expression is parsed into one tree (a syntax error says where); Lance plans what is
    emitted from it against an empty in-memory table of that schema (the same parser and
    planner apply uses), then evaluates it on a few rows of ordinary values of those types
    (`sample_tables`): a filter that fails on every one of them (a division by zero,
    ``length()`` of binary data) would fail every apply. No data of the table is touched.
    Columns of unknown type (their producer has errors) cannot be checked and are skipped.
    """
    problem = syntax_problem(expr)
    if problem:
        return problem
    if any(t is None for t in columns.values()):
        return None
    emitted = parse(expr).sql
    try:
        _evaluate_filter(emitted, _schema(columns).empty_table())
    except (ValueError, OSError) as exc:
        return lance_message(str(exc).replace(emitted, expr))
    failures = []
    for table in sample_tables(columns):
        try:
            _evaluate_filter(emitted, table)
            return None
        except (ValueError, OSError) as exc:
            failures.append(exc)
    if not failures:
        return None
    return (f"invalid SQL filter: {expr} fails when evaluated on rows of ordinary values of its columns' "
            f"types, so it would fail every apply: {runtime_message(str(failures[0]))}")


def _schema(columns: dict[str, Any]):
    import pyarrow as pa
    return pa.schema([pa.field(n, pa.string() if pa.types.is_null(t) else t) for n, t in columns.items()])


def _evaluate_filter(emitted: str, table) -> None:
    import lance
    uri = f"memory://featurekit-filter-check-{next(_CHECKS)}"
    lance.write_dataset(table, uri).scanner(filter=emitted, columns=[], with_row_address=True).to_table()


SAMPLE_TEXT = ("text", "1", "2020-01-01")  # a word, a number, a date: what CASTs of text may expect
SAMPLE_INTS = (3, 1, 100)
SAMPLE_FLOATS = (0.5, 1.0, 2.5)
SAMPLE_BINARY = b"\xff\xd8\xff\xe0"  # binary columns hold files (images): not UTF-8 text


def sample_tables(columns: dict[str, Any]) -> list[Any]:
    """One-row tables of `columns`' types holding ordinary values, one per variant."""
    import pyarrow as pa
    schema = _schema(columns)
    out = []
    for variant in range(len(SAMPLE_TEXT)):
        arrays = []
        for f in schema:
            try:
                arrays.append(pa.array([sample_value(f.type, variant)], f.type))
            except (pa.ArrowException, ValueError, TypeError, OverflowError):
                arrays.append(pa.nulls(1, f.type))
        out.append(pa.Table.from_arrays(arrays, schema=schema))
    return out


def sample_value(typ: Any, variant: int = 0) -> Any:
    """An ordinary value of Arrow type `typ` (None when there is no obvious one)."""
    import datetime

    import pyarrow as pa
    t = pa.types
    if t.is_boolean(typ):
        return True
    if t.is_integer(typ):
        return SAMPLE_INTS[variant]
    if t.is_floating(typ) or t.is_decimal(typ):
        return SAMPLE_FLOATS[variant]
    if t.is_string(typ) or t.is_large_string(typ) or t.is_string_view(typ):
        return SAMPLE_TEXT[variant]
    if t.is_binary(typ) or t.is_large_binary(typ) or t.is_binary_view(typ):
        return SAMPLE_BINARY
    if t.is_fixed_size_binary(typ):
        return (SAMPLE_BINARY * typ.byte_width)[:typ.byte_width]
    if t.is_date(typ):
        return datetime.date(2020, 1, 1)
    if t.is_timestamp(typ):
        return datetime.datetime(2020, 1, 1)
    if t.is_fixed_size_list(typ):
        return [sample_value(typ.value_type, variant)] * typ.list_size
    if t.is_list(typ) or t.is_large_list(typ):
        return [sample_value(typ.value_type, variant)]
    if t.is_struct(typ):
        return {typ.field(i).name: sample_value(typ.field(i).type, variant) for i in range(typ.num_fields)}
    return None


def runtime_message(text: str) -> str:
    """An error Lance raised while evaluating, without its Rust locations and wrappers."""
    text = re.sub(r",\s*/\S+\.rs:\d+:\d+", "", text).strip()
    for wrapper in ("Execution error: ", "Error applying filter expression to batch: ", "Arrow error: "):
        text = text.split(wrapper)[-1]
    text = re.sub(r"^(External error: )?(LanceError\(\w+\): )?", "", text)
    return " ".join(text.split())


_CHECKS = itertools.count()


def lance_message(text: str) -> str:
    """Lance's error without the Rust source location and boilerplate."""
    text = re.sub(r",\s*/\S+\.rs:\d+:\d+", "", text).strip()
    text = text.replace("Invalid user input: ", "")
    text = re.sub(r"Valid fields are .*", "", text).rstrip(" .,")
    text = text.replace("Error parsing statement: SELECT 1 FROM t WHERE ", "cannot parse ")
    text = re.sub(r"Error parsing statement: SELECT \((.*)\) FROM t", r"cannot parse \1", text)
    return "invalid SQL filter: " + " ".join(text.split())
