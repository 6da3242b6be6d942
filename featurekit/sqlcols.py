"""Which columns a SQL filter refers to: read, never evaluated."""
from __future__ import annotations

import re

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


