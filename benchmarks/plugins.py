"""First-party plugins through featurekit vs the raw libraries, measured in one run.

    python benchmarks/plugins.py [--images 4000,12000] [--vision-images 64]

1. image.dhash through `featurekit apply` (1 worker, then 2) vs a plain imagehash loop over
   the same PNG blobs (targets: ratio >= 0.9 per core, >= 1.7x with 2 workers)
2. qwen.vision_tower through `featurekit apply` vs what a user writes with transformers alone:
   the official Qwen2VLImageProcessor and the full model's get_image_features on the same images
   and batches, values checked equal (target: ratio >= 0.9). Here: the tiny random model on CPU; on a GPU machine pass
   --model Qwen/Qwen2.5-VL-3B-Instruct.
3. content-addressed compute: each image in 2 and in 10 rows, image.dhash and
   qwen.vision_tower: extractor calls equal the distinct images, speed-up over computing
   every row (expect ~2x and ~10x)
4. row errors: 1% undecodable blobs on 20,000 rows, image.dhash (reports them with
   featurekit.RowErrors): rows passed to the extractor over rows computed (target <= 1.05x),
   beside a variant that raises (the halving fallback)
Ratios are throughput ratios: featurekit rows/s divided by raw rows/s.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
os.environ["FEATUREKIT_PLUGINS"] = "featurekit_image,featurekit_qwen"

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import featurekit  # noqa: E402


def make_images(n: int, size=(256, 192)) -> list[bytes]:
    from PIL import Image, ImageDraw
    out = []
    for i in range(n):
        img = Image.new("RGB", size, (240, 240, 235))
        ImageDraw.Draw(img).text((10 + i % 50, 80), f"sign {i} exit", fill=(i % 200, 20, 20))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def small_images(n: int, side: int = 32) -> list[bytes]:
    """`n` distinct random RGB images (PNG)."""
    import random

    from PIL import Image
    rng = random.Random(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def table_with(root: Path, blobs: list[bytes], fragment_rows: int, features: str) -> Path:
    (root / "raw").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": pa.array(range(len(blobs)), pa.int64()),
                             "image": pa.array(blobs, pa.large_binary())}), root / "raw" / "images.parquet")
    spec = root / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        featurekit: 1
        name: bench
        table: {{db: data, name: t, fragment_rows: {fragment_rows}}}
        source: {{format: parquet, path: raw/images.parquet, key: id}}
        features: {{}}
        """))
    featurekit.apply(spec)  # ingest outside the timing
    spec.write_text(spec.read_text().replace("features: {}\n", "features:\n" + textwrap.indent(features, "  ")))
    return spec


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_dhash(root: Path, n: int) -> None:
    import imagehash
    from PIL import Image
    blobs = make_images(n)

    def raw():
        return [int(str(imagehash.dhash(Image.open(io.BytesIO(b)))), 16) for b in blobs]

    expected, t_raw = timed(raw)
    times = {}
    for workers in (1, 2):
        spec = table_with(root / f"w{workers}", blobs, 256,
                          f"dhash: {{tier: 2, extractor: image.dhash, inputs: {{image: image}}, "
                          f"resources: {{workers: {workers}}}}}\n")
        result, times[workers] = timed(lambda: featurekit.apply(spec))  # noqa: B023 (called at once)
        assert result.run.features["dhash"].computed == n
        import lance
        got = lance.dataset(str(spec.parent / "data" / "t.lance")).to_table().sort_by("id").column("dhash")
        assert got.to_pylist() == expected
    print(f"1. image.dhash over {n:,} PNG images (256x192):")
    print(f"   imagehash loop {t_raw:.2f}s ({n / t_raw:,.0f}/s)   featurekit 1 worker {times[1]:.2f}s "
          f"(ratio {t_raw / times[1]:.2f})   2 workers {times[2]:.2f}s (ratio {t_raw / times[2]:.2f}, "
          f"{times[1] / times[2]:.2f}x over 1 worker)")


# Qwen2.5-VL-3B-Instruct's preprocessor_config.json (a folder without one, like the tiny model's, uses it)
QWEN25_VL_PREPROCESSOR = dict(image_mean=[0.48145466, 0.4578275, 0.40821073],
                              image_std=[0.26862954, 0.26130258, 0.27577711], min_pixels=3136,
                              max_pixels=12845056, patch_size=14, merge_size=2, temporal_patch_size=2)


