"""Write a tiny random CLIP (real architecture and processor, byte-level tokenizer) to a folder.

    python examples/make_tiny_clip.py specs/models/tiny-clip

The running example specs/textvqa.yaml computes its clip_image embeddings (tier 3) with it, with
no download; `featurekit search` then finds near copies. Random weights: the plumbing, not meaning.
"""
import argparse
from pathlib import Path

from featurekit_clip.tiny import build_tiny_clip

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--dim", type=int, default=32, help="embedding width (the spec's params.dim)")
    args = parser.parse_args()
    print(f"wrote {build_tiny_clip(args.folder, dim=args.dim)} (tiny and random: for the plumbing)")
