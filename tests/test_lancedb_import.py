"""featurekit imports lancedb (`featurekit bench`, the Geneva plugin) without its REST client's
nine API modules (~2 s of pydantic schemas at import), which a table reached by path or through a
directory namespace never calls; the client still loads whole when one of its names is read.
Checked in fresh interpreters: nothing else has imported lancedb there."""
import json
import subprocess
import sys

import pytest

pytest.importorskip("lancedb")

API = "lance_namespace_urllib3_client.api.table_api"


def _python(code: str):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_lancedb_imports_without_the_rest_clients_api_modules_and_works(tmp_path):
    loaded, rows, api_after_use, again = _python(f"""
import json, sys
from featurekit.table.lancedb_import import import_lancedb, lazy_rest_client
lancedb = import_lancedb()
loaded = {API!r} in sys.modules
table = lancedb.connect({str(tmp_path)!r}).create_table("t", [{{"x": 1}}, {{"x": 2}}])
rows = table.count_rows()
from lance_namespace_urllib3_client import TableApi
print(json.dumps([loaded, rows, {API!r} in sys.modules and TableApi.__name__ == "TableApi", lazy_rest_client()]))
""")
    assert loaded is False           # lancedb (and lance_namespace) imported without them
    assert rows == 2                 # lancedb works on a path
    assert api_after_use is True     # a name of the client's own loads its __init__ then
    assert again is False            # already imported: nothing to defer


def test_without_the_deferral_lancedb_imports_them():
    """What the deferral saves, and the check that it still matters: when this fails, lancedb
    no longer imports the API modules (then table/lancedb_import.py can go)."""
    assert _python(f"import json, sys, lancedb\nprint(json.dumps({API!r} in sys.modules))") is True
