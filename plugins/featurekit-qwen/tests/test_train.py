"""The `qlora` trainer on a tiny random Qwen2.5-VL and a real featurekit table.

The table is built by `featurekit apply` (image + qwen plugins: dhash, qwen.vision_tower,
qwen.sft_tokens) from rendered sign images; the trainer reads it through
`train_harness.LanceTrainRun`, a minimal real TrainRun over pylance. References are
transformers' own `Qwen2_5_VLForConditionalGeneration` fed pixel values, never our code.
"""
import io
import json
import os

import pytest
from PIL import Image, ImageDraw, ImageFont

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")

from train_harness import Interrupted, LanceEvalRun, LanceTrainRun  # noqa: E402

import featurekit_image  # noqa: E402
import featurekit_qwen  # noqa: E402
from featurekit.errors import UsageError  # noqa: E402
from featurekit.testing import TestProject  # noqa: E402
from featurekit_qwen.trainer import QLoraTrainer  # noqa: E402

PX = 112            # 112 px -> grid [1, 8, 8] -> 16 image tokens a row: fast, still a 2D mRoPE grid
MAX_LENGTH = 64
WORDS = ["stop", "exit", "open", "taxi"]
TRAIN_COLUMNS = {"vision": "vision", "input_ids": "input_ids", "attention_mask": "attention_mask",
                 "labels": "labels", "mm_token_type_ids": "mm_token_type_ids"}
EVAL_COLUMNS = {"image": "image", "question": "question", "answer": "answer"}
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(autouse=True, scope="module")
def _few_threads(one_thread):
    with one_thread():  # xdist's workers share the cores: two threads a process wait on each other
        yield


def sign(word: str) -> bytes:
    img = Image.new("RGB", (256, 192), (245, 245, 240))
    ImageDraw.Draw(img).text((16, 70), word, fill=(200, 30, 30), font=ImageFont.load_default(size=28))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny(tiny_qwen):
    # a wider init than the real 0.02 so the tiny model's logits are not flat and LoRA visibly learns
    return tiny_qwen


@pytest.fixture(scope="module")
def table(tiny, tmp_path_factory):
    """8 rows: 4 sign images x (what color is the text? -> red, what is written? -> the word)."""
    project = TestProject(tmp_path_factory.mktemp("project"), plugins=[featurekit_image, featurekit_qwen])
    rows, files = [], {}
    for i, word in enumerate(WORDS):
        files[f"img/{i}.png"] = sign(word)
        rows.append({"id": 2 * i, "question": "what color is the text?", "answer": "red", "path": f"img/{i}.png"})
        rows.append({"id": 2 * i + 1, "question": "what is written on the sign?", "answer": word,
                     "path": f"img/{i}.png"})
    project.write({
        "dhash": {"tier": 2, "extractor": "image.dhash", "inputs": {"image": "image"}},
        "vision": {"tier": 3, "extractor": "qwen.vision_tower", "inputs": {"image": "image"},
                   "params": {"model": str(tiny), "image_px": PX}},
        "sft": {"tier": 3, "extractor": "qwen.sft_tokens", "inputs": {"question": "question", "answer": "answer"},
                "params": {"model": str(tiny), "image_px": PX, "max_length": MAX_LENGTH},
                "outputs": ["input_ids", "attention_mask", "labels", "mm_token_type_ids"]},
    }, rows=rows, files=files, file_columns={"image": "path"})
    result = project.apply()
    assert result.ok and result.run.features["vision"].computed == 8
    return project.project().table_uri


