"""One Geneva backfill: submit it, follow its progress, stop it on a timeout or a stall.

Geneva's synchronous `backfill()` draws its own progress bars and, on timeout, returns
while the job runs on; here the job is followed through its JobTracker actor (rows
checkpointed -> featurekit's reporter) and cancelled when featurekit gives up, so nothing
keeps writing to the table behind the next apply's back.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from .upstream import job_ref, job_tracker

POLL_SECONDS = 1.0


class JobFailed(Exception):
    """The backfill did not finish; the message says why and names the feature."""


@dataclass
class Submitted:
    job_id: str
    future: object  # geneva RayJobFuture


def submit(gtable, column: str, where: str, *, feature: str, resources, concurrency: int, options,
           num_cpus: float | None = None) -> Submitted:
    """Start the backfill; a job the cluster cannot place fails here, at once. `num_cpus`: what
    each applier reserves when it is not the feature's `resources.cpus` (jobs sharing the cluster)."""
    from .cluster import ray_address
    from .upstream import backfill_async, resources_unavailable

    memory = None
    if options.memory_gb is not None:
        memory = int(options.memory_gb * 2**30)
    elif not ray_address(options):
        memory = 0  # one machine: a reservation only makes admission refuse what fits
    extra = {}
    if num_cpus is not None and num_cpus != resources.cpus:
        extra["num_cpus"] = num_cpus
    if options.checkpoint_seconds is not None:
        extra["batch_checkpoint_flush_interval_seconds"] = options.checkpoint_seconds
    try:
        future = backfill_async(gtable, column, where=where, strict=options.admission_strict, concurrency=concurrency,
                                memory=memory, commit_granularity=options.commit_granularity,
                                checkpoint_size=options.checkpoint_size, **extra)
    except resources_unavailable() as exc:
        raise JobFailed(unplaceable(feature, resources, concurrency, str(exc))) from None
    return Submitted(future.job_id, future)


def unplaceable(feature: str, resources, concurrency: int, detail: str) -> str:
    import ray
    res = ray.cluster_resources()
    if resources.gpus and res.get("GPU", 0) < resources.gpus:
        what = f"{resources.gpus:g} GPU per worker, and the Ray cluster has {res.get('GPU', 0):g} GPU"
    else:
        what = (f"{concurrency} worker(s) of {resources.cpus:g} CPU{f' + {resources.gpus:g} GPU' if resources.gpus else ''}"
                f", and the Ray cluster has {res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU")
    return (f"feature {feature!r} cannot run on this Ray cluster: it needs {what} ({detail}); run it where "
            "the resource exists (engine option address:), or lower resources: in the spec")


@dataclass
class Followed:
    """A running job, and the feature whose progress it reports."""
    job: Submitted
    feature: str
    rows: int
    on_rows: object  # callable(rows) -> None
    on_end: object = None  # callable() -> None, when the job has ended (done, failed or given up)
    started: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)
    seen: int = 0
    reported: int = 0


def follow_all(submit, count: int, at_once: int, *, timeout: float | None, stall: float) -> dict[str, str]:
    """Run `count` jobs, at most `at_once` at a time: `submit(i)` starts the i-th (None: it
    could not start), and each is followed to its end, reporting rows as Geneva checkpoints
    them. Returns why each failed job failed, by feature (failed, past `timeout`, or no row
    checkpointed for `stall` seconds: then cancelled). Ctrl-C cancels every running job."""
    import ray
    failures: dict[str, str] = {}
    running: list[Followed] = []
    queued = list(range(count))
    try:
        while running or queued:
            while queued and len(running) < at_once:
                started = submit(queued.pop(0))
                if started is not None:
                    running.append(started)
            if not running:
                continue
            ready, _ = ray.wait([job_ref(j.job.future) for j in running], num_returns=1, timeout=POLL_SECONDS)
            now = time.monotonic()
            for j in list(running):
                _progress(j, now)
                done = job_ref(j.job.future) in ready or not ray.wait([job_ref(j.job.future)], timeout=0)[1]
                why = _ended(j, now, timeout, stall) if not done else _result(j)
                if done or why is not None:
                    running.remove(j)
                    release(j.job)
                    if j.on_end is not None:
                        j.on_end()
                    if why is not None:
                        failures[j.feature] = why
    except KeyboardInterrupt:
        for j in running:
            cancel(j.job)  # on a cluster the job would otherwise run until Ray notices the driver left
        raise
    finally:
        for j in running:
            release(j.job)
    return failures


