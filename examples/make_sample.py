"""Write a small TextVQA-like sample: rendered text images, questions, answers, OCR tokens.

    python examples/make_sample.py specs/raw --rows 400

No download: images are drawn with Pillow's bundled font. Each row has an image file,
a question about the text in it, the answer and the OCR tokens, like TextVQA's jsonl.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

WORDS = ["stop", "exit", "open", "sale", "coffee", "pizza", "hotel", "taxi", "bank", "police", "bakery",
         "pharmacy", "museum", "library", "station", "market", "garden", "cinema", "school", "airport"]
BRANDS = ["acme", "nikon", "canon", "dell", "sony", "coca cola", "pepsi", "heinz", "lego", "nokia"]
COLORS = {"red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 150, 60), "black": (10, 10, 10),
          "yellow": (230, 200, 20)}


def make_row(i: int, rng: random.Random, image_dir: Path) -> dict:
    from PIL import Image, ImageDraw, ImageFont

    words = rng.sample(WORDS, rng.randint(1, 4))
    brand = rng.choice(BRANDS)
    number = str(rng.randint(1, 99))
    color_name, color = rng.choice(list(COLORS.items()))
    lines = [" ".join(words), brand, number]
    img = Image.new("RGB", (256, 192), (245, 245, 240))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=22)
    for k, line in enumerate(lines):
        draw.text((12 + rng.randint(0, 20), 16 + 56 * k), line, fill=color, font=font)
    image_id = f"img_{i // 2:05d}"  # two questions per image, like TextVQA
    path = image_dir / f"{image_id}.png"
    if not path.exists():
        img.save(path)
    kind = i % 5
    question, answer = [
        ("what is written on the first line?", words[0]),
        ("what brand is shown?", brand),
        ("what number is on the sign?", number),
        ("what color is the text?", color_name),
        ("is this sign about a " + rng.choice(WORDS) + "?", "yes" if kind in words else "no"),
    ][kind]
    ocr = [t for line in lines for t in line.split()]
    return {"question_id": i, "image_id": image_id, "question": question, "answer": answer,
            "ocr_tokens": ocr if rng.random() > 0.1 else None, "image_path": f"raw/images/{image_id}.png"}


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
    with open(args.out / name, "w") as fh:
        for i in range(args.start, args.start + args.rows):
            fh.write(json.dumps(make_row(i, rng, image_dir)) + "\n")
    print(f"wrote {args.rows} rows to {args.out / name}")


if __name__ == "__main__":
    main()
