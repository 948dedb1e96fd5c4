"""Step ``rl`` of the GPU check: one smoke cell per RL algorithm through ``harness run --device cuda``, and the
same cells with ``--device cpu``: gradient steps per second on each, and their ratio.

The cells run on the rl plugin's test task (``rl-test-inverted-pendulum``, random InvertedPendulum-v5
transitions, loaded with ``-p harness_rl_testtask``), CORL network sizes and batch 256, for
``GRADIENT_STEPS`` updates (online algorithms: ``ENV_STEPS`` environment steps after 64 buffered ones), one
job at a time. The rate is the outcome's ``gradient_steps_per_s`` (update time only). MLflow may be absent:
the run then keeps its results in the journal and in its ``--json`` summary, which is what is read here.

    python benchmarks/gpu/rl_cells.py --json rl.json --md rl.md --work /tmp/rl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ALGORITHMS = ("bc", "td3-bc", "iql", "riql", "arsq", "sac", "wsrl")
GRADIENT_STEPS = 300
ENV_STEPS = 300
SUITE = f"""
name = "gpu-check-rl"
description = "GPU check: one smoke cell per rl algorithm (tiny budgets, CORL network sizes)"
seeds = [0]
metrics = ["gradient_steps_per_s", "env_steps_per_s", "return_mean"]
algorithms = {json.dumps(list(ALGORITHMS))}
environments = ["rl-test-inverted-pendulum"]

[profiles.smoke]
timeout_s = 240
budget = {{ gradient_steps = {GRADIENT_STEPS}, env_steps = {ENV_STEPS}, eval_every = {GRADIENT_STEPS}, \
eval_episodes = 1 }}
params = {{ "sac.learning_starts" = 64, "wsrl.warmup_fraction" = 0.2, "rl-test-inverted-pendulum.transitions" = 2000 }}
"""


def run_suite(suite: Path, device: str, work: Path, timeout_s: float) -> dict[str, Any]:
    """The --json summary of ``harness run`` on ``device`` (or an error record)."""
    results = work / f"results-{device}"
    command = [
        sys.executable,
        "-c",
        "import sys; from harness.cli.main import main; sys.exit(main())",
        "--results-dir",
        str(results),
        "run",
        str(suite),
        "--profile",
        "smoke",
        "-p",
        "harness_rl_testtask",
        "--device",
        device,
        "--jobs",
        "1",
        "--no-resume",
        "--tracking-uri",
        f"sqlite:///{results}/mlflow.db",
        "--json",
    ]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "plugins/rl/tests"), os.environ.get("PYTHONPATH")])),
    )
    begin = time.perf_counter()
    try:
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"harness run --device {device} ran past {timeout_s:.0f} s"}
    (work / f"run-{device}.stderr").write_text(completed.stderr)
    print(completed.stderr[-2000:], file=sys.stderr)
    try:
        summary = json.loads(completed.stdout)
    except ValueError:
        return {"error": f"exit {completed.returncode}, no JSON: {completed.stderr.strip()[-300:]}"}
    summary["wall_s"] = round(time.perf_counter() - begin, 1)
    return summary


def by_algorithm(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cell["label"].split("/")[0]: cell for cell in summary.get("cells", [])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--timeout-s", type=float, default=110, help="per device")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    suite = args.work / "gpu-check-rl.toml"
    suite.write_text(SUITE)
    runs = {device: run_suite(suite, device, args.work, args.timeout_s) for device in ("cuda", "cpu")}
    cells = {device: by_algorithm(summary) for device, summary in runs.items()}
    rows = []
    for algorithm in ALGORITHMS:
        cuda, cpu = cells["cuda"].get(algorithm, {}), cells["cpu"].get(algorithm, {})
        rate_cuda = (cuda.get("metrics") or {}).get("gradient_steps_per_s")
        rate_cpu = (cpu.get("metrics") or {}).get("gradient_steps_per_s")
        rows.append(
            {
                "algorithm": algorithm,
                "cuda_status": cuda.get("status", "missing"),
                "cuda_device": cuda.get("device"),
                "cpu_status": cpu.get("status", "missing"),
                "cuda_updates_per_s": rate_cuda,
                "cpu_updates_per_s": rate_cpu,
                "cuda_over_cpu": rate_cuda / rate_cpu if rate_cuda and rate_cpu else None,
                "error": cuda.get("error") or cpu.get("error"),
            }
        )
    on_gpu = [r for r in rows if r["cuda_status"] == "ok" and r["cuda_device"] == "cuda"]
    headline = f"{len(on_gpu)}/{len(ALGORITHMS)} cells ran on cuda"
    errors = {device: summary["error"] for device, summary in runs.items() if "error" in summary}
    if errors:
        headline += f"; {errors}"
    result = {
        "headline": headline,
        "gradient_steps": GRADIENT_STEPS,
        "env_steps": ENV_STEPS,
        "rows": rows,
        "runs": {d: {k: v for k, v in s.items() if k != "cells"} for d, s in runs.items()},
    }
    args.json.write_text(json.dumps(result, indent=1, default=str))
    if args.md:
        lines = [
            f"Gradient steps per second (update time only), {GRADIENT_STEPS} updates per offline cell, batch 256.",
            "",
            "| algorithm | cuda | cpu | cuda / cpu | status (cuda, cpu) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in rows:
            fmt = lambda v: f"{v:.0f}" if v else ""  # noqa: E731
            ratio = f"{r['cuda_over_cpu']:.2f}x" if r["cuda_over_cpu"] else ""
            status = f"{r['cuda_status']} on {r['cuda_device']}, {r['cpu_status']}"
            if r["error"]:
                status += f": {str(r['error'])[:150]}".replace("|", "/").replace("\n", " ")
            rates = f"{fmt(r['cuda_updates_per_s'])} | {fmt(r['cpu_updates_per_s'])}"
            lines.append(f"| {r['algorithm']} | {rates} | {ratio} | {status} |")
        args.md.write_text("\n".join(lines) + "\n")
    print(headline)
    return 0 if len(on_gpu) == len(ALGORITHMS) else 1


if __name__ == "__main__":
    sys.exit(main())
