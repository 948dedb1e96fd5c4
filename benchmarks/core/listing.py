"""Listing stays light (issue 17): wall time of `harness list algorithms` and `harness --help`, side by side with a
bare `python -c pass` start-up on the same interpreter; target under 1.5 s each on the 2-core VM.

    .venv/bin/python benchmarks/core/listing.py [--repeats 7]

Each command runs as a fresh process (what a user waits for); the rounds interleave the commands so that load
changes hit all of them alike. Prints the median and the spread per command.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HARNESS = shutil.which("harness") or str(Path(sys.executable).with_name("harness"))
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "harness --help": [HARNESS, "--help"],
    "harness list algorithms": [HARNESS, "list", "algorithms"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    print("| command | median s | min-max s | target |")
    print("|---|---|---|---|")
    for name, values in times.items():
        target = "baseline" if name.startswith("python") else "< 1.5 s"
        print(f"| `{name}` | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} | {target} |")


if __name__ == "__main__":
    main()
