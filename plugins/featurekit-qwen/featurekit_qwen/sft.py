"""``qwen.sft_tokens``: chat-formatted, tokenized SFT rows for Qwen2.5-VL at a fixed length.

Each row is ``system, user: <image> question, assistant: answer`` in the model's chat
template, with the image expanded to exactly as many ``<|image_pad|>`` tokens as the
vision tower produces for ``image_px``. Labels are -100 on the prompt and the padding,
so the loss covers the answer and its ``<|im_end|>``. A row that does not fit in
``max_length`` is a row error: it is never truncated into the image run.
"""
from __future__ import annotations

import pyarrow as pa
from pydantic import Field

import featurekit

from .models import DEFAULT_MODEL, IMAGE_PAD, QWEN25_VL_CHAT_TEMPLATE, fetch, image_tokens

IGNORE = -100


class SftTokens(featurekit.Extractor):
    """input_ids, attention_mask, labels, mm_token_type_ids: fixed_size_list[max_length] each."""

    name = "qwen.sft_tokens"
    version = "1"
    path_params = ("model",)
    inputs = {"question": "string", "answer": "string"}
    resources = featurekit.Resources(batch_size=512)

    class Params(featurekit.Extractor.Params):
        model: str = Field(DEFAULT_MODEL, description="hub id or local folder holding the tokenizer")
        max_length: int = Field(512, gt=0)
        image_px: int = Field(560, gt=0, description="must match the vision tower's")
        patch_size: int = 14
        merge_size: int = 2
        system_prompt: str | None = Field(None, description="None: the chat template's default")

    def output_types(self) -> dict[str, pa.DataType]:
        n = self.params.max_length
        return {"input_ids": pa.list_(pa.int32(), n), "attention_mask": pa.list_(pa.int8(), n),
                "labels": pa.list_(pa.int32(), n), "mm_token_type_ids": pa.list_(pa.int8(), n)}

    @property
    def image_tokens(self) -> int:
        p = self.params
        return image_tokens(p.image_px, p.patch_size, p.merge_size)

    def setup(self) -> None:
        from transformers import AutoTokenizer
        self.tokenizer = AutoTokenizer.from_pretrained(self.params.model)
        self.template = _vl_template(self.params.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        self.image_pad_id = self.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.newline = self.tokenizer("\n", add_special_tokens=False)["input_ids"]

    def texts(self, question: str, answer: str) -> tuple[str, str]:
        """(prompt, full conversation) as text, one <|image_pad|> standing for the image."""
        messages = []
        if self.params.system_prompt is not None:
            messages.append({"role": "system", "content": self.params.system_prompt})
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
        prompt = self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=False,
                                                    add_generation_prompt=True)
        messages.append({"role": "assistant", "content": answer})
        full = self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=False)
        return prompt, full

    def expand_image(self, text: str) -> str:
        """The single <|image_pad|> of the template as the tower's token count of them."""
        return text.replace(IMAGE_PAD, IMAGE_PAD * self.image_tokens)

    def prompt_ids(self, question: str) -> list[int]:
        """The tokens up to the assistant's turn: what generation starts from at evaluation,
        identical to the prompt part of a training row."""
        prompt, _ = self.texts(question, "")
        return self.tokenizer(self.expand_image(prompt), add_special_tokens=False)["input_ids"]

    def encode(self, question: str | None, answer: str | None) -> dict[str, list[int]]:
        if question is None or answer is None:
            raise ValueError("question or answer is null")
        prompt, full = self.texts(question, answer)
        ids = self.tokenizer(self.expand_image(full), add_special_tokens=False)["input_ids"]
        prompt_ids = self.tokenizer(self.expand_image(prompt), add_special_tokens=False)["input_ids"]
        if ids[:len(prompt_ids)] != prompt_ids:
            raise ValueError("the prompt does not tokenize as a prefix of the conversation")
        n, limit = len(ids), self.params.max_length
        if n > limit:
            raise ValueError(f"needs {n} tokens ({self.image_tokens} for the image), over max_length {limit}; "
                             "never truncated into the image run")
        labels = [IGNORE] * len(prompt_ids) + ids[len(prompt_ids):]
        if self.newline and ids[-len(self.newline):] == self.newline:  # the "\n" after <|im_end|>
            labels[-len(self.newline):] = [IGNORE] * len(self.newline)
        pad = limit - n
        return {"input_ids": ids + [self.pad_id] * pad,
                "attention_mask": [1] * n + [0] * pad,
                "labels": labels + [IGNORE] * pad,
                "mm_token_type_ids": [int(t == self.image_pad_id) for t in ids] + [0] * pad}

    def __call__(self, batch: pa.RecordBatch) -> featurekit.RowErrors:
        """A row that does not fit (or lacks its text) is that row's error; the rest are kept."""
        rows = featurekit.RowErrors.map(lambda qa: self.encode(*qa), zip(batch.column("question").to_pylist(),
                                                                          batch.column("answer").to_pylist()))
        out = {}
        for name, typ in self.output_types().items():
            blank = [0] * typ.list_size  # a failed row's place: stored as NULL
            flat = pa.array([v for r in rows.values for v in (r[name] if r is not None else blank)], typ.value_type)
            out[name] = pa.FixedSizeListArray.from_arrays(flat, typ.list_size)
        return featurekit.RowErrors(out, rows.errors)


def _vl_template(model: str, tokenizer) -> str:
    """The model's multimodal chat template: chat_template.json, else the tokenizer's if it
    knows images, else Qwen2.5-VL-Instruct's."""
    import json
    path = fetch(model, "chat_template.json")
    if path is not None:
        return json.loads(path.read_text())["chat_template"]
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and "vision_start" in template:
        return template
    return QWEN25_VL_CHAT_TEMPLATE
