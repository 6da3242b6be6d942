"""Write a tiny random Qwen2.5-VL (real architecture, real tokenizer) to a folder.

    python examples/make_tiny_qwen.py specs/models/tiny-qwen

The example spec specs/textvqa-qwen.yaml runs tier 3 on it, with no download.
"""
import argparse
from pathlib import Path

from featurekit_qwen.tiny import build_tiny_qwen

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--init-std", type=float, default=0.2,
                        help="language model init std: 0.2 lets LoRA on a tiny model learn (the real config: 0.02)")
    args = parser.parse_args()
    print(f"wrote {build_tiny_qwen(args.folder, initializer_range=args.init_std)} (tiny and random: for the plumbing)")
