"""`featurekit train --resume` through the real TrainRun and loader: a run stopped by Ctrl-C,
resumed, stopped again by SIGTERM (exit 143, no traceback) and resumed again gives the
losses of a run never stopped, dropout included (its RNG is in the checkpoints).

The stopped and resumed runs are `featurekit train` processes (the signals are what a user
sends them); the uninterrupted reference trains in this process (`featurekit.train`)."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STEPS = 12  # room to catch each run between its checkpoint and its end


def featurekit_cmd(*args):
    return [sys.executable, "-m", "featurekit", *args]


def losses(run: Path) -> dict[int, float]:
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        assert entry["step"] not in out, f"step {entry['step']} logged twice"  # a resume replaces, never repeats
        out[entry["step"]] = entry["loss"]
    return out


@pytest.fixture(scope="module")
def project(copy_easyvqa):
    root = copy_easyvqa("resume")
    spec = (root / "easyvqa-qwen.yaml").read_text()
    spec = spec.replace("checkpoint_every: 50", "checkpoint_every: 2").replace("steps: 120", f"steps: {STEPS}") \
        .replace("lora: {r: 16", "lora: {dropout: 0.3, r: 16") \
        .replace("batch_size: 32, grad_accum", "batch_size: 8, grad_accum")
    (root / "spec.yaml").write_text(spec)
    return root, {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}


def latest(runs: Path) -> Path | None:
    return runs / (runs / "LATEST").read_text().strip() if (runs / "LATEST").exists() else None


def last_step(run: Path | None) -> int:
    """The last step logged in `run` (0: none yet); a line being written is not read."""
    lines = (run / "metrics.jsonl").read_text().split("\n")[:-1] if run and (run / "metrics.jsonl").exists() else []
    return json.loads(lines[-1])["step"] if lines else 0


def stop(root: Path, env: dict, signum: int, after_step: int, *args: str) -> tuple[int, str]:
    """`featurekit train spec.yaml ...` sent `signum` once the newest run has logged
    `after_step` (and this process wrote it); returns its exit code and stderr."""
    runs = root / "runs" / "qlora"
    before = latest(runs)
    started = time.time()
    proc = subprocess.Popen(featurekit_cmd("train", "spec.yaml", "-r", "qlora", "-q", *args), cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while time.time() < started + 300 and proc.poll() is None:
        run = latest(runs)
        if run and (run != before or args) and last_step(run) >= after_step and \
                (run / "metrics.jsonl").stat().st_mtime >= started:
            proc.send_signal(signum)
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be stopped (a very fast machine)")
    return proc.returncode, err.decode()


@pytest.mark.slow
def test_stopped_by_ctrl_c_and_by_sigterm_and_resumed_equals_uninterrupted(project, one_thread):
    import featurekit
    root, env = project
    with one_thread():  # as the processes below
        whole = featurekit.train(root / "spec.yaml", "qlora", quiet=True).run_dir
    assert len(losses(whole)) == STEPS

    code, err = stop(root, env, signal.SIGINT, 3)
    stopped = latest(root / "runs" / "qlora")
    assert stopped != whole and code == 130, err
    assert json.loads((stopped / "manifest.json").read_text())["status"].startswith("interrupted")
    first = max(losses(stopped))
    assert first < STEPS

    code, err = stop(root, env, signal.SIGTERM, first + 2, "--resume")
    assert code == 143, err
    assert latest(root / "runs" / "qlora") == stopped
    assert json.loads((stopped / "manifest.json").read_text())["status"].startswith("interrupted")
    assert "Traceback" not in err and "--resume" in err
    assert first + 2 <= max(losses(stopped)) < STEPS

    subprocess.run(featurekit_cmd("train", "spec.yaml", "-r", "qlora", "-q", "--resume"), cwd=root, check=True,
                   capture_output=True, env=env)
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["status"] == "finished" and len(manifest["resumes"]) == 2
    assert losses(stopped) == losses(whole)
