"""``qwen.vision_tower``: the Qwen2.5-VL vision tower's output, computed once and stored.

Images are brought to the configured square (``image_px``) so every row has the same
token count (560 px -> 400 tokens). Only the vision tower is loaded, never the language
model: its config, and the weights under ``visual.`` from the shards that hold them.
"""
from __future__ import annotations

import io
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

import featurekit

from .models import DEFAULT_MODEL, QWEN25_VL_3B_VISION, image_tokens, out_hidden_size, weight_files

VISUAL_PREFIXES = ("visual.", "model.visual.")


class VisionTower(featurekit.Extractor):
    """Qwen2.5-VL vision tower hidden states after the merger, fp16[tokens * hidden] a row.

    Field metadata ``featurekit.output.shape`` gives [tokens, hidden] to reshape a row.
    """

    name = "qwen.vision_tower"
    version = "1"
    path_params = ("model",)
    inputs = {"image": "binary"}
    resources = featurekit.Resources(gpus=1, batch_size=16)

    class Params(featurekit.Extractor.Params):
        model: str = Field(DEFAULT_MODEL, description="hub id or local folder")
        image_px: int = Field(560, gt=0, description="images are resized to this square")
        patch_size: int = 14
        merge_size: int = 2
        out_hidden_size: int | None = Field(None, description="merger width; read from the model when omitted")
        dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
            "auto", description="compute dtype; auto: bfloat16 on CUDA, float32 on CPU")
        device: str = featurekit.runtime_field("auto", description="auto, cpu, cuda, cuda:1, ... (not in the "
                                               "fingerprint: the compute dtype it leads to is)")

        @model_validator(mode="after")
        def _square(self):
            unit = self.patch_size * self.merge_size
            if self.image_px % unit:
                raise ValueError(f"image_px must be a multiple of patch_size * merge_size = {unit}, "
                                 f"not {self.image_px}")
            return self

    @property
    def tokens(self) -> int:
        p = self.params
        return image_tokens(p.image_px, p.patch_size, p.merge_size)

    @property
    def hidden(self) -> int:
        hidden = self.params.out_hidden_size or out_hidden_size(self.params.model)
        if hidden is None:
            raise ValueError(f"cannot tell the vision tower's output width for {self.params.model!r} without "
                             "loading it: set params.out_hidden_size")
        return hidden

    def output_type(self) -> pa.DataType:
        return pa.list_(pa.float16(), self.tokens * self.hidden)

    def fingerprint_params(self) -> dict:
        """Params as written, plus the dtype the tower computes in: `dtype: auto` gives bfloat16
        on CUDA and float32 on a CPU, and those values differ, so they must not share a fingerprint."""
        p = self.params
        device = p.device if p.device != "auto" else ("cuda" if cuda_present() else "cpu")
        return {**super().fingerprint_params(), "compute_dtype": compute_dtype(p.dtype, device.split(":")[0])}

    def output_metadata(self) -> dict[str, str]:
        side = self.params.image_px // self.params.patch_size
        return {"shape": f"[{self.tokens}, {self.hidden}]", "dtype": "float16",
                "image_grid_thw": f"[1, {side}, {side}]"}

    # -- running -------------------------------------------------------------------------
    def setup(self) -> None:
        import torch

        p = self.params
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if p.device == "auto" else p.device)
        self.dtype = getattr(torch, compute_dtype(p.dtype, self.device.type))
        planned = self.fingerprint_params()["compute_dtype"]
        if str(self.dtype).removeprefix("torch.") != planned:
            raise RuntimeError(f"this worker computes in {self.dtype} but the plan fingerprinted {planned} "
                               f"(device {p.device!r} resolved differently here): set dtype: explicitly")
        self.tower = load_vision_tower(p.model, self.dtype, self.device)
        cfg = self.tower.config
        if (cfg.patch_size, cfg.spatial_merge_size, cfg.out_hidden_size) != (p.patch_size, p.merge_size, self.hidden):
            raise ValueError(f"{p.model}: vision config has patch_size {cfg.patch_size}, spatial_merge_size "
                             f"{cfg.spatial_merge_size}, out_hidden_size {cfg.out_hidden_size}; the params say "
                             f"{p.patch_size}, {p.merge_size}, {self.hidden}")
        self.processor = image_processor(p.patch_size, p.merge_size, cfg.temporal_patch_size)

    def prepare(self, blobs: list[bytes]):
        """Decode, convert to RGB and resize to the square: what the tower is fed."""
        return prepare_images(blobs, self.params.image_px, self.processor)

    def embed(self, inputs):
        """pooler_output (after the merger, in the original token order), [n * tokens, hidden]."""
        import torch
        with torch.inference_mode():
            pixels = inputs["pixel_values"].to(self.device, self.dtype)
            out = self.tower(pixels, grid_thw=inputs["image_grid_thw"].to(self.device))
        return out.pooler_output

    def __call__(self, batch: pa.RecordBatch) -> featurekit.RowErrors:
        """Images that do not decode are those rows' errors; the tower runs once on the rest."""
        import numpy as np
        import torch
        decoded = featurekit.RowErrors.map(lambda b: decode_image(b, self.params.image_px),
                                           batch.column("image").to_pylist())
        good = [i for i, e in enumerate(decoded.errors) if e is None]
        flat = np.zeros((batch.num_rows, self.tokens * self.hidden), np.float16)  # failed rows: stored as NULL
        if good:
            inputs = self.processor(images=[decoded.values[i] for i in good], return_tensors="pt")
            hidden = self.embed(inputs).to(torch.float16).reshape(len(good), -1).cpu().numpy()
            flat[good] = hidden
        values = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), pa.float16()), flat.shape[1])
        return featurekit.RowErrors(values, decoded.errors)


