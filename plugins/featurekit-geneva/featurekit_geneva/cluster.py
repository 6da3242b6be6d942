"""Ray for one run: reuse, connect, or start, and undo only what featurekit did.

- Ray already initialized in this process (a notebook, a test fixture): used as it is, left running.
- `address:` set (or `RAY_ADDRESS` in the environment): featurekit connects as a driver and
  disconnects at the end; the cluster runs on.
- Otherwise featurekit starts a private local Ray sized to this machine (`address="local"`:
  never a cluster that happens to run on the machine, e.g. another user's) and stops it at the end.
"""
from __future__ import annotations

import logging
import math
import os

# Geneva's driver task asks for a sliver of this resource to sit on the head node; a local
# Ray advertises it so that task takes no CPU from the appliers (Geneva's own local mode does the same).
HEAD_RESOURCE = "geneva_ray_head"
OVERHEAD_CPUS = 0.5  # Geneva's job tracker and fragment writers reserve ~0.1 CPU each


class RaySession:
    def __init__(self, options):
        self.options = options
        self.owned: str | None = None  # "started" | "connected" | None (someone else's Ray)
        self.context = None

    @property
    def address(self) -> str | None:
        return ray_address(self.options)

    def __enter__(self) -> RaySession:
        import ray
        if not ray.is_initialized():
            quiet = dict(log_to_driver=False, logging_level=logging.WARNING)
            if self.address:
                ray.init(address=self.address, runtime_env=worker_runtime_env(self.options.runtime_env), **quiet)
                self.owned = "connected"
            else:  # without address="local" Ray attaches to any cluster running on this machine
                ray.init(address="local", num_cpus=self.options.local_cpus or os.cpu_count(),
                         resources={HEAD_RESOURCE: 1}, include_dashboard=False, runtime_env=worker_runtime_env(self.options.runtime_env), **local_memory(), **quiet)
                self.owned = "started"
        from .upstream import local_ray_context
        context = None if (self.address or "").startswith("ray://") else local_ray_context()
        if context is not None:
            self.context = context
            self.context.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        import ray
        if self.context is not None:
            self.context.__exit__(*exc)
        if self.owned:
            ray.shutdown()  # stops the local Ray featurekit started; only disconnects from a cluster

    def describe(self) -> str:
        import ray
        res = ray.cluster_resources()
        where = {"started": "a local Ray started for this run", "connected": f"Ray at {self.address}",
                 None: "the Ray this process had initialized"}[self.owned]
        return f"{where} ({res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU)"


RAY_SETUP_HOOK_ENV = "__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR"  # ray_constants.WORKER_PROCESS_SETUP_HOOK_ENV_VAR


def worker_runtime_env(runtime_env: dict | None = None) -> dict:
    """The runtime_env featurekit starts or joins Ray with: the user's, plus the start-up hook
    that spares each worker process about 1.3 s of importing Geneva (boot.py). A hook of the
    user's own is kept as it is (theirs runs instead), and none is added inside a Ray job that
    already has one (Ray refuses a second: "Conflicting worker_process_setup_hook")."""
    from .boot import SETUP_HOOK
    env = dict(runtime_env or {})
    inherited = RAY_SETUP_HOOK_ENV in os.environ or RAY_SETUP_HOOK_ENV in (env.get("env_vars") or {})
    if not inherited:
        env.setdefault("worker_process_setup_hook", SETUP_HOOK)
    return env


def ray_address(options) -> str | None:
    """The Ray featurekit connects to: the `address:` option, else `RAY_ADDRESS`; None: a local one."""
    return options.address or os.environ.get("RAY_ADDRESS") or None


def local_memory() -> dict[str, int]:
    """Ray sizes its logical `memory` by what is free the moment it starts, so on a busy
    machine Geneva's admission refuses jobs that fit; size it by the machine instead (Ray's
    OOM killer still watches the real usage)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return {}
    return {"_memory": int(total * 0.6), "object_store_memory": int(min(total * 0.1, 2 * 2**30))}


def concurrency(options, f, fragments: int) -> int:
    """Applier actors for one feature: what the cluster fits for its resources, one per
    fragment with work at most (Geneva's default of 8 is 3-4x slower on 2 cores)."""
    if options.concurrency:
        return max(1, min(options.concurrency, fragments))
    import ray
    res = ray.cluster_resources()
    if f.resources.gpus:
        fit = math.floor(res.get("GPU", 0.0) / f.resources.gpus)
    else:
        fit = math.floor((res.get("CPU", 1.0) - OVERHEAD_CPUS) / f.resources.cpus)
    return max(1, min(fit, fragments))


JOB_CPUS = 0.3      # a job's JobTracker and a fragment writer (0.1 CPU each in Geneva), and headroom
MIN_APPLIER_CPUS = 0.2
DEFAULT_JOBS = 1    # default: one job at a time (see `jobs_at_once`)


def jobs_at_once(options, features: list, fragments: list[int]) -> tuple[int, list[tuple[int, float | None]]]:
    """How features filled together share the cluster: the jobs running at once, and per job
    its applier actors and the CPUs each reserves (None: the feature's own `resources.cpus`).

    Jobs at once: the `jobs_at_once` option, else one (concurrent jobs are opt-in: once, of several
    runs of the S3 parity test with 2 at once, one feature's job committed no row, cause not found;
    notes/open-questions.md). Each job starts
    its own processes (driver task, JobTracker, appliers, a writer and a queue per fragment),
    and each pays Geneva's import (~3.5 s of CPU): on 2 cores, 4 jobs at once spent a minute
    starting them side by side where one after the other took 45 s (notes/geneva.md). Jobs at
    once are also capped where trackers (held for a job's whole run) and writers (0.1 CPU each)
    always fit beside an applier: more would let trackers take the CPUs appliers wait for.
    Within that, each job gets an equal share of
    the CPUs; where its feature's `resources.cpus` does not fit in the share, its one applier
    reserves the share instead (the reservation only schedules: the extractor runs as fast as
    the cores it gets)."""
    if len(features) == 1:
        return 1, [(concurrency(options, features[0], fragments[0]), None)]
    import ray
    res = ray.cluster_resources()
    cpus = res.get("CPU", 1.0)
    wanted = options.jobs_at_once or DEFAULT_JOBS
    at_once = max(1, min(len(features), wanted, math.floor(cpus / (JOB_CPUS + MIN_APPLIER_CPUS))))
    share = cpus / at_once - JOB_CPUS
    plans: list[tuple[int, float | None]] = []
    for f, frags in zip(features, fragments):
        if options.concurrency:
            workers = max(1, min(options.concurrency, frags))
        elif f.resources.gpus:
            workers = max(1, min(math.floor(res.get("GPU", 0.0) / at_once / f.resources.gpus), frags))
        else:
            workers = max(1, min(math.floor(share / f.resources.cpus), frags))
        applier = share / workers
        plans.append((workers, None if applier >= f.resources.cpus else max(MIN_APPLIER_CPUS, applier)))
    return at_once, plans
