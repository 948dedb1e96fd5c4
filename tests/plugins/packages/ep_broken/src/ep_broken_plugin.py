"""A plugin whose import fails: it must be reported, and must not stop the others."""

raise ImportError("ep_broken_plugin needs a package that is not installed (pip install something-missing)")
