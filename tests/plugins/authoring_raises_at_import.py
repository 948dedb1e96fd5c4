"""Fixture plugin that fails while being imported."""

raise RuntimeError("authoring fixture: cannot import, the configuration file is missing")
