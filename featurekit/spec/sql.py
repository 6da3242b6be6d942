"""SQL filters in specs: which columns they name (read, never evaluated), and whether Lance
accepts them (parsed by Lance against an empty table, never evaluated as Python)."""
from __future__ import annotations

import itertools
import re
from typing import Any

SQL_WORDS = {
    "and", "or", "not", "is", "null", "true", "false", "in", "like", "ilike", "between", "case",
    "when", "then", "else", "end", "cast", "as", "distinct", "int", "integer", "bigint", "smallint",
    "tinyint", "float", "double", "real", "varchar", "string", "text", "boolean", "bool", "date",
    "timestamp", "decimal", "interval", "escape", "similar", "to", "array", "struct",
}
_STRING = re.compile(r"'(?:[^']|'')*'")
_TOKEN = re.compile(r'"([^"]+)"|`([^`]+)`|\b([A-Za-z_][A-Za-z0-9_]*)\b(\s*\()?')


def sql_columns(expr: str) -> list[str]:
    """Column names a SQL filter refers to (never evaluated: just read)."""
    cols: list[str] = []
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


def check_filter(expr: str, columns: dict[str, Any]) -> str | None:
    """Why Lance would reject `expr` as a filter over `columns` (name -> Arrow type), or None.

    Lance itself parses and plans the filter against an empty in-memory table of that
    schema: the same parser apply uses, with no data touched. Columns of unknown type
    (their producer has errors) cannot be checked and are skipped.
    """
    import pyarrow as pa
    if any(t is None for t in columns.values()):
        return None
    import lance
    fields = [pa.field(n, pa.string() if pa.types.is_null(t) else t) for n, t in columns.items()]
    table = pa.schema(fields).empty_table()
    uri = f"memory://featurekit-filter-check-{next(_CHECKS)}"
    try:
        # parenthesized: Lance silently ignores trailing junk after a complete expression
        lance.write_dataset(table, uri).scanner(filter=f"({expr})", columns=[]).to_table()
    except (ValueError, OSError) as exc:
        return lance_message(str(exc).replace(f"({expr})", expr))
    return None


_CHECKS = itertools.count()


def lance_message(text: str) -> str:
    """Lance's error without the Rust source location and boilerplate."""
    text = re.sub(r",\s*/\S+\.rs:\d+:\d+", "", text).strip()
    text = text.replace("Invalid user input: ", "")
    text = re.sub(r"Valid fields are .*", "", text).rstrip(" .,")
    text = text.replace("Error parsing statement: SELECT 1 FROM t WHERE ", "cannot parse ")
    text = re.sub(r"Error parsing statement: SELECT \((.*)\) FROM t", r"cannot parse \1", text)
    return "invalid SQL filter: " + " ".join(text.split())
