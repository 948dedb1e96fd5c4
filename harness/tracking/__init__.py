"""The record of a result and the stores it goes to.

* :mod:`harness.record`: the versioned cell and suite-run records (``schema_version``, migrations);
* :mod:`harness.tracking.journal`: the local, fsynced journal every result reaches first;
* :mod:`harness.tracking.layout`: the MLflow layout: tag, param and metric names, in one place;
* :mod:`harness.tracking.store`: writing records to an MLflow tracking URI (driver only);
* :mod:`harness.tracking.reader`: reading suite runs back for report, compare, calibrate and nightly;
* :mod:`harness.tracking.writer`, :mod:`harness.tracking.pytest_benchmark`: suite runs from other sources.

Nothing else in the harness writes or reads the MLflow layout.
"""
