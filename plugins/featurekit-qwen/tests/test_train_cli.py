"""`featurekit train --resume` through the real TrainRun and loader: a run interrupted (Ctrl-C)
after its checkpoint at step 3 and resumed gives the losses of a run never stopped; SIGTERM
stops a run the same way (exit 143)."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


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
def project(tmp_path_factory):
    pytest.importorskip("easy_vqa")
    pytest.importorskip("peft")
    root = tmp_path_factory.mktemp("resume")
    spec = (ROOT / "specs" / "easyvqa-qwen.yaml").read_text()
    spec = spec.replace("checkpoint_every: 50", "checkpoint_every: 3").replace("steps: 120", "steps: 8") \
        .replace("lora: {r: 16", "lora: {dropout: 0.3, r: 16")
    (root / "spec.yaml").write_text(spec)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    for cmd in ([sys.executable, str(ROOT / "examples" / "make_easyvqa.py"), "raw-easyvqa", "--images", "6"],
                [sys.executable, str(ROOT / "examples" / "make_tiny_qwen.py"), "models/tiny-qwen"],
                featurekit_cmd("apply", "-q", "spec.yaml")):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True, env=env)
    return root, env


@pytest.mark.slow
def test_interrupted_and_resumed_equals_uninterrupted(project):
    root, env = project
    subprocess.run(featurekit_cmd("train", "spec.yaml", "-r", "qlora", "-q"), cwd=root, check=True,
                   capture_output=True, env=env)
    runs = root / "runs" / "qlora"
    whole = runs / (runs / "LATEST").read_text().strip()
    proc = subprocess.Popen(featurekit_cmd("train", "spec.yaml", "-r", "qlora", "-q"), cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        latest = runs / (runs / "LATEST").read_text().strip()
        if latest != whole and (latest / "metrics.jsonl").exists() and \
                len((latest / "metrics.jsonl").read_text().splitlines()) >= 4:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    proc.wait(timeout=120)
    stopped = runs / (runs / "LATEST").read_text().strip()
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be interrupted (a very fast machine)")
    assert json.loads((stopped / "manifest.json").read_text())["status"].startswith("interrupted")
    assert len(losses(stopped)) < 8
    shutil.copy(stopped / "metrics.jsonl", stopped / "metrics-before-resume.jsonl")
    subprocess.run(featurekit_cmd("train", "spec.yaml", "-r", "qlora", "-q", "--resume"), cwd=root, check=True,
                   capture_output=True, env=env)
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["status"] == "finished" and len(manifest["resumes"]) == 1
    assert losses(stopped) == losses(whole) and len(losses(whole)) == 8


def test_sigterm_stops_training_at_a_step_like_ctrl_c(project):
    root, env = project
    runs = root / "runs" / "qlora"
    before = (runs / "LATEST").read_text().strip() if (runs / "LATEST").exists() else None
    proc = subprocess.Popen(featurekit_cmd("train", "spec.yaml", "-r", "qlora", "-q"), cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        latest = (runs / "LATEST").read_text().strip() if (runs / "LATEST").exists() else None
        if latest and latest != before and (runs / latest / "metrics.jsonl").exists() and \
                len((runs / latest / "metrics.jsonl").read_text().splitlines()) >= 2:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be stopped (a very fast machine)")
    assert proc.returncode == 143, err.decode()
    stopped = runs / (runs / "LATEST").read_text().strip()
    assert json.loads((stopped / "manifest.json").read_text())["status"].startswith("interrupted")
    assert "Traceback" not in err.decode() and "--resume" in err.decode()
