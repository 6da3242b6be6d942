"""What every process that runs Geneva does before importing it: stdlib only.

`import geneva` costs ~3 s in a fresh interpreter, and a Geneva job starts several processes that each pay it
(its JobTracker, the appliers, a writer a fragment: notes/geneva.md). Over half of it is
lancedb importing `lance_namespace`, which imports `lance_namespace_urllib3_client.models` and
so runs that package's `__init__`: it imports the REST client's nine API modules, whose
pydantic-validated methods build their schemas at import (~2 s). Geneva on a directory
namespace (what featurekit uses, branches included) never calls the REST client.

`lazy_rest_client()` makes the package's `__init__` run when one of its own names is first
read (`lance_namespace_urllib3_client.TableApi`, a `from ... import ApiClient`), not when a
submodule is imported: `lance_namespace_urllib3_client.models` then imports as itself, with the
models `lance_namespace` asks for, and nothing else: `import geneva` in a fresh interpreter
3.05 s -> 1.77 s (benchmarks/engines.py part 6).

Installed in featurekit's own process before it imports Geneva (`_geneva.load`), and in every
Ray worker through the runtime_env's `worker_process_setup_hook` (`cluster.worker_runtime_env`),
which Ray runs at a worker's start, before the task or actor that imports Geneva. A carried
workaround, like the fixes in upstream.py: tests/test_upstream.py fails once the client's
`__init__` no longer imports its API modules eagerly (then this can go).
"""
from __future__ import annotations

import importlib.util
import sys
import threading

REST_CLIENT = "lance_namespace_urllib3_client"
SETUP_HOOK = "featurekit_geneva.boot.worker_setup"


def lazy_rest_client() -> bool:
    """Defer the REST client package's `__init__` to the first read of one of its names.
    False (nothing done) when it is already imported or not installed."""
    return lazy_package(REST_CLIENT)


def worker_setup() -> None:
    """Ray's `worker_process_setup_hook`: run in each worker process at its start."""
    lazy_rest_client()


def lazy_package(name: str) -> bool:
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False
    module = importlib.util.module_from_spec(spec)  # __path__, __spec__, __file__: submodules import
    lock = threading.RLock()
    loaded = False

    def __getattr__(attr: str):
        nonlocal loaded
        if attr.startswith("__") and attr != "__all__":
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        with lock:
            if not loaded:
                loaded = True
                del module.__getattr__
                spec.loader.exec_module(module)  # the package's own __init__, in this module object
        try:
            return module.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None

    module.__getattr__ = __getattr__
    sys.modules[name] = module
    return True

