"""Built-in sources: jsonl, parquet, csv and lance."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa

from ..hookspecs import hookimpl
from ..source import RowIssue, Source, SourceBatch

PEEK_LINES = 200


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
        import pyarrow.json as pj
        try:
            return SourceBatch(pj.read_json(path))
        except pa.ArrowInvalid:
            with open(path, "rb") as fh:
                return self._parse_lines(path, fh)

    @staticmethod
    def _parse_lines(path: Path, lines) -> SourceBatch:
        rows, issues = [], []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                issues.append(RowIssue(f"{path}:{n}", f"not valid JSON: {exc}"))
                continue
            if not isinstance(row, dict):
                issues.append(RowIssue(f"{path}:{n}", "a line must hold a JSON object"))
                continue
            rows.append(row)
        return SourceBatch(pa.Table.from_pylist(rows), issues)


class ParquetSource(Source):
    name = "parquet"

    def schema(self, path: Path) -> pa.Schema:
        import pyarrow.parquet as pq
        return pq.read_schema(path)

    def read(self, path: Path) -> SourceBatch:
        import pyarrow.parquet as pq
        return SourceBatch(pq.read_table(path))


class CsvSource(Source):
    """Comma-separated with a header row. Rows with the wrong number of fields are reported."""

    name = "csv"

    def schema(self, path: Path) -> pa.Schema:
        import pyarrow.csv as pcsv
        with open(path, "rb") as fh:
            head = b"".join(line for _, line in zip(range(PEEK_LINES), fh))
        return pcsv.read_csv(io.BytesIO(head), parse_options=pcsv.ParseOptions(invalid_row_handler=lambda r: "skip")).schema

    def read(self, path: Path) -> SourceBatch:
        import pyarrow.csv as pcsv
        issues: list[RowIssue] = []

        def bad(row) -> str:
            issues.append(RowIssue(f"{path}:{row.number}", f"expected {row.expected_columns} fields, "
                                                            f"got {row.actual_columns}"))
            return "skip"

        table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(invalid_row_handler=bad))
        return SourceBatch(table, issues)


class LanceSource(Source):
    """Another Lance dataset (a folder ending in .lance)."""

    name = "lance"

    def schema(self, path: Path) -> pa.Schema:
        import lance
        return lance.dataset(str(path)).schema

    def read(self, path: Path) -> SourceBatch:
        import lance
        return SourceBatch(lance.dataset(str(path)).to_table())


@hookimpl
def featurekit_register_sources():
    return [JsonlSource, ParquetSource, CsvSource, LanceSource]
