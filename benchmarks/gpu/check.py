"""The GPU check of issue 16: every GPU path of the project, measured on a GPU machine in one short go.

    bash benchmarks/gpu/check.sh [OUT]          # OUT: $OUT if set, else results/gpu-check
    python3 benchmarks/gpu/check.py --dry-run   # the steps, their commands and time limits; runs nothing

Steps, in order, each a subprocess with its own time limit inside one overall budget (``--budget-s``, 470 s
by default, so a fresh machine finishes inside 8 minutes); a step that fails or runs out of time is recorded
and the next one runs:

====================  ====================================================================================
setup                 make the project importable: carried wheels (``.whl/``, see wheels.sh) and editable
                      installs with ``pip --no-index --no-deps`` (the lent machine reaches no registry);
                      skipped where harness and its plugins already import
environment           GPU model, driver, CUDA, CuPy, torch, NVRTC, multiprocessors, L2, measured copy
                      bandwidth (CuPy and torch), and which project dependencies import; no GPU visible:
                      every later GPU step is skipped and the check exits 2 with the reason
pytest-gpu            ``pytest -m gpu`` over every plugin's tests (junit XML parsed: passed, failed, errors)
softmax               every GPU softmax algorithm and torch.softmax on rows of 1K..256K and vectors of
                      1e4..1e8, float32 / bfloat16 / float16: GB/s, fraction of copy, ratio to torch
quant                 the CuPy fake-quant and FWHT kernels and their torch CUDA references: GB/s, fraction
                      of copy, error against the CPU reference
rl                    one smoke cell per RL algorithm through ``harness run --device cuda`` and the same
                      cells with ``--device cpu``: gradient steps per second, cuda over cpu
====================  ====================================================================================

Files: ``OUT/summary.md`` and ``OUT/summary.json`` (every step's status, duration and result tables), rewritten
after each step so a killed check keeps what the earlier steps wrote. Raw per-step files (``<step>.log``,
``<step>.json``, ``<step>.md``) go to ``--work`` (default ``OUT/steps``); when that lies outside OUT they are
also packed into ``OUT/steps.tar.gz`` after each step (the device tool returns at most 8 files from $OUT).

Exit status: 0 every step ok; 1 some step failed; 2 no GPU visible (the GPU steps were skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEFAULT_BUDGET_S = 470  # a fresh machine: about a minute to start, 8 minutes of this check
SUMMARY_RESERVE_S = 5  # kept back from the last step for writing the summary
MIN_STEP_S = 10  # a step with less time left than this is skipped rather than started
NO_GPU_EXIT = 3  # what environment.py exits with when no GPU is visible
# The plugins the check installs and imports (d4rl and rlbench need MuJoCo datasets and Meta-World: no GPU path).
PLUGINS = ("plugins/core-metrics", "plugins/softmax", "plugins/quant", "plugins/rl")
IMPORTS = ("harness", "harness.cli.main", "harness_softmax", "harness_quant", "harness_rl")


@dataclass
class Step:
    """One subprocess of the check. ``command`` may hold ``{python}``, ``{work}`` and ``{name}`` placeholders."""

    name: str
    description: str
    command: list[str]
    timeout_s: int
    needs_gpu: bool = True


@dataclass
class StepResult:
    name: str
    description: str
    status: str = "pending"  # ok | failed | timeout | skipped | planned
    returncode: int | None = None
    duration_s: float = 0.0
    timeout_s: int = 0
    command: str = ""
    detail: str = ""  # why it failed or was skipped, or a one-line result
    files: list[str] = field(default_factory=list)


def steps() -> list[Step]:
    """The check's steps, in the order they run."""
    py = "{python}"
    result = ["--json", "{work}/{name}.json", "--md", "{work}/{name}.md"]
    return [
        Step("setup", "make harness and its plugins importable (offline)", [py, str(HERE / "setup.py")], 90, False),
        Step(
            "environment",
            "GPU, driver, CUDA, CuPy, torch, copy bandwidth",
            [py, str(HERE / "environment.py"), *result],
            45,
            False,
        ),
        Step("pytest-gpu", "pytest -m gpu over every plugin", [py, str(HERE / "pytest_gpu.py"), *result], 110),
        Step(
            "softmax",
            "softmax GPU table: GB/s, fraction of copy, vs torch",
            [py, str(HERE / "softmax_table.py"), *result],
            170,
        ),
        Step(
            "quant",
            "quantization kernels: GB/s, fraction of copy, error",
            [py, str(ROOT / "benchmarks/quant/gpu_kernels.py"), *result],
            45,
        ),
        Step(
            "rl",
            "one smoke cell per RL algorithm, --device cuda vs cpu",
            [py, str(HERE / "rl_cells.py"), *result, "--work", "{work}/rl"],
            120,
        ),
    ]


