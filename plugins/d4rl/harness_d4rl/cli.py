"""``harness data d4rl ...``: generate and inspect D4RL-schema datasets."""

from __future__ import annotations

from pathlib import Path

import click

from harness_d4rl.references import QUALITIES, TASKS


@click.group(name="data")
def data() -> None:
    """Create and inspect datasets that suites train on."""


@data.group(name="d4rl")
def d4rl() -> None:
    """D4RL-format offline RL datasets (HDF5 in D4RL's schema, optionally Minari)."""


@d4rl.command(name="generate")
@click.option("--env", "env", type=click.Choice(list(TASKS)), required=True, help="Locomotion task.")
@click.option(
    "--quality",
    type=click.Choice(list(QUALITIES)),
    required=True,
    help="random: uniform actions; expert: SAC trained to the end of the budget; medium: SAC stopped "
    "at a third of the expert return; medium-replay: that training's replay buffer; "
    "medium-expert: medium and expert rollouts concatenated.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=2),
    default=1_000_000,
    show_default=True,
    help="Rows per rollout dataset (medium-expert has twice as many; medium-replay keeps at most this many).",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=None,
    help="SAC environment steps per trained policy. Default: the full protocol (1,000,000 steps, "
    "hours on a CPU). A smaller budget gives a weaker dataset named '-budget<N>'.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output HDF5 file. Default: $D4RL_DATASET_DIR (or ~/.d4rl/datasets)/"
    "<env>_<quality>-generated-gymnasium-v5[-budget<N>].hdf5, where the environments find it.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Checkpoints and partial rollouts (default: <out>.work). Rerun the same command to resume.",
)
@click.option(
    "--minari",
    "minari_flag",
    is_flag=True,
    help="Also write a local Minari dataset 'harness-generated/<env>-<quality>[-budget<N>]-v0'.",
)
@click.option(
    "--medium-target-return",
    type=float,
    default=None,
    help="Training return that stops the medium policy (default: a third of the expert's return "
    "if an expert was trained in the work folder, else of D4RL's expert reference).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--eval-episodes",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Deterministic episodes measuring each trained policy (recorded in the file's attrs).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Environment steps between checkpoints of SAC training and of rollouts.",
)
@click.option("--device", default="cpu", show_default=True, help="torch device for SAC.")
def generate(
    env: str,
    quality: str,
    steps: int,
    budget: int | None,
    out: Path | None,
    work_dir: Path | None,
    minari_flag: bool,
    medium_target_return: float | None,
    seed: int,
    eval_episodes: int,
    checkpoint_every: int,
    device: str,
) -> None:
    """Generate a D4RL-schema dataset on Gymnasium MuJoCo v5 with harness-rl's SAC.

    The file is labelled as generated (name and attributes), never as the original D4RL data, and records
    the generator's returns. Example, a quick labelled dataset for the `short` profile:

        harness data d4rl generate --env hopper --quality medium-replay --budget 50000
    """
    from harness_d4rl.generation import GenerationConfig, generate_dataset
    from harness_d4rl.loading import default_dataset_dir
    from harness_d4rl.references import generated_file_name

    if out is None:
        out = default_dataset_dir() / generated_file_name(env, quality, budget)
    minari_id = None
    if minari_flag:
        budget_label = f"-budget{budget}" if budget is not None else ""
        minari_id = f"harness-generated/{env}-{quality}{budget_label}-v0"
    config = GenerationConfig(
        env=env,
        quality=quality,
        steps=steps,
        budget=budget,
        seed=seed,
        out=out,
        work_dir=work_dir,
        minari_id=minari_id,
        medium_target_return=medium_target_return,
        eval_episodes=eval_episodes,
        checkpoint_every=checkpoint_every,
        device=device,
    )
    if quality != "random":
        try:
            import harness_rl.sac  # noqa: F401
        except ImportError as exc:
            raise click.ClickException(
                f"generating {quality} data trains SAC from harness-rl, which is not importable ({exc}); "
                "install it: pip install -e plugins/rl"
            ) from None
    path = generate_dataset(config, log=lambda message: click.echo(message, err=True))
    click.echo(str(path))


@d4rl.command(name="info")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def info(path: Path) -> None:
    """Show a D4RL-schema file's keys, shapes, transitions and attributes (generated or not)."""
    from harness_d4rl.loading import qlearning_dataset, read_d4rl_hdf5

    arrays, attrs = read_d4rl_hdf5(path)
    for key in sorted(arrays):
        click.echo(f"{key:28s} {arrays[key].shape} {arrays[key].dtype}")
    transitions = qlearning_dataset(arrays)
    click.echo(f"qlearning transitions: {len(transitions['rewards'])}")
    click.echo(f"generated: {bool(attrs.get('generated', False))}")
    for key in sorted(attrs):
        click.echo(f"  {key} = {attrs[key]}")
