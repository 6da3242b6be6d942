"""Write a real-data VQA source from the easy-vqa package (MIT, on PyPI): images, questions, answers.

    python examples/make_easyvqa.py specs/raw-easyvqa --images 800

easy-vqa ships 64x64 PNGs of coloured shapes with ~10 questions each (answers from a
vocabulary of 13). This copies `--images` train images into `<out>/images/` and writes
`<out>/train.jsonl`, one question a line, in the shape the quickstart spec reads:
question_id, image_id, question, answer, image_path. Nothing is downloaded: the data
comes with the package.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for train.jsonl and images/")
    parser.add_argument("--images", type=int, default=800,
                        help="train images to take (about 10 questions each; the package has 4,000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import easy_vqa
    except ImportError:
        raise SystemExit("pip install easy-vqa (the README's setup command installs it)") from None
    questions, answers, image_ids = easy_vqa.get_train_questions()
    paths = easy_vqa.get_train_image_paths()
    chosen = sorted(random.Random(args.seed).sample(sorted(paths), args.images))
    keep = set(chosen)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    for image_id in chosen:
        shutil.copyfile(paths[image_id], args.out / "images" / f"{image_id}.png")
    rows = 0
    with open(args.out / "train.jsonl", "w") as fh:
        for qid, (q, a, image_id) in enumerate(zip(questions, answers, image_ids)):
            if image_id in keep:
                fh.write(json.dumps({"question_id": qid, "image_id": image_id, "question": q, "answer": a,
                                     "image_path": f"{args.out.name}/images/{image_id}.png"}) + "\n")
                rows += 1
    print(f"wrote {rows} questions on {len(chosen)} easy-vqa images to {args.out}")


if __name__ == "__main__":
    main()
