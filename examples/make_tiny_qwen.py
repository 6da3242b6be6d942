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
    args = parser.parse_args()
    print(f"wrote {build_tiny_qwen(args.folder)}")
