"""The options every command that runs many episodes shares: where they run (``--executor local|ray``), on
which cluster (``--ray-address``), in what batches and with what resources per worker.

They are defined once, in the core layer (:func:`molmomotion_ros.execution.add_arguments`), so that the policy
experiment's command (``molmomotion experiment success-rate``, in a layer below this one) takes the same ones.
Ray is imported only when a run starts with ``--executor ray``; a missing Ray or an unreachable cluster is one
line ``molmomotion: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from .common import PROG, RUNTIME_ERROR, UsageError

EXECUTORS = ("local", "ray")  # molmomotion_ros.execution.EXECUTORS


def add_arguments(parser: argparse.ArgumentParser, batch_flag: str = "--batch-size", items: str = "episodes") -> None:
    """``--executor``, ``--ray-address``, ``--batch-size`` (or ``batch_flag``), ``--cpus-per-worker``,
    ``--gpus-per-worker`` (``--workers`` stays with each command: what a worker is differs)."""
    from molmomotion_ros.execution import add_arguments as add_execution_arguments

    add_execution_arguments(parser, batch_flag, items)


def executor_from_args(args: argparse.Namespace, default_workers: int | None = None):
    """The executor the options ask for, checked (Ray installed, its cluster reachable: an
    ExecutorUnavailableError otherwise) but not started; a UsageError for options that only Ray reads given
    with the local executor."""
    from molmomotion_ros.execution import ExecutorOptionsError, executor_from_options

    try:
        return executor_from_options(args, default_workers)
    except ExecutorOptionsError as err:
        raise UsageError(str(err)) from None


def worker_lost(err: Exception) -> int:
    """A run whose worker kept dying: one line on stderr, exit status 1."""
    print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
    return RUNTIME_ERROR
