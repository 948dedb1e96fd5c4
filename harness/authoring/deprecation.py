"""Deprecating parts of the hook API without breaking plugins.

The policy (also in ``docs/plugins.md``):

* The hook API (``harness.HOOK_API_VERSION``, ``MAJOR.MINOR``) only grows within a major version: hooks, hook
  arguments and spec fields are added, never removed or renamed. A plugin written for ``1.x`` loads in every
  ``1.y`` harness with ``y >= x``; a different major version is refused at load time, naming both versions.
* Something that is going away is first *deprecated* in a minor release: from then on using it emits a
  :class:`HarnessDeprecationWarning` that names the replacement and the version that removes it. It keeps
  working for at least one further minor release, and is removed no earlier than the next major version.

Two kinds of things can be deprecated:

* a hook or a hook argument: mark the spec in ``harness/hookspecs.py`` with pluggy's own markers, which warn
  when a plugin implementing it is registered (the warning points at the plugin's function)::

      @hookspec(warn_on_impl=deprecation_warning("harness_old_hook", since="1.1", removed_in="2.0",
                                                 instead="harness_new_hook"))
      def harness_old_hook(...): ...

* a spec field: list it with :func:`deprecate_spec_field`; :func:`warn_deprecated_spec_fields` warns for every
  spec that sets it to something other than its default (``harness plugins check`` reports it too).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any


class HarnessDeprecationWarning(DeprecationWarning):
    """A plugin uses a part of the hook API that will be removed; the message says what to use instead."""


# Python hides DeprecationWarning outside ``__main__`` by default; a plugin author running ``harness run``
# must see these, so they are shown once per location unless the user's own filters say otherwise.
warnings.filterwarnings("default", category=HarnessDeprecationWarning)


def _version_tuple(version: str) -> tuple[int, int]:
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        raise ValueError(f"version {version!r} is not 'MAJOR.MINOR'") from None
    return major, minor


@dataclass(frozen=True)
class Deprecation:
    """One deprecated thing: what, since which hook API version, when it goes, and what replaces it."""

    what: str
    since: str
    removed_in: str
    instead: str

    def __post_init__(self) -> None:
        since, removed = _version_tuple(self.since), _version_tuple(self.removed_in)
        # Policy: it warns for at least one minor release, and only a major release removes it.
        if removed[0] <= since[0]:
            raise ValueError(
                f"deprecating {self.what}: removal in {self.removed_in} must be a later major version than "
                f"{self.since} (the hook API only grows within a major version)"
            )

    def message(self) -> str:
        return (
            f"{self.what} is deprecated since hook API {self.since} and will be removed in "
            f"{self.removed_in}; use {self.instead} instead."
        )


def deprecation_warning(what: str, *, since: str, removed_in: str, instead: str) -> HarnessDeprecationWarning:
    """The warning to pass to pluggy's ``hookspec(warn_on_impl=...)`` or ``warn_on_impl_args``."""
    return HarnessDeprecationWarning(Deprecation(what, since, removed_in, instead).message())


def warn_deprecated(what: str, *, since: str, removed_in: str, instead: str, stacklevel: int = 2) -> None:
    """Emit a :class:`HarnessDeprecationWarning` for ``what`` (for code paths that are not hooks)."""
    warnings.warn(
        Deprecation(what, since, removed_in, instead).message(),
        HarnessDeprecationWarning,
        stacklevel=stacklevel + 1,
    )


#: (spec class name, field name) -> its deprecation. Empty in hook API 1.0: nothing is deprecated yet.
DEPRECATED_SPEC_FIELDS: dict[tuple[str, str], Deprecation] = {}


def deprecate_spec_field(spec_class: type, field_name: str, *, since: str, removed_in: str, instead: str) -> None:
    """Declare a field of a spec dataclass deprecated; setting it then warns (see the module's docstring)."""
    names = {f.name for f in dataclasses.fields(spec_class)}
    if field_name not in names:
        raise ValueError(f"{spec_class.__name__} has no field {field_name!r}")
    what = f"{spec_class.__name__}.{field_name}"
    DEPRECATED_SPEC_FIELDS[(spec_class.__name__, field_name)] = Deprecation(what, since, removed_in, instead)


def deprecated_fields_used(spec: Any) -> list[Deprecation]:
    """The deprecated fields ``spec`` sets to something other than the field's default."""
    used = []
    for field in dataclasses.fields(spec):
        deprecation = DEPRECATED_SPEC_FIELDS.get((type(spec).__name__, field.name))
        if deprecation is None:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        if getattr(spec, field.name) != default:
            used.append(deprecation)
    return used


def warn_deprecated_spec_fields(spec: Any, plugin: str) -> list[Deprecation]:
    """Warn once per deprecated field ``spec`` sets, naming the plugin and the spec; return what was found."""
    used = deprecated_fields_used(spec)
    for deprecation in used:
        warnings.warn(
            f"plugin {plugin!r}, {getattr(spec, 'name', '?')}: {deprecation.message()}",
            HarnessDeprecationWarning,
            stacklevel=2,
        )
    return used
