"""The public Python API: one function per command, each returning a documented value.

The CLI is a thin shell around these functions (it parses options and prints what they
return). Every function takes a spec path or a `Project` already loaded (`load_spec`), and
the reading ones a Lance `branch`. The implementations live in `featurekit.commands` (one
module per command) and the layers beneath; this module is only the surface.
"""
from __future__ import annotations

from .checks import CheckReport
from .commands.apply import ApplyResult, apply
from .commands.bench import BenchResult, bench
from .commands.branches import BranchReport, branches
from .commands.check import check
from .commands.compact import CompactResult, compact
from .commands.diff import SpecDiff, diff
from .commands.docs import Catalog, docs
from .commands.evaluate import evaluate
from .commands.graph import graph
from .commands.log import ApplyLog, log
from .commands.plan import plan
from .commands.plugins import PluginsReport, list_plugins
from .commands.sample import SampleReport, sample
from .commands.schema import schema
from .commands.search import SearchResult, search
from .commands.slice import slice  # noqa: A004
from .commands.status import Status, status
from .commands.train import train
from .commands.validate import Validation, validate
from .curation.report import SliceReport
from .engine import RunResult
from .planning.graph import Graph
from .planning.planner import Plan
from .planning.project import load_spec
from .planning.resolve import Project
from .training.dataloader import DataLoader, dataloader
from .training.read import ReadResult, read
from .training.runs import EvalResult, TrainResult

# The command line's commands, and the function each runs (`featurekit eval` -> `evaluate`).
COMMANDS = {"validate": validate, "plan": plan, "apply": apply, "status": status, "graph": graph, "slice": slice,
            "train": train, "eval": evaluate, "log": log, "diff": diff, "branches": branches, "bench": bench,
            "compact": compact, "plugins": list_plugins, "schema": schema, "check": check,
            "search": search, "docs": docs}

__all__ = ["ApplyLog", "ApplyResult", "BenchResult", "BranchReport", "COMMANDS", "Catalog", "docs", "CheckReport", "CompactResult", "DataLoader", "EvalResult",
           "Graph", "Plan", "PluginsReport", "Project", "ReadResult", "RunResult", "SampleReport", "SearchResult", "SliceReport", "SpecDiff",
           "Status", "TrainResult", "Validation", "apply", "bench", "branches", "check", "compact", "dataloader", "diff",
           "evaluate", "graph", "list_plugins", "load_spec", "log", "plan", "read", "sample", "schema", "search", "slice",
           "status", "train", "validate"]
