"""One execution layer for independent items: worker processes on this machine, or a Ray cluster.

A :class:`WorkerTask` says how a worker builds its state once (a PyBullet world, a loaded checkpoint)
and how it handles one item with that state. An :class:`Executor` sends the items to its workers in
batches; a worker keeps its state across all the batches it is given, so a batch only has to be large
enough to amortise the round trip, not the start-up. Results come back as ``(index, result)`` pairs
as batches finish (for a progress bar); :meth:`Executor.map` returns them in input order and
:meth:`Executor.imap` yields them in input order as soon as they can be. Items must be independent
of each other and of the worker that runs them: then results do not depend on the executor, the
worker count or the batch size.

- :class:`LocalExecutor`: spawned processes on this machine (``workers == 1`` runs inline, in this
  process). Needs nothing beyond the standard library.
- :class:`RayExecutor`: one Ray actor per worker, on an existing cluster (``address``) or on a Ray
  instance started for the run. Ray is imported only here, when a run starts; without it, or with a
  cluster that cannot be reached, the run ends with an :class:`ExecutorUnavailableError` (one line).

Both survive a lost worker (a killed process, a lost node): the batches it held run again on a fresh
worker, up to ``max_retries`` times, and the results are the same as without the loss.

Inside ``with executor.session():`` the workers outlive a run: a later run of a task with the same ``init``,
``args`` and ``close`` (its ``run`` may differ: the stages of a graph of tasks) is sent to the same workers,
whose state is still loaded; more workers are added when a run needs more. They end with the session.

Fault injection for tests: ``MOLMOMOTION_EXECUTOR_KILL_ONCE=PATH`` (or ``kill_once=PATH``) makes the
first worker process that starts a batch create ``PATH`` and kill itself with SIGKILL, as a lost node
would; with ``PATH`` already there nothing happens. ``MOLMOMOTION_EXECUTOR_KILL_TASK=NAME`` (``kill_task``)
limits that to the batches of the :class:`WorkerTask` named ``NAME`` (a run of several stages picks one);
``MOLMOMOTION_EXECUTOR_KILL_AFTER_S=SECONDS`` (``kill_after_s``) kills the worker that long into its batch,
while the batch runs (a batch that ends sooner is spared, and the next one is tried). Inline runs (one local
worker) ignore all of it.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .argtypes import non_negative_float, positive_float, positive_int

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
START_METHOD = "spawn"  # fresh interpreters: no PyBullet client or generator state is inherited
MAX_BATCH = 4  # default batch size cap: small batches keep the workers evenly loaded to the end
MAX_RETRIES = 3  # times a batch is sent again after the worker holding it was lost
KILL_ONCE_ENV = "MOLMOMOTION_EXECUTOR_KILL_ONCE"
KILL_TASK_ENV = "MOLMOMOTION_EXECUTOR_KILL_TASK"
KILL_AFTER_ENV = "MOLMOMOTION_EXECUTOR_KILL_AFTER_S"
PROBE_TIMEOUT_S = 5.0
RAY_CLIENT_PORT = 10001
INSTALL_HINT = "pip install 'molmomotion_ros[ray]' or pip install -r requirements/ray.txt"


class ExecutorError(RuntimeError):
    """A run could not be carried out by its executor."""


class ExecutorUnavailableError(ExecutorError):
    """The executor cannot start: Ray is not installed, or the cluster cannot be reached or is too small."""


class StorageError(ExecutorError):
    """A folder the workers must share is not the same folder on every node (not on shared storage)."""


class WorkerLostError(ExecutorError):
    """A batch's worker was lost more than ``max_retries`` times."""


class ExecutorOptionsError(ValueError):
    """Command-line execution options that do not go together (e.g. ``--ray-address`` without ``--executor ray``)."""


