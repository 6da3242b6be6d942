"""``qlora`` evaluation: the full VLM on the raw images, base and tuned, greedy decoding,
scored with the standard VQA accuracy (`featurekit.training.vqa`).

This is deliberately not the training path: the vision tower runs on each image with the
preprocessing of the ``qwen.vision_tower`` feature (resize to ``image_px`` square, the
Qwen2-VL image processor) and the prompt is the ``qwen.sft_tokens`` prompt, so the score is
what the model does in production, not on the cached features it was trained from.

Imported when an evaluation starts (it imports torch).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from featurekit.training.vqa import METRIC, mean_vqa_accuracy

from . import lm
from .checkpoint import ADAPTER
from .devices import resolve_device, resolve_dtype
from .models import IMAGE_PAD


class Prompter:
    """Model inputs for a batch of (image, question): the training prompt, left-padded so
    every row's generation continues at the right edge, and the feature's pixels."""

    def __init__(self, params, config):
        from .sft import SftTokens
        from .vision import image_processor
        vc = config.vision_config
        self.image_px = params.image_px
        self.sft = SftTokens(SftTokens.Params(model=params.model, image_px=params.image_px, patch_size=vc.patch_size,
                                              merge_size=vc.spatial_merge_size, system_prompt=params.system_prompt))
        self.sft.setup()
        self.tokenizer = self.sft.tokenizer
        self.processor = image_processor(vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size)
        self.image_pad_id = self.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.pad_id = self.tokenizer.pad_token_id
        self.stop_ids = [self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]

    def batch(self, images: Sequence[bytes], questions: Sequence[str]) -> dict[str, torch.Tensor]:
        from .vision import prepare_images
        rows = [self.sft.prompt_ids(q) for q in questions]
        width = max(len(r) for r in rows)
        input_ids = [[self.pad_id] * (width - len(r)) + r for r in rows]
        mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
        pixels = prepare_images(list(images), self.image_px, self.processor)
        ids = torch.tensor(input_ids)
        return {"input_ids": ids, "attention_mask": torch.tensor(mask),
                "mm_token_type_ids": (ids == self.image_pad_id).long(),
                "pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"]}

    def generation_config(self, max_new_tokens: int):
        """Plain greedy decoding: the checkpoint's sampling settings and repetition penalty are
        replaced, not merged."""
        from transformers import GenerationConfig
        return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                eos_token_id=self.stop_ids, pad_token_id=self.pad_id)


def generate(model, inputs: dict[str, torch.Tensor], prompter: Prompter, max_new_tokens: int) -> list[str]:
    with torch.no_grad():
        out = model.generate(**inputs, generation_config=prompter.generation_config(max_new_tokens))
    new = out[:, inputs["input_ids"].shape[1]:]
    return [text.strip() for text in prompter.tokenizer.batch_decode(new, skip_special_tokens=True)]


def load(params, run_dir: Path | None, device, dtype):
    """The full VLM and whether an adapter from `run_dir` is attached to it."""
    model = lm.load_full_model(params.model, params.quantization, dtype, device)
    if run_dir is None:
        return model.eval(), False
    adapter = Path(run_dir) / ADAPTER
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter}: no adapter there; train the recipe first, or evaluate the base model alone")
    return lm.load_adapter(model, adapter).eval(), True


def evaluate(params, run) -> dict[str, Any]:
    """Base and (with run.dir) tuned answers for every eval row; the adapter is switched off
    for the base answers, so both come from one loaded model and one image preprocessing."""
    device = resolve_device(params.device)
    dtype = resolve_dtype(params.dtype, device)
    model, tuned = load(params, run.dir, device, dtype)
    prompter = Prompter(params, model.config)
    n_new = params.eval.max_new_tokens
    predictions: list[dict[str, Any]] = []
    for rows in run.rows(batch_size=params.eval.batch_size):
        inputs = lm.to_device(prompter.batch(rows["image"], rows["question"]), device)
        if tuned:
            with model.disable_adapter():
                base = generate(model, inputs, prompter, n_new)
            answers = {"base": base, "tuned": generate(model, inputs, prompter, n_new)}
        else:
            answers = {"base": generate(model, inputs, prompter, n_new)}
        keys = rows.get("key") or list(range(len(predictions), len(predictions) + len(rows["question"])))
        for i, key in enumerate(keys):
            predictions.append({"key": key, "question": rows["question"][i], "answer": rows["answer"][i],
                                **{which: said[i] for which, said in answers.items()}})
        run.progress(len(keys))
    metrics = {which: mean_vqa_accuracy([p[which] for p in predictions], [p["answer"] for p in predictions])
               for which in (("base", "tuned") if tuned else ("base",))}
    return {"metrics": metrics, "predictions": predictions, "metric": METRIC}
