"""Worker processes shared by every stage that parallelises over independent pieces of work."""
from __future__ import annotations

import contextlib
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


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
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        yield pool


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
