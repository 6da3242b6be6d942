"""Issue 12, item 2: killing the apply's main process never leaves forked workers alive
holding the table lock; SIGTERM stops the run like Ctrl-C, keeping finished work."""
import os
import signal
import time

import pytest

from .conftest import TALLY, alive, children, stderr_of, stop, wait_until

# distinct questions: each row is a call of the slow extractor (equal inputs would share one)
ROWS = [{"id": i, "question": f"q{i}" + "q" * (i % 13)} for i in range(240)]
CHEAP = {"n": {"extractor": "text.length", "inputs": {"text": "question"}}}
SLOW = {"slow": {"extractor": "faults.slow_length", "inputs": {"text": "question"},
                 "params": {"seconds": 0.03}, "resources": {"workers": 2, "batch_size": 5}}}


def _start_fill(proj):
    """An apply filling `slow` with 2 forked workers, once the workers are busy."""
    proj.write(CHEAP, ROWS, table={"fragment_rows": 20})
    assert proj.apply().ok
    proj.write({**CHEAP, **SLOW}, table={"fragment_rows": 20})
    proc = proj.start("apply", "-q", "spec.yaml")
    assert wait_until(lambda: len(children(proc.pid)) >= 2, 30), stderr_of(proc)
    time.sleep(0.5)
    return proc, children(proc.pid)


def _finish_and_check(proj):
    done = proj.apply()  # takes the lock like any apply: refused if a worker still held it
    assert done.ok
    assert [r["slow"] for r in proj.rows("id", "slow")] == [len(r["question"]) for r in ROWS]
    assert proj.apply().run is None


@pytest.fixture
def reap():
    """Workers a failing test leaves behind are ended (they are this test's grandchildren)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_the_run_commits_finished_work_and_the_next_apply_runs(proj, reap):
    proc, workers = _start_fill(proj)
    reap.extend(workers)
    code = stop(proc, signal.SIGTERM)
    err = stderr_of(proc)
    assert code == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert "stopped by SIGTERM: finished work was committed" in err
    assert wait_until(lambda: not any(alive(w) for w in workers), 10), "workers outlived their apply"
    committed = proj.dataset().count_rows(filter=f"_fk_slow = '{_new_fingerprint(proj)}'")
    assert committed > 0  # the fragments finished before the stop were kept
    TALLY["kills"] += 1
    _finish_and_check(proj)


def test_sigkill_takes_the_workers_with_it_and_the_lock_is_free(proj, reap):
    proc, workers = _start_fill(proj)
    reap.extend(workers)
    proc.kill()
    proc.wait()
    assert wait_until(lambda: not any(alive(w) for w in workers), 10), "workers outlived their apply"
    TALLY["kills"] += 1
    _finish_and_check(proj)


def test_a_lock_file_naming_a_dead_process_does_not_block(proj):
    from featurekit.table.lock import lock_path
    proj.write({"n": {"extractor": "text.length", "inputs": {"text": "question"}}}, ROWS[:3])
    lock = lock_path(proj.uri)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("999999")
    assert proj.apply().ok


@pytest.mark.filterwarnings("ignore:lance is not fork-safe")
def test_a_forked_worker_does_not_hold_the_lock(proj, tmp_path):
    """The mechanism, without a timing: a worker started under the lock drops its copy."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    from featurekit.lifetime import parent_only_fds, worker_init
    from featurekit.table.lock import lock_path, table_lock
    uri = str(tmp_path / "data" / "t.lance")
    with table_lock(uri):
        fd = parent_only_fds()[0]
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"), initializer=worker_init,
                                 initargs=(os.getpid(),)) as pool:
            target = pool.submit(os.readlink, f"/proc/self/fd/{fd}").result()
    assert target == os.devnull and str(lock_path(uri)) not in target


def _new_fingerprint(proj):
    from featurekit.api import load_spec

    from .conftest import registry
    return load_spec(proj.spec, registry=registry()).features["slow"].fingerprint


def test_a_stop_waits_for_a_commit_in_progress_but_a_second_one_does_not():
    from featurekit.lifetime import Stopped, critical, stop_on_signals
    with stop_on_signals():
        with pytest.raises(Stopped, match="SIGTERM"):
            with critical():
                os.kill(os.getpid(), signal.SIGTERM)
                reached = True  # the commit finishes first
        assert reached
        with pytest.raises(Stopped, match="SIGINT"):
            with critical():
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGINT)
                raise AssertionError("a second signal must not wait")


def test_a_lock_kept_by_leftovers_of_a_dead_apply_names_them(proj):
    import subprocess
    import sys

    from featurekit.errors import RunError
    from featurekit.table.lock import lock_path
    proj.write({"n": {"extractor": "text.length", "inputs": {"text": "question"}}}, ROWS[:3])
    lock = lock_path(proj.uri)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("999999")  # the apply that took it is gone; a process it left behind holds it
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               f"fh = open({str(lock)!r}, 'a+'); fcntl.flock(fh, fcntl.LOCK_EX)\n"
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=rf"held by processes {holder.pid} left behind by featurekit apply "
                                           rf"\(pid 999999\), which is gone; stop them \(kill {holder.pid}\)"):
            proj.apply()
    finally:
        holder.kill()
        holder.wait()
    assert proj.apply().ok  # the kernel released it with its holder
