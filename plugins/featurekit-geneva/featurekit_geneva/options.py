"""`engine: {kind: geneva, ...}`: the options, validated with the spec (unknown keys are errors).

The defaults are the ones that proved safe on a small machine (see the plugin README):
Geneva's own defaults (8 applier actors, 64 fragments a commit, admission that only warns,
no timeout) are slow on few cores, lose finished work when one fragment fails, and let a
job that can never be placed (a GPU feature without a GPU) wait forever.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from featurekit.engine import EngineOptions


class GenevaOptions(EngineOptions):
    address: str | None = Field(
        None, description="Ray cluster to run on ('ray://head:10001', 'auto', or 'host:6379'); "
        "default: a Ray already initialized in this process, else a local Ray started (and stopped) by featurekit")
    concurrency: int | None = Field(
        None, gt=0, description="applier actors per backfill (default: what the cluster's CPUs/GPUs fit for the "
        "feature's resources, at most one per fragment with work)")
    jobs_at_once: int | None = Field(
        None, gt=0, description="backfills running at once for features that do not depend on each other "
        "(default: 1; more overlap each job's start-up, ~4 processes that each import Geneva, ~3.5 s of CPU, "
        "where the cluster has the cores: opt-in until an unexplained run with 2 at once is understood)")
    local_cpus: int | None = Field(None, gt=0, description="CPUs of the local Ray featurekit starts (default: all cores)")
    batch_size: int | None = Field(None, gt=0, description="rows a UDF call (default: the feature's resources.batch_size)")
    checkpoint_size: int | None = Field(None, gt=0, description="rows a Geneva checkpoint: work redone after a crash "
                                        "is at most this per actor (default: Geneva's adaptive size)")
    checkpoint_seconds: float | None = Field(None, ge=0, description="persist in-progress rows at least this "
                                             "often; 0 after every batch (default: Geneva's 10 s)")
    commit_granularity: int = Field(1, gt=0, description="fragments a commit; 1 keeps every finished fragment "
                                    "when a later one fails or the driver dies")
    memory_gb: float | None = Field(None, ge=0, description="memory each applier actor reserves (default: none on a "
                                    "local Ray, Geneva's floor on a cluster)")
    timeout_seconds: float | None = Field(None, gt=0, description="give up on a backfill after this long "
                                          "(its finished fragments stay committed)")
    stall_seconds: float = Field(900.0, gt=0, description="give up on a backfill that checkpoints no row for this long "
                                 "(model loading included)")
    admission_strict: bool = Field(True, description="refuse a job the cluster cannot place (e.g. num_gpus with no "
                                   "GPU) at once, naming the feature and the resource, instead of waiting")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env for a cluster (pip, env_vars, "
                                               "working_dir): the workers need featurekit and the plugins installed")