def hf_image_features(model: str, px: int, batch: int):
    """What a user would write without featurekit: the official image processor on the images
    resized to the square, then the full model's `get_image_features` (transformers), fp16 out."""
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    net = Qwen2_5_VLForConditionalGeneration.from_pretrained(model, dtype=dtype).to("cuda" if cuda else "cpu").eval()
    try:
        processor = AutoImageProcessor.from_pretrained(model)
    except OSError:
        processor = Qwen2VLImageProcessorPil(**QWEN25_VL_PREPROCESSOR)  # the official processor, PIL backend

    def run(blobs):
        outs = []
        for i in range(0, len(blobs), batch):
            images = [Image.open(io.BytesIO(b)).convert("RGB").resize((px, px), Image.Resampling.BICUBIC)
                      for b in blobs[i:i + batch]]
            inputs = processor(images=images, return_tensors="pt")
            with torch.no_grad():
                feats = net.get_image_features(inputs["pixel_values"].to(net.device, dtype),
                                               inputs["image_grid_thw"].to(net.device)).pooler_output
            per_image = feats if torch.is_tensor(feats) else torch.stack(list(feats))  # a tuple: one per image
            outs.append(per_image.to(torch.float16).reshape(len(images), -1).cpu())
        return torch.cat(outs)
    return run


def bench_vision(root: Path, n: int, model: str | None, batch: int, px: int = 560) -> None:
    import torch
    if model is None:
        from featurekit_qwen.tiny import build_tiny_qwen
        model = str(build_tiny_qwen(root / "tiny-qwen"))
    blobs = make_images(n)

    def raw():
        run = hf_image_features(model, px, batch)  # both sides pay for loading the model once
        return run(blobs)

    raw()  # warm-up (first-call allocations)
    expected, t_raw = timed(raw)
    spec = table_with(root / "vision", blobs, n,
                      f"hiddens: {{tier: 3, extractor: qwen.vision_tower, inputs: {{image: image}}, "
                      f"params: {{model: '{model}', image_px: {px}}}, resources: {{batch_size: {batch}}}}}\n")
    result, t_fk = timed(lambda: featurekit.apply(spec))
    assert result.run.features["hiddens"].computed == n
    import lance
    col = lance.dataset(str(spec.parent / "data" / "t.lance")).to_table().sort_by("id").column("hiddens")
    got = torch.from_numpy(col.combine_chunks().values.to_numpy().reshape(n, -1).copy())
    if torch.cuda.is_available():  # bf16 kernels may differ by batch composition
        torch.testing.assert_close(got.float(), expected.float(), rtol=1e-2, atol=1e-2)
    else:
        assert torch.equal(got, expected), "featurekit's hiddens differ from the HF pipeline's"
    print(f"2. qwen.vision_tower over {n} images of {px} px, batch {batch}, model {Path(model).name}, "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}:")
    print(f"   HF pipeline (Qwen2VLImageProcessor(Pil) + full model get_image_features) {t_raw:.2f}s ({n / t_raw:.1f}/s)"
          f"   featurekit apply {t_fk:.2f}s ({n / t_fk:.1f}/s)   throughput ratio {t_raw / t_fk:.2f}")
    print("   (both load the model inside the timing; featurekit loads the tower's weights only, "
          "and its figure includes writing the column to Lance)")


def _registry(*classes):
    import types

    import featurekit_image
    import featurekit_qwen
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry
    mod = types.ModuleType("bench_variants")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: list(classes))
    return Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False,
                                                            plugins=[featurekit_image, featurekit_qwen, mod]))


def every_row(cls, name: str):
    """`cls` computing every row: no sharing of values by input (the baseline)."""
    return type(cls.__name__ + "EveryRow", (cls,), {"name": name, "reuse_values": False})