def image_processor(patch_size: int = 14, merge_size: int = 2, temporal_patch_size: int = 2):
    """The Qwen2.5-VL image processor with the released checkpoints' settings (needs no files)."""
    from transformers import Qwen2VLImageProcessorPil
    return Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056, patch_size=patch_size,
                                    merge_size=merge_size, temporal_patch_size=temporal_patch_size)


def prepare_images(blobs: list[bytes], side: int, processor):
    """Decode, convert to RGB, resize to `side` x `side`, then the processor: pixel_values and
    image_grid_thw. One function, so the feature and `qlora` evaluation see identical pixels."""
    return processor(images=[decode_image(blob, side) for blob in blobs], return_tensors="pt")


def decode_image(blob: bytes | None, side: int):
    """One image decoded, in RGB, resized to `side` x `side`; raises when it cannot be."""
    from PIL import Image
    if blob is None:
        raise ValueError("no image (null)")
    img = Image.open(io.BytesIO(blob)).convert("RGB")
    return img.resize((side, side), Image.Resampling.BICUBIC)


def compute_dtype(dtype: str, device_type: str) -> str:
    if dtype != "auto":
        return dtype
    return "bfloat16" if device_type == "cuda" else "float32"


def cuda_present() -> bool:
    """Whether torch will see a CUDA GPU, without importing torch (plan and validate stay fast):
    the NVIDIA management library answers in milliseconds; no driver library means no GPU."""
    import ctypes
    import os
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    count = ctypes.c_uint(0)
    if nvml.nvmlInit_v2() != 0:
        return False
    try:
        return nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0 and count.value > 0
    finally:
        nvml.nvmlShutdown()


def build_vision_tower(vision_config, device: str | None = None):
    """An uninitialised tower from a vision config (device='meta' for shapes only)."""
    import torch
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
    if isinstance(vision_config, dict):
        vision_config = Qwen2_5_VLVisionConfig(**vision_config)
    with torch.device(device or "cpu"):
        return Qwen2_5_VisionTransformerPretrainedModel._from_config(vision_config)


def load_vision_tower(model: str, dtype, device):
    """The vision tower alone, from a hub id or a local folder, weights checked strictly."""
    from safetensors import safe_open
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    tower = build_vision_tower(config.vision_config)
    state = {}
    for shard in weight_files(model, VISUAL_PREFIXES):
        with safe_open(str(shard), "pt") as fh:
            for key in fh.keys():
                for prefix in VISUAL_PREFIXES:
                    if key.startswith(prefix):
                        state[key[len(prefix):]] = fh.get_tensor(key)
    result = tower.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{model}: vision weights do not match the config: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return tower.to(device=device, dtype=dtype).eval()


def qwen25_vl_3b_tower_on_meta():
    """The real 3B tower's shapes, no weights: for checks that need no download."""
    return build_vision_tower(dict(QWEN25_VL_3B_VISION), device="meta")
