"""Built-in sources: jsonl, parquet, csv and lance.

The text formats check their input the way a hostile file needs: bytes that are not UTF-8,
unpaired surrogate escapes, lines whose values change type, numbers out of range and
nesting too deep each skip one row, reported with its file and line, never the file.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
from pydantic import Field, model_validator

from ..plugins.hookspecs import hookimpl
from ..plugins.source import RowIssue, Source, SourceBatch

PEEK_LINES = 200
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark at the start of a text file


class JsonlSource(Source):
    """One JSON object a line. Lines that don't parse are reported and skipped."""

    name = "jsonl"

    def schema(self, path: Path) -> pa.Schema:
        import pyarrow.json as pj
        lines = []
        with open(path, "rb") as fh:
            for line in fh:
                if line.strip():
                    lines.append(line)
                if len(lines) >= PEEK_LINES:
                    break
        if not lines:
            return pa.schema([])
        try:
            return pj.read_json(io.BytesIO(b"".join(lines))).schema
        except pa.ArrowInvalid:
            return self._parse_lines(path, lines).table.schema

    def read(self, path: Path) -> SourceBatch:
        """Arrow's reader when the file is clean (fast); line by line when it is not."""
        import pyarrow.json as pj
        try:
            table = pj.read_json(path)
            table.validate(full=True)  # Arrow's JSON reader does not check UTF-8
            return SourceBatch(table)
        except pa.ArrowInvalid:
            with open(path, "rb") as fh:
                return self._parse_lines(path, fh)

    @staticmethod
    def _parse_lines(path: Path, lines) -> SourceBatch:
        rows, numbers, issues = [], [], []
        for n, line in enumerate(lines, 1):
            if n == 1 and line.startswith(BOM):  # editors on Windows write one: not part of the first row
                line = line[len(BOM):]
            if not line.strip():
                continue
            row, problem = _parse_line(line)
            if problem is not None:
                issues.append(RowIssue(f"{path}:{n}", problem))
                continue
            rows.append(row)
            numbers.append(n)
        table, kept, more = table_from_rows(rows, [f"{path}:{n}" for n in numbers])
        return SourceBatch(table, issues + more, [numbers[i] for i in kept])


def _parse_line(line: bytes) -> tuple[dict | None, str | None]:
    """A JSON object from one line, or why not."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text: {_undecodable(line, exc)}; fix the file's encoding"
    try:
        row = json.loads(text)
    except RecursionError:
        return None, "not valid JSON: nested too deeply"
    except ValueError as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(row, dict):
        return None, "not valid JSON: a line must hold a JSON object"
    where = _unencodable(row)
    if where is not None:
        return None, f"not UTF-8 text: {where} holds an unpaired surrogate escape (like \\ud800)"
    return row, None


def _undecodable(line: bytes, exc: UnicodeDecodeError) -> str:
    """Which column holds the bytes that are not UTF-8 (decoded leniently to find it)."""
    detail = f"byte 0x{line[exc.start]:02x} at position {exc.start + 1}"
    try:
        row = json.loads(line.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return detail
    where = _unencodable(row) if isinstance(row, dict) else None
    return f"{where}: {detail}" if where else detail


def _unencodable(row: dict) -> str | None:
    """The column whose name or value holds a string UTF-8 cannot encode, if any."""
    for name, value in row.items():
        if not _encodes(name):
            return f"a column name ({name.encode('utf-8', 'backslashreplace').decode()!r})"
        if not _encodes(value):
            return f"column {name!r}"
    return None


def _encodes(value) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list):
        return all(_encodes(v) for v in value)
    if isinstance(value, dict):
        return all(_encodes(k) and _encodes(v) for k, v in value.items())
    return True


def table_from_rows(rows: list[dict], where: list[str]) -> tuple[pa.Table, list[int], list[RowIssue]]:
    """Rows (dicts) -> a table with every column any row has. A value that does not fit
    its column's type (the type of the column's first usable value) skips its row.
    Returns the table, the indices of the rows kept, and the issues."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    types: dict[str, pa.DataType | None] = {}
    bad: dict[int, str] = {}
    for name in names:
        values = [r.get(name) for r in rows]
        try:
            pa.array(values)
            types[name] = None  # Arrow infers it
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            pass
        typ = _first_type(values)
        types[name] = typ
        for i, v in enumerate(values):
            if v is not None and i not in bad and not _fits(v, typ):
                bad[i] = f"type conflict: column {name!r}: {_short(v)} is not {typ} like the rows before it"
    kept = [i for i in range(len(rows)) if i not in bad]
    issues = [RowIssue(where[i], message) for i, message in sorted(bad.items())]
    columns = {n: pa.array([rows[i].get(n) for i in kept], type=types[n]) for n in names}
    return pa.table(columns) if names else pa.table({}), kept, issues


