"""A contract kit for plugin authors, after scikit-learn's check_estimator.

    from featurekit.testing import check_extractor
    def test_contract():
        check_extractor(MyExtractor, batch={"text": ["a", "bb", None]})

It checks what featurekit relies on: a name and version, strict Params, declared output
types that match what ``__call__`` returns, one value per row, nulls handled (a value, a
row error or an exception, never a crash of the process), the same output on a second call
and for a row computed alone as within its batch. The extractor is called as the engine
calls it: a row that raises fails (its value is NULL in what this returns) and costs the
other rows nothing; a sample batch where every row fails is an error. An extractor returning
`featurekit.RowErrors` must give one error entry per row, and a row it reports as failed in
a batch must fail alone too (and a row that succeeds in a batch must succeed alone).
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from .engine.compute import FeatureError, FeatureTask, compute_rows
from .plugins.extractor import Extractor

SAMPLES = {
    "string": ["what is written on the sign?", "", "how many?"],
    "integer": [0, 7, 42],
    "floating": [0.0, 1.5, -2.25],
    "list<string>": [["stop", "ahead"], [], ["a"]],
    "list": [["stop", "ahead"], [], ["a"]],
}


def _sample(expected: Any, n: int = 3) -> pa.Array:
    if isinstance(expected, str):
        key = expected if expected in SAMPLES else None
        if key is None:
            raise ValueError(f"give check_extractor a batch: no sample values for input type {expected!r}")
        return pa.array(SAMPLES[key][:n])
    if pa.types.is_string(expected) or pa.types.is_large_string(expected):
        return pa.array(SAMPLES["string"][:n], expected)
    if pa.types.is_integer(expected):
        return pa.array(SAMPLES["integer"][:n], expected)
    if pa.types.is_floating(expected):
        return pa.array(SAMPLES["floating"][:n], expected)
    if pa.types.is_list(expected) and pa.types.is_string(expected.value_type):
        return pa.array(SAMPLES["list<string>"][:n], expected)
    raise ValueError(f"give check_extractor a batch: no sample values for input type {expected}")


def _task(ext: Extractor) -> FeatureTask:
    outputs = {o: (o or "value") for o in ext.outputs()}
    types = {outputs[o]: t for o, t in ext.outputs().items()}
    return FeatureTask(feature="check", extractor_cls=type(ext), params=ext.params,
                       inputs={k: k for k in ext.input_types()},
                       outputs=outputs, output_types=types, state_column="_fk_check", fingerprint="check",
                       upstream_states={}, field_ids={}, batch_size=1024, key=None)


def _batch(ext: Extractor, batch: Mapping[str, Any] | pa.RecordBatch | None) -> pa.RecordBatch:
    inputs = ext.input_types()
    if isinstance(batch, pa.RecordBatch):
        return batch
    if batch is None:
        return pa.record_batch([_sample(t) for t in inputs.values()], names=list(inputs))
    arrays = []
    for name in inputs:
        if name not in batch:
            raise AssertionError(f"the sample batch lacks input {name!r}")
        value = batch[name]
        arrays.append(value if isinstance(value, pa.Array) else pa.array(value))
    return pa.record_batch(arrays, names=list(inputs))


def check_extractor(cls: type[Extractor], params: BaseModel | Mapping[str, Any] | None = None,
                    batch: Mapping[str, Any] | pa.RecordBatch | None = None) -> dict[str, pa.Array]:
    """Assert that `cls` keeps the Extractor contract; returns its output on `batch`."""
    assert isinstance(cls, type) and issubclass(cls, Extractor), f"{cls!r} must subclass featurekit.Extractor"
    builtin = cls.__module__.startswith("featurekit.builtin.")  # bare names (`sql`) are featurekit's own
    assert isinstance(cls.name, str) and ("." in cls.name or builtin), \
        f"{cls.__name__}.name must be '<plugin>.<thing>', not {cls.name!r}"
    assert isinstance(cls.version, str) and cls.version, f"{cls.name}: version must be a non-empty string"
    try:
        cls.Params.model_validate({"__surely_not_a_param__": 1})
    except ValidationError:
        pass
    else:
        raise AssertionError(f"{cls.name}: Params must reject unknown keys (model_config extra='forbid')")
    if params is not None and not isinstance(params, BaseModel):
        params = cls.Params.model_validate(params)
    ext = cls(params)
    assert ext.params is not None, f"{cls.name}: cls() must work with default params"
    ext.setup()
    outputs = ext.outputs()
    assert outputs and all(isinstance(t, pa.DataType) for t in outputs.values()), \
        f"{cls.name}: output_type()/output_types() must return Arrow types"
    task = _task(ext)
    data = _batch(ext, batch)

    def call(rows):  # as the engine calls it: a row that raises fails, alone, and the others keep their values
        try:
            return compute_rows(ext, task, rows)
        except FeatureError as exc:
            raise AssertionError(f"{cls.name}: " + str(exc).replace("feature 'check': ", "")) from None

    first, first_errors = call(data)
    if data.num_rows and first_errors is not None and all(first_errors):
        raise AssertionError(f"{cls.name}: every row of the sample batch failed (row 0: {first_errors[0]}); "
                             "give a batch with rows it can compute")
    second, second_errors = call(data)
    for col in first:
        assert first[col].equals(second[col]), f"{cls.name}: output {col!r} differs between two identical calls"
    assert [e is None for e in first_errors or []] == [e is None for e in second_errors or []], \
        f"{cls.name}: rows reported as failed differ between two identical calls"
    for i in range(data.num_rows):
        failed = first_errors is not None and first_errors[i] is not None
        alone, alone_errors = call(data.slice(i, 1))
        alone_failed = alone_errors is not None and alone_errors[0] is not None
        assert failed == alone_failed, \
            f"{cls.name}: row {i} {'failed' if failed else 'succeeded'} in its batch but not alone"
        for col in first:
            assert alone[col].to_pylist() == first[col].slice(i, 1).to_pylist(), \
                f"{cls.name}: row {i} computed alone differs from the same row in a batch (output {col!r})"
    nulls = pa.record_batch([pa.nulls(2, f.type) for f in data.schema], schema=data.schema)
    try:  # raising on a null row is allowed: featurekit records it as a row error
        out, _ = compute_rows(ext, task, nulls)
    except FeatureError as exc:
        raise AssertionError(f"{cls.name}: on null inputs: " + str(exc).replace("feature 'check': ", "")) from None
    assert all(len(v) == 2 for v in out.values()), f"{cls.name}: null inputs must still give one value a row"
    return first


class TestProject:
    """A featurekit project in a folder, built from Python values, for plugin authors' tests.

        def test_my_feature(featurekit_project):
            featurekit_project.plugins = [my_plugin_module]
            featurekit_project.write({"n": {"extractor": "acme.vowels", "inputs": {"text": "q"}}},
                                     rows=[{"id": 1, "q": "banana"}])
            result = featurekit_project.apply()
            assert featurekit_project.table().column("n").to_pylist() == [3]

    Only the built-ins and ``plugins`` are registered: the test does not depend on what else
    happens to be installed. ``rows`` holding bytes values are written as Parquet (binary
    columns), others as JSON lines. ``files`` (name -> bytes) are written beside the spec, and
    ``file_columns`` ({binary column: column of names}) loads them into the table.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, root, plugins=()):
        from pathlib import Path
        self.root = Path(root)
        self.plugins = list(plugins)

    @property
    def spec_path(self):
        return self.root / "spec.yaml"

    def write(self, features: dict, rows: list[dict], *, key: str = "id", files: Mapping[str, bytes] | None = None,
              file_columns: Mapping[str, str] | None = None, slices: dict | None = None, name: str = "test"):
        import yaml
        self.root.mkdir(parents=True, exist_ok=True)
        for rel, blob in (files or {}).items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
        source = _write_rows(self.root, rows)
        spec = {"featurekit": 1, "name": name, "table": {"db": "data", "name": name},
                "source": {"format": source.suffix[1:], "path": source.name, "key": key,
                           **({"files": dict(file_columns)} if file_columns else {})},
                "features": features, **({"slices": slices} if slices else {})}
        self.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        self.key = key
        return self.spec_path

    def registry(self):
        from .plugins.discovery import make_plugin_manager
        from .plugins.registry import Registry
        return Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False, plugins=self.plugins))

    def project(self):
        from .api import load_spec
        return load_spec(self.spec_path, registry=self.registry())

    def apply(self, **kwargs):
        from .api import apply
        return apply(self.project(), **kwargs)

    def plan(self, **kwargs):
        from .api import plan
        return plan(self.project(), **kwargs)

    def table(self) -> pa.Table:
        from .table.handle import Table
        return Table.of(self.project()).require().to_table().sort_by(self.key)


