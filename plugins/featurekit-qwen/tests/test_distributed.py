"""`torchrun --nproc_per_node 2 -m featurekit train` on CPU (gloo): data-parallel training
whose losses are those of one process at twice the batch, rank 0 alone writing the run
folder, and a killed 2-process run resumed exactly (every rank's loader position restored),
which a 1-process resume refuses.

Three torchrun jobs in all: the whole run, the run killed mid-way and its resume; the
1-process reference at twice the batch trains in this process (`featurekit.train`)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("qwen-ddp")  # one worker: the tests share the module's runs

ROOT = Path(__file__).resolve().parents[3]
STEPS = 10  # the killed run is caught between its checkpoint at step 2 and its end


def spec_text(batch: int, output: str, steps: int = STEPS) -> str:
    spec = (ROOT / "specs" / "easyvqa-qwen.yaml").read_text()
    recipe = spec.index("recipes:")
    head, tail = spec[:recipe], spec[recipe:]
    params = ("params: {model: models/tiny-qwen, quantization: none, image_px: 112, "
              "lora: {r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj]}, "
              f"batch_size: {batch}, grad_accum: 1, steps: {steps}, lr: 5.0e-3, warmup_steps: 1, seed: 0, "
              "checkpoint_every: 2, keep_checkpoints: 5, eval_loss_batches: 1}")
    start = tail.index("params:")
    end = tail.index("output:")
    return head + tail[:start] + params + "\n    " + f"output: {output}\n" + \
        tail[tail.index("\n", end) + 1:]


def losses(run: Path) -> dict[int, float]:
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        assert entry["step"] not in out, f"step {entry['step']} logged twice"
        out[entry["step"]] = entry["loss"]
    return out


def latest(root: Path, output: str) -> Path:
    runs = root / output
    return runs / (runs / "LATEST").read_text().strip()


@pytest.fixture(scope="module")
def project(copy_easyvqa):
    root = copy_easyvqa("ddp")
    (root / "one.yaml").write_text(spec_text(4, "runs/one"))
    (root / "two.yaml").write_text(spec_text(2, "runs/two"))
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME")}, "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    return root, env


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "featurekit", "train", *args]


@pytest.fixture(scope="module")
def both(project, one_thread):
    """The 1-process run at batch 4 (in this process) and the torchrun job at batch 2."""
    import featurekit
    root, env = project
    with one_thread():  # as each rank (OMP_NUM_THREADS=1)
        featurekit.train(root / "one.yaml", "qlora", quiet=True)
    two = subprocess.run(torchrun("two.yaml", "-r", "qlora", "-q"), cwd=root, capture_output=True, env=env)
    assert two.returncode == 0, two.stderr.decode()[-3000:]
    return latest(root, "runs/one"), latest(root, "runs/two"), two.stdout.decode()


@pytest.mark.slow
def test_two_ranks_at_batch_b_train_as_one_process_at_batch_2b(both):
    one, two, stdout = both
    a, b = losses(one), losses(two)
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-4, (a, b)
    assert a[STEPS] < a[1]  # it trained
    from safetensors.torch import load_file
    wa, wb = load_file(str(one / "adapter" / "adapter_model.safetensors")), \
        load_file(str(two / "adapter" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["status"] == "finished"
    assert json.loads((one / "manifest.json").read_text())["world_size"] == 1
    assert stdout.count("trained qlora") == 1  # rank 0 alone reports (and writes) the run
    assert len([p for p in two.parent.iterdir() if p.is_dir()]) == 1


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def kill_job(pid: int) -> None:
    """torchrun and its ranks (each in a session of its own): frozen where they are, then
    killed, with no chance to clean up."""
    procs = [pid, *children(pid)]
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in procs:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def killed(project, both):
    """torchrun of two.yaml SIGKILLed after its checkpoint at step 2, then resumed: first by
    one process (refused), then by torchrun with 2."""
    root, env = project
    whole = latest(root, "runs/two")
    proc = subprocess.Popen(torchrun("two.yaml", "-r", "qlora", "-q"), cwd=root, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        run = latest(root, "runs/two")
        if run != whole and (run / "metrics.jsonl").exists() and \
                len((run / "metrics.jsonl").read_text().splitlines()) >= 3:
            kill_job(proc.pid)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    stopped = latest(root, "runs/two")
    if json.loads((stopped / "manifest.json").read_text())["status"] == "finished":
        pytest.skip("the run finished before it could be killed (a very fast machine)")
    before = json.loads((stopped / "manifest.json").read_text())
    assert 3 <= len(losses(stopped)) < STEPS
    one = subprocess.run([sys.executable, "-m", "featurekit", "train", "two.yaml", "-r", "qlora", "--resume"],
                         cwd=root, capture_output=True, env=env)
    refused = json.loads((stopped / "manifest.json").read_text())
    resumed = subprocess.run(torchrun("two.yaml", "-r", "qlora", "-q", "--resume"), cwd=root, capture_output=True,
                             env=env)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    return whole, stopped, before, one, refused


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_exactly(killed):
    whole, stopped, before, _, _ = killed
    assert stopped != whole and before["world_size"] == 2
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["world_size"] == 2 and len(manifest["resumes"]) == 1
    assert losses(stopped) == losses(whole) and len(losses(whole)) == STEPS


def test_resuming_with_another_number_of_processes_is_refused(killed):
    _, _, before, one, refused = killed
    assert one.returncode == 2
    assert "trained on 2 process(es), this is 1" in one.stderr.decode()
    assert refused == before  # the refused resume left the run as it was, for the right resume


def test_the_world_comes_from_torchruns_environment():
    from featurekit.errors import UsageError
    from featurekit.training.distributed import World, from_env
    assert from_env({}) == World(0, 1, 0) and from_env({}).main
    world = from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.local_rank, world.main) == (3, 4, 1, False)
    with pytest.raises(UsageError, match="RANK=4 and WORLD_SIZE=4"):
        from_env({"RANK": "4", "WORLD_SIZE": "4"})
