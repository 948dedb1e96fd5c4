"""SAC with demonstrations vs SAC without, at a fixed small budget: the ``short`` profile of suites/metaworld.toml.

Runs the same cells as ``harness run metaworld --profile short`` restricted to the two SAC variants (budget,
parameters and seeds read from the suite file, so the two cannot drift apart), calling the plugins' callables
in-process, and prints per-seed final success rate and success AUC with the mean over seeds and the verdict
"with demos > without demos". Uses the real environment and algorithm plugins (harness_rlbench, harness_rl).

    .venv/bin/python benchmarks/rlbench/sac_demos.py --tasks reach
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

from harness import CellContext
from harness.plugins import load_plugins
from harness.specs import resolve_callable

SUITE = Path(__file__).resolve().parents[2] / "suites" / "metaworld.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["reach", "button-press"])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the short profile's")
    args = parser.parse_args()
    profile = tomllib.loads(SUITE.read_text())["profiles"]["short"]
    seeds = args.seeds if args.seeds is not None else profile["seeds"]
    budget, overrides = profile["budget"], profile["params"]
    registry = load_plugins()
    sac = registry.get("algorithm", "sac").spec
    success_rate = resolve_callable(registry.get("metric", "success_rate").spec.compute)
    success_auc = resolve_callable(registry.get("metric", "success_auc").spec.compute)
    print(f"budget {budget}, seeds {seeds}")
    print("| task | variant | seed | final success rate | success AUC | wall s |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        env_name = f"metaworld-{task}"
        env_spec = registry.get("environment", env_name).spec
        env_params = env_spec.resolve_params(
            {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith(env_name + ".")}
        )
        summary: dict[str, list[tuple[float, float]]] = {}
        for label, use_demos in (("sac-demos", True), ("sac-no-demos", False)):
            params = sac.resolve_params(
                {
                    "use_demonstrations": use_demos,
                    **{k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith(label + ".")},
                }
            )
            for seed in seeds:
                with tempfile.TemporaryDirectory() as tmp:
                    context = CellContext(
                        seed=seed,
                        budget=budget,
                        profile="short",
                        checkpoint_dir=Path(tmp) / "ck",
                        cache_dir=Path(tmp) / "cache",
                    )
                    start = time.perf_counter()
                    environment = resolve_callable(env_spec.make)(params=env_params, context=context)
                    outcome = resolve_callable(sac.run)(environment=environment, params=params, context=context)
                    wall = time.perf_counter() - start
                    success = success_rate(outcome=outcome, environment=environment, context=context)
                    auc = success_auc(outcome=outcome, environment=environment, context=context)
                summary.setdefault(label, []).append((success, auc))
                print(f"| {task} | {label} | {seed} | {success:.2f} | {auc:.3f} | {wall:.0f} |", flush=True)
        means = {label: statistics.mean(s for s, _ in values) for label, values in summary.items()}
        aucs = {label: statistics.mean(a for _, a in values) for label, values in summary.items()}
        verdict = "yes" if means["sac-demos"] > means["sac-no-demos"] else "no"
        print(
            f"| {task} | mean over seeds | | demos {means['sac-demos']:.2f} vs none {means['sac-no-demos']:.2f} | "
            f"demos {aucs['sac-demos']:.3f} vs none {aucs['sac-no-demos']:.3f} | with demos better: {verdict} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
