"""Commands that read results back from MLflow: report, compare, calibrate, nightly, import.

Exit codes: 0 fine (no regression), 1 a metric regressed significantly beyond its threshold, 2 bad input,
3 too little data to decide (the output says how many repeats would be needed).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from harness.errors import BadInput
from harness.paths import path_for
from harness.record import PURPOSE_CALIBRATION
from harness.untrusted import markup, visible

_TRACKING_HELP = "MLflow tracking URI (default: $HARNESS_TRACKING_URI, else sqlite:///<results-dir>/mlflow.db)."


def _results_dir(ctx: click.Context, value: Path | None) -> Path:
    if value is not None:
        return value
    root = ctx.find_root().obj
    if root is not None and getattr(root, "results_dir", None) is not None:
        return Path(root.results_dir)
    return Path(os.environ.get("HARNESS_RESULTS_DIR", "results"))


def _tracking_uri(results_dir: Path, value: str | None) -> str:
    from harness.tracking.uri import default_tracking_uri

    return value or default_tracking_uri(results_dir)


def _store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--tracking-uri", help=_TRACKING_HELP)(command)
    command = click.option(
        "--results-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Results folder (default: the harness --results-dir, $HARNESS_RESULTS_DIR or ./results).",
    )(command)
    return command


def _bad_input_exits_2(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BadInput as exc:
            from harness.cli.output import print_error

            print_error(str(exc))
            raise SystemExit(2) from None

    return wrapper


def _parse_thresholds(values: tuple[str, ...]) -> dict[str, float]:
    thresholds: dict[str, float] = {}
    for value in values:
        name, sep, number = value.rpartition("=")
        try:
            thresholds[name if sep else "*"] = float(number.rstrip("%")) / (100 if number.endswith("%") else 1)
        except ValueError:
            raise BadInput(f"--threshold {value!r}: expected METRIC=FRACTION (e.g. wall_time_s=0.1 or 10%)") from None
    return thresholds


def _store(ctx: click.Context, results_dir: Path | None, tracking_uri: str | None) -> tuple[Any, Path]:
    from harness.tracking.reader import RunStore

    directory = _results_dir(ctx, results_dir)
    return RunStore(_tracking_uri(directory, tracking_uri)), directory


def _formats(value: str) -> list[str]:
    from harness.report.build import REPORT_FILES

    formats = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = sorted(set(formats) - set(REPORT_FILES))
    if unknown or not formats:
        raise BadInput(f"--format {value!r}: choose from {', '.join(REPORT_FILES)} (comma-separated)")
    return formats


#: Separates a store's URI from a selector in that store: ``sqlite:///other/mlflow.db#latest``.
STORE_SEPARATOR = "#"


def split_selector(selector: str) -> tuple[str | None, str]:
    """``URI#SELECTOR`` as (URI, SELECTOR); a plain selector as (None, selector)."""
    uri, sep, rest = selector.partition(STORE_SEPARATOR)  # a store's URI holds no '#'; a tag value may
    if sep and ("://" in uri or uri.startswith("sqlite:")):
        if not rest.strip():
            raise BadInput(f"{selector!r}: nothing after {STORE_SEPARATOR!r}; write STORE_URI#RUN_OR_SUITE")
        return uri, rest
    return None, selector