def params(tiny, **kw):
    base = dict(model=str(tiny), quantization="none", image_px=PX, batch_size=2, grad_accum=2, lr=3e-3,
                warmup_steps=2, steps=30, checkpoint_every=10, eval_loss_batches=2,
                lora={"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ALL_PROJECTIONS})
    return QLoraTrainer.Params(**{**base, **kw})


def in_order(table, n):
    """The first n rows in key order: tensors for our loss, raw images for the reference."""
    import lance
    run = LanceTrainRun(table, TRAIN_COLUMNS, None)
    batch = next(iter(run.loader(batch_size=n, shuffle=False)))
    images = lance.dataset(table).to_table(columns=["id", "image"]).sort_by("id").column("image").to_pylist()[:n]
    return run, batch, images


def reference_pixels(images, px=PX):
    """pixel_values the way transformers' Qwen2-VL processor makes them from a px x px image."""
    from transformers import Qwen2VLImageProcessorPil
    processor = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2,
                                         temporal_patch_size=2)
    pil = [Image.open(io.BytesIO(b)).convert("RGB").resize((px, px), Image.Resampling.BICUBIC) for b in images]
    return processor(images=pil, return_tensors="pt")


def full_model(tiny):
    from transformers import Qwen2_5_VLForConditionalGeneration
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tiny), dtype=torch.float32).eval()


def full_model_outputs(model, batch, pixels):
    """transformers' own forward fed pixel values: (loss, logits where the next token is supervised)."""
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"].long(), attention_mask=batch["attention_mask"].long(),
                    mm_token_type_ids=batch["mm_token_type_ids"].long(), labels=batch["labels"].long(),
                    pixel_values=pixels["pixel_values"], image_grid_thw=pixels["image_grid_thw"])
    return float(out.loss), out.logits[:, :-1][batch["labels"][:, 1:] != -100]


def full_model_loss(model, batch, pixels):
    return full_model_outputs(model, batch, pixels)[0]


def cached_loss(model, batch, grid=(1, 8, 8), **overrides):
    from featurekit_qwen import lm
    with torch.no_grad():
        total, n = lm.token_loss(model, lm.to_device({**batch, **overrides}, "cpu"), grid)
    return float(total) / n


# -- the splice and the positions ----------------------------------------------------------

@pytest.fixture(scope="module")
def shipped(tiny_qwen_real_init):
    """The tiny model with the real 0.02 init."""
    return tiny_qwen_real_init


@pytest.mark.parametrize("px, tokens", [(560, 400), (PX, 16)])
def test_loss_from_cached_hiddens_equals_the_full_model_fed_pixels(shipped, px, tokens, monkeypatch):
    """The splice and the 3D positions: our loss from qwen.vision_tower's stored fp16 rows equals
    transformers' full model fed pixel values, for the production size and the tests' size."""
    import numpy as np
    import pyarrow as pa

    from featurekit_qwen import SftTokens, VisionTower, lm
    side = px // 14
    tower = VisionTower(VisionTower.Params(model=str(shipped), image_px=px))
    tower.setup()
    sft = SftTokens(SftTokens.Params(model=str(shipped), image_px=px))
    sft.setup()
    images = [sign("coca cola"), sign("exit")]
    stored = tower(pa.record_batch([pa.array(images, pa.binary())], names=["image"])).values
    hiddens = np.asarray(stored.flatten().to_numpy(zero_copy_only=False)).reshape(2, tokens, 128)
    qa = [("what brand is it?", "coca cola"), ("what word is written on this sign?", "exit")]
    rows = [sft.encode(q, a) for q, a in qa]
    batch = {k: torch.tensor([r[k] for r in rows]) for k in rows[0]}
    batch["vision"] = torch.from_numpy(hiddens.copy())
    assert batch["attention_mask"].sum(1).tolist()[0] != batch["attention_mask"].sum(1).tolist()[1]  # padding
    # the reference side's tokens are not SftTokens': the chat format written out, tokenized whole
    ref = chat_template_batch(shipped, qa, tokens)
    for row, r in zip(rows, ref["rows"]):
        n = sum(row["attention_mask"])
        assert n == len(r["input_ids"]) and row["input_ids"][:n] == r["input_ids"]
        assert row["labels"][:n] == r["labels"] and set(row["labels"][n:]) == {-100}
        assert row["mm_token_type_ids"][:n] == r["mm_token_type_ids"] and sum(r["mm_token_type_ids"]) == tokens
    pixels = reference_pixels(images, px)
    assert pixels["image_grid_thw"].tolist() == [[1, side, side]] * 2
    full = full_model(shipped)
    reference, expected = full_model_outputs(full, ref["batch"], pixels)
    model = lm.load_language_model(str(shipped), "none", torch.float32, torch.device("cpu")).eval()
    grid = (1, side, side)
    assert cached_loss(model, batch, grid) == pytest.approx(reference, abs=1e-4)
    # sharper: the logits at the supervised positions, from the tower's fp32 output, match
    # transformers' to float precision, and a wrong splice order or 1D positions shows
    with torch.no_grad():
        fp32 = full.get_image_features(pixels["pixel_values"], pixels["image_grid_thw"]).pooler_output
    fp32 = (torch.cat(list(fp32)) if isinstance(fp32, (list, tuple)) else fp32).reshape(2, tokens, 128)
    assert logits_gap(model, batch, grid, fp32, expected) < 1e-5
    assert logits_gap(model, batch, grid, fp32.flip(1), expected) > 1e-4
    monkeypatch.setattr(lm, "rope_positions", lambda *args: None)  # transformers then uses 1D positions
    assert logits_gap(model, batch, grid, fp32, expected) > 1e-4


