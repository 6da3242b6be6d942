"""What every process that runs Geneva does before importing it.

`import geneva` costs ~3 s in a fresh interpreter, and a Geneva job starts several processes that each pay it
(its JobTracker, the appliers, a queue and a writer a fragment: notes/geneva.md). Over half of it is
lancedb's REST client importing its API modules, which Geneva on a directory namespace never
calls: featurekit's `table/lancedb_import.lazy_rest_client` defers them (`import geneva` 3.05 s
-> 1.77 s, benchmarks/engines.py part 6).

Installed in featurekit's own process before it imports Geneva (`_geneva.load`), and in every
Ray worker through the runtime_env's `worker_process_setup_hook` (`cluster.worker_runtime_env`),
which Ray runs at a worker's start, before the task or actor that imports Geneva.
"""
from __future__ import annotations

from featurekit.table.lancedb_import import lazy_rest_client

SETUP_HOOK = "featurekit_geneva.boot.worker_setup"


def worker_setup() -> None:
    """Ray's `worker_process_setup_hook`: run in each worker process at its start."""
    lazy_rest_client()
