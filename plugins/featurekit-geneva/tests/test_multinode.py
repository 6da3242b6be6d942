"""The geneva engine on a Ray cluster of three nodes on this machine (`ray.cluster_utils.Cluster`:
a head and two worker nodes, each its own raylet), and a worker node removed mid-backfill.

Slow (three raylets start on a 2-core machine); CI runs it.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.xdist_group("multinode"), pytest.mark.slow]  # its own cluster: beside the other modules

pytest.importorskip("geneva")
ray = pytest.importorskip("ray")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from test_geneva import assert_same_tables, no_sleep, project, rows_of, worker_environment  # noqa: E402


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """A head with no CPU (Geneva's driver task sits there on its head resource) and two worker
    nodes of one CPU: every applier runs on a worker node, one a node (0.8 CPU each)."""
    from ray.cluster_utils import Cluster

    from featurekit_geneva.cluster import HEAD_RESOURCE, worker_runtime_env
    with worker_environment(tmp_path_factory.mktemp("nodes")) as (calls_file, _):
        memory = {"object_store_memory": 200 * 2**20}
        cluster = Cluster(initialize_head=True,
                          head_node_args={"num_cpus": 0, "resources": {HEAD_RESOURCE: 1}, **memory})
        workers = [cluster.add_node(num_cpus=1, **memory) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, runtime_env=worker_runtime_env())
        try:
            yield cluster, workers, calls_file
        finally:
            ray.shutdown()
            cluster.shutdown()


def calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


FEATURES = {"n": {"extractor": "fkg.flaky", "inputs": {"text": "q"}, "params": {"sleep": 0.1},
                  "resources": {"cpus": 0.8}}}


def test_an_apply_across_three_nodes_with_a_worker_node_removed_mid_backfill(nodes, tmp_path):
    cluster, workers, log = nodes
    assert len([n for n in ray.nodes() if n["Alive"]]) == 3
    rows = rows_of(range(160), bad=False)
    engine = {"kind": "geneva", "concurrency": 2, "checkpoint_size": 10, "checkpoint_seconds": 0,
              "stall_seconds": 120}
    gen = project(tmp_path / "geneva", FEATURES, rows, engine, fragment_rows=40)  # 4 fragments, 2 a node
    log.write_text("")

    removed: list[int] = []  # rows computed when the node went

    def remove_a_worker_node_mid_backfill() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(calls(log)) < 40:
            time.sleep(0.1)
        removed.append(len(calls(log)))
        cluster.remove_node(workers[0])  # its raylet and every worker process on it

    killer = threading.Thread(target=remove_a_worker_node_mid_backfill)
    killer.start()
    try:
        first = gen.apply()
    finally:
        killer.join()
    assert removed and removed[0] < len(rows) // 2, f"the node went after {removed} rows: not mid-backfill"
    computed_first = len(calls(log))
    second = gen.apply() if not first.ok else first   # what the lost node left undone, if anything
    assert second.ok, second.run.features["n"].error
    total = len(calls(log))

    reference = project(tmp_path / "local", FEATURES, rows, {"kind": "local"}, fragment_rows=40)
    with no_sleep():
        reference.apply()
    assert_same_tables(reference, gen)                 # no row lost, none duplicated, the same values
    assert gen.table().num_rows == len(rows)
    # recomputed: at most the removed node's in-flight work (its appliers' unflushed checkpoints)
    redone = total - len(rows)
    print(f"\nworker node removed after {removed[0]} calls (first apply: {computed_first}); first apply ok={first.ok}; "
          f"{total} extractor calls for {len(rows)} rows ({redone} recomputed)")
    assert 0 <= redone <= 2 * engine["checkpoint_size"] * 2
    assert gen.plan().is_noop
