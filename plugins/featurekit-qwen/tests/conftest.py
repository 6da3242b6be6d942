"""What the CLI tests start from, built once per test session: the tiny random Qwen2.5-VL of
the quickstart (`examples/make_tiny_qwen.py`'s model) and the quickstart's easy-vqa project on a
6-image sample, applied (`specs/easyvqa-qwen.yaml`'s features). Under xdist the first worker
to ask builds it while the others wait on a file lock, then every worker reuses it; a test
copies the project (`copy_easyvqa`) and never writes into the shared folder."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EASYVQA_IMAGES = 6


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """`build(folder)` run by one process of the session (xdist workers share the folder)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the session's, above each worker's
    folder = root / f"shared-{name}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    """The quickstart's tiny model (`make_tiny_qwen.py`'s default init std, 0.2: LoRA learns on it)."""
    pytest.importorskip("transformers")
    from featurekit_qwen.tiny import build_tiny_qwen
    return built_once(tmp_path_factory, "tiny-qwen", lambda folder: build_tiny_qwen(folder, initializer_range=0.2))


@pytest.fixture(scope="session")
def tiny_qwen_real_init(tmp_path_factory) -> Path:
    """The tiny model with the real config's init std (0.02): logits nearly flat."""
    pytest.importorskip("transformers")
    from featurekit_qwen.tiny import build_tiny_qwen
    return built_once(tmp_path_factory, "tiny-qwen-real-init", build_tiny_qwen)


@pytest.fixture(scope="session")
def easyvqa(tmp_path_factory, tiny_qwen) -> Path:
    """A folder holding raw-easyvqa (6 images), models/tiny-qwen (a link to `tiny_qwen`) and
    data/, where `specs/easyvqa-qwen.yaml` (as easyvqa-qwen.yaml) is applied: what the
    README's commands make before `featurekit train`, on a smaller sample."""
    pytest.importorskip("easy_vqa")
    pytest.importorskip("peft")

    def build(folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "models").mkdir()
        (folder / "models" / "tiny-qwen").symlink_to(tiny_qwen, target_is_directory=True)
        shutil.copy(ROOT / "specs" / "easyvqa-qwen.yaml", folder)
        subprocess.run([sys.executable, str(ROOT / "examples" / "make_easyvqa.py"), "raw-easyvqa",
                        "--images", str(EASYVQA_IMAGES)], cwd=folder, check=True, capture_output=True)
        import featurekit
        with _one_thread():
            result = featurekit.apply(folder / "easyvqa-qwen.yaml", reporter=None)
        assert result.ok, result

    return built_once(tmp_path_factory, "easyvqa", build)


@pytest.fixture(scope="module")
def copy_easyvqa(easyvqa, tmp_path_factory) -> Callable[[str], Path]:
    """A module's own copy of `easyvqa` (the model stays a link to the shared one)."""
    def copy(name: str) -> Path:
        return Path(shutil.copytree(easyvqa, tmp_path_factory.mktemp(name) / "project", symlinks=True))
    return copy


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread in this process, like the training processes the tests start
    (OMP_NUM_THREADS=1): the same sums in the same order, and no two threads a process
    contending for the cores xdist's workers already share (steps 5-10x slower when they do)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def one_thread() -> Callable[[], contextlib.AbstractContextManager]:
    """`with one_thread(): ...` (a fixture: test modules import nothing from conftest)."""
    return _one_thread
