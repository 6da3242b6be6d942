"""A branch of a table as Geneva's table: Lance's directory namespace, with the table's location
moved to the branch's root (`<table>.lance/tree/<branch>`).

Why: Geneva 0.17 has no notion of a branch. Every process of a backfill (driver task, appliers,
writers, committer) reopens the table from Geneva's `TableReference`: a namespace (impl and
properties), the table's id and a version; it opens main (lancedb 0.40 could check out a branch,
`open_table(..., branch=)`, but Geneva never asks). The namespace is the one thing a reference
carries that decides where the table is, and Lance opens a branch as a dataset of its own at its
root. So featurekit hands Geneva this namespace (by class path, which `lance_namespace.connect`
imports in each process): the branch's reads, checkpoints (`<root>/_ckp`), stored UDFs
(`<root>/_udfs`) and commits land under the branch's root. New data files too, once
`upstream.own_root_placement` keeps Geneva from placing them beside main's files.
"""
from __future__ import annotations

from lance.namespace import DirectoryNamespace

TABLE = "featurekit.table"
BRANCH = "featurekit.branch"


class BranchNamespace(DirectoryNamespace):
    """Properties: the directory namespace's (`root`, `storage.*`), plus `featurekit.table` (the
    table's name in the root) and `featurekit.branch`."""

    def __init__(self, **properties):
        self.table, self.branch = properties.pop(TABLE), properties.pop(BRANCH)
        super().__init__(**properties)

    def describe_table(self, request):
        response = super().describe_table(request)
        ident = request["id"] if isinstance(request, dict) else request.id  # Rust hands a dict, Python a model
        if list(ident) == [self.table]:
            response.location = f"{response.location.rstrip('/')}/tree/{self.branch}"
        return response


def properties(root: str, table: str, branch: str, storage_options: dict[str, str] | None) -> dict[str, str]:
    return {"root": root, TABLE: table, BRANCH: branch, **{f"storage.{k}": v for k, v in (storage_options or {}).items()}}
