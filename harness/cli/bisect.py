"""``harness bisect``: the first commit of the code under test at which a metric moved from its good level.

Exit codes: 0 a first bad commit was found, 2 bad input (a revision that is not a commit, good not an ancestor
of bad, a dirty checkout without --allow-dirty, an unknown metric), 3 it cannot be decided (no change between
good and bad, the good or bad commit cannot be evaluated, only commits that cannot be evaluated are left).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from harness.cli.reporting import _bad_input_exits_2, _results_dir, _store_options, _tracking_uri
from harness.errors import BadInput
from harness.untrusted import visible


def _say(message: str) -> None:
    click.echo(visible(f"bisect: {message}", keep_newlines=True), err=True)


def _suite_and_repo(ctx: click.Context, suite: str, repo: Path | None, modules: tuple[str, ...],
                    tracking_uri: str) -> tuple[Any, Path]:  # fmt: skip
    """The suite (by path or name; a name no plugin ships is found through its newest stored run's suite file)
    and the repository under test (--repo, else the suite's `repository`, else the suite file's checkout)."""
    from harness.run.bisect import checkout_problem, git
    from harness.run.discovery import resolve_suite
    from harness.run.suite import load_suite_file

    registry = ctx.find_root().obj.registry(modules)
    suite_obj: Any = None
    try:
        suite_obj = resolve_suite(suite, registry)
    except BadInput:
        try:
            from harness.tracking.reader import RunStore

            store = RunStore(tracking_uri)
            run_id = store.resolve(suite)
            info = store.suite_info(run_id)
            if info.get("suite_file") and Path(info["suite_file"]).is_file():
                suite_obj = load_suite_file(Path(info["suite_file"]))
        except BadInput:
            pass
        if suite_obj is None:
            raise
    if repo is None:
        repo = suite_obj.repository or suite_obj.path.parent
    problem = checkout_problem(repo)
    if problem:
        raise BadInput(f"{problem} (the repository under test: pass --repo PATH)")
    top = git(repo, "rev-parse", "--show-toplevel").stdout.strip()
    return suite_obj, Path(top).resolve() if top else repo.resolve()


def _configuration(ctx: click.Context, suite: Any, profile: str, overrides: tuple[str, ...], only: tuple[str, ...],
                   modules: tuple[str, ...]) -> Any:  # fmt: skip
    """The cells a stored run must hold to be reused (see harness.run.bisect), or None when the suite cannot be
    expanded here (its plugin not importable in this process): then every commit is measured afresh."""
    from harness.run.bisect import expected_cells
    from harness.run.selection import select_cells

    try:
        _, cells = suite.expand(ctx.find_root().obj.registry(modules), profile, overrides)
    except BadInput as exc:
        _say(f"stored runs are not reused: the suite does not expand here ({exc})")
        return None
    return expected_cells(select_cells(cells, only, str(suite.path)))


def _declared_metrics(suite: Any) -> set[str]:
    names = set(suite.model.metrics)
    for matrix in suite.matrices(None):
        names |= set(matrix.metrics)
    for profile in suite.model.profiles.values():
        names |= {name for matrix in profile.matrix or [] for name in matrix.metrics}
    return names


@click.command()
@click.argument("suite")
@click.option("--good", required=True, metavar="REV", help="A commit at the good level (SHA, prefix, branch, tag).")
@click.option("--bad", required=True, metavar="REV", help="A later commit at the bad level (a descendant of --good).")
@click.option(
    "--repo", "repository", type=click.Path(path_type=Path, file_okay=False),
    help="The git checkout of the code under test (default: the suite's `repository`, else the suite file's "
    "checkout). It is never modified: each commit is checked out in a temporary `git worktree`.",
)  # fmt: skip
@click.option("--metric", help="The metric that moved (default: the suite's only metric).")
@click.option(
    "--only", multiple=True, metavar="FIELD=GLOB,...",
    help="The cells whose metric moved, as for `harness run --only` (e.g. 'algorithm=work,environment=bench'). "
    "Only these cells run at each commit.",
)  # fmt: skip
@click.option("--profile", help="Budget profile (default: the suite's default profile).")
@click.option(
    "--repeats", default=3, show_default=True, type=click.IntRange(min=1),
    help="Most evaluations of one commit: a commit whose level is too close to call is measured again, up to this.",
)  # fmt: skip
@click.option(
    "--measure-drift", is_flag=True,
    help="Measure the good and bad commits in two runs each before the search (up to 2 more evaluations; stored "
    "runs count), so the confidence includes how far whole runs drift, not only the seeds' spread. For timings.",
)  # fmt: skip
@click.option(
    "--install-cmd", metavar="CMD",
    help="Run CMD (a shell command) in each commit's worktree before measuring it, for code that needs a build, "
    "e.g. 'pip install -e .'. It installs into the current environment: the last commit evaluated stays installed.",
)  # fmt: skip
@click.option("-p", "modules", multiple=True, metavar="MODULE", help="Load a plugin module (repeatable).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Passed to the runner, as for run.")
@click.option("--alpha", default=0.05, show_default=True, help="Significance level of 'good and bad differ'.")
@click.option("--threshold", type=float, help="Smallest relative change that counts (default: the metric's).")
@click.option("--allow-dirty", is_flag=True, help="Go on when the checkout has uncommitted changes (they are ignored).")
@click.option("--no-reuse", is_flag=True, help="Measure every commit afresh instead of reusing stored runs of it.")
@click.option(
    "--timeout", "timeout_s", type=float,
    help="Seconds each step of an evaluation (--install-cmd, the run) may take; past it, every process the step "
    "started is stopped and the commit cannot be evaluated (default: no limit).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (progress stays on stderr).")
@_store_options
@click.pass_context
@_bad_input_exits_2
def bisect(
    ctx: click.Context,
    suite: str,
    good: str,
    bad: str,
    repository: Path | None,
    metric: str | None,
    only: tuple[str, ...],
    profile: str | None,
    repeats: int,
    measure_drift: bool,
    install_cmd: str | None,
    modules: tuple[str, ...],
    overrides: tuple[str, ...],
    alpha: float,
    threshold: float | None,
    allow_dirty: bool,
    no_reuse: bool,
    timeout_s: float | None,
    as_json: bool,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """Find the first commit between --good and --bad at which SUITE's metric moved to the bad level.

    \b
    Each commit is measured in its own `git worktree` (your checkout is never touched), with that commit's
    code first on the import path (a pure-Python package at the repository root or under src/), or installed
    by --install-cmd. Every measurement is a normal run recorded in MLflow with its commit (purpose "bisect":
    kept out of nightly trends). Stored runs of a commit (nightly history, an earlier bisect) on this machine
    are reused instead of measured again when their cells' code versions match those at that commit.

    \b
    The decision at each commit: where its level stands between the good (0) and bad (1) levels, given the
    metric's noise (the spread of seeds, pooled over every commit measured). Closer to bad is bad. A commit
    too close to call is measured again (up to --repeats) and every decision's confidence is reported. A
    clean step takes at most ceil(log2(commits)) + 2 evaluations. The result names the first bad commit (full
    SHA and subject), the size of the change there with its 95% interval, and whether that commit makes the
    whole change (a clean step) or only part of it (e.g. two smaller steps).

    \b
    From an alert (`harness alerts` prints this command):
      harness bisect toy-life --good 1a2b3c4 --bad 9f8e7d6 --metric wall_time_s \\
          --only 'algorithm=work,environment=bench'

    Exit 0 found, 2 bad input, 3 cannot be decided (no change between good and bad, commits that cannot be
    evaluated): never a commit it is not sure of without saying so.
    """
    from harness.analysis.bisect import Search, Undecided
    from harness.machine import machine_info
    from harness.run.bisect import Evaluator, commit_range, resolve_commit, uncommitted_changes

    directory = _results_dir(ctx, results_dir).resolve()
    uri = _tracking_uri(directory, tracking_uri)
    root = ctx.find_root().obj
    all_modules = tuple(dict.fromkeys(tuple(getattr(root, "modules", ())) + modules))
    suite_obj, repo = _suite_and_repo(ctx, suite, repository.resolve() if repository else None, modules, uri)
    changed = uncommitted_changes(repo)
    if changed and not allow_dirty:
        raise BadInput(
            f"{repo} has uncommitted changes ({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''}). "
            "bisect measures commits, never your working tree, and leaves the checkout as it is: commit or stash "
            "the changes if they matter, or pass --allow-dirty to go on without them"
        )
    if changed:
        _say(f"{repo} has uncommitted changes: they are not measured (each commit runs in its own worktree)")
    good_commit = resolve_commit(repo, good, "--good")
    bad_commit = resolve_commit(repo, bad, "--bad")
    commits = commit_range(repo, good_commit, bad_commit)
    profile_name, _ = suite_obj.profile(profile)
    declared = _declared_metrics(suite_obj)
    if metric is None:
        if len(declared) != 1:
            raise BadInput(f"--metric: which one? {suite_obj.name} measures {', '.join(sorted(declared))}")
        metric = next(iter(declared))
    elif declared and metric not in declared:
        raise BadInput(f"--metric {metric!r}: {suite_obj.name} measures {', '.join(sorted(declared))}")
    from harness.run.selection import parse_selection

    parse_selection(only)  # a malformed --only is bad input before anything runs
    expected = None if no_reuse else _configuration(ctx, suite_obj, profile_name, overrides, only, modules)

    evaluator = Evaluator(
        repo=repo, suite_path=suite_obj.path.resolve(), suite=suite_obj.name, profile=profile_name, metric=metric,
        tracking_uri=uri, results_dir=directory, fingerprint=str(machine_info()["fingerprint"]), only=only,
        expected=expected, modules=all_modules, overrides=overrides, install_cmd=install_cmd, timeout_s=timeout_s,
        reuse=not no_reuse, notify=_say,
    )  # fmt: skip

    def commit_at(index: int) -> Any:
        return good_commit if index < 0 else commits[index]

    def name(index: int) -> str:
        return f"{commit_at(index).short} {commit_at(index).subject[:50]!r}"

    def measure(index: int) -> tuple[dict[tuple[str, str], list[float]], str]:
        _say(f"{name(index)}: running {suite_obj.name}:{profile_name} in a worktree")
        return evaluator.run(commit_at(index))  # CannotEvaluate: the search skips the commit

    def declared_threshold() -> float:
        if threshold is not None:
            return threshold
        return evaluator.declared_threshold if evaluator.declared_threshold is not None else 0.05

    bound = math.ceil(math.log2(len(commits))) + 2 if len(commits) > 1 else 2
    bound += 2 if measure_drift else 0  # the second run of good and of bad
    _say(
        f"{len(commits)} commit(s) after {good_commit.short} up to {bad_commit.short}; a clean step takes at most "
        f"{bound} evaluations"
    )
    search = Search(
        len(commits), measure, lambda index: evaluator.stored(commit_at(index)), threshold=declared_threshold,
        repeats=repeats, alpha=alpha, measure_drift=measure_drift, notify=_say, name=name,
    )  # fmt: skip
    try:
        outcome = search.run()
    except Undecided as exc:
        evaluated = _evaluated(search.levels, search.decisions, commit_at, {})
        if as_json:
            click.echo(json.dumps({"first_bad": None, "reason": str(exc), "evaluated": evaluated}, indent=2))
        from harness.cli.output import print_error

        print_error(f"cannot decide: {exc}")
        ctx.exit(3)
        return
    result = _result(outcome, commits, commit_at, metric, bound, good_commit, bad_commit)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print(result)


def _evaluated(levels: dict[int, Any], decisions: list[Any], commit_at: Any, positions: dict[int, Any]) -> list[dict]:
    verdicts = {decision.index: decision for decision in decisions}
    rows = []
    for index, level in sorted(levels.items()):
        commit = commit_at(index)
        decision = verdicts.get(index)
        # A decided commit shows where it stood when it was decided; the given ends, where they stand.
        place = (decision.position if decision else None) or positions.get(index)
        role = "good (given)" if index == -1 else "bad (given)" if index == max(levels) and decision is None else ""
        rows.append({
            **commit.to_dict(),
            "verdict": role or (decision.side if decision else ("skipped" if level.problem else "")),
            "level": None if place is None or math.isnan(place.t) else round(place.t, 4),
            "level_se": None if place is None or math.isnan(place.se) else round(place.se, 4),
            "confidence": None if decision is None or place is None else round(place.confidence, 4),
            "intermediate": bool(place and place.intermediate),
            "means": {f"{a}/{e}": sum(v) / len(v) for (a, e), v in sorted(level.values.items()) if v},
            "runs": level.run_ids,
            "reused_runs": level.reused_run_ids,
            "problem": level.problem,
        })  # fmt: skip
    return rows


def _result(outcome: Any, commits: list[Any], commit_at: Any, metric: str, bound: int, good: Any,
            bad: Any) -> dict[str, Any]:  # fmt: skip
    # The case that moved most stands for the effect; every case is listed beside it.
    step = max(
        outcome.step, key=lambda change: 0 if math.isnan(change.relative_change) else abs(change.relative_change)
    )
    total = {change.case: change for change in outcome.changes}[step.case]
    effect = {
        "metric": metric,
        **{k: v for k, v in step.to_dict().items()},
        "total": total.to_dict(),
        "cases": [change.to_dict() for change in outcome.step],
        "total_cases": [change.to_dict() for change in outcome.changes],
    }
    return {
        "first_bad": commit_at(outcome.first_bad).to_dict(),
        "last_good": commit_at(outcome.last_good).to_dict(),
        "good": good.to_dict(),
        "bad": bad.to_dict(),
        "metric": metric,
        "effect": effect,
        "clean_step": outcome.clean_step,
        "step_fraction": round(outcome.step_fraction, 4),
        "confidence": round(outcome.confidence, 4),
        "noise": {f"{a}/{e}": noise.to_dict() for (a, e), noise in sorted(outcome.noise.items())},
        "drift_measured": outcome.drift_measured,
        "commits": len(commits),
        "evaluations": outcome.evaluations,
        "evaluation_bound": bound,
        "evaluated": _evaluated(outcome.levels, outcome.decisions, commit_at, outcome.positions),
    }


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:+.1%}"


def _print(result: dict[str, Any]) -> None:
    first, effect = result["first_bad"], result["effect"]
    lines = [
        f"first bad commit: {first['sha']} {first['subject']}",
        f"  {result['metric']} {effect['algorithm']}/{effect['environment']}: {_percent(effect['relative_change'])} "
        f"[{_percent(effect['low'])}, {_percent(effect['high'])}] from the last good commit "
        f"{result['last_good']['sha'][:12]} "
        f"({effect['before']:.4g} -> {effect['after']:.4g}); good -> bad: "
        f"{_percent(effect['total']['relative_change'])} [{_percent(effect['total']['low'])}, "
        f"{_percent(effect['total']['high'])}]",
    ]
    if result["clean_step"]:
        lines.append(f"  a clean step: this commit makes {result['step_fraction']:.0%} of the change")
    else:
        lines.append(
            f"  NOT a clean step: this commit makes {result['step_fraction']:.0%} of the change; levels of the "
            "evaluated commits below (0 good, 1 bad): look for a second step or a drift"
        )
    lines.append(f"  confidence of the decisions together: {result['confidence']:.1%}")
    if not result["drift_measured"]:
        lines.append(
            "  (no commit was measured in two runs, so that confidence counts the seeds' spread, not how far whole "
            "runs drift: for a timing, rerun with --measure-drift; the runs made here are reused)"
        )
    if result["confidence"] < 0.8:
        lines.append(
            "  LOW CONFIDENCE: the metric is noisy at this size of change; measure the commits around it again "
            "(--repeats, more seeds) before trusting the answer"
        )
    over = result["evaluations"] > result["evaluation_bound"]
    lines.append(
        f"evaluated ({result['evaluations']} run(s) made; a clean step needs at most {result['evaluation_bound']}"
        + ("; more were needed: the metric is noisy here)" if over else ")")
    )
    for row in result["evaluated"]:
        level = "" if row["level"] is None else f" level {row['level']:.2f}"
        sure = "" if row["confidence"] is None else f" ({row['confidence']:.0%} sure)"
        runs = f" runs {', '.join(r[:8] for r in row['runs'])}" if row["runs"] else ""
        reused = f" reused {', '.join(r[:8] for r in row['reused_runs'])}" if row["reused_runs"] else ""
        problem = f" cannot be evaluated: {row['problem'][:200]}" if row["problem"] else ""
        lines.append(
            f"  {row['sha'][:12]} {row['verdict']:<12}{level}{sure}{runs}{reused}{problem}  {row['subject'][:60]}"
        )
    for line in lines:
        click.echo(visible(line))


COMMANDS = [bisect]
