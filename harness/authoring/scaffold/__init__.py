"""``harness new-plugin``: write a ready-to-install plugin package from the templates in ``templates/``.

The package written is what a third party publishes: its own ``pyproject.toml`` declaring the entry point in
the ``harness`` group, a module with the hook implementations, one example spec per kind asked for, a suite
the plugin ships through ``harness_suites`` (when it has both an algorithm and an environment), a README and
tests that use the ``harness.testing`` pytest plugin. Templates use :class:`string.Template` (``${name}``), so
the harness needs no template engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from harness.errors import BadInput

KINDS = ("algorithm", "environment", "metric")
_PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class PluginNames:
    """Every name derived from the plugin name the user typed."""

    plugin_name: str  # entry-point name and suite name, e.g. "my-plugin"
    distribution: str  # pip name, e.g. "harness-my-plugin"
    module: str  # import name, e.g. "harness_my_plugin"

    @classmethod
    def from_name(cls, name: str) -> PluginNames:
        if not _PLUGIN_NAME.match(name):
            raise BadInput(
                f"plugin name {name!r} must be lower-case words of letters and digits joined by '-', starting "
                "with a letter (for example 'my-bandits')"
            )
        plugin_name = name.removeprefix("harness-")
        distribution = f"harness-{plugin_name}"
        return cls(plugin_name, distribution, distribution.replace("-", "_"))

    @property
    def algorithm(self) -> str:
        return f"{self.plugin_name}-random-search"

    @property
    def environment(self) -> str:
        return f"{self.plugin_name}-quadratic"

    @property
    def metric(self) -> str:
        return f"{self.plugin_name.replace('-', '_')}_best_value"

    @property
    def task_kind(self) -> str:
        return f"{self.plugin_name}-objective"


def _template(name: str) -> Template:
    text = resources.files("harness.authoring.scaffold").joinpath("templates", name).read_text(encoding="utf-8")
    return Template(text)


def _render(name: str, values: dict[str, str]) -> str:
    return _template(name).substitute(values)


def render_plugin(name: str, kinds: Iterable[str] = KINDS) -> dict[str, str]:
    """Relative path -> text of every file of the plugin package (nothing is written)."""
    from harness import HOOK_API_VERSION, __version__

    chosen = [kind for kind in KINDS if kind in set(kinds)]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not chosen:
        raise BadInput(f"--kind must be one or more of {', '.join(KINDS)}; got {', '.join(unknown) or 'none'}")
    names = PluginNames.from_name(name)
    has_suite = "algorithm" in chosen and "environment" in chosen
    provides = {
        "algorithm": f"- algorithm `{names.algorithm}`: random search with a shrinking step",
        "environment": f"- environment `{names.environment}` (task kind `{names.task_kind}`): a quadratic bowl",
        "metric": f"- metric `{names.metric}`: the lowest objective value found (lower is better)",
    }
    description = f"an example {', '.join(chosen)} plugin (replace it with your own)"
    values = {
        "plugin_name": names.plugin_name,
        "distribution": names.distribution,
        "module": names.module,
        "algorithm_name": names.algorithm,
        "environment_name": names.environment,
        "metric_name": names.metric,
        "task_kind": names.task_kind,
        "description": description,
        "title": description[0].upper() + description[1:],
        "api_version": HOOK_API_VERSION,
        "harness_version": __version__,
        "suite_metrics": f'"{names.metric}"' if "metric" in chosen else "",
    }
    spec_imports = {"algorithm": ["AlgorithmSpec", "Param"], "environment": ["EnvironmentSpec", "Param"]}
    spec_imports["metric"] = ["MetricSpec"]
    imports = sorted({"hookimpl", *(item for kind in chosen for item in spec_imports[kind])})
    hook_blocks = [_render(f"hook_{kind}.tmpl", values) for kind in chosen]
    if has_suite:
        hook_blocks.append(_render("hook_suites.tmpl", values))
    files_table = [
        f"| `{names.module}/{module}.py` | the {kind}'s code, imported only when a cell uses it |"
        for kind, module in (
            ("algorithm", "algorithm"),
            ("environment", "environment"),
            ("metric", "metrics"),
        )
        if kind in chosen
    ]
    if has_suite:
        files_table.append(f"| `{names.module}/suites/{names.plugin_name}.toml` | the suite the plugin ships |")
        run_line = f"harness run {names.plugin_name} --profile smoke   # runs the suite the plugin ships"
    else:
        run_line = (
            "# no suite is shipped: this plugin has no algorithm/environment pair; add it to a suite that "
            "pairs it with other plugins"
        )
    direct_tests = []
    if has_suite:
        direct_tests.append(_render("test_algorithm_environment.tmpl", values))
    if "metric" in chosen:
        direct_tests.append(_render("test_metric.tmpl", values))
    values.update(
        harness_imports=", ".join(imports),
        hook_blocks="\n\n\n".join(block.strip("\n") for block in hook_blocks),
        path_import="from pathlib import Path\n\n" if has_suite else "",
        provides_list="\n".join(provides[kind] for kind in chosen),
        files_table="\n".join(files_table),
        run_line=run_line,
        direct_tests="".join("\n\n\n" + test.strip("\n") for test in direct_tests),
    )
    files = {
        "pyproject.toml": _render("pyproject.toml.tmpl", values),
        "README.md": _render("README.md.tmpl", values),
        f"{names.module}/__init__.py": _render("package_init.py.tmpl", values),
        f"{names.module}/plugin.py": _render("plugin.py.tmpl", values),
        f"tests/test_{names.module}.py": _render("test_plugin.py.tmpl", values),
    }
    if "algorithm" in chosen:
        files[f"{names.module}/algorithm.py"] = _render("algorithm.py.tmpl", values)
    if "environment" in chosen:
        files[f"{names.module}/environment.py"] = _render("environment.py.tmpl", values)
    if "metric" in chosen:
        files[f"{names.module}/metrics.py"] = _render("metrics.py.tmpl", values)
    if has_suite:
        files[f"{names.module}/suites/{names.plugin_name}.toml"] = _render("suite.toml.tmpl", values)
    return files


def create_plugin(name: str, directory: str | Path, kinds: Sequence[str] = KINDS, force: bool = False) -> Path:
    """Write the plugin package into ``directory/harness-NAME`` and return that folder.

    Refuses (:class:`BadInput`) to overwrite an existing folder unless ``force``.
    """
    names = PluginNames.from_name(name)
    files = render_plugin(name, kinds)
    from harness.paths import path_for

    root = path_for(Path(directory), "{plugin}", "harness new-plugin NAME", plugin=names.distribution)
    if root.exists() and any(root.iterdir()) and not force:
        raise BadInput(f"{root} already exists and is not empty; choose another --dir or pass --force")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