def chat_template_batch(model_dir, qa, image_tokens):
    """Training rows built without featurekit: Qwen2.5-VL's chat format written out by hand
    (default system prompt, the image as its run of <|image_pad|>, the answer closed by
    <|im_end|> and a newline), tokenized whole by the `tokenizers` library from the model's
    tokenizer.json. Labels supervise the answer and its <|im_end|>; the prompt and the final
    newline are ignored. Returns the unpadded rows and a right-padded batch."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    rows = []
    for question, answer in qa:
        prompt = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
                  + "<|image_pad|>" * image_tokens + f"<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n")
        ids = tok.encode(prompt + answer + "<|im_end|>\n", add_special_tokens=False).ids
        n_prompt = len(tok.encode(prompt, add_special_tokens=False).ids)
        labels = [-100] * n_prompt + ids[n_prompt:-1] + [-100]
        assert tok.id_to_token(ids[-2]) == "<|im_end|>" and tok.id_to_token(ids[-1]) == "\u010a"  # "\n"
        image_pad = tok.token_to_id("<|image_pad|>")
        rows.append({"input_ids": ids, "labels": labels, "mm_token_type_ids": [int(t == image_pad) for t in ids]})
    width = max(len(r["input_ids"]) for r in rows)
    pad = tok.token_to_id("<|endoftext|>")

    def padded(key, fill):
        return torch.tensor([r[key] + [fill] * (width - len(r[key])) for r in rows])

    batch = {"input_ids": padded("input_ids", pad), "labels": padded("labels", -100),
             "mm_token_type_ids": padded("mm_token_type_ids", 0),
             "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"]))
                                             for r in rows])}
    return {"rows": rows, "batch": batch}


def logits_gap(model, batch, grid, vision, expected) -> float:
    from featurekit_qwen import lm
    with torch.no_grad():
        logits, _ = lm.supervised_logits(model, lm.to_device({**batch, "vision": vision}, "cpu"), grid)
    return float((logits - expected).abs().max())


# -- what is loaded -------------------------------------------------------------------------

@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_the_vision_tower_is_never_materialized(tiny, quantization, monkeypatch):
    """No tower module is built, and no checkpoint tensor under visual. is ever read."""
    import transformers.modeling_utils as modeling_utils
    from safetensors import safe_open

    from featurekit_qwen import lm
    read = []

    class Recording:
        def __init__(self, *args, **kwargs):
            self.inner = safe_open(*args, **kwargs)

        def keys(self):
            return self.inner.keys()

        def get_tensor(self, key):
            read.append(key)
            return self.inner.get_tensor(key)

        def get_slice(self, key):
            inner = self.inner.get_slice(key)

            class Slice:
                def __getitem__(self, index):
                    read.append(key)
                    return inner[index]

                def __getattr__(self, name):
                    return getattr(inner, name)
            return Slice()

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(modeling_utils, "safe_open", Recording)
    model = lm.load_language_model(str(tiny), quantization, torch.float32, torch.device("cpu"))
    with safe_open(str(tiny / "model.safetensors"), "pt") as fh:
        stored = list(fh.keys())
    visual = {k for k in stored if k.startswith("visual.")}
    assert visual and not visual & set(read)
    assert set(read) == set(stored) - visual
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert not [n for n in names if "visual" in n]
    assert not hasattr(model.model, "visual")
    with pytest.raises(RuntimeError, match="no vision tower"):
        model.model.get_image_features(torch.zeros(1), torch.tensor([[1, 8, 8]]))
    if quantization == "nf4":
        import bitsandbytes as bnb
        assert isinstance(model.model.language_model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)


# -- training -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny, table, tmp_path_factory):
    run = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path_factory.mktemp("runs") / "qlora")
    trainer = QLoraTrainer(params(tiny, steps=24))
    return trainer, run, trainer.train(run)


def test_training_from_cached_columns_lowers_the_loss(trained):
    _, run, out = trained
    losses = run.losses()
    assert sorted(losses) == list(range(1, 25)) and run.total == 24
    first, last = sum(losses[s] for s in range(1, 6)) / 5, sum(losses[s] for s in range(20, 25)) / 5
    assert last < first / 3, (first, last)
    assert out["loss"] == losses[24] and out["eval_loss"] < first / 3
    metrics = run.logged[-1][1]
    assert set(metrics) == {"loss", "lr", "samples_per_s", "peak_mem"}
    assert metrics["samples_per_s"] > 0 and metrics["peak_mem"] > 1e6
    lrs = [m["lr"] for _, m in run.logged]
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(3e-3) and lrs[-1] < lrs[5]   # warmup, then cosine decay
    assert sorted(p.name for p in (run.dir / "checkpoints").iterdir()) == ["step-00000010", "step-00000020"]


def test_the_saved_adapter_reproduces_the_final_eval_loss(tiny, table, trained):
    from featurekit_qwen import lm, loop
    _, run, out = trained
    cpu = torch.device("cpu")
    model = lm.load_language_model(str(tiny), "none", torch.float32, cpu)
    tuned = lm.load_adapter(model, run.dir / "adapter")
    batches = loop.first_batches(run, 2, 2)
    assert loop.mean_loss(tuned, batches, (1, 8, 8), cpu) == pytest.approx(out["eval_loss"], abs=1e-6)
    # the same adapter on transformers' full VLM, fed pixels of the same 4 rows
    full = lm.load_adapter(full_model(tiny), run.dir / "adapter").eval()
    assert not [n for n, _ in full.named_modules() if "visual" in n and "lora" in n]
    _, batch, images = in_order(table, 4)
    assert full_model_loss(full, batch, reference_pixels(images)) == pytest.approx(out["eval_loss"], abs=1e-4)
    with full.disable_adapter():
        assert full_model_loss(full, batch, reference_pixels(images)) > out["eval_loss"] + 5


def test_stopping_and_resuming_gives_the_same_trajectory(tiny, table, tmp_path, monkeypatch):
    p = params(tiny, steps=8, checkpoint_every=3, lora={"r": 8, "alpha": 16, "dropout": 0.3,
                                                         "target_modules": ["q_proj", "v_proj"]})
    straight = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path / "straight")
    expected = QLoraTrainer(p).train(straight)
    stopped = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path / "stopped", stop_after=5)
    with pytest.raises(Interrupted):
        QLoraTrainer(p).train(stopped)
    assert sorted(p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir()) == ["step-00000003"]
    resumed = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path / "stopped", resume=True)
    out = QLoraTrainer(p).train(resumed)
    # 8 rows, 2 x 2 rows a step: 2 steps an epoch, so the checkpoint at 3 sits mid-epoch
    assert sorted(resumed.losses()) == [4, 5, 6, 7, 8]
    assert stopped.losses() == {s: straight.losses()[s] for s in range(1, 6)}
    assert resumed.losses() == {s: straight.losses()[s] for s in range(4, 9)}
    assert out == expected
    # the comparison is sharp: dropout draws from the RNG, and a resume that forgot it differs
    from featurekit_qwen import checkpoint
    monkeypatch.setattr(checkpoint, "set_rng_state", lambda state: None)
    forgetful = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path / "stopped", resume=True)
    QLoraTrainer(p).train(forgetful)   # from the checkpoint at step 6 the resumed run wrote
    assert sorted(forgetful.losses()) == [7, 8] and forgetful.losses()[7] != straight.losses()[7]


def test_resume_refuses_a_checkpoint_from_other_params(tiny, table, tmp_path):
    stopped = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path, stop_after=2)
    with pytest.raises(Interrupted):
        QLoraTrainer(params(tiny, steps=4, checkpoint_every=1)).train(stopped)
    again = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path, resume=True)
    with pytest.raises(UsageError, match=r"different lr \(lr=0\.003\)"):
        QLoraTrainer(params(tiny, steps=4, checkpoint_every=1, lr=1e-3)).train(again)


def test_resume_without_a_checkpoint_is_refused_not_started_over(tiny, table, tmp_path):
    """`train --steps 2` with checkpoint_every 100 leaves no checkpoint: `--resume --steps 3`
    refused (it used to start again from step 1), before the model is loaded."""
    first = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path, steps=2)
    QLoraTrainer(params(tiny, steps=2, checkpoint_every=100)).train(first)
    assert sorted(first.losses()) == [1, 2]
    again = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path, steps=3, resume=True)
    with pytest.raises(UsageError, match=r"has no checkpoint to continue from \(checkpoint_every: 100\); "
                                         r"train without --resume"):
        QLoraTrainer(params(tiny, steps=3, checkpoint_every=100)).train(again)
    assert again.logged == []


@pytest.mark.parametrize("quantization, layer", [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_quantized_training_on_cpu(tiny, table, tmp_path, quantization, layer, monkeypatch):
    import bitsandbytes as bnb

    from featurekit_qwen import lm
    built = []
    load = lm.load_language_model
    monkeypatch.setattr(lm, "load_language_model", lambda *a: built.append(load(*a)) or built[-1])
    run = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path)
    out = QLoraTrainer(params(tiny, quantization=quantization, steps=10, checkpoint_every=0)).train(run)
    projection = built[0].model.language_model.layers[0].self_attn.q_proj
    assert isinstance(projection.base_layer, getattr(bnb.nn, layer))
    losses = run.losses()
    first, last = (sum(losses[s] for s in steps) / 3 for steps in ((1, 2, 3), (8, 9, 10)))
    assert last < first - 4, losses
    assert (run.dir / "adapter" / "adapter_model.safetensors").is_file() and out["eval_loss"] < first - 4


def test_gradient_checkpointing_is_switched_on_and_changes_no_result(tiny, table, tmp_path, monkeypatch):
    from featurekit_qwen import lm
    built, runs = [], {}
    load = lm.load_language_model
    monkeypatch.setattr(lm, "load_language_model", lambda *a: built.append(load(*a)) or built[-1])
    for on in (False, True):
        runs[on] = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path / str(on))
        QLoraTrainer(params(tiny, steps=3, checkpoint_every=0, gradient_checkpointing=on)).train(runs[on])
    layers = [model.model.language_model.layers[0] for model in built]
    assert [layer.gradient_checkpointing for layer in layers] == [False, True]
    assert runs[True].losses() == pytest.approx(runs[False].losses(), abs=1e-5)


def test_evaluation_quantizes_the_language_model_not_the_tower(tiny):
    import bitsandbytes as bnb

    from featurekit_qwen import lm
    model = lm.load_full_model(str(tiny), "nf4", torch.float32, torch.device("cpu"))
    assert isinstance(model.model.language_model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert type(model.model.visual.blocks[0].attn.qkv) is torch.nn.Linear
    assert type(model.lm_head) is torch.nn.Linear


def test_features_made_with_other_settings_are_refused(tiny, table, tmp_path):
    run = LanceTrainRun(table, TRAIN_COLUMNS, tmp_path)
    with pytest.raises(ValueError, match=r"params.image_px is 560 but feature 'vision' was computed with image_px "
                                         r"112: set params.image_px: 112"):
        QLoraTrainer(params(tiny, image_px=560)).train(run)


# -- evaluation -----------------------------------------------------------------------------

def reference_answers(tiny, images, questions, max_new_tokens):
    """Greedy answers from transformers' model and processor, one question at a time."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

    class Processor(Qwen2_5_VLProcessor):  # no torchvision here: no video processor
        def check_argument_for_proper_class(self, argument_name, argument):
            return None

    from transformers import Qwen2VLImageProcessorPil
    chat = json.loads((tiny / "chat_template.json").read_text())["chat_template"]
    proc = Processor(image_processor=Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056),
                     tokenizer=AutoTokenizer.from_pretrained(str(tiny)), video_processor=None, chat_template=chat)
    model = full_model(tiny)
    out = []
    for image, question in zip(images, questions):
        text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                      {"type": "text", "text": question}]}],
                                        add_generation_prompt=True, tokenize=False)
        pil = Image.open(io.BytesIO(image)).convert("RGB").resize((PX, PX), Image.Resampling.BICUBIC)
        inputs = proc(text=[text], images=[pil], return_tensors="pt")
        stop = [proc.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop)
        out.append(proc.tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


def test_evaluate_runs_the_full_model_on_images_base_and_tuned(tiny, table, trained):
    trainer, run, _ = trained
    evaluation = LanceEvalRun(table, EVAL_COLUMNS, run.dir)
    result = trainer.evaluate(evaluation)
    base, tuned = result["metrics"]["base"], result["metrics"]["tuned"]
    assert base["n"] == tuned["n"] == 8 == evaluation.done
    assert tuned["vqa_accuracy"] >= 0.5 > base["vqa_accuracy"]
    preds = result["predictions"]
    assert [p["key"] for p in preds] == list(range(8))
    assert all(p["tuned"] == "red" for p in preds if p["answer"] == "red")
    # the base answers are exactly what transformers' own processor + generate give for these images
    images = [evaluation.table.column("image")[i].as_py() for i in range(3)]
    expected = reference_answers(tiny, images, [p["question"] for p in preds[:3]], 16)
    assert [p["base"] for p in preds[:3]] == expected


def test_evaluate_without_a_run_scores_the_base_model_only(tiny, table):
    trainer = QLoraTrainer(params(tiny, eval={"max_new_tokens": 4, "batch_size": 3}))
    result = trainer.evaluate(LanceEvalRun(table, EVAL_COLUMNS, None, limit=4))
    assert set(result["metrics"]) == {"base"} and result["metrics"]["base"]["n"] == 4
    assert all(set(p) == {"key", "question", "answer", "base"} for p in result["predictions"])


# -- the plugin surface ---------------------------------------------------------------------

def test_registered_with_strict_params():
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry
    registry = Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False, plugins=[featurekit_qwen]))
    assert registry.get("trainer", "qlora").cls is QLoraTrainer
    # the contract's example recipe
    p = QLoraTrainer.Params(model="Qwen/Qwen2.5-VL-3B-Instruct", quantization="nf4",
                            lora={"r": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"]},
                            batch_size=2, grad_accum=8, steps=300, lr=2.0e-4, seed=0)
    assert p.lora.target_modules == ("q_proj", "v_proj") and p.schedule == "cosine"
    with pytest.raises(Exception, match="extra"):
        QLoraTrainer.Params(learning_rate=1e-4)
    with pytest.raises(Exception, match="quantization"):
        QLoraTrainer.Params(quantization="fp4")
    from featurekit_qwen.params import EvalParams, LoraParams
    for model in (QLoraTrainer.Params, LoraParams, EvalParams):
        assert [n for n, f in model.model_fields.items() if not f.description] == []


def test_validate_refuses_a_recipe_whose_image_size_differs_from_its_features(tmp_path):
    """The same check as training's, at `featurekit validate`, at the recipe's params."""
    from pathlib import Path

    import featurekit
    from featurekit.errors import SpecError
    spec = (Path(__file__).resolve().parents[3] / "specs" / "easyvqa-qwen.yaml").read_text()
    (tmp_path / "spec.yaml").write_text(spec.replace("image_px: 112, out_hidden_size: 128",
                                                     "image_px: 56, out_hidden_size: 128"))
    with pytest.raises(SpecError) as exc:
        featurekit.load_spec(tmp_path / "spec.yaml")
    (problem,) = exc.value.problems
    line = spec.splitlines().index(next(s for s in spec.splitlines() if s.strip().startswith("params: {model: "
                                                                                              "models/tiny-qwen, quant")))
    assert str(problem).startswith(f"{tmp_path / 'spec.yaml'}:{line + 1}:")
    assert "params.image_px is 112 but feature 'vision_tower_hiddens' was computed with image_px 56" in str(problem)
    (tmp_path / "spec.yaml").write_text(spec)
    assert featurekit.load_spec(tmp_path / "spec.yaml").recipes["qlora"]


def test_a_model_that_is_neither_a_folder_nor_a_cached_hub_id_is_named_before_loading(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model in ("models/nope", "./nope", "/tmp/no-such-model-folder"):
        with pytest.raises(UsageError, match=f"params.model '{model}': no such folder"):
            QLoraTrainer(params(tiny, model=model)).train(None)
    QLoraTrainer(params(tiny))._check_model()  # the tiny folder is fine


def test_the_shipped_qwen_specs_validate_with_their_qlora_recipes(tmp_path):
    from pathlib import Path

    import featurekit
    for name in ("textvqa-qwen.yaml", "easyvqa-qwen.yaml"):
        text = (Path(__file__).resolve().parents[3] / "specs" / name).read_text()
        (tmp_path / name).write_text(text)
        project = featurekit.load_spec(tmp_path / name)
        assert project.recipes["qlora"].trainer_cls is QLoraTrainer


def test_the_bitsandbytes_kernels_notice_is_dropped_and_nothing_else():
    """bitsandbytes logs "Failed to load CPU gemm_4bit_forward from kernels-community ... pip
    install kernels" when imported on an AVX512-BF16 CPU; train and eval no longer print it.
    The filter `lm` installs at import, then a fresh process importing bitsandbytes behind it
    (the notice is logged at that import; `logs` spares the process torch's model code)."""
    import logging
    import subprocess
    import sys

    import featurekit_qwen.lm  # noqa: F401  (installs the filter)
    from featurekit_qwen.logs import KERNELS_LOGGER, KERNELS_NOTICE
    log = logging.getLogger(KERNELS_LOGGER)
    record = lambda msg: log.makeRecord(log.name, logging.WARNING, __file__, 0, msg, (), None)  # noqa: E731
    assert not log.filter(record(KERNELS_NOTICE + " (pip install kernels)")) and log.filter(record("another"))
    code = ("import logging, featurekit_qwen.logs as logs; logs.drop_kernels_notice(); import bitsandbytes; "
            "log = logging.getLogger(logs.KERNELS_LOGGER); log.warning(logs.KERNELS_NOTICE + ': pip install kernels'); "
            "log.warning('another message')")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "gemm_4bit_forward" not in err and "pip install kernels" not in err
    assert "another message" in err


def test_the_cpu_peak_memory_is_this_process_own_not_its_parents():
    """Training reports its peak memory; on CPU that must be the training process's own, not the
    high-water mark Linux carries across exec from the process that started it (torchrun's
    Python, a notebook): a parent holding 600 MB starts a child that reports its peak."""
    import subprocess
    import sys
    if not sys.platform.startswith("linux"):
        pytest.skip("VmHWM is Linux's")
    held = bytearray(600 << 20)
    held[::4096] = b"\x01" * len(held[::4096])  # touch every page: resident
    code = ("import resource, torch; from featurekit_qwen.loop import peak_memory; "
            "print(peak_memory(torch.device('cpu')), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    own, inherited = float(out[0]), int(out[1])
    del held
    assert inherited > 600 << 20 and own < 500 << 20, (own, inherited)
