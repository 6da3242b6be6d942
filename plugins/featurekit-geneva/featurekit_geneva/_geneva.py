"""Import geneva quietly: it warns at import about lancedb 0.40 (`function_errors`, unused
here) and at every filtered backfill that an explicit `where` skips rows computed by an old
UDF version, which is featurekit's filter doing its job (it selects stale rows itself); and
import it without the REST client's API modules (featurekit/table/lancedb_import.py)."""
from __future__ import annotations

import logging


class _DropWhereAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "has an explicit where filter provided" not in str(record.msg)


def load():
    from featurekit.table.lancedb_import import lazy_rest_client
    lazy_rest_client()  # before lancedb is imported: ~2 s less (featurekit/table/lancedb_import.py)
    logging.getLogger("geneva.utils.lancedb_abc").setLevel(logging.ERROR)
    logging.getLogger("geneva.table").addFilter(_DropWhereAdvice())
    import geneva
    return geneva
