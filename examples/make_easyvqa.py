"""Write a real-data VQA source from the easy-vqa package (MIT, on PyPI): images, questions, answers.

    python examples/make_easyvqa.py specs/raw-easyvqa --images 800

easy-vqa ships 64x64 PNGs of coloured shapes with ~10 questions each (answers from a
vocabulary of 13). This takes `--images` train images and saves their questions as a
Hugging Face dataset (`DatasetDict.save_to_disk`, the PNG bytes inside, one `train` split):
question_id, image_id, question, answer, image (an `Image` feature). The quickstart spec
reads it with `source: {format: hf}`, as it would any dataset from the hub's cache. Nothing
is downloaded: the data comes with the package.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the saved dataset")
    parser.add_argument("--images", type=int, default=800,
                        help="train images to take (about 10 questions each; the package has 4,000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import datasets
        import easy_vqa
    except ImportError:
        raise SystemExit("pip install easy-vqa datasets (the README's setup command installs them)") from None
    questions, answers, image_ids = easy_vqa.get_train_questions()
    paths = easy_vqa.get_train_image_paths()
    chosen = sorted(random.Random(args.seed).sample(sorted(paths), args.images))
    keep = set(chosen)
    rows = [(qid, image_id, q, a) for qid, (q, a, image_id) in enumerate(zip(questions, answers, image_ids))
            if image_id in keep]
    features = datasets.Features({"question_id": datasets.Value("int64"), "image_id": datasets.Value("int64"),
                                  "question": datasets.Value("string"), "answer": datasets.Value("string"),
                                  "image": datasets.Image()})
    columns = {"question_id": [r[0] for r in rows], "image_id": [r[1] for r in rows],
               "question": [r[2] for r in rows], "answer": [r[3] for r in rows],
               "image": [paths[r[1]] for r in rows]}
    train = datasets.Dataset.from_dict(columns, features=features)
    datasets.DatasetDict({"train": train}).save_to_disk(str(args.out))  # the PNG bytes go into the files
    rows = len(rows)
    print(f"wrote {rows} questions on {len(chosen)} easy-vqa images to {args.out}")


if __name__ == "__main__":
    main()
