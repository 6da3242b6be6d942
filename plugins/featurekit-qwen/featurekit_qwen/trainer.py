"""``qlora``: LoRA / QLoRA on Qwen2.5-VL's language model from the table's cached columns.

Training never runs (or even builds) the vision tower: each row's tower output comes from
the ``qwen.vision_tower`` column and is spliced into the ``<|image_pad|>`` positions of the
``qwen.sft_tokens`` row, with the 3D mRoPE positions the full model would use. Evaluation
is the opposite on purpose: the full VLM on the raw images, as it will run in production.

Nothing heavy is imported here: the loop (`loop`), the model code (`lm`) and the
evaluation (`evaluation`) are imported when a run starts.
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa

import featurekit

from .params import INT_LIST, QLoraParams, feature_mismatches


class QLoraTrainer(featurekit.Trainer):
    """LoRA on Qwen2.5-VL's language model (optionally 4- or 8-bit) from cached vision features."""

    name = "qlora"
    version = "1"
    columns = {"vision": pa.list_(pa.float16()), "input_ids": INT_LIST, "attention_mask": INT_LIST,
               "labels": INT_LIST, "mm_token_type_ids": INT_LIST}
    optional_columns = ("mm_token_type_ids",)  # derived from input_ids when the recipe leaves it out
    eval_columns = {"image": "binary", "question": "string", "answer": "any"}
    Params = QLoraParams
    path_params = ("model",)

    def check_columns(self, columns) -> list[str]:
        return feature_mismatches(self.params, columns)

    def _check_model(self) -> None:
        from featurekit.errors import UsageError

        from .models import missing_model
        problem = missing_model(self.params.model)
        if problem:
            raise UsageError(f"params.{problem}")

    def train(self, run) -> dict[str, Any]:
        self._check_model()
        from .loop import train
        return train(self.params, run)

    def evaluate(self, run) -> dict[str, Any]:
        self._check_model()
        from .evaluation import evaluate
        return evaluate(self.params, run)