def expand(part: str, **values: str) -> str:
    """``part`` with its ``{python}``, ``{work}`` and ``{name}`` placeholders filled (other braces left alone)."""
    for key, value in values.items():
        part = part.replace("{" + key + "}", value)
    return part


def default_python() -> str:
    """The interpreter of the steps: $HARNESS_GPU_PYTHON, else the project's .venv, else this one."""
    if os.environ.get("HARNESS_GPU_PYTHON"):
        return os.environ["HARNESS_GPU_PYTHON"]
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_step(
    step: Step, command: list[str], log: Path, timeout_s: float, env: dict[str, str]
) -> tuple[str, int | None]:
    """Run one step's command with its output in ``log``; kill its whole process group at the time limit."""
    with log.open("w") as handle:
        handle.write(f"$ {shlex.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            return ("ok" if process.wait(timeout=timeout_s) == 0 else "failed"), process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            handle.write(f"\n[check] killed after {timeout_s:.0f} s (the step's time limit)\n")
            return "timeout", None


def log_tail(log: Path, lines: int = 8) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return "\n".join(text[-lines:])


def step_detail(work: Path, name: str) -> str:
    """The one-line result a step's JSON gives under ``headline``, if any."""
    path = work / f"{name}.json"
    try:
        return str(json.loads(path.read_text()).get("headline", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def write_summary(out: Path, work: Path, results: list[StepResult], meta: dict[str, Any]) -> None:
    """summary.json and summary.md in ``out`` (and steps.tar.gz when the raw files live elsewhere)."""
    payload = {**meta, "steps": [asdict(r) for r in results]}
    environment = work / "environment.json"
    if environment.exists():
        try:
            payload["environment"] = json.loads(environment.read_text())
        except ValueError:
            pass
    (out / "summary.json").write_text(json.dumps(payload, indent=1, default=str))
    lines = [
        f"# GPU check, {meta['started_at']}",
        "",
        f"Machine: {meta['machine']}; git {meta['git']}; python {meta['python']}; outcome: **{meta['outcome']}**",
        "",
        "| step | status | seconds | limit | result |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        detail = r.detail.replace("\n", " ").replace("|", "/")[:300]
        lines.append(f"| {r.name} | {r.status} | {r.duration_s:.1f} | {r.timeout_s} | {detail} |")
    for r in results:
        table = work / f"{r.name}.md"
        if table.exists():
            lines += ["", f"## {r.name}", "", table.read_text().strip()]
        elif r.status in ("failed", "timeout"):
            lines += ["", f"## {r.name} ({r.status})", "", "```", log_tail(work / f"{r.name}.log", 30), "```"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    if not work.resolve().is_relative_to(out.resolve()):
        with tarfile.open(out / "steps.tar.gz", "w:gz") as archive:
            archive.add(work, arcname="steps")


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return commit.stdout.strip() + (" (dirty)" if dirty.strip() else "") if commit.returncode == 0 else "none"
    except OSError:
        return "none"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default=os.environ.get("OUT") or str(ROOT / "results" / "gpu-check"))
    parser.add_argument("--work", default=os.environ.get("GPU_CHECK_WORK"), help="raw per-step files (OUT/steps)")
    parser.add_argument("--python", default=default_python(), help="interpreter of the steps")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="wall time of the whole check")
    parser.add_argument("--only", default="", help="comma-separated step names to run (the others are skipped)")
    parser.add_argument("--skip", default="", help="comma-separated step names to skip")
    parser.add_argument("--stop-on-failure", action="store_true", help="stop at the first failed step")
    parser.add_argument("--dry-run", action="store_true", help="write the plan (summary with status planned)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    deadline = started + args.budget_s
    out = Path(args.out).resolve()
    work = Path(args.work).resolve() if args.work else out / "steps"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    only = {s for s in args.only.split(",") if s}
    skip = {s for s in args.skip.split(",") if s}
    plan = steps()
    unknown = (only | skip) - {s.name for s in plan}
    if unknown:
        print(f"check.py: unknown step(s) {sorted(unknown)}; the steps are {[s.name for s in plan]}", file=sys.stderr)
        return 2
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)",
        "git": git_commit(),
        "python": args.python,
        "budget_s": args.budget_s,
        "out": str(out),
        "work": str(work),
        "outcome": "running",
    }
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["HARNESS_GPU_CHECK_IMPORTS"] = ",".join(IMPORTS)
    env["HARNESS_GPU_CHECK_PLUGINS"] = ",".join(PLUGINS)
    results: list[StepResult] = []
    gpu_missing = ""
    stopped = ""
    for step in plan:
        command = [expand(part, python=args.python, work=str(work), name=step.name) for part in step.command]
        result = StepResult(step.name, step.description, timeout_s=step.timeout_s, command=shlex.join(command))
        results.append(result)
        log = work / f"{step.name}.log"
        time_left = deadline - time.time() - SUMMARY_RESERVE_S
        if args.dry_run:
            result.status, result.detail = "planned", f"limit {step.timeout_s} s"
        elif step.name in skip or (only and step.name not in only):
            result.status, result.detail = "skipped", "not selected (--only / --skip)"
        elif stopped:
            result.status, result.detail = "skipped", stopped
        elif step.needs_gpu and gpu_missing:
            result.status, result.detail = "skipped", f"no GPU: {gpu_missing}"
        elif time_left < MIN_STEP_S:
            result.status, result.detail = "skipped", f"only {max(0.0, time_left):.0f} s of the check's budget left"
        else:
            limit = min(step.timeout_s, time_left)
            print(f"[check] {step.name}: {step.description} (limit {limit:.0f} s)", flush=True)
            begin = time.time()
            result.status, result.returncode = run_step(step, command, log, limit, env)
            result.duration_s = round(time.time() - begin, 2)
            result.detail = step_detail(work, step.name)
            if step.name == "environment" and result.returncode == NO_GPU_EXIT:
                result.status = "ok"
                gpu_missing = result.detail or "no CUDA GPU is visible"
            elif result.status != "ok":
                result.detail = (result.detail + " | " if result.detail else "") + log_tail(log, 3)
                if args.stop_on_failure:
                    stopped = f"--stop-on-failure after {step.name} {result.status}"
            result.files = sorted(p.name for p in work.glob(f"{step.name}.*"))
            print(
                f"[check] {step.name}: {result.status} in {result.duration_s:.1f} s {result.detail[:200]}", flush=True
            )
        write_summary(out, work, results, meta)
    failed = [r.name for r in results if r.status in ("failed", "timeout")]
    meta["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    meta["duration_s"] = round(time.time() - started, 1)
    if args.dry_run:
        meta["outcome"] = "planned (dry run)"
    elif gpu_missing:
        meta["outcome"] = f"no GPU ({gpu_missing}); GPU steps skipped"
    else:
        meta["outcome"] = f"failed: {', '.join(failed)}" if failed else "ok"
    write_summary(out, work, results, meta)
    if args.dry_run:
        for r in results:
            print(f"{r.name:12s} limit {r.timeout_s:4d} s  {r.command}")
        return 0
    print(f"[check] {meta['outcome']}; summary in {out / 'summary.md'}", flush=True)
    if gpu_missing:
        print(f"check.py: no CUDA GPU is visible ({gpu_missing}): the GPU steps were skipped", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
