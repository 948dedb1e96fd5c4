"""Misspells a hook name (caught by check_pending) ."""

from harness import hookimpl


@hookimpl
def harness_algoritms():
    return []
