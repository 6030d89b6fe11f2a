"""How every executable of the package runs its node: :func:`run_node` (init, spin, clean shutdown, exit
status) and :class:`StartupError`, the one error that means "this configuration cannot start" (a plain node
exits with it; a managed node's configure fails with it and the node stays up, unconfigured)."""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode
from rclpy.logging import get_logger
from rclpy.node import Node

EXIT_STARTUP_ERROR = 2  # a configuration or start-up error, told in one logged line
EXIT_INTERRUPTED = 130  # a node that does a job (``work``) was interrupted before it finished
SHUTDOWN_TIMEOUT_S = 5.0


class StartupError(RuntimeError):
    """The node cannot start with this configuration (the message says why and what to change)."""


def _spin_until_shutdown(executor: SingleThreadedExecutor) -> None:
    """Spin in a worker thread; Ctrl-C shuts the context down under it, which is the normal way out."""
    try:
        executor.spin()
    except ExternalShutdownException:
        pass


def run_node(name: str, make_node: Callable[[], Node], args=None,
             work: Callable[[Node], int] | None = None) -> None:
    """Run one node until Ctrl-C or an external shutdown (or, with ``work``, until ``work(node)`` returns its
    exit status while the node spins in a second thread); exit with status 2 and one logged line when
    building the node (or ``work``) raises :class:`StartupError`.

    A managed node (:class:`~.lifecycle.ManagedNode`) is started with its ``start()`` (configure and activate
    unless ``autostart`` is false); a failed configure leaves it spinning, unconfigured, with the reason logged.

    A node's optional ``close()`` is called after it has left the executor, before it is destroyed.
    """
    faulthandler.enable()  # a crash (SIGSEGV, SIGABRT) prints every thread's stack to the log
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack to stderr
    rclpy.init(args=args)
    node = executor = spinner = None
    status = 0
    try:
        node = make_node()
        # Single-threaded on purpose: every callback only converts and stores (the nodes' worker threads do
        # the long work). rclpy's MultiThreadedExecutor (Jazzy 7.1) re-submits tasks still queued in its pool
        # on every spin without waiting; under CPU load that busy loop holds the GIL and delays every
        # callback, an instruction by tens of seconds (bench/bench_executor_resubmission.py).
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        # Started only now: a managed node announces itself when active, and a Ctrl-C right after that must
        # find the executor built (built after a SIGINT, its constructor fails on the shut-down context).
        if isinstance(node, LifecycleNode):
            node.start()
        if work is None:
            executor.spin()
        else:
            spinner = threading.Thread(target=_spin_until_shutdown, args=(executor,), name=f"{name}_executor",
                                       daemon=True)
            spinner.start()
            status = work(node)
    except StartupError as err:
        get_logger(name).error(str(err))
        status = EXIT_STARTUP_ERROR
    except (KeyboardInterrupt, ExternalShutdownException):
        status = 0 if work is None else EXIT_INTERRUPTED
    finally:
        if executor is not None:
            # Out of the executor first: a callback (e.g. /clock at 100 Hz) taken while destroy_node runs
            # fails with "cannot use Destroyable" and is printed as an unretrieved exception at exit.
            if node is not None:
                executor.remove_node(node)
            executor.shutdown(timeout_sec=SHUTDOWN_TIMEOUT_S)
        if spinner is not None:
            spinner.join(timeout=SHUTDOWN_TIMEOUT_S)  # a thread still inside the executor at exit aborts
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    if status:
        sys.exit(status)
