"""Importing lancedb without its REST client's API modules (stdlib only until lancedb itself).

lancedb imports `lance_namespace`, which imports `lance_namespace_urllib3_client.models` and
so runs that package's `__init__`: it imports the REST client's nine API modules, whose
pydantic-validated methods build their schemas at import (~2 s of a fresh interpreter's
~3 s `import geneva`, benchmarks/engines.py part 6). featurekit reaches tables through a
directory namespace or a path (branches included) and never calls the REST client.

`lazy_rest_client()` makes the package's `__init__` run when one of its own names is first
read (`lance_namespace_urllib3_client.TableApi`, a `from ... import ApiClient`), not when a
submodule is imported: `lance_namespace_urllib3_client.models` then imports as itself, with the
models `lance_namespace` asks for, and nothing else. `import_lancedb()` installs it first.
Used by `featurekit bench` (its LanceDB baselines) and by the Geneva plugin, in its own process
and in every Ray worker (featurekit_geneva/boot.py). A carried workaround: the Geneva plugin's
tests/test_upstream.py fails once the client's `__init__` stops importing its API modules
eagerly (then this can go).
"""
from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType

REST_CLIENT = "lance_namespace_urllib3_client"


def import_lancedb() -> ModuleType:
    """`import lancedb`, the REST client's API modules deferred (ImportError without lancedb)."""
    lazy_rest_client()
    import lancedb
    return lancedb


def lazy_rest_client() -> bool:
    """Defer the REST client package's `__init__` to the first read of one of its names.
    False (nothing done) when it is already imported or not installed."""
    return lazy_package(REST_CLIENT)


def lazy_package(name: str) -> bool:
    """Put a module object for package `name` in `sys.modules` whose `__init__` runs at the first
    read of one of its own names; its submodules import without it. False when `name` is
    already imported or not an installed package."""
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
