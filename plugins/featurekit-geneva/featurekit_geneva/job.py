"""One Geneva backfill: submit it, follow its progress, stop it on a timeout or a stall.

Geneva's synchronous `backfill()` draws its own progress bars and, on timeout, returns
while the job runs on; here the job is followed through its JobTracker actor (rows
checkpointed -> featurekit's reporter) and cancelled when featurekit gives up, so nothing
keeps writing to the table behind the next apply's back.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from .upstream import job_ref, job_tracker

POLL_SECONDS = 1.0


class JobFailed(Exception):
    """The backfill did not finish; the message says why and names the feature."""


@dataclass
class Submitted:
    job_id: str
    future: object  # geneva RayJobFuture


def submit(gtable, column: str, where: str, *, feature: str, resources, concurrency: int, options) -> Submitted:
    """Start the backfill; a job the cluster cannot place fails here, at once."""
    from .cluster import ray_address
    from .upstream import backfill_async, resources_unavailable

    memory = None
    if options.memory_gb is not None:
        memory = int(options.memory_gb * 2**30)
    elif not ray_address(options):
        memory = 0  # one machine: a reservation only makes admission refuse what fits
    extra = {}
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


def follow(job: Submitted, *, feature: str, rows: int, on_rows, timeout: float | None, stall: float) -> None:
    """Wait for the job, reporting rows as Geneva checkpoints them; raise JobFailed when it fails,
    runs past `timeout`, or checkpoints nothing for `stall` seconds (then it is cancelled)."""
    try:
        _follow(job, feature=feature, rows=rows, on_rows=on_rows, timeout=timeout, stall=stall)
    except KeyboardInterrupt:
        cancel(job)  # on a cluster the job would otherwise run until Ray notices the driver left
        raise
    finally:
        release(job)


def _follow(job: Submitted, *, feature: str, rows: int, on_rows, timeout: float | None, stall: float) -> None:
    import ray
    fut = job.future
    started = last_progress = time.monotonic()
    seen = reported = 0
    while True:
        ready, _ = ray.wait([job_ref(fut)], timeout=POLL_SECONDS)
        done, total = _checkpointed(fut)
        if done > seen:
            seen, last_progress = done, time.monotonic()
            share = min(rows, round(rows * done / total)) if total else 0
            if share > reported:
                on_rows(share - reported)
                reported = share
        if ready:
            break
        now = time.monotonic()
        if timeout is not None and now - started > timeout:
            cancel(job)
            raise JobFailed(f"feature {feature!r}: Geneva job {job.job_id} did not finish within {timeout:g}s "
                            "(engine option timeout_seconds); its finished fragments are committed, apply again to resume")
        if now - last_progress > stall:
            cancel(job)
            raise JobFailed(f"feature {feature!r}: Geneva job {job.job_id} checkpointed no row for {stall:g}s "
                            "(engine option stall_seconds): workers that cannot start or a stuck extractor; "
                            "finished fragments are committed, apply again to resume")
    try:
        ray.get(job_ref(fut))
    except Exception as exc:  # the job's driver task raised: a FeatureError, a lost worker, a commit conflict
        raise JobFailed(failure_message(feature, job.job_id, exc)) from None
    if reported < rows:
        on_rows(rows - reported)


def _checkpointed(fut) -> tuple[int, int]:
    """Rows checkpointed so far and the job's total, from its JobTracker (0, 0 before it reports)."""
    import ray
    tracker = job_tracker(fut)
    if tracker is None:
        return 0, 0
    try:
        snapshot = ray.get(tracker.get_all.remote(), timeout=POLL_SECONDS)
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
