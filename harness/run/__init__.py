"""Running a suite: the suite file and its cells, the driver loop, the executors and the worker."""
