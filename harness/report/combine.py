"""Several suite runs (own runs, imported results, runs in other stores) as one leaderboard, checked for
comparability rather than assumed comparable.

:func:`combine_runs` merges the selected runs into one view the report ranks, and says for every row where it
comes from (:class:`Origin`: run, store, machine, commit, source) and what makes it less than comparable:

* **metric definitions**: a run whose unit or direction of a metric differs from the first run that has the
  metric is left out of that metric, with the reason; a metric is pooled across tasks only when every run
  declares it comparable across tasks;
* **datasets**: where cells record their dataset's sha256, a row whose sha256 differs from the first run's on
  the same environment is marked;
* **budget**: a row from another budget profile (its name or its ``budget.*`` parameters) is marked;
* **hardware**: a hardware-dependent metric (timings, throughput, memory) is never ranked across machines
  without a mark: rows measured on another machine than the first run's, and reported results, are marked.

An algorithm label that appears in more than one run is shown once per run, with its origin in the label, so
a published IQL and a re-run IQL are two rows, never pooled into one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from harness.record import CellRun, MachineFacts, MetricDeclaration, SuiteRun

_BUDGET_PREFIX = "budget."


@dataclass(frozen=True)
class Origin:
    """Where a leaderboard row comes from."""

    index: int
    run_id: str
    suite: str
    profile: str
    store: str
    machine: str
    fingerprint: str
    commit: str
    source: str
    reported: bool

    @property
    def short(self) -> str:
        """A few words that tell origins apart in a label: the source of reported results, else the run."""
        if self.reported:
            return f"reported: {self.source[:40]}"
        return f"run {self.run_id[:8]}"

    @property
    def provenance(self) -> str:
        """The full line: ``reported: <source>`` for imported results, else run, store, machine and commit."""
        if self.reported:
            return f"reported: {self.source or 'unknown source'} (imported into {self.store}, run {self.run_id[:8]})"
        imported = f", imported from {self.source}" if self.source else ""
        return (
            f"run {self.run_id[:8]} ({self.suite}:{self.profile}) in {self.store}, measured on {self.machine}, "
            f"commit {self.commit}{imported}"
        )


@dataclass
class Combined:
    """Several runs as one: the merged run the report ranks, and what it must say about each row."""

    run: SuiteRun
    origins: list[Origin]
    #: Displayed algorithm label -> the origin of its cells.
    algorithm_origins: dict[str, Origin]
    #: metric -> algorithm -> reasons the row is not like the others (shown as a mark with the reasons).
    marks: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: What was left out, and why (one sentence each).
    excluded: list[str] = field(default_factory=list)
    #: Environments in the suites' order (the first run's, then any new ones in the order they appear).
    environments: list[str] = field(default_factory=list)

    def marks_for(self, metric: str, algorithm: str) -> list[str]:
        return self.marks.get(metric, {}).get(algorithm, [])


def suite_order(run: SuiteRun) -> list[str]:
    """The run's environments in the suite's order: the order its cells were run (their journal sequence) or
    written (an import keeps the file's order), never alphabetical."""
    order = sorted(run.cells, key=lambda c: (c.sequence if c.sequence is not None else float("inf"), c.start_time_ms))
    return list(dict.fromkeys(cell.environment for cell in order))


def _machine_text(run: SuiteRun, cell: CellRun | None = None) -> str:
    facts = run.cell_machine(cell) if cell is not None else run.machine_facts
    text = facts.cpu or "unknown machine"
    if facts.gpu and facts.gpu != "none":
        text += f" + {facts.gpu}"
    return text


def origin_of(index: int, run: SuiteRun, show_paths: bool = False) -> Origin:
    from harness.tracking.table_schema import store_label

    return Origin(
        index=index, run_id=run.run_id, suite=run.suite, profile=run.profile,
        store=store_label(run.tracking_uri, show_paths), machine=_machine_text(run),
        fingerprint=run.fingerprint, commit=run.commit_text, source=run.source, reported=run.reported,
    )  # fmt: skip


def _budget(run: SuiteRun) -> tuple[str, tuple[tuple[str, str], ...]]:
    values = {
        (name, value) for cell in run.cells for name, value in cell.params.items() if name.startswith(_BUDGET_PREFIX)
    }
    return run.profile, tuple(sorted(values))


def _datasets(run: SuiteRun) -> dict[str, set[str]]:
    """environment -> the sha256 of the datasets its cells recorded."""
    found: dict[str, set[str]] = {}
    for cell in run.cells:
        for item in cell.inputs:
            if item.get("sha256"):
                found.setdefault(cell.environment, set()).add(str(item["sha256"]))
    return found


def combine_runs(runs: Sequence[SuiteRun], show_paths: bool = False) -> Combined:
    """Merge ``runs`` (the first is the reference) into one leaderboard view with provenance and checks."""
    if not runs:
        raise ValueError("combine_runs needs at least one run")
    origins = [origin_of(index, run, show_paths) for index, run in enumerate(runs)]
    seen_in: dict[str, set[int]] = {}
    for index, run in enumerate(runs):
        for cell in run.cells:
            seen_in.setdefault(cell.algorithm, set()).add(index)

    def label(algorithm: str, origin: Origin) -> str:
        return algorithm if len(seen_in[algorithm]) == 1 else f"{algorithm} ({origin.short})"

    declarations, excluded, left_out = _metric_definitions(runs, origins)
    marks: dict[str, dict[str, list[str]]] = {}

    def mark(metric: str, algorithm: str, reason: str) -> None:
        reasons = marks.setdefault(metric, {}).setdefault(algorithm, [])
        if reason not in reasons:
            reasons.append(reason)

    reference_budget = _budget(runs[0])
    reference_data: dict[str, tuple[set[str], Origin]] = {}
    for run, origin in zip(runs, origins, strict=True):
        for environment, digests in _datasets(run).items():
            reference_data.setdefault(environment, (digests, origin))
    reference_machine: dict[str, tuple[SuiteRun, MachineFacts, str]] = {}
    cells: list[CellRun] = []
    algorithm_origins: dict[str, Origin] = {}
    for index, (run, origin) in enumerate(zip(runs, origins, strict=True)):
        budget_note = ""
        if index and _budget(run) != reference_budget:
            budget_note = (
                f"budget profile {run.profile!r} differs from {runs[0].profile!r} of {origins[0].short}"
                if run.profile != runs[0].profile
                else f"budget parameters differ from {origins[0].short}"
            )
        data = _datasets(run)
        for cell in run.cells:
            shown = label(cell.algorithm, origin)
            algorithm_origins[shown] = origin
            metrics = {name: value for name, value in cell.metrics.items() if (index, name) not in left_out}
            cells.append(replace(cell, algorithm=shown, metrics=metrics, machine=run.cell_machine(cell)))
            for metric in metrics:
                if budget_note:
                    mark(metric, shown, budget_note)
                digests, first = reference_data.get(cell.environment, (set(), origin))
                if first is not origin and data.get(cell.environment) and data[cell.environment] != digests:
                    mark(metric, shown, f"dataset of {cell.environment} (sha256) differs from {first.short}'s")
                info = declarations.get(metric)
                if info is None or not info.is_hardware_dependent:
                    continue
                # Per cell: an imported table may hold rows of several machines; reported results are never
                # taken for any measured machine.
                machine = run.cell_machine(cell)
                here = origin.short if run.reported else _machine_text(run, cell)
                base_run, base_machine, base_text = reference_machine.setdefault(metric, (run, machine, here))
                other_origin = base_run is not run and (run.reported or base_run.reported)
                if other_origin or machine.differences(base_machine):
                    mark(metric, shown, f"measured on {here}, not on {base_text}: {metric} depends on the hardware")
    merged = replace(
        runs[0],
        cells=cells,
        metric_info=declarations,
        thresholds={k: v for run in reversed(runs) for k, v in run.thresholds.items()},
        source=runs[0].source if len(runs) == 1 else "",
    )
    environments: list[str] = []
    for run in runs:
        environments += [env for env in suite_order(run) if env not in environments]
    return Combined(merged, origins, algorithm_origins, marks, excluded, environments)


def _same(field_name: str, value: str) -> str:
    """A declaration's field as compared: no unit and the unit ``1`` are both dimensionless."""
    return "1" if field_name == "unit" and value.strip() in ("", "1") else value.strip()


def _metric_definitions(
    runs: Sequence[SuiteRun], origins: Sequence[Origin]
) -> tuple[dict[str, MetricDeclaration], list[str], set[tuple[int, str]]]:
    """The merged declarations (the first run's with each metric), what was left out and why, and the
    (run index, metric) pairs left out."""
    declarations: dict[str, MetricDeclaration] = {}
    first_with: dict[str, int] = {}
    excluded: list[str] = []
    left_out: set[tuple[int, str]] = set()
    not_pooled: dict[str, list[str]] = {}
    for index, run in enumerate(runs):
        for metric in run.metric_names:
            info = run.info(metric)
            if metric not in declarations:
                declarations[metric], first_with[metric] = info, index
                continue
            reference = declarations[metric]
            differences = [
                f"{name} {getattr(info, name)!r} (not {getattr(reference, name)!r})"
                for name in ("unit", "direction")
                if _same(name, getattr(info, name)) != _same(name, getattr(reference, name))
            ]
            if differences:
                left_out.add((index, metric))
                excluded.append(
                    f"{metric} of {origins[index].provenance} is left out: its {' and '.join(differences)} "
                    f"differs from the definition of {origins[first_with[metric]].short}"
                )
            elif info.comparable_across_tasks != reference.comparable_across_tasks:
                not_pooled.setdefault(metric, []).append(origins[index].short)
    for metric, names in not_pooled.items():
        declarations[metric] = replace(declarations[metric], comparable_across_tasks=False)
        excluded.append(
            f"{metric} is not pooled across environments: the runs disagree on whether it is comparable across "
            f"tasks ({', '.join(names)} against {origins[first_with[metric]].short})"
        )
    return declarations, excluded, left_out