def bench_duplicates(root: Path, distinct: int, model: str | None, batch: int) -> None:
    import lance

    from featurekit_image import DHash
    from featurekit_qwen import VisionTower
    if model is None:
        from featurekit_qwen.tiny import build_tiny_qwen
        model = str(build_tiny_qwen(root / "tiny-qwen"))
    reg = _registry(every_row(DHash, "bench.dhash_every_row"), every_row(VisionTower, "bench.tower_every_row"))
    print("3. content-addressed compute (PNG images, 256x192), 1 worker:")
    for feature, (shared, baseline), extra, n in (
            ("dhash", ("image.dhash", "bench.dhash_every_row"), "resources: {workers: 1}", distinct * 10),
            ("tower", ("qwen.vision_tower", "bench.tower_every_row"),
             f"params: {{model: '{model}', image_px: 224}}, resources: {{batch_size: {batch}}}", distinct)):
        images = make_images(n)
        for copies in (2, 10):
            blobs = [images[i % n] for i in range(n * copies)]
            times, runs, cols = {}, {}, {}
            for name in (shared, baseline):
                spec = table_with(root / f"{feature}{copies}{name}", blobs, 256, "")
                spec.write_text(spec.read_text().replace("features:\n", "features:\n  f: {tier: 2, extractor: "
                                                         f"{name}, inputs: {{image: image}}, {extra}}}\n"))
                result, times[name] = timed(lambda: featurekit.apply(spec, registry=reg))  # noqa: B023
                runs[name] = result.run.features["f"]
                cols[name] = lance.dataset(str(spec.parent / "data" / "t.lance")).to_table().sort_by("id").column("f")
            a, b = runs[shared], runs[baseline]
            assert a.passed == a.distinct == n and b.passed == len(blobs) and cols[shared].equals(cols[baseline])
            print(f"   {shared:<17} each of {n:,} images in {copies:>2} rows ({len(blobs):,}): passed {a.passed:,} rows "
                  f"(= distinct images) {times[shared]:.2f}s; every row ({b.passed:,} passed) {times[baseline]:.2f}s; "
                  f"speed-up {times[baseline] / times[shared]:.2f}x")


def bench_row_errors(root: Path, rows: int = 20_000) -> None:
    from featurekit_image import DHash

    class RaisingDHash(DHash):
        name = "bench.dhash_raising"

        def __call__(self, batch):  # the pre-RowErrors form: the first bad blob raises
            from featurekit_image import _open
            return pa.array([int(str(self._hash(_open(b))), 16) for b in batch.column("image").to_pylist()],
                            pa.uint64())

    reg = _registry(RaisingDHash)
    # distinct images (no sharing), small to keep the run short; every 100th blob undecodable
    good = small_images(rows)
    blobs = [b"not an image %d" % i if i % 100 == 37 else good[i] for i in range(rows)]
    figures = {}
    for name in ("image.dhash", "bench.dhash_raising"):
        spec = table_with(root / name, blobs, 2048, "")
        spec.write_text(spec.read_text().replace("features:\n", "features:\n  f: {tier: 2, extractor: "
                                                 f"{name}, inputs: {{image: image}}, resources: {{workers: 1}}, "
                                                 "on_error: {max_failure_rate: 0.5}}\n"))
        result, t = timed(lambda: featurekit.apply(spec, registry=reg))  # noqa: B023
        run = result.run.features["f"]
        assert (run.computed, run.failed) == (rows - rows // 100, rows // 100)
        figures[name] = (run.passed, run.passed / rows, t)
    a, b = figures["image.dhash"], figures["bench.dhash_raising"]
    print(f"4. row errors, image.dhash, {rows // 100} undecodable of {rows:,} blobs (1%), batch 256: rows passed to "
          f"the extractor / rows computed: RowErrors {a[0]:,} ({a[1]:.3f}x, {a[2]:.2f}s); raising, halving "
          f"fallback {b[0]:,} ({b[1]:.2f}x, {b[2]:.2f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="4000,12000", help="comma-separated sizes for the dhash runs")
    parser.add_argument("--vision-images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--model", default=None, help="hub id or folder (default: a tiny random model)")
    parser.add_argument("--distinct", type=int, default=200,
                        help="distinct images in the vision-tower duplicates runs (x10 for dhash)")
    parser.add_argument("--only", choices=["vision", "duplicates", "errors"], help="run one part alone")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    try:
        if args.only == "vision":
            bench_vision(root / "vision", args.vision_images, args.model, args.batch)
            return
        if args.only != "errors":
            if args.only is None:
                for n in map(int, args.images.split(",")):
                    bench_dhash(root / f"dhash{n}", n)
                bench_vision(root / "vision", args.vision_images, args.model, args.batch)
            bench_duplicates(root / "duplicates", args.distinct, args.model, args.batch)
        if args.only != "duplicates":
            bench_row_errors(root / "errors")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
