import io

import imagehash
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

from featurekit.testing import check_extractor
from featurekit_image import DHash, ImageFormat, ImageSize, PHash, hamming


def png(text: str, size=(96, 64), fmt="PNG") -> bytes:
    img = Image.new("RGB", size, (250, 250, 250))
    ImageDraw.Draw(img).text((8, 20), text, fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


IMAGES = [png("stop"), png("exit", (120, 80)), png("coffee", fmt="JPEG")]


@pytest.mark.parametrize("cls", [DHash, PHash, ImageSize, ImageFormat])
def test_contract(cls):
    check_extractor(cls, batch={"image": pa.array(IMAGES, pa.binary())})


def test_dhash_equals_imagehash():
    out = DHash()(pa.record_batch([pa.array(IMAGES, pa.binary())], names=["image"])).values.to_pylist()
    assert out == [int(str(imagehash.dhash(Image.open(io.BytesIO(b)))), 16) for b in IMAGES]
    small = DHash(DHash.Params(hash_size=4))(pa.record_batch([pa.array(IMAGES[:1])], names=["image"])).values
    assert small.to_pylist() == [int(str(imagehash.dhash(Image.open(io.BytesIO(IMAGES[0])), 4)), 16)]


def test_hash_size_over_8_is_rejected():
    with pytest.raises(Exception, match="less than or equal to 8"):
        DHash.Params(hash_size=16)


def test_hamming():
    assert hamming(0b1011, 0b0001) == 2


def test_size_and_format():
    batch = pa.record_batch([pa.array(IMAGES, pa.binary())], names=["image"])
    sizes = ImageSize()(batch).values
    assert sizes["width"].to_pylist() == [96, 120, 96] and sizes["height"].to_pylist() == [64, 80, 64]
    assert ImageFormat()(batch).values.to_pylist() == ["PNG", "PNG", "JPEG"]


def test_corrupt_blob_is_a_row_error_in_apply(featurekit_project):
    import featurekit_image
    featurekit_project.plugins = [featurekit_image]
    blobs = IMAGES + [b"not an image"]
    featurekit_project.write(
        {"dhash": {"tier": 2, "extractor": "image.dhash", "inputs": {"image": "image"},
                   "on_error": {"max_failure_rate": 0.5}},
         "size": {"tier": 2, "extractor": "image.size", "inputs": {"image": "image"},
                  "outputs": ["width", "height"], "on_error": {"max_failure_rate": 0.5}}},
        rows=[{"id": i, "path": f"img/{i}.bin"} for i in range(len(blobs))],
        files={f"img/{i}.bin": b for i, b in enumerate(blobs)}, file_columns={"image": "path"})
    result = featurekit_project.apply()
    assert result.ok
    assert (result.run.features["dhash"].computed, result.run.features["dhash"].failed) == (3, 1)
    key, message = result.run.features["dhash"].errors[0]
    assert key == "3 (img/3.bin)"  # the row's key and the file its bytes came from
    assert message == "UnidentifiedImageError: cannot identify image file the input bytes"  # no memory address
    # reported with featurekit.RowErrors: each image passed to the extractor once, no halving
    assert result.run.features["dhash"].passed == result.run.features["dhash"].distinct == 4
    t = featurekit_project.table()
    assert t.column("dhash").to_pylist()[:3] == [int(str(imagehash.dhash(Image.open(io.BytesIO(b)))), 16)
                                                for b in IMAGES]
    assert t.column("dhash")[3].as_py() is None
    assert t.column("width").to_pylist() == [96, 120, 96, None]


def test_featurekit_plugins_lists_this_distribution():
    import json
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATUREKIT_")}
    out = subprocess.run([sys.executable, "-m", "featurekit", "plugins", "--json"], capture_output=True,
                         text=True, env=env, check=True).stdout
    entry = next(p for p in json.loads(out)["plugins"] if p["name"] == "image")
    assert entry["distribution"] == "featurekit-image"
    assert entry["extractors"] == ["image.dhash", "image.format", "image.phash", "image.size"]


def real_images() -> list[bytes]:
    """Images not drawn by this file: easy-vqa's dataset PNGs and matplotlib's sample photo
    and logos, when installed."""
    import glob
    import os
    found = []
    try:
        import easy_vqa
        found += sorted(glob.glob(os.path.join(os.path.dirname(easy_vqa.__file__), "data", "train", "images", "*.png")))[:12]
    except ImportError:
        pass
    try:
        import matplotlib
        sample = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
        found += [os.path.join(sample, f) for f in ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png")
                  if os.path.exists(os.path.join(sample, f))]
    except ImportError:
        pass
    if len(found) < 4:
        pytest.skip("needs easy-vqa or matplotlib for real images")
    return [open(f, "rb").read() for f in found]


@pytest.mark.parametrize("hash_size", [8, 4])
def test_phash_and_dhash_equal_imagehash_on_real_images(hash_size):
    blobs = real_images()
    batch = pa.record_batch([pa.array(blobs, pa.binary())], names=["image"])
    phash = PHash(PHash.Params(hash_size=hash_size))(batch).values.to_pylist()
    dhash = DHash(DHash.Params(hash_size=hash_size))(batch).values.to_pylist()
    images = [Image.open(io.BytesIO(b)) for b in blobs]
    assert phash == [int(str(imagehash.phash(img, hash_size=hash_size)), 16) for img in images]
    assert dhash == [int(str(imagehash.dhash(img, hash_size=hash_size)), 16) for img in images]
    assert sum(p != d for p, d in zip(phash, dhash)) >= len(blobs) - 1  # the two hashes tell apart
