import io
import os

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from featurekit_clip import ImageEmbedding, TextEmbedding  # noqa: E402
from featurekit_clip.tiny import build_tiny_clip, build_tiny_siglip  # noqa: E402

from featurekit.testing import check_extractor  # noqa: E402

torch = pytest.importorskip("torch")


def sign(text: str, size=(96, 64), color=(200, 20, 20)) -> bytes:
    img = Image.new("RGB", size, (240, 240, 230))
    ImageDraw.Draw(img).text((8, size[1] // 3), text, fill=color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


BLOBS = [sign("stop"), sign("exit", (50, 120), (20, 20, 200)), sign("coca cola", (300, 200))]
TEXTS = ["a red stop sign", "", "a very long question about a sign " * 6, "hi"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


def ready(cls, tiny, **kw):
    ext = cls(cls.Params(model=str(tiny), **kw))
    ext.setup()
    return ext


def images(blobs):
    return pa.record_batch([pa.array(blobs, pa.binary())], names=["image"])


def texts(values):
    return pa.record_batch([pa.array(values, pa.string())], names=["text"])


def rows(arr: pa.Array) -> np.ndarray:
    return np.array(arr.to_pylist(), dtype=np.float32)


def test_contract(tiny):
    out = check_extractor(ImageEmbedding, {"model": str(tiny), "chunk": 2},
                          batch={"image": pa.array([*BLOBS, b"not an image"], pa.binary())})
    assert out["value"].type == pa.list_(pa.float32(), 32)
    assert out["value"].null_count == 1  # the blob that does not decode: that row's error
    out = check_extractor(TextEmbedding, {"model": str(tiny), "dtype": "float16", "chunk": 3}, batch={"text": TEXTS})
    assert out["value"].type == pa.list_(pa.float16(), 32)


def normalized(t) -> np.ndarray:
    return torch.nn.functional.normalize(t.float(), dim=-1).numpy()


def test_image_embeddings_equal_the_full_model_on_its_official_processor(tiny):
    """Parity: the stored vector is get_image_features of the whole CLIPModel (both towers
    loaded by transformers) on CLIPProcessor's pixels, L2-normalized; featurekit loads the
    vision tower alone and runs it in padded chunks."""
    from transformers import CLIPModel, CLIPProcessor
    stored = rows(ready(ImageEmbedding, tiny, chunk=2)(images(BLOBS)).values)
    model = CLIPModel.from_pretrained(str(tiny)).eval()
    inputs = CLIPProcessor.from_pretrained(str(tiny))(images=[Image.open(io.BytesIO(b)) for b in BLOBS],
                                                      return_tensors="pt")
    with torch.no_grad():
        expected = normalized(model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output)
    np.testing.assert_allclose(stored, expected, rtol=0, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1, atol=1e-6)
    assert np.abs(stored[0] - stored[1]).max() > 1e-3  # different images, different vectors


def test_text_embeddings_equal_the_full_model_on_its_official_processor(tiny):
    """The processor pads to the batch's longest text; featurekit pads to 77 tokens: CLIP's
    causal mask makes them equal (to float rounding); the long text is truncated by both."""
    from transformers import CLIPModel, CLIPProcessor
    stored = rows(ready(TextEmbedding, tiny)(texts(TEXTS)).values)
    model = CLIPModel.from_pretrained(str(tiny)).eval()
    inputs = CLIPProcessor.from_pretrained(str(tiny))(text=TEXTS, padding=True, truncation=True, return_tensors="pt")
    assert inputs["input_ids"].shape[1] == 77  # the long one was cut at the model's length
    with torch.no_grad():
        expected = normalized(model.get_text_features(input_ids=inputs["input_ids"],
                                                      attention_mask=inputs["attention_mask"]).pooler_output)
    np.testing.assert_allclose(stored, expected, rtol=0, atol=2e-6)


def test_float16_is_the_float32_vector_rounded(tiny):
    full = ready(TextEmbedding, tiny)(texts(TEXTS)).values
    half = ready(TextEmbedding, tiny, dtype="float16")(texts(TEXTS)).values
    assert half.type == pa.list_(pa.float16(), 32)
    np.testing.assert_array_equal(rows(half), rows(full).astype(np.float16).astype(np.float32))


def test_a_null_text_is_that_rows_error(tiny):
    out = ready(TextEmbedding, tiny)(texts(["a", None]))
    assert out.errors == [None, "no text (null)"]


def test_siglip(tmp_path):
    """SigLIP: the embedding is the tower's pooler_output (its head), text padded to max_length."""
    from transformers import AutoTokenizer, SiglipImageProcessorPil, SiglipModel
    folder = build_tiny_siglip(tmp_path / "tiny-siglip")
    stored_images = rows(ready(ImageEmbedding, folder)(images(BLOBS)).values)
    stored_texts = rows(ready(TextEmbedding, folder)(texts(TEXTS[:2])).values)
    model = SiglipModel.from_pretrained(str(folder)).eval()
    pixels = SiglipImageProcessorPil.from_pretrained(str(folder))(
        images=[Image.open(io.BytesIO(b)).convert("RGB") for b in BLOBS], return_tensors="pt")["pixel_values"]
    tokens = AutoTokenizer.from_pretrained(str(folder))(TEXTS[:2], padding="max_length", max_length=64,
                                                        return_tensors="pt")
    with torch.no_grad():
        want_images = normalized(model.get_image_features(pixel_values=pixels).pooler_output)
        want_texts = normalized(model.get_text_features(**tokens).pooler_output)
    np.testing.assert_allclose(stored_images, want_images, rtol=0, atol=2e-6)
    np.testing.assert_allclose(stored_texts, want_texts, rtol=0, atol=2e-6)


def test_the_width_is_known_before_loading(tiny):
    assert ImageEmbedding().output_type() == pa.list_(pa.float32(), 512)  # openai/clip-vit-base-patch32
    assert TextEmbedding(TextEmbedding.Params(model="google/siglip-so400m-patch14-384")).output_type().list_size == 1152
    assert ImageEmbedding(ImageEmbedding.Params(model=str(tiny), dtype="float16")).output_type() == \
        pa.list_(pa.float16(), 32)  # read from the folder's config.json
    with pytest.raises(ValueError, match="cannot tell the embedding width of 'acme/unknown' .*set params.dim"):
        ImageEmbedding(ImageEmbedding.Params(model="acme/unknown")).output_type()
    assert ImageEmbedding(ImageEmbedding.Params(model="acme/unknown", dim=64)).output_type().list_size == 64


def test_a_dim_that_contradicts_the_model_is_refused(tiny):
    with pytest.raises(ValueError, match="embeddings are 32 wide but params.dim says 64"):
        ready(ImageEmbedding, tiny, dim=64)


def test_a_missing_model_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model '.*nowhere': no such folder"):
        ready(ImageEmbedding, tmp_path / "nowhere")


def test_image_columns_are_queried_with_the_same_checkpoints_text_tower(tiny):
    image = ImageEmbedding(ImageEmbedding.Params(model=str(tiny), dtype="float16", chunk=8))
    assert image.text_embedder() == ("clip.text_embedding", {"model": str(tiny), "compute_dtype": "float32",
                                                             "device": "auto"})
    text = TextEmbedding(TextEmbedding.Params(model=str(tiny), max_length=16))
    assert text.text_embedder() == ("clip.text_embedding", {"model": str(tiny), "max_length": 16})


@pytest.mark.gpu
def test_on_cuda_in_float16_the_vectors_are_the_cpu_ones_to_half_precision(tiny):
    """device auto picks CUDA when there; float16 compute stays within half precision of float32 on the CPU."""
    cpu = rows(ready(ImageEmbedding, tiny, device="cpu")(images(BLOBS)).values)
    gpu_ext = ready(ImageEmbedding, tiny, compute_dtype="float16")
    assert gpu_ext.device.type == "cuda"
    np.testing.assert_allclose(rows(gpu_ext(images(BLOBS)).values), cpu, atol=5e-3)
