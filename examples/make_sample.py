"""Write a small TextVQA-like sample: rendered text images, questions, answers, OCR tokens.

    python examples/make_sample.py specs/raw --rows 400

No download: images are drawn with Pillow's bundled font on varied backgrounds. Each row
has an image file, a question about the text in it, the answer and the OCR tokens, like
TextVQA's jsonl. Two questions per image; and, as in real crawls, about one image in ten is
a near copy of an earlier one (brightened, re-encoded) under a new image id, asked the same
first question: what `dedupe: {near: ...}` removes and leak-free splits keep together.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

WORDS = ["stop", "exit", "open", "sale", "coffee", "pizza", "hotel", "taxi", "bank", "police", "bakery",
         "pharmacy", "museum", "library", "station", "market", "garden", "cinema", "school", "airport"]
BRANDS = ["acme", "nikon", "canon", "dell", "sony", "coca cola", "pepsi", "heinz", "lego", "nokia"]
COLORS = {"red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 150, 60), "black": (10, 10, 10),
          "yellow": (230, 200, 20)}


NEAR_COPY_EVERY = 10  # one image in ten is a near copy of an earlier one


def draw_sign(rng: random.Random, lines: list[str], color) -> Image:
    from PIL import Image, ImageDraw, ImageFont
    top, bottom = (tuple(rng.randint(120, 255) for _ in range(3)) for _ in range(2))
    img = Image.new("RGB", (256, 192))
    draw = ImageDraw.Draw(img)
    vertical = rng.random() < 0.5
    span = 192 if vertical else 256
    for k in range(span):  # a gradient background: dhash sees the picture, not only the text
        c = tuple(int(a + (b - a) * k / span) for a, b in zip(top, bottom))
        draw.line([(0, k), (256, k)] if vertical else [(k, 0), (k, 192)], fill=c)
    for _ in range(rng.randint(1, 3)):
        x, y, r = rng.randint(0, 256), rng.randint(0, 192), rng.randint(15, 60)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randint(0, 255) for _ in range(3)))
    font = ImageFont.load_default(size=22)
    for k, line in enumerate(lines):
        draw.text((12 + rng.randint(0, 20), 16 + 56 * k), line, fill=color, font=font)
    return img


def near_copy(path: Path, out: Path, rng: random.Random) -> None:
    """A brightened, re-encoded copy: a few bits of dhash away from the original."""
    from PIL import Image, ImageEnhance
    img = ImageEnhance.Brightness(Image.open(path).convert("RGB")).enhance(1 + rng.uniform(0.03, 0.08))
    img.save(out)


def make_image(n: int, rng: random.Random, image_dir: Path, made: list[dict]) -> dict:
    """Image number n: a new sign, or every NEAR_COPY_EVERY-th a near copy of an earlier one."""
    image_id = f"img_{n:05d}"
    path = image_dir / f"{image_id}.png"
    if n % NEAR_COPY_EVERY == NEAR_COPY_EVERY - 1 and made:
        original = rng.choice(made)
        if not path.exists():
            near_copy(image_dir / f"{original['image_id']}.png", path, rng)
        return {**original, "image_id": image_id, "copy_of": original["image_id"]}
    words = rng.sample(WORDS, rng.randint(1, 4))
    info = {"image_id": image_id, "words": words, "brand": rng.choice(BRANDS), "number": str(rng.randint(1, 99)),
            "color": rng.choice(list(COLORS)), "first_kind": rng.randrange(5)}
    if not path.exists():
        draw_sign(rng, [" ".join(words), info["brand"], info["number"]], COLORS[info["color"]]).save(path)
    made.append(info)
    return info


def make_row(i: int, rng: random.Random, image: dict) -> dict:
    kind = (image["first_kind"] + i % 2) % 5  # an image's two questions differ; a near copy repeats the first
    other = rng.choice(WORDS)
    question, answer = [
        ("what is written on the first line?", image["words"][0]),
        ("what brand is shown?", image["brand"]),
        ("what number is on the sign?", image["number"]),
        ("what color is the text?", image["color"]),
        (f"is this sign about a {other}?", "yes" if other in image["words"] else "no"),
    ][kind]
    lines = [" ".join(image["words"]), image["brand"], image["number"]]
    ocr = [t for line in lines for t in line.split()]
    return {"question_id": i, "image_id": image["image_id"], "question": question, "answer": answer,
            "ocr_tokens": ocr if rng.random() > 0.1 else None,
            "image_path": f"raw/images/{image['image_id']}.png"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for train.jsonl and images/")
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--start", type=int, default=0, help="first question_id (to append more rows)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    image_dir = args.out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed + args.start)
    name = "train.jsonl" if args.start == 0 else f"train-{args.start}.jsonl"
    made: list[dict] = []
    image = None
    with open(args.out / name, "w") as fh:
        for i in range(args.start, args.start + args.rows):
            if image is None or i % 2 == 0:  # two questions per image, like TextVQA
                image = make_image(i // 2, rng, image_dir, made)
            fh.write(json.dumps(make_row(i, rng, image)) + "\n")
    print(f"wrote {args.rows} rows to {args.out / name}")


if __name__ == "__main__":
    main()
