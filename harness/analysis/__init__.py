"""Statistics over results: aggregates and intervals, verdicts between two runs, noise calibration.

Pure functions over records read by :mod:`harness.tracking.reader`; nothing here renders or writes.
"""
