"""The options every command that runs many episodes shares: where they run (``--executor local|ray``), on
which cluster (``--ray-address``), in what batches and with what resources per worker.

Ray is imported only when a run starts with ``--executor ray`` (:mod:`molmomotion_ros.execution`); a missing
Ray or an unreachable cluster is one line ``molmomotion: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from .common import PROG, RUNTIME_ERROR, UsageError, positive_float, positive_int

EXECUTORS = ("local", "ray")  # molmomotion_ros.execution.EXECUTORS, without importing it for --help


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--ray-address``, ``--batch-size``, ``--cpus-per-worker``, ``--gpus-per-worker``
    (``--workers`` stays with each command: what a worker is differs)."""
    group = parser.add_argument_group("execution", "where the episodes run: local worker processes (the default) "
                                      "or a Ray cluster (pip install 'molmomotion_ros[ray]')")
    group.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local: worker processes on this machine; ray: Ray actors on a cluster "
                       "(default: %(default)s)")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="the Ray cluster to join: auto (the one running on this machine), HOST:PORT (a head's "
                       "GCS port, `ray start --head --port`) or ray://HOST:PORT (Ray Client); without it, "
                       "--executor ray starts a Ray instance on this machine for the run")
    group.add_argument("--batch-size", type=positive_int, metavar="N",
                       help="episodes sent to a worker at a time (default: about a quarter of each worker's share, "
                       "1 to 4); a worker keeps its world and agent across batches")
    group.add_argument("--cpus-per-worker", type=positive_float, default=1.0, metavar="X",
                       help="CPUs a Ray worker reserves (default: %(default)s)")
    group.add_argument("--gpus-per-worker", type=non_negative_float, default=0.0, metavar="X",
                       help="GPUs a Ray worker reserves, when the cluster has them (default: %(default)s)")


def executor_from_args(args: argparse.Namespace, default_workers: int | None = None):
    """The executor the options ask for, checked (Ray installed, its cluster reachable: an
    ExecutorUnavailableError otherwise) but not started; a UsageError for options that only Ray reads given
    with the local executor."""
    from molmomotion_ros.execution import make_executor

    if args.executor != "ray":
        given = [flag for flag, value, default in (("--ray-address", args.ray_address, None),
                                                   ("--cpus-per-worker", args.cpus_per_worker, 1.0),
                                                   ("--gpus-per-worker", args.gpus_per_worker, 0.0))
                 if value != default]
        if given:
            raise UsageError(f"{', '.join(given)} need(s) --executor ray")
    workers = args.workers if args.workers is not None else (default_workers if args.executor == "local" else None)
    executor = make_executor(args.executor, workers=workers, batch_size=args.batch_size, address=args.ray_address,
                             cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker)
    executor.check()
    return executor


def worker_lost(err: Exception) -> int:
    """A run whose worker kept dying: one line on stderr, exit status 1."""
    print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
    return RUNTIME_ERROR
