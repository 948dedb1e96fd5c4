"""Environments of the quantization suite: each ``make`` returns a :class:`harness_quant.workload.QuantWorkload`."""