@dataclass(frozen=True)
class WorkerTask:
    """What every worker runs: ``state = init(*args)`` once, ``run(state, item)`` per item, ``close(state)`` at
    the end. The callables must be importable module-level functions (they travel by name).

    ``gpus``, when given, is what each worker of this task reserves on a Ray cluster instead of the executor's
    ``gpus_per_worker`` (a training stage asks for a GPU, the evaluation around it for none); local workers see
    the machine's GPUs whatever it says.

    ``local_state``, when given, is a state already built in this process; an executor that runs the items
    inline uses it instead of calling ``init`` (it never travels to a worker, and is not closed). ``name`` labels
    the task (logs, fault injection).
    """

    init: Callable[..., Any]
    run: Callable[[Any, Any], Any]
    args: tuple = ()
    close: Callable[[Any], None] | None = None
    local_state: Any = field(default=None, compare=False, repr=False)
    name: str = ""
    gpus: float | None = None

    def __getstate__(self) -> dict:
        return {"init": self.init, "run": self.run, "args": self.args, "close": self.close, "local_state": None,
                "name": self.name, "gpus": self.gpus}

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def run_batch(self, state: Any, batch: Sequence[tuple[int, Any]]) -> list[tuple[int, Any]]:
        return [(index, self.run(state, item)) for index, item in batch]

    @property
    def worker_key(self) -> tuple:
        """What a worker's state depends on: tasks with the same key can share workers (in a session)."""
        return (self.init, self.args, self.close, self.gpus)


def _run_batch(run: Callable[[Any, Any], Any], state: Any, batch: Sequence[tuple[int, Any]]) -> list[tuple[int, Any]]:
    return [(index, run(state, item)) for index, item in batch]


