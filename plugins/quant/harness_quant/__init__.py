"""harness-quant: the quantization suite for harness.

The hooks (the specs of the quantizers, environments and metrics) are in :mod:`harness_quant.plugin`, the
module the ``harness`` entry point names, as in every first-party plugin. Quantizers, one readable file each,
are under :mod:`harness_quant.quantizers`; environments under :mod:`harness_quant.environments`.
"""
