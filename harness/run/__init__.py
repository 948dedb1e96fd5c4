"""Running a suite: the suite file and its cells, the driver loop, the executors and the worker."""

#: Suites larger than this are refused before expansion (``harness run --max-cells`` raises it): a typo in a
#: sweep can make millions of cells, and expanding them takes minutes and gigabytes before anything useful.
DEFAULT_MAX_CELLS = 100_000
