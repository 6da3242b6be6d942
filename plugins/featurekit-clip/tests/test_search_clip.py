"""End to end on the tiny CLIP: apply a spec with image and text embeddings, then `featurekit
search --text` on the image column embeds the query with the same checkpoint's text tower and
returns the exact nearest rows (numpy on the stored vectors and an independently computed query)."""
import io
import os

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import featurekit_clip  # noqa: E402
from featurekit_clip import TextEmbedding  # noqa: E402
from featurekit_clip.tiny import build_tiny_clip  # noqa: E402

import featurekit  # noqa: E402
from featurekit.testing import TestProject  # noqa: E402

pytest.importorskip("torch")


def sign(i: int) -> bytes:
    img = Image.new("RGB", (64 + 8 * i, 48), (40 * i % 255, 200 - 20 * i, 90))
    ImageDraw.Draw(img).text((4, 16), f"sign {i}", fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_text_search_on_image_embeddings(tmp_path):
    model = build_tiny_clip(tmp_path / "models" / "tiny-clip")
    p = TestProject(tmp_path, plugins=[featurekit_clip])
    rows = [{"id": i, "question": f"what does sign {i} say?", "path": f"img/{i}.png"} for i in range(10)]
    p.write({"clip_image": {"tier": 3, "extractor": "clip.image_embedding", "inputs": {"image": "image"},
                            "params": {"model": "models/tiny-clip", "dtype": "float16"}},
             "clip_question": {"tier": 3, "extractor": "clip.text_embedding", "inputs": {"text": "question"},
                               "params": {"model": "models/tiny-clip"}}},
            rows, files={f"img/{i}.png": sign(i) for i in range(10)}, file_columns={"image": "path"})
    assert p.apply().ok
    table = p.table()
    assert table.schema.field("clip_image").type == pa.list_(pa.float16(), 32)
    stored = np.array(table.column("clip_image").to_pylist(), dtype=np.float64)

    query_text = "a red stop sign"
    embedder = TextEmbedding(TextEmbedding.Params(model=str(model)))  # the text tower, outside featurekit's search
    embedder.setup()
    query = np.array(embedder(pa.record_batch([pa.array([query_text])], names=["text"])).values[0].as_py())
    distances = 1 - stored @ query / (np.linalg.norm(stored, axis=1) * np.linalg.norm(query))
    expected = np.argsort(distances, kind="stable")[:4]

    result = featurekit.search(p.project(), "clip_image", text=query_text, k=4)
    assert [h.key for h in result.hits] == table.column("id").to_numpy()[expected].tolist()
    np.testing.assert_allclose([h.distance for h in result.hits], distances[expected], atol=1e-5)

    text_hits = featurekit.search(p.project(), "clip_question", text="what does sign 3 say?", k=1).hits
    assert text_hits[0].key == 3 and text_hits[0].distance == pytest.approx(0, abs=1e-6)
    assert text_hits[0].values == {"question": "what does sign 3 say?"}
