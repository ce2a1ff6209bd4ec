"""Where the report's tasks run: in this process, in local worker processes, or on Ray.

Every pool has the same small interface: ``submit(fn, *args) -> handle``,
``wait_any(pending) -> (done, rest)``, ``result(handle)`` (re-raises the task's error) and
``close()``. :func:`make_pool` picks one from the report's settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from choicebc.report.grid import ReportConfig


class RayUnavailableError(ImportError):
    """``--ray-address`` was given but Ray is not installed."""


def _worker_init() -> None:
    """Start of each local worker process: one torch thread (the workers share the cores)."""
    import torch

    torch.set_num_threads(1)


class _SerialPool:
    """Runs tasks one at a time in this process (``--workers 1``; tests count calls).

    A task runs when :meth:`wait_any` asks for it, in submission order, so the progress bar
    moves cell by cell.
    """

    def __init__(self) -> None:
        self._order = 0

    def submit(self, fn: Callable, *args: Any) -> Any:
        self._order += 1
        return _Deferred(self._order, fn, args)

    def wait_any(self, pending: set) -> tuple[set, set]:
        first = min(pending, key=lambda h: h.order)
        first.run()
        return {first}, set(pending) - {first}

    @staticmethod
    def result(handle: Any) -> Any:
        return handle.result()

    def close(self) -> None:
        pass


class _Deferred:
    """A task of :class:`_SerialPool`, run on demand; ``result`` re-raises its error."""

    def __init__(self, order: int, fn: Callable, args: tuple) -> None:
        self.order, self.fn, self.args = order, fn, args
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except Exception as exc:  # noqa: BLE001 - handed to the caller by result()
            self.error = exc

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _ProcessPool(_SerialPool):
    """Local worker processes (spawned: a forked torch/OpenMP parent can deadlock children)."""

    def __init__(self, workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init
        )

    def submit(self, fn: Callable, *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def wait_any(self, pending: set) -> tuple[set, set]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, rest = wait(pending, return_when=FIRST_COMPLETED)
        return set(done), set(rest)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _RayPool:
    """Ray tasks (one CPU each) on the cluster at ``address`` (``local``: start one here)."""

    def __init__(self, address: str, workers: int) -> None:
        ray = import_ray()
        self.ray = ray
        if not ray.is_initialized():
            if address == "local":
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        self._remote: dict[Callable, Any] = {}

    def submit(self, fn: Callable, *args: Any) -> Any:
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(num_cpus=1)(fn)
        return self._remote[fn].remote(*args)

    def wait_any(self, pending: set) -> tuple[set, set]:
        done, rest = self.ray.wait(list(pending), num_returns=1)
        return set(done), set(rest)

    def result(self, handle: Any) -> Any:
        return self.ray.get(handle)

    def close(self) -> None:
        pass


def import_ray() -> Any:
    """Import Ray lazily, or raise a :class:`RayUnavailableError` naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            "--ray-address needs Ray: pip install 'choicebc[cluster]' (or pip install ray)"
        ) from exc
    return ray


def make_pool(cfg: ReportConfig) -> Any:
    """The pool of ``cfg``: Ray with ``ray_address``, else ``workers`` local processes
    (0: one per core; 1: this process)."""
    workers = cfg.workers or os.cpu_count() or 1
    if cfg.ray_address:
        return _RayPool(cfg.ray_address, workers)
    if workers == 1:
        return _SerialPool()
    return _ProcessPool(workers)
