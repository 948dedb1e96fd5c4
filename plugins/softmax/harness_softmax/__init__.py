"""Softmax throughput suite for harness: CPU (torch) and GPU (CuPy) softmax against the bandwidth ceiling.

The plugin's hooks live in :mod:`harness_softmax.plugin` (entry point ``softmax``); importing this package
imports nothing heavy.
"""