def _first_type(values: list) -> pa.DataType | None:
    for v in values:
        if v is None:
            continue
        try:
            typ = pa.array([v]).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            continue
        if "null" not in str(typ):
            return typ
    return None


def _fits(value, typ: pa.DataType | None) -> bool:
    """Whether `value` converts to `typ` and back unchanged (Arrow truncates 4.5 to int 4)."""
    if typ is None:
        return False
    try:
        back = pa.array([value], type=typ)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return False
    return back == value or (isinstance(value, float) and value != value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class ParquetSource(Source):
    name = "parquet"

    def schema(self, path: Path) -> pa.Schema:
        import pyarrow.parquet as pq
        return pq.read_schema(path)

    def read(self, path: Path) -> SourceBatch:
        import pyarrow.parquet as pq
        return SourceBatch(pq.read_table(path))


class CsvOptions(Source.Options):
    delimiter: str = Field(",", min_length=1, max_length=1, description="the field separator")
    quote_char: str | None = Field('"', min_length=1, max_length=1, description="quotes a field; null: none")
    header: bool = Field(True, description="the first line names the columns")
    column_names: list[str] | None = Field(None, description="the columns' names (needed without a header)")
    null_values: list[str] | None = Field(None, description="strings read as NULL (default: Arrow's: '', NA, ...)")

    @model_validator(mode="after")
    def _names(self):
        if not self.header and not self.column_names:
            raise ValueError("header: false needs column_names: [...]")
        return self


class CsvSource(Source):
    """Delimited text with a header row (options: delimiter, quote_char, header, column_names,
    null_values). Rows with the wrong number of fields are reported."""

    name = "csv"
    Options = CsvOptions

    def _arrow_options(self, invalid_row_handler):
        import pyarrow.csv as pcsv
        o = self.options
        if o.column_names:  # with a header line too: these names replace it
            read = pcsv.ReadOptions(column_names=o.column_names, skip_rows=1 if o.header else 0)
        else:
            read = pcsv.ReadOptions()
        parse = pcsv.ParseOptions(delimiter=o.delimiter, quote_char=o.quote_char or False,
                                  invalid_row_handler=invalid_row_handler)
        convert = pcsv.ConvertOptions(null_values=o.null_values, strings_can_be_null=True) \
            if o.null_values is not None \
            else pcsv.ConvertOptions()
        return dict(read_options=read, parse_options=parse, convert_options=convert)

    def schema(self, path: Path) -> pa.Schema:
        import pyarrow.csv as pcsv
        with open(path, "rb") as fh:
            head = b"".join(line for _, line in zip(range(PEEK_LINES), fh))
        options = self._arrow_options(lambda r: "skip")
        schema = pcsv.read_csv(io.BytesIO(head), **options).schema
        if any(pa.types.is_binary(f.type) for f in schema):  # a byte that is not UTF-8: as read() does
            clean = _without_undecodable_records(head, path, self.options)[0]
            schema = pcsv.read_csv(io.BytesIO(clean), **options).schema if clean else schema
        return schema

    def read(self, path: Path) -> SourceBatch:
        table, issues = self._read(path, path)
        if not any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in table.schema):
            return SourceBatch(table, issues)
        # Arrow reads a column holding a byte that is not UTF-8 as binary, all of it. Drop
        # the records holding such bytes (reported by line and column) and read the rest.
        clean, line_of, dropped = _without_undecodable_records(path.read_bytes(), path, self.options)
        if not clean:
            return SourceBatch(pa.table({}), dropped)
        table, issues = self._read(io.BytesIO(clean), path, line_of)
        return SourceBatch(table, dropped + issues)

    def _read(self, data, path: Path, line_of: list[int] | None = None):
        import pyarrow.csv as pcsv
        issues: list[RowIssue] = []

        def bad(row) -> str:
            n = row.number  # None when Arrow does not know it (reading from memory)
            if line_of is not None and n is not None and 0 < n <= len(line_of):
                n = line_of[n - 1]
            where = f"{path}:{n}" if n is not None else f"{path}: {row.text[:40]!r}"
            issues.append(RowIssue(where, f"expected {row.expected_columns} fields, got {row.actual_columns}"))
            return "skip"

        return pcsv.read_csv(data, **self._arrow_options(bad)), issues


