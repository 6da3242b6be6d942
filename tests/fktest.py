"""What the core's tests share: projects built in tmp_path, plugins registered inline, never
the ones that happen to be installed (one test in test_entrypoints checks real entry points),
an S3-compatible server. Tests import helpers from here (`from fktest import registry_with`),
never `from fktest import`: several conftest.py files in the repository (the root's, a
plugin's) are each imported under the one name `conftest`, so which one that name holds
depends on what pytest collected last. tests/conftest.py registers the fixtures."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("LANCE_LOG", "error")

from featurekit.cli import main  # noqa: E402

QUESTIONS = [
    ("What is written on the sign?", "stop", ["stop", "ahead"]),
    ("How many bottles are on the shelf?", "3", []),
    ("Is this a coca cola bottle?", "yes", ["coca", "cola", "classic", "since", "1886", "the", "real", "thing"]),
    ("Which brand is the laptop?", "dell", ["dell", "inspiron"]),
    ("Who wrote the book?", "tolkien", ["the", "hobbit", "j", "r", "r", "tolkien", "harper", "collins", "1937"]),
    ("what time does the clock show?", "10:10", ["xii", "iii", "vi", "ix"]),
    ("What color is the bus?", "yellow", None),
    ("Where was this photo taken?", "london", ["london", "bridge", "road", "closed", "to", "all", "traffic", "today"]),
]


def color_embed_extractor():
    """`acme.embed`: a question's [2, 4] matrix carrying its colour ('... red' -> one-hot red),
    so a probe can learn the label: the training, branch and object-store tests share it."""
    import pyarrow as pa

    import featurekit

    class Embed(featurekit.Extractor):
        name = "acme.embed"
        inputs = {"text": "string"}

        def output_type(self):
            return pa.list_(pa.float32(), 8)

        def output_metadata(self):
            return {"shape": "[2, 4]"}

        def __call__(self, batch):
            colors = ["red", "green", "blue"]
            return pa.array([[1.0 if k == colors.index(q.split()[-1]) else 0.0 for k in range(4)] * 2
                             for q in batch.column("text").to_pylist()], pa.list_(pa.float32(), 8))

    return Embed


def registry_with(*classes, name: str = "inline_plugin"):
    """A registry with the built-ins plus an inline plugin registering `classes`."""
    import types

    import featurekit
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry

    mod = types.ModuleType(name)
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: list(classes))
    return Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False, plugins=[mod]))


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch):
    monkeypatch.setenv("FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("FEATUREKIT_PLUGINS", raising=False)


def write_rows(path: Path, n: int, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        q, a, ocr = QUESTIONS[i % len(QUESTIONS)]
        rows.append({"question_id": i, "image_id": i // 2, "question": q, "answer": a, "ocr_tokens": ocr})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return rows


BASE_SPEC = """\
featurekit: 1
name: textvqa-test
table:
  db: data
  name: textvqa
source:
  format: jsonl
  path: raw/*.jsonl
  key: question_id
features:
  question_length:
    extractor: text.length
    inputs: {text: question}
  ocr_token_count:
    extractor: text.count
    inputs: {items: ocr_tokens}
  question_type:
    extractor: text.question_type
    inputs: {text: question}
slices:
  text_dense:
    where: "ocr_token_count >= 8"
"""


class Project:
    """A featurekit project in a temporary folder."""

    def __init__(self, root: Path):
        self.root = root

    def write_spec(self, text: str, name: str = "spec.yaml") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text))
        return path

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    def add_rows(self, n: int, start: int = 0, file: str = "raw/train.jsonl") -> list[dict]:
        return write_rows(self.root / file, n, start)

    @property
    def uri(self) -> str:
        return str(self.root / "data" / "textvqa.lance")

    def dataset(self):
        import lance
        return lance.dataset(self.uri)


@pytest.fixture
def project(tmp_path) -> Project:
    p = Project(tmp_path)
    p.add_rows(40)
    p.write_spec(BASE_SPEC)
    return p


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run the CLI in-process from the project folder: (exit code, stdout, stderr)."""

    def run(*args: str, cwd: Path | None = None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


# -- an S3-compatible object store on loopback (moto's server) ------------------------------

class S3:
    """A bucket on a moto server on loopback; `options` are the storage options a spec
    gives (`${...}` resolved from the environment variables the fixture sets)."""

    bucket = "featurekit-test"

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.options = {"aws_endpoint": endpoint, "region": "us-east-1", "allow_http": "true",
                        "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self.spec_options = {"aws_endpoint": endpoint, "region": "us-east-1", "allow_http": True,
                             "aws_access_key_id": "${FK_TEST_S3_KEY_ID}",
                             "aws_secret_access_key": "${FK_TEST_S3_SECRET}"}

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="session")
def _moto_server():
    pytest.importorskip("moto.server")
    from featurekit.testing import moto_server
    with moto_server(S3.bucket) as (endpoint, _):
        yield S3(endpoint)


@pytest.fixture
def s3(_moto_server, monkeypatch):
    monkeypatch.setenv("FK_TEST_S3_KEY_ID", "testing")
    monkeypatch.setenv("FK_TEST_S3_SECRET", "testing")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)  # only the spec's options reach the store
    return _moto_server