def default_batch_size(items: int, workers: int, max_batch: int = MAX_BATCH) -> int:
    """About four batches per worker, at most ``max_batch`` items each, at least one."""
    return max(1, min(max_batch, items // max(1, workers * 4)))


def batched(items: Sequence[Any], size: int) -> list[list[tuple[int, Any]]]:
    """``(index, item)`` pairs in consecutive batches of ``size``."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    indexed = list(enumerate(items))
    return [indexed[i:i + size] for i in range(0, len(indexed), size)]


@dataclass(frozen=True)
class KillSpec:
    """Fault injection (see the module docstring): who dies, in which task's batches, how far into one."""

    marker: str
    task: str = ""  # only batches of the WorkerTask of this name ("" = any)
    after_s: float = 0.0  # 0: at the batch's start


@dataclass
class RunInfo:
    """What the last run used, for results files (``Executor.describe``)."""

    workers: int = 0
    batch_size: int = 0
    batches: int = 0
    retried_batches: int | None = 0  # None: the executor retries out of sight (Ray)


class Executor(ABC):
    """Runs a :class:`WorkerTask` over items; see the module docstring."""

    name: str = ""

    def __init__(self, workers: int | None = None, batch_size: int | None = None, max_retries: int = MAX_RETRIES,
                 kill_once: str | Path | None = None, kill_task: str | None = None, kill_after_s: float | None = None):
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.workers = workers
        self.batch_size = batch_size
        self.max_retries = max_retries
        marker = str(kill_once) if kill_once else os.environ.get(KILL_ONCE_ENV) or None
        self.kill = None
        if marker:
            task = kill_task if kill_task is not None else os.environ.get(KILL_TASK_ENV, "")
            after = kill_after_s if kill_after_s is not None else float(os.environ.get(KILL_AFTER_ENV) or 0)
            self.kill = KillSpec(marker, task, after)
        self.last_run = RunInfo()
        self._in_session = False

    @contextmanager
    def session(self) -> Iterator["Executor"]:
        """Keep the workers from one run to the next until the end of the ``with`` (see the module docstring)."""
        if self._in_session:
            yield self
            return
        self._in_session = True
        try:
            yield self
        finally:
            self._in_session = False
            self._end_session()

    def _end_session(self) -> None:
        """Stop the workers a session kept."""
        return None

    # --- the interface -------------------------------------------------------------------------
    def imap_unordered(self, task: WorkerTask, items: Iterable[Any],
                       batch_size: int | None = None) -> Iterator[tuple[int, Any]]:
        """``(index, result)`` for every item, in the order the batches finish."""
        items = list(items)
        if not items:
            return iter(())
        return self._run(task, items, batch_size or self.batch_size)

    def imap(self, task: WorkerTask, items: Iterable[Any], batch_size: int | None = None) -> Iterator[Any]:
        """Results in input order, each as soon as it and all before it are done."""
        waiting: dict[int, Any] = {}
        next_index = 0
        for index, result in self.imap_unordered(task, items, batch_size):
            waiting[index] = result
            while next_index in waiting:
                yield waiting.pop(next_index)
                next_index += 1

    def map(self, task: WorkerTask, items: Iterable[Any], batch_size: int | None = None,
            progress: str | None = None) -> list[Any]:
        """Every result in input order; ``progress`` labels a tqdm bar (none without it)."""
        items = list(items)
        results: list[Any] = [None] * len(items)
        bar = _bar(len(items), progress)
        try:
            for index, result in self.imap_unordered(task, items, batch_size):
                results[index] = result
                bar.update(1)
        finally:
            bar.close()
        return results

    def check(self) -> None:
        """Fail early, before any work is set up, when the executor cannot run (an ExecutorUnavailableError)."""
        return None

    def describe(self) -> dict:
        """The executor and what its last run used, for results files."""
        return {"name": self.name, "workers": self.last_run.workers, "batch_size": self.last_run.batch_size,
                "retried_batches": self.last_run.retried_batches}

    def gpus_available(self) -> float:
        """GPUs the workers can use: those torch sees on this machine (none without torch)."""
        try:
            import torch
        except ImportError:
            return 0.0
        return float(torch.cuda.device_count()) if torch.cuda.is_available() else 0.0

    def check_storage(self, folder: str | Path) -> None:
        """Raise :class:`StorageError` unless every worker reads and writes ``folder`` as this process does
        (local workers share this machine's disk)."""
        return None

    @abstractmethod
    def _run(self, task: WorkerTask, items: list[Any], batch_size: int | None) -> Iterator[tuple[int, Any]]:
        ...

    def _plan(self, items: list[Any], workers: int, batch_size: int | None) -> list[list[tuple[int, Any]]]:
        workers = max(1, min(workers, len(items)))
        size = batch_size or default_batch_size(len(items), workers)
        batches = batched(items, size)
        self.last_run = RunInfo(workers=min(workers, len(batches)), batch_size=size, batches=len(batches))
        return batches


def make_executor(name: str, workers: int | None = None, batch_size: int | None = None,
                  address: str | None = None, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                  max_retries: int = MAX_RETRIES) -> Executor:
    """``"local"`` or ``"ray"`` by name (what ``--executor`` gives)."""
    if name == "local":
        if address:
            raise ValueError("a Ray address needs the ray executor")
        return LocalExecutor(workers, batch_size, max_retries)
    if name == "ray":
        return RayExecutor(address, workers, batch_size, cpus_per_worker=cpus_per_worker,
                           gpus_per_worker=gpus_per_worker, max_retries=max_retries)
    raise ValueError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")


# --- command-line options --------------------------------------------------------------------------
# Here, in the core layer, so that every command that runs many independent tasks (``molmomotion sim-eval``,
# ``generate-data``, ``eval-forecast``, ``experiment success-rate``) takes the same flags; the CLI's
# ``cli/execution.py`` turns an ExecutorOptionsError into its one-line usage error.
def add_arguments(parser: argparse.ArgumentParser, batch_flag: str = "--batch-size", items: str = "episodes") -> None:
    """``--executor``, ``--ray-address``, ``batch_flag`` (what a worker is sent at a time: ``items``),
    ``--cpus-per-worker``, ``--gpus-per-worker``. ``--workers`` stays with each command (what a worker is
    differs); :func:`executor_from_options` reads it when the command has it."""
    group = parser.add_argument_group(
        "execution", f"where the {items} run: local worker processes (the default) or a Ray cluster "
        "(pip install 'molmomotion_ros[ray]')")
    group.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local: worker processes on this machine; ray: Ray actors on a cluster "
                       "(default: %(default)s)")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="the Ray cluster to join: auto (the one running on this machine), HOST:PORT (a head's "
                       "GCS port, `ray start --head --port`) or ray://HOST:PORT (Ray Client); without it, "
                       "--executor ray starts a Ray instance on this machine for the run")
    batch = group.add_argument(batch_flag, type=positive_int, metavar="N",
                               help=f"{items} sent to a worker at a time (default: about a quarter of each "
                               "worker's share, 1 to 4); a worker keeps its state (world, agent) across batches")
    parser.set_defaults(executor_batch_dest=batch.dest)
    group.add_argument("--cpus-per-worker", type=positive_float, default=1.0, metavar="X",
                       help="CPUs a Ray worker reserves (default: %(default)s)")
    group.add_argument("--gpus-per-worker", type=non_negative_float, default=0.0, metavar="X",
                       help="GPUs a Ray worker reserves, when the cluster has them (default: %(default)s)")


