"""Regression verdicts: comparing runs, noise calibration, and the nightly loop."""
