"""Step ``pytest-gpu`` of the GPU check: ``pytest -m gpu`` over every plugin's tests, results from junit XML.

Test modules of plugins whose dependencies the GPU machine lacks (D4RL datasets, Meta-World) fail to import;
pytest goes on (``--continue-on-collection-errors``) and they are listed apart from the test results. The step
fails when a selected test fails or errors, or when no GPU test ran at all.

    python benchmarks/gpu/pytest_gpu.py --json pytest-gpu.json --md pytest-gpu.md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PER_TEST_TIMEOUT_S = 90


def parse_junit(path: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(test results, collection errors) of a junit XML file."""
    tests, collection = [], []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or child.text or "")[:500]
                break
        if outcome == "error" and "collection failure" in message:
            collection.append({"test": name, "message": message})
        else:
            tests.append({"test": name, "outcome": outcome, "message": message})
    return tests, collection


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--md", type=Path)
    parser.add_argument("paths", nargs="*", default=["plugins"])
    args = parser.parse_args()
    junit = args.json.with_suffix(".xml")
    command = [
        sys.executable,
        "-m",
        "pytest",
        *args.paths,
        "-m",
        "gpu",
        "-q",
        "-rfEs",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
        "-W",
        "ignore::pytest.PytestConfigWarning",
        f"--junitxml={junit}",
    ]
    if importlib.util.find_spec("pytest_timeout"):
        command.append(f"--timeout={PER_TEST_TIMEOUT_S}")
    print("$", " ".join(command), flush=True)
    completed = subprocess.run(command, cwd=ROOT)
    if not junit.exists():
        args.json.write_text(json.dumps({"headline": f"pytest wrote no report (exit {completed.returncode})"}))
        return 1
    tests, collection = parse_junit(junit)
    counts = {
        outcome: sum(t["outcome"] == outcome for t in tests) for outcome in ("passed", "failed", "error", "skipped")
    }
    headline = (
        ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) + f"; {len(collection)} modules not importable"
    )
    result = {
        "headline": headline,
        "exit_code": completed.returncode,
        "counts": counts,
        "tests": tests,
        "collection_errors": collection,
    }
    args.json.write_text(json.dumps(result, indent=1))
    if args.md:
        lines = [f"pytest -m gpu: {headline}", "", "| test | outcome | message |", "| --- | --- | --- |"]
        for test in tests:
            if test["outcome"] != "passed":
                message = test["message"].replace("\n", " ").replace("|", "/")[:200]
                lines.append(f"| {test['test']} | {test['outcome']} | {message} |")
        lines += [f"| {c['test']} | not importable | {c['message'][:120]} |" for c in collection]
        args.md.write_text("\n".join(lines) + "\n")
    print(headline)
    return 1 if counts["failed"] or counts["error"] or not counts["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
