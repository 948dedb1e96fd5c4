"""Observes the run lifecycle and writes what it saw to $OBSERVER_LOG (a sink written as a plugin)."""

import json
import os

from harness import hookimpl


def _write(event):
    with open(os.environ["OBSERVER_LOG"], "a") as handle:
        handle.write(json.dumps(event) + "\n")


@hookimpl
def harness_run_started(run):
    _write({"event": "started", "suite": run.suite, "cells": len(run.cells)})


@hookimpl
def harness_cell_finished(run, result):
    _write({"event": "cell", "key": result.cell.key, "status": result.status})


@hookimpl
def harness_run_finished(run, results):
    _write({"event": "finished", "results": len(results)})