def _load_selected(
    ctx: click.Context,
    selectors: tuple[str, ...],
    suite: str | None,
    profile: str | None,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> tuple[list[Any], Any, Path]:
    """The suite runs the selectors name (each in the default store, or in the store its ``URI#`` names), the
    default store and the results folder. A run named twice is loaded once."""
    from harness.tracking.reader import RunStore

    store, directory = _store(ctx, results_dir, tracking_uri)
    stores = {store.tracking_uri: store}
    runs: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for selector in selectors:
        uri, name = split_selector(selector)
        where = stores.get(uri or store.tracking_uri)
        if where is None:
            where = stores[uri or ""] = RunStore(uri or "")
        default_suite = suite or (runs[0].suite if runs else None)
        run_id = where.resolve(name, suite=default_suite, profile=profile)
        if (where.tracking_uri, run_id) in seen:
            continue
        seen.add((where.tracking_uri, run_id))
        runs.append(where.load(run_id))
    return runs, store, directory


@click.command()
@click.argument("selectors", nargs=-1, required=True, metavar="SUITE_OR_RUN...")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Folder for the report files.")
@click.option(
    "--format", "formats", default="html,md", show_default=True,
    help="Any of html, md, tex (the paper tables in LaTeX, booktabs), csv (their aggregates), comma-separated.",
)  # fmt: skip
@click.option("--profile", help="With a suite name: use the newest run of this profile.")
@click.option("--suite", help="Suite to look in for selectors like 'latest', 'baseline' or 'source=TEXT'.")
@click.option("--vs", "versus", metavar="RUN", help="Add a side-by-side comparison against this run (or tag).")
@click.option("--bootstrap-resamples", default=2000, show_default=True, help="Bootstrap replicates per interval.")
@click.option("--seed", default=0, show_default=True, help="Random state of every bootstrap (recorded).")
@click.option("--show-paths", is_flag=True, help="Write local store paths on the page (default: file names only).")
@_store_options
@click.pass_context
@_bad_input_exits_2
def report(
    ctx: click.Context,
    selectors: tuple[str, ...],
    out: Path | None,
    formats: str,
    profile: str | None,
    suite: str | None,
    versus: str | None,
    bootstrap_resamples: int,
    seed: int,
    show_paths: bool,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """Write a leaderboard report of one run, or of several runs ranked together.

    \b
    Each SUITE_OR_RUN is a suite name, run id, 'latest', 'baseline', KEY=VALUE or source=TEXT (imported
    results by their --source), optionally in another store: STORE_URI#SELECTOR, e.g.
        harness report d4rl source="Kostrikov et al. 2022" http://127.0.0.1:5000#d4rl --suite d4rl
    Several runs give one leaderboard of every algorithm, each row with where it comes from (run, store,
    machine, commit, or "reported: SOURCE"); an algorithm in two runs is two rows. Comparability is
    checked: a run whose unit or direction of a metric differs is left out of it (the page says why); rows
    from another dataset (sha256), budget profile or, for timings, another machine are marked.
    \b
    The HTML page is self-contained (plots embedded, no network needed): a summary, the paper tables
    (algorithm x task per metric, best and tied in bold, pooled column where comparable), leaderboards with
    IQM and 95% stratified-bootstrap intervals, plots with one colour per algorithm, curves, rooflines,
    trade-offs, failed cells, hardware, and the command that opens the runs in the MLflow UI. --format adds
    report.md (a pull request), tables.tex (LaTeX, booktabs) and aggregates.csv.
    """
    from harness.analysis.stats import BootstrapConfig
    from harness.report.build import build_report, write_report

    chosen = _formats(formats)
    runs, store, directory = _load_selected(ctx, selectors, suite, profile, results_dir, tracking_uri)
    run, others = runs[0], runs[1:]
    comparison = None
    if versus:
        from harness.analysis.compare import compare_runs

        other = store.load(store.resolve(versus, suite=run.suite, profile=run.profile))
        comparison = compare_runs(other, run)  # different hardware is annotated on the page, never refused
    config = BootstrapConfig(n_resamples=bootstrap_resamples, seed=seed)
    content = build_report(run, store, config, comparison=comparison, others=others, show_paths=show_paths)
    pattern = "{suite}-{profile}-{run}" if not others else "{suite}-leaderboard-{run}"
    target = out or path_for(
        directory / "reports", pattern, run.name_origin, suite=run.suite, profile=run.profile, run=run.run_id[:8],
    )  # fmt: skip
    paths = write_report(content, target, chosen)
    if not others and run.tracking_uri == store.tracking_uri:
        store.attach_report(run.run_id, paths)  # a leaderboard of several runs belongs to none of them
    for path in paths:
        click.echo(visible(path))


@click.command()
@click.argument("baseline")
@click.argument("candidate")
@click.option("--suite", help="Suite to look in when neither side is a run id.")
@click.option("--profile", help="Profile for tag selectors such as 'baseline'.")
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="[METRIC=]FRACTION",
    help="Override a regression threshold (repeatable): wall_time_s=0.1, or 5% for every metric.",
)
@click.option("--alpha", default=0.05, show_default=True, help="Significance level of the tests.")
@click.option("--metric", "metrics", multiple=True, help="Compare only these metrics (repeatable).")
@click.option("--allow-different-hardware", is_flag=True, help="Compare runs from different machines anyway.")
@click.option("--no-calibration", is_flag=True, help="Ignore a stored `harness calibrate` result.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--markdown", type=click.Path(path_type=Path, dir_okay=False), help="Also write Markdown here.")
@click.option("--junit", type=click.Path(path_type=Path, dir_okay=False), help="Also write JUnit XML here.")
@_store_options
@click.pass_context
@_bad_input_exits_2
def compare(
    ctx: click.Context,
    baseline: str,
    candidate: str,
    suite: str | None,
    profile: str | None,
    thresholds: tuple[str, ...],
    alpha: float,
    metrics: tuple[str, ...],
    allow_different_hardware: bool,
    no_calibration: bool,
    as_json: bool,
    markdown: Path | None,
    junit: Path | None,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """Compare CANDIDATE against BASELINE: per metric, both values, the change and a verdict.

    \b
    Each side is a run id, 'latest', 'latest~N', 'baseline' (the newest run tagged baseline=true) or
    KEY=VALUE (the newest run with that tag). Repeats are the seeds of each (algorithm, environment) case;
    when both runs measured the same seeds the test is paired (per-seed differences). A change counts when it
    is beyond the metric's threshold in its bad direction and significant (permutation or paired test, or a
    z-test against the noise measured by `harness calibrate`) or its 95% interval excludes zero. Runs from
    different hardware are refused only for metrics that depend on it (timings, throughput, memory).
    Exit codes: 0 no regression, 1 regression, 2 bad input, 3 too little data to decide.
    """
    from harness.analysis.calibration import load_calibration
    from harness.analysis.compare import check_hardware, compare_runs
    from harness.report.formats import print_comparison, to_junit, to_markdown

    store, directory = _store(ctx, results_dir, tracking_uri)
    candidate_id = store.resolve(candidate, suite=suite, profile=profile)
    candidate_run = store.load(candidate_id)
    baseline_run = store.load(
        store.resolve(baseline, suite=suite or candidate_run.suite, profile=profile or candidate_run.profile)
    )
    if baseline_run.run_id == candidate_run.run_id:
        raise BadInput(f"baseline and candidate are the same run ({candidate_run.run_id})")
    if baseline_run.suite != candidate_run.suite:
        raise BadInput(f"the runs are of different suites ({baseline_run.suite!r} and {candidate_run.suite!r})")
    check_hardware((baseline_run, candidate_run), allow_different_hardware, list(metrics) or None)
    calibration = None
    if not no_calibration:
        calibration = load_calibration(
            directory, candidate_run.suite, candidate_run.profile, candidate_run.fingerprint, candidate_run.name_origin
        )
    comparison = compare_runs(
        baseline_run,
        candidate_run,
        cli_thresholds=_parse_thresholds(thresholds),
        alpha=alpha,
        calibration=calibration,
        metrics=list(metrics) or None,
    )
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(to_markdown(comparison))
    if junit:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(to_junit(comparison))
    if as_json:
        click.echo(json.dumps(comparison.to_dict(), indent=2, default=str))
    else:
        print_comparison(comparison)
    ctx.exit(comparison.exit_code)


def _run_suite_in_process(
    ctx: click.Context,
    suite: str,
    profile: str | None,
    tracking_uri: str,
    results_dir: Path,
    overrides: tuple,
    *,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    repository: Path | None = None,
    purpose: str = "",
) -> str:
    """Run the suite through the runner API (plugins as the root command loaded them); return the run id."""
    from harness.run.runner import RunOptions, run_suite

    suite_obj, registry = _resolve(ctx, suite)
    options = RunOptions(
        profile=profile, tracking_uri=tracking_uri, results_dir=results_dir, resume=False, overrides=overrides,
        jobs=jobs, executor=executor, ray_address=address, repository=repository, purpose=purpose,
    )  # fmt: skip
    summary = run_suite(suite_obj, registry, options, notify=lambda message: click.echo(message, err=True))
    if summary.parent_run_id is None or summary.tracking_error:
        raise BadInput(f"the run of {suite!r} did not reach MLflow: {summary.tracking_error}")
    return summary.parent_run_id


def _resolve(ctx: click.Context, suite: str) -> tuple[Any, Any]:
    """(the suite, the plugin registry as the root command loaded it)."""
    from harness.run.discovery import resolve_suite

    state = ctx.find_root().obj
    if state is None or not hasattr(state, "registry"):
        from harness.plugins import PluginOptions, load_plugins

        registry = load_plugins(PluginOptions())
    else:
        registry = state.registry()
    return resolve_suite(suite, registry), registry


def _runner_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--jobs, --executor, --address and --repo, as `harness run` takes them, for commands that run the suite."""
    command = click.option(
        "--repo",
        "repository",
        type=click.Path(path_type=Path, file_okay=False, exists=True),
        help="The git checkout of the code under test: its full commit SHA and dirty flag are recorded "
        "(default: the suite's `repository`, else the suite file's checkout, else the working directory's).",
    )(command)
    command = click.option("--address", help="Ray cluster address for --executor ray (default: start a local one).")(
        command
    )
    command = click.option(
        "--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
        help="Where cells run: a local worker pool or Ray.",
    )(command)  # fmt: skip
    command = click.option("--jobs", "-j", default=1, show_default=True, help="Cells run in parallel.")(command)
    return command


@click.command()
@click.argument("suite")
@click.option("--profile", help="Budget profile to calibrate (default: the suite's default profile).")
@click.option("--repeats", default=5, show_default=True, help="How many times to run the suite.")
@click.option(
    "--from-existing",
    is_flag=True,
    help="Use the newest --repeats finished runs already in MLflow instead of running the suite again.",
)
@click.option("--effect", type=float, help="Relative change to size repeats for (default: each metric's threshold).")
@click.option("--alpha", default=0.05, show_default=True, help="Significance level the repeats are sized for.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Passed to the runner, as for run.")
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as JSON.")
@_runner_options
@_store_options
@click.pass_context
@_bad_input_exits_2
def calibrate(
    ctx: click.Context,
    suite: str,
    profile: str | None,
    repeats: int,
    from_existing: bool,
    effect: float | None,
    alpha: float,
    overrides: tuple[str, ...],
    as_json: bool,
    jobs: int,
    executor: str,
    address: str | None,
    repository: Path | None,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """Measure each metric's run-to-run noise on this machine and store noise-calibrated thresholds.

    \b
    Runs SUITE --repeats times (every cell, --no-resume; the repeats are recorded as calibration runs, kept
    out of nightly history), then per metric and (algorithm, environment) case measures the spread of each
    cell's value across the runs; each case gets its own threshold. Stored in
    <results-dir>/calibration/<suite>-<profile>.json and as an MLflow run tagged harness.kind=calibration;
    `harness compare` and `harness nightly` use it: thresholds are raised to 3x the measured spread and
    single runs can be judged against the known noise. A case so noisy that its threshold would exceed 50%
    gets none (that would switch detection off): the output names it and the repeats it needs.
    """
    from harness.analysis.calibration import calibrate_from_runs
    from harness.tracking.reader import RunStore
    from harness.tracking.writer import log_calibration

    if repeats < 2:
        raise BadInput("--repeats must be at least 2 to measure a spread")
    directory = _results_dir(ctx, results_dir)
    uri = _tracking_uri(directory, tracking_uri)
    if from_existing:
        store = RunStore(uri)
        suite_name = suite
        if suite.endswith(".toml") or Path(suite).is_file():
            from harness.run.suite import load_suite_file

            suite_name = load_suite_file(Path(suite)).name
        found = store.suite_runs(suite_name, profile)[:repeats]
        run_ids = [run.info.run_id for run in found]
    else:
        run_ids = []
        for index in range(repeats):
            click.echo(f"calibration run {index + 1} of {repeats}", err=True)
            run_ids.append(
                _run_suite_in_process(
                    ctx,
                    suite,
                    profile,
                    uri,
                    directory,
                    overrides,
                    jobs=jobs,
                    executor=executor,
                    address=address,
                    repository=repository,
                    purpose=PURPOSE_CALIBRATION,
                )
            )
        store = RunStore(uri)
    runs = [store.load(run_id) for run_id in run_ids]
    calibration = calibrate_from_runs(runs, effect=effect, alpha=alpha)
    path = calibration.save(directory)
    log_calibration(store.client, runs[0].experiment_id, calibration)
    if as_json:
        data = calibration.to_dict()
        data["too_noisy"] = {name: calibration.metrics[name].advice for name in calibration.too_noisy}
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"noise of {markup(calibration.suite)}:{markup(calibration.profile)} over {len(runs)} runs")
    for column in ("metric", "run-to-run spread (CV)", "thresholds per case", "configured", "repeats for effect"):
        table.add_column(column)
    for name, entry in calibration.metrics.items():
        stored = sorted(entry.case_thresholds.values())
        thresholds = f"{stored[0]:.2%}" if stored else ""
        if len(stored) > 1 and stored[-1] != stored[0]:
            thresholds += f" to {stored[-1]:.2%}"
        if entry.too_noisy_cases:
            thresholds += f"{'; ' if stored else ''}[red]{len(entry.too_noisy_cases)} case(s) not stored (too noisy)[/]"
        table.add_row(
            markup(name),
            f"{entry.cv:.2%}",
            thresholds,
            f"{entry.configured_threshold:.2%}",
            f"{entry.repeats_needed} for {entry.effect:.1%}",
        )
    console = Console(highlight=False)
    console.print(table)
    for name in calibration.too_noisy:
        console.print(f"[bold yellow]{markup(name)}[/]: {markup(calibration.metrics[name].advice)}")
    click.echo(f"stored in {visible(path)}")


@click.command()
@click.argument("suite")
@click.option("--profile", help="Budget profile (default: the suite's default profile).")
@click.option(
    "--promote", is_flag=True, help="Make the new run this machine's baseline if it is clean (no alert open)."
)
@click.option("--fail-on-open", is_flag=True, help="Exit 1 while any alert is open, not only on the night it opens.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Report folder.")
@click.option("--history", default=60, show_default=True, help="Nights shown in the trend plots.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Passed to the runner, as for run.")
@click.option("--alpha", default=0.05, show_default=True, help="Significance level of the comparison.")
@click.option(
    "--allow-different-hardware",
    is_flag=True,
    help="With no baseline on this machine, compare with another machine's (hardware-dependent rows annotated).",
)
@_runner_options
@_store_options
@click.pass_context
@_bad_input_exits_2
def nightly(
    ctx: click.Context,
    suite: str,
    profile: str | None,
    promote: bool,
    fail_on_open: bool,
    out: Path | None,
    history: int,
    overrides: tuple[str, ...],
    alpha: float,
    allow_different_hardware: bool,
    jobs: int,
    executor: str,
    address: str | None,
    repository: Path | None,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """Run SUITE, compare with this machine's baseline, track alerts, write the report with trends.

    \b
    The baseline is the newest promotion of the suite and profile on this machine (hardware fingerprint),
    found before any cell runs; a machine without one starts its own history. Each regression opens an
    alert; later nights list it as open, not new, until the level returns (fixed) or a run with the new
    level is promoted (harness promote RUN --reason TEXT: accepted). Trends cover complete nights of this
    machine only (killed runs and calibration repeats are left out), with change points by night and commit.

    \b
    Exit codes: 0 no new alert; 1 a new alert opened (or, with --fail-on-open, any is open) or a cell failed;
    2 bad input; 3 too little data to decide.

    \b
    A cron job:
      harness nightly my-suite --repo ~/src/my-library --promote
      harness alerts my-suite          what is open, since which commit
    """
    from harness.machine import machine_info
    from harness.report.nightly import find_baseline, run_nightly

    directory = _results_dir(ctx, results_dir)
    uri = _tracking_uri(directory, tracking_uri)
    suite_obj, _registry = _resolve(ctx, suite)
    profile_name = profile or suite_obj.model.default_profile
    fingerprint = str(machine_info()["fingerprint"])
    baseline = find_baseline(
        uri, suite_obj.name, profile_name, fingerprint, allow_different_hardware=allow_different_hardware
    )
    click.echo(visible(baseline.message), err=True)
    run_id = _run_suite_in_process(
        ctx, suite, profile, uri, directory, overrides, jobs=jobs, executor=executor, address=address,
        repository=repository,
    )  # fmt: skip
    outcome = run_nightly(
        run_id, uri, directory, promote=promote, out=out, history=history, alpha=alpha,
        allow_different_hardware=allow_different_hardware, baseline=baseline, fail_on_open=fail_on_open,
    )  # fmt: skip
    for line in outcome.messages:
        click.echo(visible(line, keep_newlines=True))
    ctx.exit(outcome.exit_code)


@click.command()
@click.argument("run_selector", metavar="RUN")
@click.option("--reason", default="", help="Why this level is accepted (recorded in MLflow with the promotion).")
@click.option("--suite", help="Suite to look in for selectors like 'latest' (a run id or commit needs none).")
@click.option("--profile", help="Profile for selectors like 'latest'.")
@click.option("--json", "as_json", is_flag=True, help="Print what was promoted and the alerts closed as JSON.")
@_store_options
@click.pass_context
@_bad_input_exits_2
def promote(
    ctx: click.Context,
    run_selector: str,
    reason: str,
    suite: str | None,
    profile: str | None,
    as_json: bool,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """Make RUN the baseline of its suite, profile and machine: accept its level.

    \b
    RUN is a run id, a commit SHA (7+ characters), 'latest' or 'latest~N' with --suite. Open alerts of that
    suite, profile and machine that opened at or before RUN close as 'accepted' with --reason (one opened
    later stays open: RUN predates its change); later nights compare with RUN. Refused for
    an incomplete run, a calibration repeat or imported results.
      harness promote latest --suite my-suite --reason "new allocator: 20% slower, 3x less memory"
    """
    from harness.report.nightly import promote_run

    store, _directory = _store(ctx, results_dir, tracking_uri)
    run = store.load(store.resolve(run_selector, suite, profile))
    closed, still_open = promote_run(store, run, reason)
    if as_json:
        data = {"run_id": run.run_id, "suite": run.suite, "profile": run.profile, "fingerprint": run.fingerprint,
                "git_commit": run.git_commit, "reason": reason, "closed": [a.to_dict() for a in closed],
                "still_open": [a.to_dict() for a in still_open]}  # fmt: skip
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        visible(f"promoted {run.run_id} ({run.suite}:{run.profile}, commit {run.commit_text}) to baseline of machine ")
        + visible(f"{run.fingerprint}" + (f": {reason}" if reason else ""))
    )
    for alert in closed:
        click.echo(visible(f"accepted: {alert.metric} {alert.algorithm}/{alert.environment} {alert.size_text}"))
    for alert in still_open:
        click.echo(
            visible(f"still open: {alert.metric} {alert.algorithm}/{alert.environment} {alert.size_text}, opened ")
            + visible(f"by a later run ({alert.opened_run_id[:8]}) than the one promoted: its change is not accepted")
        )


@click.command()
@click.argument("suite", required=False)
@click.option("--profile", help="Only this profile.")
@click.option(
    "--state", type=click.Choice(["open", "fixed", "accepted", "all"]), default="open", show_default=True,
    help="Which alerts to list.",
)  # fmt: skip
@click.option("--machine", "fingerprint", help="Only this machine (hardware fingerprint).")
@click.option("--json", "as_json", is_flag=True, help="Print the alerts as JSON.")
@_store_options
@click.pass_context
@_bad_input_exits_2
def alerts(
    ctx: click.Context,
    suite: str | None,
    profile: str | None,
    state: str,
    fingerprint: str | None,
    as_json: bool,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """List the regressions nightly runs opened (of SUITE, or of every suite), newest first.

    \b
    Each alert: metric, case, the change with its interval, the commit and run where it appeared, and its
    state (open; fixed when the level returned; accepted by harness promote, with the reason).
    """
    store, _directory = _store(ctx, results_dir, tracking_uri)
    found = store.alerts(suite, profile, fingerprint, None if state == "all" else state)
    from harness.analysis.bisect import bisect_command

    if as_json:
        click.echo(json.dumps([{**alert.to_dict(), "bisect": bisect_command(alert)} for alert in found], indent=2))
        return
    if not found:
        click.echo(f"no {'' if state == 'all' else state + ' '}alerts" + (f" for {visible(suite)}" if suite else ""))
        return
    from harness.cli.output import print_table

    rows = [
        [
            alert.state + (f": {alert.reason}" if alert.reason else ""),
            f"{alert.suite}:{alert.profile}",
            alert.metric,
            f"{alert.algorithm}/{alert.environment}",
            alert.size_text,
            f"{(alert.opened_commit or 'no commit')[:12]} (run {alert.opened_run_id[:8]})",
            alert.fingerprint,
        ]
        for alert in found
    ]
    print_table(
        f"{len(found)} alert(s)",
        ["state", "suite", "metric", "case", "change [95% CI]", "appeared at", "machine"],
        rows,
    )
    commands = [(alert, bisect_command(alert)) for alert in found if alert.is_open]
    for alert, command in commands:
        if command:
            click.echo(visible(f"find the commit of {alert.metric} {alert.algorithm}/{alert.environment}: {command}"))


@click.command()
@click.argument("suites", nargs=-1, metavar="[SUITE]...")
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Folder to write the site into."
)
@click.option(
    "--mlflow-url",
    help="The tracking server's UI address (e.g. https://mlflow.example.org): each night links to its MLflow run "
    "in the nights table, and a point opens it where no report is archived.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the pages written, their sizes and the histories as JSON.")
@_store_options
@click.pass_context
@_bad_input_exits_2
def publish(
    ctx: click.Context,
    suites: tuple[str, ...],
    out: Path,
    mlflow_url: str | None,
    as_json: bool,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """Write a static site of every benchmark's history (SUITEs, or every suite in the store) into --out.

    \b
    index.html          every suite, profile and machine: nights, last night, open alerts
    <suite>-<profile>-<machine>.html
                        each case x metric over the nights, with intervals, change points and alerts;
                        filters by algorithm, environment and metric; click a point for that night's report
    regressions.html    every alert: size and interval, commit range, first seen, state, bisect command
    nights/<run>/       each night's report as harness nightly archived it

    The site needs no server (open index.html, or copy the folder to any static host). A cron job:
      harness nightly my-suite --repo ~/src/lib --promote && harness publish --out /var/www/bench
    """
    from harness.report.publish import publish as publish_site

    store, directory = _store(ctx, results_dir, tracking_uri)
    site = publish_site(store, out, suites, results_dir=directory, mlflow_url=mlflow_url,
                        notify=lambda message: click.echo(visible(message), err=True))  # fmt: skip
    if as_json:
        click.echo(json.dumps(site.to_dict(), indent=2))
        return
    nights = sum(len(history.nights) for history in site.histories)
    opened = sum(len(history.open_alerts) for history in site.histories)
    click.echo(
        f"published {len(site.histories)} history page(s), {nights} night(s), {opened} open alert(s) in "
        f"{site.seconds:.1f} s: {visible(out / 'index.html')}"
    )


@click.group("import")
def import_group() -> None:
    """Bring results from other tools into MLflow in the harness layout."""


@import_group.command("pytest-benchmark")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--suite", help="Experiment (suite) name (default: 'pytest-benchmark').")
@click.option("--profile", default="pytest-benchmark", show_default=True, help="Profile tag of the runs.")
@_store_options
@click.pass_context
@_bad_input_exits_2
def import_pytest_benchmark(
    ctx: click.Context,
    files: tuple[Path, ...],
    suite: str | None,
    profile: str,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """Turn pytest-benchmark JSON files (--benchmark-json / --benchmark-autosave) into MLflow runs.

    One suite run per file, one cell per benchmark (group as the environment, the test name as the
    algorithm), its timing statistics as metrics in seconds and its machine_info as tags.
    """
    from harness.tracking.pytest_benchmark import import_file

    directory = _results_dir(ctx, results_dir)
    uri = _tracking_uri(directory, tracking_uri)
    from harness.tracking.uri import sqlite_path

    database = sqlite_path(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    for path in files:
        run_id = import_file(path, uri, suite=suite or "pytest-benchmark", profile=profile)
        click.echo(visible(f"{path}: run {run_id}"))


def _metric_options(
    units: tuple[str, ...], directions: tuple[str, ...], comparable: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """--unit, --direction and --comparable-across-tasks as metric -> declaration fields."""
    declared: dict[str, dict[str, Any]] = {}
    for option, values in (("--unit", units), ("--direction", directions)):
        for value in values:
            name, sep, text = value.partition("=")
            if not sep or not name.strip():
                raise BadInput(f"{option} {value!r}: expected METRIC=VALUE (e.g. {option} normalized_score=%s)"
                               % ("1" if option == "--unit" else "higher"))  # fmt: skip
            field_name = option.removeprefix("--")
            if field_name == "direction" and text.strip() not in ("higher", "lower"):
                raise BadInput(f"--direction {value!r}: the direction is 'higher' or 'lower'")
            declared.setdefault(name.strip(), {})[field_name] = text.strip()
    for name in comparable:
        declared.setdefault(name.strip(), {})["comparable_across_tasks"] = True
    return declared


def _known_metrics(ctx: click.Context) -> dict[str, Any]:
    """The declarations of metrics installed plugins define (empty when plugins cannot be loaded here)."""
    state = ctx.find_root().obj
    if state is None or not hasattr(state, "registry"):
        return {}
    try:
        registry = state.registry()
        return {name: found.spec.declaration() for name, found in registry.specs["metric"].items()}
    except Exception:  # a broken plugin must not stop an import that declares its metrics itself
        return {}


@import_group.command("results")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--suite", help="Suite (experiment) the results belong to (default: the file's 'suite' column).")
@click.option("--profile", help="Profile of the runs (default: the file's 'profile' column, else 'reported').")
@click.option(
    "--source",
    help="Where the results come from, shown as 'reported: SOURCE' in every view: a citation or a URL "
    "(default: the file's 'source' column; one of the two is required).",
)
@click.option("--unit", "units", multiple=True, metavar="METRIC=UNIT", help="Declare a metric's unit (repeatable).")
@click.option(
    "--direction", "directions", multiple=True, metavar="METRIC=higher|lower",
    help="Declare which way a metric is better (repeatable); needed where the file has no 'direction' column "
    "and no installed plugin defines the metric.",
)  # fmt: skip
@click.option(
    "--comparable-across-tasks", "comparable", multiple=True, metavar="METRIC",
    help="Declare a metric comparable across environments (a normalized score): reports pool it (repeatable).",
)  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "json"]), help="Default: from the suffix.")
@click.option("--dry-run", is_flag=True, help="Check the file and say what would be imported; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was imported as JSON.")
@_store_options
@click.pass_context
@_bad_input_exits_2
def import_results_command(
    ctx: click.Context,
    file: Path,
    suite: str | None,
    profile: str | None,
    source: str | None,
    units: tuple[str, ...],
    directions: tuple[str, ...],
    comparable: tuple[str, ...],
    fmt: str | None,
    dry_run: bool,
    as_json: bool,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """Import per-seed results (a paper's table, a colleague's export) as reported suite runs.

    \b
    FILE is csv, parquet or json in the schema `harness export` writes; a minimal file has the columns
        algorithm,environment,seed,metric,value
    Optional columns: suite, profile, run_id, status, unit, direction, comparable_across_tasks, fingerprint,
    cpu, gpu, git_commit, code_versions, inputs, error, source and param.<name> (see docs/reports.md).
    \b
    Every row is checked first: a missing column, a value that is not a number or a duplicate (algorithm,
    environment, seed, metric) refuses the file with the row at fault, and nothing is imported. Imported
    runs say "reported: SOURCE" wherever they appear, are never taken for runs of this machine and never
    serve as a hardware baseline. Example:
        harness import results iql_paper.csv --suite d4rl --source "Kostrikov et al. 2022, table 1" \\
            --direction normalized_score=higher --comparable-across-tasks normalized_score
    """
    from harness.tracking.results_import import import_results, plan_import

    directory = _results_dir(ctx, results_dir)
    uri = _tracking_uri(directory, tracking_uri)
    options = dict(
        suite=suite, profile=profile, source=source, declarations=_metric_options(units, directions, comparable),
        known_metrics=_known_metrics(ctx), fmt=fmt,
    )  # fmt: skip
    if dry_run:
        found = [("", run) for run in plan_import(file, **options)]  # type: ignore[arg-type]
    else:
        from harness.tracking.uri import sqlite_path

        database = sqlite_path(uri)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        found = import_results(file, uri, **options)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps([{"run_id": run_id or None, "dry_run": dry_run, **run.summary()}
                               for run_id, run in found], indent=2))  # fmt: skip
        return
    for run_id, run in found:
        facts = run.summary()
        what = "would import" if dry_run else f"run {run_id}:"
        click.echo(visible(
            f"{file}: {what} {facts['rows']} rows as {facts['cells']} cells of {run.suite}:{run.profile} "
            f"({facts['algorithms']} algorithms x {facts['environments']} environments x {facts['seeds']} seeds; "
            f"metrics {', '.join(facts['metrics'])}), reported: {run.source}"
        ))  # fmt: skip


@click.command("export")
@click.argument("selectors", nargs=-1, required=True, metavar="RUN_OR_SUITE...")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "json"]), default="csv", show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (default: <results-dir>/exports/<suite>-<profile>-<run>.<format>; '-' for stdout).",
)
@click.option("--profile", help="With a suite name: use the newest run of this profile.")
@click.option("--suite", help="Suite to look in for selectors like 'latest', 'baseline' or 'source=TEXT'.")
@click.option("--show-paths", is_flag=True, help="Write local store paths in the 'store' column (default: file names).")
@_store_options
@click.pass_context
@_bad_input_exits_2
def export(
    ctx: click.Context,
    selectors: tuple[str, ...],
    fmt: str,
    out: Path | None,
    profile: str | None,
    suite: str | None,
    show_paths: bool,
    results_dir: Path | None,
    tracking_uri: str | None,
) -> None:
    """Write suite runs as a tidy table: one row per cell and metric (csv, parquet or json).

    \b
    Each row has the run, the cell (algorithm, environment, seed, status), the metric (name, value, unit,
    direction), the machine (fingerprint, CPU, GPU), the code (git commit, code versions), where the row
    comes from (source, reported, store) and the cell's parameters as typed param.<name> columns. Several
    selectors, also in other stores (STORE_URI#SELECTOR), give one table of all their runs; `harness import
    results` reads the same table back:
        harness export softmax --format parquet --out softmax.parquet
        harness export latest latest~1 --suite d4rl --out - | python -c "import pandas, sys; ..."
        harness export d4rl http://127.0.0.1:5000#d4rl --format csv --out both.csv
    """
    from harness.report.export import write_export

    runs, _store_read, directory = _load_selected(ctx, selectors, suite, profile, results_dir, tracking_uri)
    if out is not None and str(out) == "-":
        if fmt == "parquet":
            raise BadInput("--format parquet cannot go to stdout: pass --out FILE.parquet")
        data = write_export(runs, None, fmt, show_paths)
        click.echo((data or b"").decode(), nl=False)
        return
    first = runs[0]
    target = out or path_for(
        directory / "exports", "{suite}-{profile}-{run}.{fmt}", first.name_origin, suite=first.suite,
        profile=first.profile, run=first.run_id[:8], fmt=fmt,
    )  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    write_export(runs, target, fmt, show_paths)
    click.echo(visible(target))


COMMANDS: list[click.Command] = [report, compare, calibrate, nightly, promote, alerts, publish, import_group, export]