def _progress(j: Followed, now: float) -> None:
    done, total = _checkpointed(j.job.future)
    if done > j.seen:
        j.seen, j.last_progress = done, now
        share = min(j.rows, round(j.rows * done / total)) if total else 0
        if share > j.reported:
            j.on_rows(share - j.reported)
            j.reported = share


def _ended(j: Followed, now: float, timeout: float | None, stall: float) -> str | None:
    """Why a running job is given up on (then cancelled), or None."""
    job = j.job
    if timeout is not None and now - j.started > timeout:
        cancel(job)
        return (f"feature {j.feature!r}: Geneva job {job.job_id} did not finish within {timeout:g}s "
                "(engine option timeout_seconds); its finished fragments are committed, apply again to resume")
    if now - j.last_progress > stall:
        cancel(job)
        return (f"feature {j.feature!r}: Geneva job {job.job_id} checkpointed no row for {stall:g}s "
                "(engine option stall_seconds): workers that cannot start or a stuck extractor; "
                "finished fragments are committed, apply again to resume")
    return None


def _result(j: Followed) -> str | None:
    """A finished job: None when it succeeded, else why it failed."""
    import ray
    try:
        ray.get(job_ref(j.job.future))
    except Exception as exc:  # the job's driver task raised: a FeatureError, a lost worker, a commit conflict
        return failure_message(j.feature, j.job.job_id, exc)
    if j.reported < j.rows:
        j.on_rows(j.rows - j.reported)
    return None


COMPLETED_JOB = "lancedb:agent:completed_job_json"


def versions_by_feature(ds, before: int, owners: dict[int, str], jobs: dict[str, str]) -> dict[str, list[int]]:
    """Which of the versions after `before` each feature's job made, when several jobs
    committed to the table at once: a DataReplacement by the fields of its files (`owners`:
    field id -> feature), Geneva's completion marker by its job id (`jobs`: job id -> feature)."""
    import json
    out: dict[str, list[int]] = {}
    for v in range(before + 1, ds.version + 1):
        tx = ds.read_transaction(v)
        if tx is None:
            continue
        names = {owners[i] for r in getattr(tx.operation, "replacements", None) or [] for i in r.new_file.fields
                 if i in owners}
        marker = (tx.transaction_properties or {}).get(COMPLETED_JOB)
        if marker:
            names.add(jobs.get(json.loads(marker).get("job_id"), ""))
        for name in names - {""}:
            out.setdefault(name, []).append(v)
    return out


def _checkpointed(fut) -> tuple[int, int]:
    """Rows checkpointed so far and the job's total, from its JobTracker (0, 0 before it reports)."""
    import ray
    tracker = job_tracker(fut)
    if tracker is None:
        return 0, 0
    try:
        snapshot = ray.get(tracker.get_all.remote(), timeout=0.25)
    except Exception:  # not ready yet, or gone with the job: progress is cosmetic
        return 0, 0
    m = snapshot.get("rows_checkpointed") or {}
    return int(m.get("n", 0)), int(m.get("total", 0))


def release(job: Submitted) -> None:
    """End the job's JobTracker actor (~0.4 GB each): Geneva leaves it to the driver, and an
    apply runs a backfill per feature."""
    import ray
    tracker = job_tracker(job.future)
    if tracker is not None:
        try:
            ray.kill(tracker)
        except Exception:  # already gone
            pass


def cancel(job: Submitted) -> None:
    """Stop the job's driver task; its actors (appliers, writers) die with their owner."""
    import ray
    try:
        ray.cancel(job_ref(job.future), force=True, recursive=True)
    except Exception:  # already finished
        pass


FEATURE_ERROR = re.compile(r"FeatureError: (feature '.*?)(?:\n|$)")


def failure_message(feature: str, job_id: str, exc: Exception) -> str:
    """The extractor's own message when the feature broke its contract (as the local engine
    reports it), else Geneva's last line."""
    text = str(exc)
    match = FEATURE_ERROR.search(text)
    if match:
        return f"{match.group(1).strip()} (Geneva job {job_id})"
    last = [line for line in text.strip().splitlines() if line.strip()][-1:] or [type(exc).__name__]
    return f"feature {feature!r}: Geneva job {job_id} failed: {last[0].strip()[:500]}"
