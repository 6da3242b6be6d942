"""Fixtures for the reliability suite: projects in tmp_path, the fault plugin registered
inline (or through FEATUREKIT_PLUGINS in subprocesses), and the suite's one-line tally."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import featurekit

from . import faults

TESTS = Path(__file__).resolve().parent.parent
TALLY = {"kills": 0, "bad_inputs": 0, "rows_lost": 0}


def pytest_sessionfinish(session):
    """Under pytest-xdist a worker hands its tally to the controller, which prints the sum
    (the repository's conftest.py)."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["reliability_tally"] = json.dumps(TALLY)


def pytest_terminal_summary(terminalreporter):
    if any(TALLY.values()):
        terminalreporter.write_line(f"reliability: {TALLY['kills']} kill points survived, {TALLY['bad_inputs']} bad "
                                    f"inputs tried, rows lost: {TALLY['rows_lost']}")


def registry():
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry
    return Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False, plugins=[faults]))


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env.update(FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD="1", FEATUREKIT_PLUGINS="reliability.faults",
               LANCE_LOG="error", PYTHONUNBUFFERED="1")
    return env


def cli_in_process(cwd: Path, args) -> subprocess.CompletedProcess:
    """`python -m featurekit ARGS` in this process: the subprocess's environment, cwd and
    exit code (SystemExit's), its stdout and stderr captured, a traceback for what escapes."""
    import contextlib
    import io
    import traceback

    from featurekit.cli import main
    env = {k: v for k, v in subprocess_env().items() if k.startswith(("FEATUREKIT_", "LANCE_LOG"))}
    saved, here = {k: os.environ.get(k) for k in env}, os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # noqa: BLE001  (what Python would print, where the test looks for it)
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(here)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(["featurekit", *args], code, out.getvalue(), err.getvalue())


class Proj:
    """A project: rows.jsonl (or other files) beside spec.yaml, table data/t.lance."""

    def __init__(self, root: Path):
        self.root = root
        self.spec_data: dict = {}

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def uri(self) -> str:
        return str(self.root / "data" / "t.lance")

    def write(self, features: dict, rows: list[dict] | None = None, *, source: dict | None = None,
              table: dict | None = None, engine: dict | None = None) -> Path:
        if rows is not None:
            self.write_rows(rows)
        self.spec_data = {"featurekit": 1, "name": "rel", "table": {"db": "data", "name": "t", **(table or {})},
                          "source": {"format": "jsonl", "path": "rows.jsonl", "key": "id", **(source or {})},
                          "features": features}
        if engine:
            self.spec_data["engine"] = engine
        self.spec.write_text(yaml.safe_dump(self.spec_data, sort_keys=False))
        return self.spec

    def write_rows(self, rows: list[dict], name: str = "rows.jsonl") -> None:
        (self.root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    def apply(self, **kwargs):
        return featurekit.apply(self.spec, registry=registry(), **kwargs)

    def plan(self, **kwargs):
        return featurekit.plan(self.spec, registry=registry(), **kwargs)

    def dataset(self):
        import lance
        return lance.dataset(self.uri)

    def version(self) -> int | None:
        return self.dataset().version if os.path.isdir(self.uri) else None

    def rows(self, *columns: str) -> list[dict]:
        table = self.dataset().to_table(columns=list(columns) or None)
        table.validate(full=True)
        return table.sort_by("id").to_pylist()

    def data_files(self) -> dict[int, list[str]]:
        return {f.fragment_id: sorted(d.path for d in f.data_files()) for f in self.dataset().get_fragments()}

    def cli(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """`featurekit ARGS` from the project folder, as a user runs it. In this process (a new
        Python costs a second or more a call on 2 cores), unless `timeout` is given: then in a
        process of its own, killed past it. Either way the exit code is the CLI's, and an
        uncaught exception lands in stderr as a traceback, as Python prints it."""
        if timeout is not None:
            return subprocess.run([sys.executable, "-m", "featurekit", *args], cwd=self.root, env=subprocess_env(),
                                  capture_output=True, text=True, timeout=timeout)
        return cli_in_process(self.root, args)

    def start(self, *args: str) -> subprocess.Popen:
        """An apply in the background. Its output goes to files, not pipes: a leftover
        worker holding a pipe open must not make reading it hang."""
        self.runs = getattr(self, "runs", 0) + 1
        out, err = (open(self.root / f"run{self.runs}.{n}", "w") for n in ("out", "err"))
        with out, err:
            proc = subprocess.Popen([sys.executable, "-m", "featurekit", *args], cwd=self.root, env=subprocess_env(),
                                    stdout=out, stderr=err, text=True)
        proc.err_path = self.root / f"run{self.runs}.err"
        return proc


def stderr_of(proc: subprocess.Popen) -> str:
    return proc.err_path.read_text()


@pytest.fixture
def proj(tmp_path) -> Proj:
    return Proj(tmp_path)


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate, seconds: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, seconds: float = 20) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"apply did not stop within {seconds}s of {signal.Signals(sig).name}") from None
