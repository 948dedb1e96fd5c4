"""Quantizers of the quantization suite, one file each: ``run(environment, params, context)`` for the harness."""
