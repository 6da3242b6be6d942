"""Issue 21, N13: a worker process killed mid-apply (OOM killer, SIGKILL) does not end the
apply in a `BrokenProcessPool` traceback: the rest is computed, or the apply says what happened."""
import os
import signal
import time

from .conftest import TALLY, alive, children, stderr_of, wait_until

ROWS = [{"id": i, "question": f"q{i}" + "q" * (i % 13)} for i in range(160)]
CHEAP = {"n": {"extractor": "text.length", "inputs": {"text": "question"}}}
SLOW = {"slow": {"extractor": "faults.slow_length", "inputs": {"text": "question"},
                 "params": {"seconds": 0.03}, "resources": {"workers": 2, "batch_size": 5}}}


def test_n13_a_killed_worker_does_not_end_the_apply_in_a_traceback(proj):
    proj.write(CHEAP, ROWS, table={"fragment_rows": 20})
    assert proj.apply().ok
    proj.write({**CHEAP, **SLOW}, table={"fragment_rows": 20})
    proc = proj.start("apply", "spec.yaml")
    assert wait_until(lambda: len(children(proc.pid)) >= 2, 30), stderr_of(proc)
    time.sleep(0.5)
    workers = children(proc.pid)
    for _ in range(3):  # kill workers as they come back, too
        for pid in children(proc.pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
    code = proc.wait(120)
    err = stderr_of(proc)
    TALLY["kills"] += 1
    assert "Traceback" not in err and "BrokenProcessPool" not in err, err
    assert code in (0, 1), err
    if code == 1:
        assert "error:" in err and "worker" in err, err
    assert not any(alive(w) for w in workers)
    done = proj.apply()
    assert done.ok
    assert [r["slow"] for r in proj.rows("id", "slow")] == [len(r["question"]) for r in ROWS]