def _write_rows(root, rows: list[dict]):
    """rows.jsonl, or rows.parquet when a value is bytes (JSON has no bytes); the path written."""
    import json
    for stale in ("rows.jsonl", "rows.parquet"):
        (root / stale).unlink(missing_ok=True)
    if any(isinstance(v, (bytes, bytearray)) for r in rows for v in r.values()):
        import pyarrow.parquet as pq
        path = root / "rows.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    path = root / "rows.jsonl"
    try:
        text = "".join(json.dumps(r) + "\n" for r in rows)
    except TypeError as exc:
        raise TypeError(f"write(rows=...): {exc}; give values JSON can hold, or bytes") from None
    path.write_text(text)
    return path


@contextlib.contextmanager
def moto_server(bucket: str, key_id: str = "testing", secret: str = "testing"):
    """An S3-compatible server (moto's) on loopback with `bucket` made, for tests of tables on
    object stores: yields (endpoint, a boto3 client). It runs in a process of its own: Lance holds
    the GIL in some calls that wait on S3 (`LanceFragment.count_rows` with a filter), so a server
    thread in the test's process could then never answer (a deadlock). Needs moto and boto3."""
    import socket
    import subprocess
    import sys
    import time

    import boto3
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                              region_name="us-east-1")
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception:  # noqa: BLE001  (not listening yet)
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.2)
        yield endpoint, client
    finally:
        server.terminate()
        server.wait()