def executor_from_options(args: argparse.Namespace, default_workers: int | None = None) -> Executor:
    """The executor the options of :func:`add_arguments` (and ``--workers``, when the command has it) ask for,
    checked (Ray installed, its cluster reachable: an ExecutorUnavailableError otherwise) but not started; an
    ExecutorOptionsError for options that only Ray reads given with the local executor."""
    if args.executor != "ray":
        given = [flag for flag, value, default in (("--ray-address", args.ray_address, None),
                                                   ("--cpus-per-worker", args.cpus_per_worker, 1.0),
                                                   ("--gpus-per-worker", args.gpus_per_worker, 0.0))
                 if value != default]
        if given:
            raise ExecutorOptionsError(f"{', '.join(given)} need(s) --executor ray")
    workers = getattr(args, "workers", None)
    if workers is None and args.executor == "local":
        workers = default_workers
    batch_size = getattr(args, getattr(args, "executor_batch_dest", "batch_size"), None)
    executor = make_executor(args.executor, workers=workers, batch_size=batch_size, address=args.ray_address,
                             cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker)
    executor.check()
    return executor


# --- local processes ---------------------------------------------------------------------------
class LocalExecutor(Executor):
    """Spawned worker processes on this machine (``workers`` defaults to the usable cores); one worker runs
    inline. A worker process that dies is replaced and its batches are sent again."""

    name = "local"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pool: ProcessPoolExecutor | None = None  # a session's
        self._pool_key: tuple | None = None
        self._pool_size = 0
        self._inline: tuple[tuple, Any] | None = None  # a session's inline (key, state)

    def _run(self, task: WorkerTask, items: list[Any], batch_size: int | None) -> Iterator[tuple[int, Any]]:
        batches = self._plan(items, self.workers or available_cores(), batch_size)
        if self.last_run.workers == 1:
            yield from self._run_inline(task, batches)
        else:
            yield from self._run_pool(task, batches)

    def _run_inline(self, task: WorkerTask, batches: list[list[tuple[int, Any]]]) -> Iterator[tuple[int, Any]]:
        if task.local_state is not None:
            state, own = task.local_state, False
        elif self._in_session:
            if self._inline is None or self._inline[0] != task.worker_key:
                self._close_inline()
                self._inline = (task.worker_key, (task, task.init(*task.args)))
            state, own = self._inline[1][1], False
        else:
            state, own = task.init(*task.args), True
        try:
            for batch in batches:
                yield from task.run_batch(state, batch)
        finally:
            if own and task.close is not None:
                task.close(state)

    def _close_inline(self) -> None:
        if self._inline is not None:
            task, state = self._inline[1]
            self._inline = None
            if task.close is not None:
                task.close(state)

    def _new_pool(self, task: WorkerTask, workers: int) -> ProcessPoolExecutor:
        """A pool for ``task``: the session's when it has the task's workers and enough of them."""
        if self._in_session and self._pool is not None and self._pool_key == task.worker_key \
                and self._pool_size >= workers:
            return self._pool
        self._shutdown_pool()
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(START_METHOD),
                                   initializer=_local_init, initargs=(task,))
        if self._in_session:
            self._pool, self._pool_key, self._pool_size = pool, task.worker_key, workers
        return pool

    def _shutdown_pool(self, pool: ProcessPoolExecutor | None = None) -> None:
        """Shut ``pool`` down (default: the session's); a session's pool stops being the session's."""
        if pool is None or pool is self._pool:
            pool, self._pool, self._pool_key, self._pool_size = self._pool, None, None, 0
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _end_session(self) -> None:
        self._shutdown_pool()
        self._close_inline()

    def _run_pool(self, task: WorkerTask, batches: list[list[tuple[int, Any]]]) -> Iterator[tuple[int, Any]]:
        todo = deque(range(len(batches)))
        tries = [0] * len(batches)
        while todo:
            pool = self._new_pool(task, self.last_run.workers)
            running: dict[Any, int] = {}
            keep = False
            try:
                lost: list[int] = []
                while todo or running:
                    # One batch in flight per worker and one queued behind it, so no worker waits on the driver.
                    while todo and len(running) < 2 * self.last_run.workers:
                        number = todo.popleft()
                        running[pool.submit(_local_batch, batches[number], self.kill, task.run, task.name)] = number
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        number = running.pop(future)
                        try:
                            pairs = future.result()
                        except BrokenProcessPool:
                            lost.append(number)
                            continue
                        yield from pairs
                    if lost:  # the pool is broken: every batch still in it is lost too
                        lost.extend(running.values())
                        running.clear()
                        break
                keep = self._in_session and not lost and pool is self._pool  # ran to its end, healthy
            finally:
                if not keep:  # also when the caller stopped early: nothing of this run stays queued
                    self._shutdown_pool(pool)
            if lost:
                for number in lost:
                    tries[number] += 1
                    if tries[number] > self.max_retries:
                        raise WorkerLostError(f"a worker process died {tries[number]} times while running batch "
                                              f"{number + 1} of {len(batches)}; giving up")
                self.last_run.retried_batches += len(lost)
                logger.warning("a worker process died; sending %d batch(es) again to fresh workers", len(lost))
                todo = deque(sorted(set(lost) | set(todo)))


