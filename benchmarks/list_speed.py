"""Cold wall time of `zoo list` beside `import timm; timm.list_pretrained()`, in one run.

Each command runs in a fresh interpreter (so imports are paid every time), several times; the
median is reported. Target: `zoo list` <= 0.3 s and >= 20x faster than timm's listing.

    .venv/bin/python benchmarks/list_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ZOO = [str(Path(sys.executable).with_name("zoo")), "list"]
TIMM = [sys.executable, "-c", "import timm; timm.list_pretrained()"]


def wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    wall(ZOO, 1)  # warm the OS file cache for both, so "cold" means a fresh interpreter
    wall(TIMM, 1)
    zoo_s, timm_s = wall(ZOO, args.repeat), wall(TIMM, args.repeat)
    print(f"zoo list                     : {zoo_s:.3f} s (median of {args.repeat})")
    print(f"timm.list_pretrained()       : {timm_s:.3f} s (median of {args.repeat})")
    print(f"ratio                        : {timm_s / zoo_s:.1f}x faster (target >= 20x, zoo <= 0.3 s)")


if __name__ == "__main__":
    main()