class TsvOptions(CsvOptions):
    delimiter: str = Field("\t", min_length=1, max_length=1, description="the field separator")


class TsvSource(CsvSource):
    """Tab-separated text: csv with a tab delimiter."""

    name = "tsv"
    Options = TsvOptions


def _without_undecodable_records(data: bytes, path: Path, options: CsvOptions | None = None
                                 ) -> tuple[bytes, list[int], list[RowIssue]]:
    """The file's bytes without the records holding bytes that are not UTF-8; for every
    line kept, its line number in the file; and an issue per record dropped."""
    if data.startswith(BOM):  # not part of the first column's name
        data = data[len(BOM):]
    lines = io.StringIO(data.decode("utf-8", "surrogateescape"), newline="").readlines()
    consumed: list[str] = []
    options = options or CsvOptions()
    reader = csv.reader(_recording(lines, consumed), delimiter=options.delimiter,
                        quotechar=options.quote_char or '"', quoting=csv.QUOTE_MINIMAL if options.quote_char
                        else csv.QUOTE_NONE)
    header: list[str] = [] if options.header else list(options.column_names or [])
    kept, line_of, issues = [], [], []
    start = 1
    for record in reader:
        text, consumed[:] = "".join(consumed), []
        bad = [i for i, value in enumerate(record) if not _encodes(value)]
        if not header:
            header = record
            if bad:
                return b"", [], [RowIssue(f"{path}:1", "not UTF-8 text: the header line; fix the file's encoding")]
        if bad:
            column = header[bad[0]] if bad[0] < len(header) else f"field {bad[0] + 1}"
            issues.append(RowIssue(f"{path}:{start}", f"not UTF-8 text: column {column!r}; fix the file's encoding"))
        else:
            kept.append(text)
            line_of.extend(range(start, reader.line_num + 1))
        start = reader.line_num + 1
    return "".join(kept).encode("utf-8", "surrogateescape"), line_of, issues


def _recording(lines: list[str], consumed: list[str]):
    for line in lines:
        consumed.append(line)
        yield line


class LanceSource(Source):
    """Another Lance dataset (a folder ending in .lance). When it is itself a featurekit table,
    its derived columns (features, slices, state) are not imported: they belong to its spec."""

    name = "lance"

    def schema(self, path: Path) -> pa.Schema:
        import lance
        return _source_columns(lance.dataset(str(path)).schema)

    def read(self, path: Path) -> SourceBatch:
        import lance
        ds = lance.dataset(str(path))
        return SourceBatch(ds.to_table(columns=_source_columns(ds.schema).names))


def _source_columns(schema: pa.Schema) -> pa.Schema:
    from ..table.metadata import is_featurekit_column
    return pa.schema([f.remove_metadata() for f in schema if not is_featurekit_column(f)])


@hookimpl
def featurekit_register_sources():
    return [JsonlSource, ParquetSource, CsvSource, TsvSource, LanceSource]
