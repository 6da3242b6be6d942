"""Wall time of the CLI's fast paths (whole process, warm), median of 5 runs each.

    python benchmarks/cli.py

Targets: `validate` of the example spec well under a second; `--help` and `plan` import
neither lancedb nor torch (tests check sys.modules; this prints the time).
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(args: list[str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "featurekit", *args], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    baseline = statistics.median(
        [(lambda t0: (subprocess.run([sys.executable, "-c", "import pyarrow, lance"], check=True),
                      time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(5)])
    print(f"python -c 'import pyarrow, lance'       {baseline:.3f}s  (reference)")
    print(f"featurekit --help                       {wall(['--help']):.3f}s")
    print(f"featurekit validate specs/textvqa.yaml  {wall(['validate', 'specs/textvqa.yaml']):.3f}s")
    if (ROOT / "specs" / "data" / "textvqa.lance").exists():
        print(f"featurekit plan specs/textvqa.yaml      {wall(['plan', 'specs/textvqa.yaml']):.3f}s  (table exists)")


if __name__ == "__main__":
    main()
