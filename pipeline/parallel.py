"""Worker processes shared by every stage that parallelises over independent pieces of work."""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")
PR_SET_PDEATHSIG = 1
"""``prctl`` option from ``<linux/prctl.h>``: a signal the kernel sends this process when its parent dies."""


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes, to be started before any progress-bar thread exists (safe to fork).

    fork (where the platform has it) starts workers instantly, shares what the parent already
    built (tokenizers, dictionaries), and works from a notebook or a script read from stdin,
    where spawn cannot re-import ``__main__``. ``workers <= 1`` yields None: run in this process.
    """
    if workers <= 1:
        yield None
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        yield pool


def die_with_parent(parent: int) -> None:
    """End this process as soon as ``parent`` dies, even by ``kill -9`` (a pool initializer).

    Without it the workers of a killed run live on: they keep writing into work folders that the
    next run resumes, and they keep the data dir's lock (inherited through fork), so the next run
    would be told the data is in use. On Linux the kernel kills the worker when the thread that
    forked it ends (the pools here are started from the main thread, so: when the process ends);
    the parent may have died between the fork and ``prctl``, hence the check right after.
    Elsewhere a daemon thread watches the parent.
    """
    if _kill_me_with_parent():
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _kill_me_with_parent() -> bool:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)``; False where the platform has no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent: int, interval: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def run_bounded(function: Callable[[T], R], jobs: list[T], pool: ProcessPoolExecutor | None,
                workers: int) -> Iterator[tuple[T, R]]:
    """``(job, function(job))`` as jobs finish, at most ``2 × workers`` in flight (flat memory)."""
    if pool is None:
        for job in jobs:
            yield job, function(job)
        return
    queue = iter(jobs)
    running: dict[Future, T] = {}
    for job in queue:
        running[pool.submit(function, job)] = job
        if len(running) >= 2 * workers:
            break
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            job = running.pop(future)
            result = future.result()
            yield job, result
            for nxt in queue:
                running[pool.submit(function, nxt)] = nxt
                break
