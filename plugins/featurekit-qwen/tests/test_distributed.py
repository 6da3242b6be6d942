"""`torchrun --nproc_per_node 2 -m featurekit train` on CPU (gloo): data-parallel training
whose losses are those of one process at twice the batch, rank 0 alone writing the run
folder, and a killed 2-process run resumed exactly (every rank's loader position restored)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
STEPS = 6
LONG = 30  # the killed run: long enough to be caught between two steps


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
def project(tmp_path_factory):
    pytest.importorskip("easy_vqa")
    pytest.importorskip("peft")
    root = tmp_path_factory.mktemp("ddp")
    (root / "one.yaml").write_text(spec_text(4, "runs/one"))
    (root / "two.yaml").write_text(spec_text(2, "runs/two"))
    (root / "long.yaml").write_text(spec_text(2, "runs/long", LONG))
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME")}, "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    for cmd in ([sys.executable, str(ROOT / "examples" / "make_easyvqa.py"), "raw-easyvqa", "--images", "6"],
                [sys.executable, str(ROOT / "examples" / "make_tiny_qwen.py"), "models/tiny-qwen"],
                [sys.executable, "-m", "featurekit", "apply", "-q", "one.yaml"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True, env=env)
    return root, env


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "featurekit", "train", *args]


@pytest.fixture(scope="module")
def both(project):
    root, env = project
    subprocess.run([sys.executable, "-m", "featurekit", "train", "one.yaml", "-r", "qlora", "-q"], cwd=root,
                   check=True, capture_output=True, env=env)
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


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_exactly(project):
    root, env = project
    whole = subprocess.run(torchrun("long.yaml", "-r", "qlora", "-q"), cwd=root, capture_output=True, env=env)
    assert whole.returncode == 0, whole.stderr.decode()[-3000:]
    whole = latest(root, "runs/long")
    proc = subprocess.Popen(torchrun("long.yaml", "-r", "qlora", "-q"), cwd=root, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        run = latest(root, "runs/long")
        if run != whole and (run / "metrics.jsonl").exists() and \
                len((run / "metrics.jsonl").read_text().splitlines()) >= 5:
            kill_job(proc.pid)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    stopped = latest(root, "runs/long")
    if json.loads((stopped / "manifest.json").read_text())["status"] == "finished":
        pytest.skip("the run finished before it could be killed (a very fast machine)")
    assert stopped != whole and len(losses(stopped)) < LONG
    resumed = subprocess.run(torchrun("long.yaml", "-r", "qlora", "-q", "--resume"), cwd=root, capture_output=True,
                             env=env)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["world_size"] == 2 and len(manifest["resumes"]) == 1
    assert losses(stopped) == losses(whole)


def test_resuming_with_another_number_of_processes_is_refused(project, both):
    root, env = project
    _, two, _ = both
    (two / "manifest.json").write_text(json.dumps({**json.loads((two / "manifest.json").read_text()),
                                                   "status": "interrupted"}))
    out = subprocess.run([sys.executable, "-m", "featurekit", "train", "two.yaml", "-r", "qlora", "--resume"],
                         cwd=root, capture_output=True, env=env)
    assert out.returncode == 2
    assert "trained on 2 process(es), this is 1" in out.stderr.decode()


def test_the_world_comes_from_torchruns_environment():
    from featurekit.errors import UsageError
    from featurekit.training.distributed import World, from_env
    assert from_env({}) == World(0, 1, 0) and from_env({}).main
    world = from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.local_rank, world.main) == (3, 4, 1, False)
    with pytest.raises(UsageError, match="RANK=4 and WORLD_SIZE=4"):
        from_env({"RANK": "4", "WORLD_SIZE": "4"})
