"""A local function extractor (`plugins: [features.py]`) against the same extractor as a class
of an installed plugin, measured in one run. Prints figures and ratios.

    python benchmarks/local_extractors.py [--rows 200000]

1. load: `load_spec` of a spec naming a plugin file, first in a fresh process (the file run
   and its code digested) and again (cached by content), against the same spec using a
   built-in extractor (target: the file costs under 50 ms the first time)
2. pickle: bytes of the (class, params) a worker receives with each piece, local (the file's
   source travels with it) vs a class by reference, and the time to rebuild it in a fresh
   interpreter
3. apply: the vowel count over N short strings as a local function vs the same code as an
   `Extractor` class (target: within 1.1x)
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import yaml

ROOT = Path(__file__).resolve().parent.parent
FEATURES_PY = textwrap.dedent('''\
    import pyarrow as pa

    import featurekit


    @featurekit.extractor(inputs={"text": "string"}, output=pa.int32(), reuse_values=False)
    def vowels(text, *, letters: str = "aeiou"):
        return pa.array([sum(c in letters for c in (t or "")) for t in text.to_pylist()], pa.int32())
''')


def vowels_class():
    import featurekit

    class Vowels(featurekit.Extractor):
        name = "bench.vowels"
        inputs = {"text": "string"}
        reuse_values = False

        class Params(featurekit.Extractor.Params):
            letters: str = "aeiou"

        def output_type(self):
            return pa.int32()

        def __call__(self, batch):
            letters = self.params.letters
            return pa.array([sum(c in letters for c in (t or "")) for t in batch.column("text").to_pylist()], pa.int32())
    return Vowels


def write(root: Path, rows: int, extractor: str, plugins: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "features.py").write_text(FEATURES_PY)
    with open(root / "rows.jsonl", "w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"id": i, "q": f"question {i} about the colour of things"}) + "\n")
    spec = {"featurekit": 1, "name": "bench", **({"plugins": ["features.py"]} if plugins else {}),
            "table": {"db": "data", "name": "t", "fragment_rows": 50_000},
            "source": {"format": "jsonl", "path": "rows.jsonl", "key": "id"},
            "features": {"v": {"extractor": extractor, "inputs": {"text": "q"}}}}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root / "spec.yaml"


def fresh_load_ms(spec: Path) -> tuple[float, float]:
    code = (f"import time, featurekit; t = time.perf_counter(); featurekit.load_spec({str(spec)!r}); "
            f"t1 = time.perf_counter(); featurekit.load_spec({str(spec)!r}); t2 = time.perf_counter(); "
            "print((t1 - t) * 1000, (t2 - t1) * 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    os.environ["FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import featurekit
    from featurekit.plugins.registry import default_registry

    tmp = Path(tempfile.mkdtemp(prefix="fk-local-bench-"))
    local = write(tmp / "local", args.rows, "features.vowels", True)
    builtin = write(tmp / "builtin", 10, "text.length", False)

    print("1. load_spec (fresh process: first, again)")
    first, again = fresh_load_ms(local)
    base_first, base_again = fresh_load_ms(builtin)
    print(f"   with a plugin file: {first:.1f} ms, {again:.1f} ms; built-in only: {base_first:.1f} ms, "
          f"{base_again:.1f} ms; the file costs {first - base_first:+.1f} ms first, {again - base_again:+.1f} ms again")

    print("2. what a worker receives with each piece")
    project = featurekit.load_spec(local)
    f = project.features["v"]
    blob = pickle.dumps((f.extractor_cls, f.params))
    by_ref = pickle.dumps((featurekit.Extractor, None))
    script = ("import pickle, sys, time; b = sys.stdin.buffer.read(); t = time.perf_counter(); pickle.loads(b); "
              "t1 = time.perf_counter(); pickle.loads(b); print((t1 - t) * 1000, (time.perf_counter() - t1) * 1000)")
    ms = subprocess.run([sys.executable, "-c", script], input=blob, capture_output=True, check=True).stdout.split()
    print(f"   local class + params: {len(blob)} bytes (class by reference: {len(by_ref)} bytes); rebuilt in a "
          f"fresh interpreter in {float(ms[0]):.1f} ms, then {float(ms[1]) * 1000:.0f} us (cached)")

    print(f"3. apply over {args.rows:,} rows (after a warm-up apply: imports and Lance's first calls)")
    assert featurekit.apply(write(tmp / "warm", 1000, "text.length", False)).ok
    t = time.perf_counter()
    assert featurekit.apply(local).ok
    t_local = time.perf_counter() - t
    cls_spec = write(tmp / "class", args.rows, "bench.vowels", False)
    from featurekit.plugins.discovery import PluginOrigin
    from featurekit.plugins.local import LocalPlugin  # any object with the hook is a plugin
    registry = default_registry().with_plugins([("bench", LocalPlugin([vowels_class()]),
                                                 PluginOrigin("bench", None, None))])
    t = time.perf_counter()
    assert featurekit.apply(featurekit.load_spec(cls_spec, registry=registry)).ok
    t_class = time.perf_counter() - t
    print(f"   local function {t_local:.2f} s, Extractor class {t_class:.2f} s: ratio {t_local / t_class:.2f}x")


if __name__ == "__main__":
    main()
