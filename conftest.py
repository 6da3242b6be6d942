"""Repository-wide pytest setup: GPU tests skip cleanly on machines without CUDA, heavy
tests unless FEATUREKIT_HEAVY=1; slow tests run first (under pytest-xdist a long test started
last is the suite's tail); under pytest-xdist, the reliability suite's tally is summed over
the workers."""
import json
import os

import pytest

# Under pytest-xdist every core already runs a test: torch (and other OpenMP code) with a thread
# a core besides makes each process wait for the other's threads (training steps measured 2-9 s
# instead of ~0.5 s with 2 workers on 2 cores). One thread a process, subprocesses included.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    gpu = heavy = None
    for item in items:
        if "gpu" in item.keywords:
            if gpu is None:
                gpu = _has_cuda()
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "heavy" in item.keywords:
            if heavy is None:
                heavy = os.environ.get("FEATUREKIT_HEAVY") == "1"
            if not heavy:
                item.add_marker(pytest.mark.skip(reason="heavy: set FEATUREKIT_HEAVY=1"))
    # the long end-to-end tests first, each on whichever worker is free, while the short ones
    # fill the other workers (xdist hands out tests in this order; a group runs where it starts)
    items.sort(key=lambda item: "slow" not in item.keywords)


_TALLY: dict[str, int] = {}  # the reliability suite's tally, summed over pytest-xdist workers


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for key, value in json.loads(getattr(node, "workeroutput", {}).get("reliability_tally", "{}")).items():
        _TALLY[key] = _TALLY.get(key, 0) + value


def pytest_terminal_summary(terminalreporter):
    if any(_TALLY.values()):
        terminalreporter.write_line(f"reliability: {_TALLY['kills']} kill points survived, {_TALLY['bad_inputs']} bad "
                                    f"inputs tried, rows lost: {_TALLY['rows_lost']}")
