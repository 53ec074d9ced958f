"""The paper's TCO study end to end, as a user runs it (target: < 10 s on a 2-core machine).

    .venv/bin/python benchmarks/bench_tco_study.py [--repeat 3]

Prints each run's wall time of `hetagent tco examples/studies/paper.toml` (process start, study, table and PNG
chart included) and the best of them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "hetagent", "tco", str(ROOT / "examples/studies/paper.toml"),
                 "--chart", str(Path(tmp) / "paper.png"), "--json"],
                check=True, stdout=subprocess.DEVNULL,
            )
            times.append(time.perf_counter() - start)
    print("hetagent tco examples/studies/paper.toml: " + ", ".join(f"{t:.2f} s" for t in times))
    print(f"best {min(times):.2f} s (target < 10 s)")


if __name__ == "__main__":
    main()