_LOCAL_TASK: WorkerTask | None = None
_LOCAL_STATE: Any = None


def _local_init(task: WorkerTask) -> None:
    global _LOCAL_TASK, _LOCAL_STATE
    _LOCAL_TASK = task
    _LOCAL_STATE = task.init(*task.args)
    if task.close is not None:
        multiprocessing.util.Finalize(None, task.close, args=(_LOCAL_STATE,), exitpriority=10)


def _local_batch(batch: list[tuple[int, Any]], kill: KillSpec | None, run: Callable[[Any, Any], Any],
                 name: str) -> list[tuple[int, Any]]:
    assert _LOCAL_TASK is not None, "worker not initialised"
    with _fault(kill, name):
        return _run_batch(run, _LOCAL_STATE, batch)


@contextmanager
def _fault(kill: KillSpec | str | None, task_name: str) -> Iterator[None]:
    """Fault injection around one batch (see :class:`KillSpec`); nothing without ``kill``."""
    if isinstance(kill, str):
        kill = KillSpec(kill)
    if kill is None or (kill.task and kill.task != task_name):
        yield
        return
    if kill.after_s <= 0:
        _maybe_die(kill.marker)
        yield
        return
    finished = threading.Event()

    def later() -> None:
        if not finished.wait(kill.after_s):
            _maybe_die(kill.marker)

    threading.Thread(target=later, name="kill-once", daemon=True).start()
    try:
        yield
    finally:
        finished.set()


def _maybe_die(marker: str | None) -> None:
    """Fault injection: the first worker to get here with ``marker`` unclaimed claims it and dies."""
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def probe_storage(probe_dir: str, token: str, node: str) -> dict:
    """On a worker node: whether it reads the driver's token in ``probe_dir``, and the file it wrote there."""
    folder = Path(probe_dir)
    report = {"node": node, "host": socket.gethostname(), "read": None, "wrote": None, "error": None}
    try:
        report["read"] = (folder / "driver").read_text() if (folder / "driver").is_file() else None
        mine = folder / f"node-{node}"
        mine.write_text(token)
        report["wrote"] = str(mine)
    except OSError as err:
        report["error"] = f"{type(err).__name__}: {err}"
    return report


def storage_problems(probe_dir: str, token: str, reports: list[dict]) -> list[str]:
    """What the probes' reports (:func:`probe_storage`) say is wrong, as this process sees ``probe_dir``."""
    problems = []
    for report in reports:
        where = f"node {report['host']} ({report['node'][:8]})"
        if report.get("error"):
            problems.append(f"{where} cannot write there: {report['error']}")
        elif report.get("read") != token:
            problems.append(f"{where} does not see this machine's files there")
        elif not (Path(probe_dir) / f"node-{report['node']}").is_file():
            problems.append(f"this machine does not see the files {where} writes there")
    return problems


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- Ray ---------------------------------------------------------------------------------------
class RayWorker:
    """A worker's state inside a Ray actor (``ray.remote`` is applied when a run starts)."""

    def __init__(self, task: WorkerTask, log_level: int = logging.WARNING):
        logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
        self.task = task
        self.state = task.init(*task.args)

    def run_batch(self, batch: list[tuple[int, Any]], kill: KillSpec | None = None,
                  run: Callable[[Any, Any], Any] | None = None, name: str | None = None) -> list[tuple[int, Any]]:
        """``run`` (default: the task's) on every item; a session's later tasks send their own."""
        with _fault(kill, self.task.name if name is None else name):
            return _run_batch(run or self.task.run, self.state, batch)

    def close(self) -> None:
        if self.task.close is not None:
            self.task.close(self.state)


class RayExecutor(Executor):
    """One Ray actor per worker, each holding its state for the whole run.

    ``address``: ``None`` starts a Ray instance on this machine for the run (or joins the one ``RAY_ADDRESS``
    names, as ``ray.init`` does); ``"auto"`` joins the cluster running on this machine; ``"HOST:PORT"`` joins
    a cluster through its head's GCS port; ``"ray://HOST:PORT"`` through Ray Client. ``workers`` defaults to
    as many as the cluster's CPUs (and GPUs, when ``gpus_per_worker`` > 0) hold; each worker reserves
    ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs. An actor that dies is restarted and its batches
    sent again, up to ``max_retries`` times.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, batch_size: int | None = None,
                 cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, max_retries: int = MAX_RETRIES,
                 kill_once: str | Path | None = None, kill_task: str | None = None, kill_after_s: float | None = None):
        super().__init__(workers, batch_size, max_retries, kill_once, kill_task, kill_after_s)
        if not cpus_per_worker > 0:
            raise ValueError(f"cpus_per_worker must be positive, got {cpus_per_worker}")
        if gpus_per_worker < 0:
            raise ValueError(f"gpus_per_worker must be 0 or more, got {gpus_per_worker}")
        self.address = address or None
        self.cpus_per_worker = float(cpus_per_worker)
        self.gpus_per_worker = float(gpus_per_worker)
        self._actors: list[Any] = []  # a session's
        self._actors_key: tuple | None = None
        self._session_connected = False  # a session started the connection (and so shuts it down)

    def check(self) -> None:
        """Ray importable and the cluster's address reachable (the cluster's size is checked when a run starts)."""
        import_ray()
        if self.address not in (None, "auto"):
            probe_address(self.address)

    def describe(self) -> dict:
        return {**super().describe(), "address": self.address, "cpus_per_worker": self.cpus_per_worker,
                "gpus_per_worker": self.gpus_per_worker}

    def _join(self):
        ray = import_ray()
        if self._connect(ray) and self._in_session:
            self._session_connected = True
        return ray

    def gpus_available(self) -> float:
        """The GPUs the cluster holds (joining it if needed)."""
        return float(self._join().cluster_resources().get("GPU", 0))

    def check_storage(self, folder: str | Path) -> None:
        """One probe per alive node of the cluster: it must read a token this process wrote into ``folder`` and
        write one back that this process then reads. Checkpoints and results travel through that folder, so a
        path that is only this machine's disk ends here, naming the nodes, instead of losing their files."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self._join()
        folder = Path(folder)
        token = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        probe_dir = folder / ".storage-probe"
        probe_dir.mkdir(parents=True, exist_ok=True)
        (probe_dir / "driver").write_text(token)
        probe = ray.remote(num_cpus=0)(probe_storage)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                    str(probe_dir), token, n["NodeID"]) for n in nodes]
        reports = ray.get(refs, timeout=120)
        problems = storage_problems(str(probe_dir), token, reports)
        for path in probe_dir.iterdir():
            path.unlink(missing_ok=True)
        probe_dir.rmdir()
        if problems:
            raise StorageError(f"{folder} is not one folder for every node of the Ray cluster ({'; '.join(problems)}"
                               "): give --out a path on storage every node mounts at the same place (NFS, a "
                               "cluster file system)")


    def _run(self, task: WorkerTask, items: list[Any], batch_size: int | None) -> Iterator[tuple[int, Any]]:
        ray = import_ray()
        started = self._connect(ray)
        if self._in_session and started:
            self._session_connected, started = True, False
        actors: list[Any] = []
        completed = False
        try:
            gpus = self._gpus(task)
            capacity = self._capacity(ray, gpus)
            workers = min(self.workers or capacity, capacity)
            if self.workers and self.workers > capacity:
                logger.warning("the Ray cluster holds %d worker(s) of %g CPU, %g GPU; using %d, not %d", capacity,
                               self.cpus_per_worker, gpus, capacity, self.workers)
            batches = self._plan(items, workers, batch_size)
            self.last_run.retried_batches = None  # Ray resends a lost actor's batches itself, and does not say
            actors = self._actors_for(ray, task, self.last_run.workers)
            yield from self._dispatch(ray, actors, batches, task)
            completed = True
        finally:
            if not self._in_session:
                self._release(ray, actors, started)
            elif not completed:  # stopped early or failed: nothing of this run stays queued on the session's actors
                self._release(ray, self._actors, False)
                self._actors, self._actors_key = [], None

    def _actors_for(self, ray, task: WorkerTask, workers: int) -> list[Any]:
        """``workers`` actors for ``task``: new ones, or in a session the session's (more added when needed)."""
        actor_class = ray.remote(RayWorker).options(
            num_cpus=self.cpus_per_worker, num_gpus=self._gpus(task),
            max_restarts=self.max_retries, max_task_retries=self.max_retries,
        )
        remote_task = WorkerTask(task.init, task.run, task.args, task.close, name=task.name)  # no local state
        log_level = logging.getLogger().getEffectiveLevel()
        if not self._in_session:
            return [actor_class.remote(remote_task, log_level) for _ in range(workers)]
        if self._actors_key != task.worker_key:
            self._release(ray, self._actors, False)
            self._actors, self._actors_key = [], task.worker_key
        while len(self._actors) < workers:
            self._actors.append(actor_class.remote(remote_task, log_level))
        return list(self._actors)

    def _end_session(self) -> None:
        if not (self._actors or self._session_connected):
            return
        ray = import_ray()
        self._release(ray, self._actors, self._session_connected)
        self._actors, self._actors_key, self._session_connected = [], None, False

    def _dispatch(self, ray, actors: list[Any], batches: list[list[tuple[int, Any]]],
                  task: WorkerTask) -> Iterator[tuple[int, Any]]:
        from ray.exceptions import RayActorError, RayTaskError

        todo = deque(range(len(batches)))
        running: dict[Any, tuple[Any, int]] = {}

        def submit(actor) -> None:
            if todo:
                number = todo.popleft()
                running[actor.run_batch.remote(batches[number], self.kill, task.run, task.name)] = (actor, number)

        for actor in actors:  # one batch in flight and one queued behind it per actor
            submit(actor)
        for actor in actors:
            submit(actor)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, number = running.pop(ready[0])
            try:
                pairs = ray.get(ready[0])
            except RayTaskError as err:  # the task itself raised: that exception, as a local run would
                cause = getattr(err, "cause", None)
                raise (cause if isinstance(cause, Exception) else err.as_instanceof_cause()) from None
            except RayActorError as err:
                raise WorkerLostError(f"a Ray worker was lost more than {self.max_retries} time(s) while running "
                                      f"batch {number + 1} of {len(batches)}: {_one_line(err)}") from None
            yield from pairs
            submit(actor)

    def _connect(self, ray) -> bool:
        """Join or start Ray; True when this run started (and so shuts down) the connection."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reporting from an offline tool
        if self.address not in (None, "auto"):
            probe_address(self.address)
        address, kwargs = self.address, {"logging_level": logging.WARNING}
        if address is None and not os.environ.get("RAY_ADDRESS"):
            # "local": a new instance for this run, never a cluster some earlier `ray start` left on this machine
            address = "local"
            kwargs.update(num_cpus=max(self.workers or 0, available_cores()), include_dashboard=False)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError, OSError, TimeoutError) as err:
            where = f"join the Ray cluster at {self.address}" if self.address else "start Ray"
            raise ExecutorUnavailableError(f"cannot {where}: {_one_line(err)}") from None
        return True

    def _gpus(self, task: WorkerTask) -> float:
        return self.gpus_per_worker if task.gpus is None else float(task.gpus)

    def _capacity(self, ray, gpus_per_worker: float) -> int:
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        capacity = int(cpus // self.cpus_per_worker)
        if gpus_per_worker > 0:
            capacity = min(capacity, int(gpus // gpus_per_worker))
        if capacity < 1:
            raise ExecutorUnavailableError(
                f"the Ray cluster has {cpus:g} CPU(s) and {gpus:g} GPU(s); a worker needs {self.cpus_per_worker:g} "
                f"CPU(s) and {gpus_per_worker:g} GPU(s)")
        return capacity

    def _release(self, ray, actors: list[Any], started: bool) -> None:
        if actors:
            try:
                ray.get([actor.close.remote() for actor in actors], timeout=30)
            except Exception as err:  # a worker that cannot close is killed below all the same
                logger.debug("closing Ray workers: %s", err)
            for actor in actors:
                try:
                    ray.kill(actor)
                except Exception as err:
                    logger.debug("killing a Ray worker: %s", err)
        if started:
            ray.shutdown()


def import_ray():
    """``ray``, or an :class:`ExecutorUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ExecutorUnavailableError(f"the ray executor needs Ray, which is not installed ({_one_line(err)}): "
                                       f"{INSTALL_HINT}") from None
    return ray


def probe_address(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Open (and close) a TCP connection to a Ray address, so an unreachable cluster is one quick error
    (``ray.init`` itself retries for minutes)."""
    host, port = split_address(address)
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or type(err).__name__)
        raise ExecutorUnavailableError(
            f"cannot reach the Ray cluster at {address} ({reason} after {time.monotonic() - start:.1f} s); start "
            "one with `ray start --head` or check --ray-address") from None


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``ray://HOST[:PORT]`` → (host, port); a ValueError-like ExecutorUnavailableError else."""
    rest = address
    default_port = None
    if "://" in address:
        scheme, _, rest = address.partition("://")
        if scheme != "ray":
            raise ExecutorUnavailableError(f"a Ray address is auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
        default_port = RAY_CLIENT_PORT
    rest = rest.rstrip("/")
    if rest.startswith("["):  # [IPv6]:PORT
        host, _, port_text = rest[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep:
            host, port_text = rest, ""
    if not port_text and default_port is not None:
        return host, default_port
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ExecutorUnavailableError(f"a Ray address is auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host, int(port_text)


# --- a throwaway head, for tests and benchmarks ---------------------------------------------------
# Ray swaps 127.0.0.1 for the machine's outward address unless told that it is not in a cluster of many
# machines; with this set (in the head's environment and in every driver's before Ray loads), all of the
# head's connections stay on the loopback interface. Reachable from this machine only, such a head needs
# no token (which Ray would otherwise look for in, or write to, ~/.ray).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
HEAD_START_TIMEOUT_S = 90


@contextmanager
def loopback_driver_env() -> Iterator[None]:
    """``LOOPBACK_ENV`` in this process's environment (before it imports Ray), as it was afterwards: what a
    driver joining a :func:`loopback_ray_head` needs."""
    saved = {key: os.environ.get(key) for key in LOOPBACK_ENV}
    os.environ.update(LOOPBACK_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def loopback_ray_head(num_cpus: int = 2, env: dict | None = None,
                      start_timeout_s: float = HEAD_START_TIMEOUT_S, num_gpus: int = 0) -> Iterator[str]:
    """A Ray head on 127.0.0.1 with ``num_cpus`` CPUs (and ``num_gpus`` GPUs declared, whether the machine has
    them or not: Ray schedules by what is declared), for tests and benchmarks: yields its ``HOST:PORT`` and
    stops it, with every process it started, on exit. Its temporary folder and ports are its own, so it
    neither meets nor disturbs another head on the machine. Drivers that join it need ``LOOPBACK_ENV``
    in their environment before they import Ray."""
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.is_file():
        raise ExecutorUnavailableError(f"no `ray` command next to {sys.executable}: {INSTALL_HINT}")
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    names = ["dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
             "metrics-export-port", "node-manager-port", "object-manager-port"]
    if importlib.util.find_spec("grpc") is not None:  # ray[client]: the head serves ray:// on a port of its own
        names.append("ray-client-server-port")
    ports = [f"--{name}={free_port()}" for name in names]
    command = [str(ray_cli), "start", "--head", "--block", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}",
               f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
               "--disable-usage-stats", f"--temp-dir={temp_dir}", "--object-store-memory=100000000", *ports]
    log_path = temp_dir / "head.log"
    with open(log_path, "wb") as log:
        head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {}), **LOOPBACK_ENV})
    try:
        deadline = time.monotonic() + start_timeout_s
        while b"Ray runtime started" not in log_path.read_bytes():
            if head.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ExecutorUnavailableError(f"the Ray head did not start: {_one_line(Exception(tail))}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # with --block, the head drains and stops what it started
        try:
            head.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # whatever is left of its session (start_new_session)
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


# --- helpers -----------------------------------------------------------------------------------
class _NullBar:
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


def _bar(total: int, label: str | None):
    if not label:
        return _NullBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="item", dynamic_ncols=True)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
