"""Where a sweep's configurations run: a local process pool (default, all cores) or a Ray cluster."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from .. import workbound
from ..errors import CapsimError
from .evaluate import evaluate

Progress = Callable[[float, int], None] | None   # (configurations done, a fraction within one; all of them)
RAY_CONNECT_TIMEOUT_S = 5.0   # a reachable Ray head answers a TCP connect in milliseconds


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: ``rows`` holds the finished configurations' rows (None for the others),
    in configuration order. Queued work is cancelled and the workers are stopped before it is raised."""

    def __init__(self, rows: list[dict | None]) -> None:
        super().__init__("sweep interrupted")
        self.rows = rows


def _ignore_sigint() -> None:
    # workers leave Ctrl-C to the parent, which cancels the queue and stops them (no half-written rows)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _chunk(docs: list[dict[str, Any]], max_rate: bool, force: bool = False) -> list[dict[str, Any]]:
    """Evaluate ``docs`` in a worker; ``force``: the parent's --force (a context variable does not
    cross into worker processes or Ray tasks, so it travels as an argument)."""
    with workbound.allow_large() if force else contextlib.nullcontext():
        return [evaluate(d, max_rate) for d in docs]


def run_local(docs: list[dict[str, Any]], *, workers: int | None, max_rate: bool, progress: Progress) -> list[dict]:
    n = len(docs)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    if workers == 1:
        serial: list[dict | None] = [None] * n
        try:
            for i, d in enumerate(docs):
                # a max-rate search runs many simulations: report each of them as a share of its configuration
                step = (lambda f, i=i: progress(i + f, n)) if progress and max_rate else None
                serial[i] = evaluate(d, max_rate, step)
                if progress:
                    progress(i + 1, n)
        except KeyboardInterrupt:
            raise Interrupted(serial) from None
        return serial  # type: ignore[return-value]
    # small chunks (about 32 per worker): a Ctrl-C keeps every chunk finished so far
    size = max(1, min(32, n // (workers * 32) or 1))
    chunks = [(i, docs[i:i + size]) for i in range(0, n, size)]
    rows: list[dict | None] = [None] * n
    done = 0
    # Ctrl-C only sets a flag while the pool runs: a KeyboardInterrupt raised anywhere inside the
    # executor's own code (a submit holding its shutdown lock, a fork starting a worker) could leave
    # the pool's locks held and the sweep hanging; the loop below wakes every 0.1 s to look at it
    stop = threading.Event()
    # (not in a worker thread, which cannot set handlers, nor where SIGINT is ignored, e.g. under nohup)
    main = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) if main else None
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)
    try:
        force = workbound.forced()
        futures = {}
        for i, c in chunks:
            if stop.is_set():
                break
            futures[pool.submit(_chunk, c, max_rate, force)] = i
        pending = set(futures)
        while pending and not stop.is_set():
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for f in sorted(finished, key=futures.__getitem__):
                i = futures[f]
                part = f.result()
                rows[i:i + len(part)] = part
                done += len(part)
                if progress:
                    progress(done, n)
        if stop.is_set():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        _stop(pool)
        raise Interrupted(rows) from None
    except BaseException:
        _stop(pool)
        raise
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    pool.shutdown()
    return rows  # type: ignore[return-value]


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and stop the workers now (a running configuration is abandoned)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=2)
        if p.is_alive():
            p.kill()
            p.join(timeout=1)


def check_ray_address(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """A ``host:port`` Ray address answers a TCP connect within ``timeout_s`` (ray.init itself retries an
    unreachable address for minutes). Only that address is contacted; ``auto``, ``local`` and
    ``ray://`` client addresses are left to Ray."""
    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise CapsimError(f"--executor ray:{address}: expected ray:HOST:PORT (the Ray head's GCS address, e.g. "
                          "ray:10.0.0.5:6379), ray:auto or ray (a local Ray)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise CapsimError(f"--executor ray:{address}: no Ray head answers there within {timeout_s:g} s "
                          f"({e.strerror or e}); start one with `ray start --head --port {port}` or check the "
                          "address") from None


def ray_map(fn: Callable[..., list[Any]], calls: list[tuple[Any, ...]], *, address: str | None,
            on_result: Callable[[int, list[Any]], None]) -> None:
    """Run ``fn(*args)`` for each of ``calls`` as Ray tasks (a local Ray, or the cluster at ``address``),
    handing each task's list to ``on_result(index, result)`` as it finishes. Ctrl-C cancels the tasks
    left and raises :class:`Interrupted` with nothing (the caller keeps what it was handed)."""
    try:
        import ray
    except ImportError:
        raise CapsimError("the Ray executor needs ray: pip install 'capsim[ray]'") from None
    started = not ray.is_initialized()
    if started and address:
        check_ray_address(address)
    if started:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, configure_logging=False)
    try:
        remote = ray.remote(fn)
        refs = {remote.remote(*args): i for i, args in enumerate(calls)}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    on_result(refs[ref], ray.get(ref))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise Interrupted([]) from None
    finally:
        if started:
            ray.shutdown()


def run_ray(docs: list[dict[str, Any]], *, address: str | None, max_rate: bool, progress: Progress) -> list[dict]:
    size = max(1, min(32, len(docs) // 64 or 1))
    force = workbound.forced()
    starts = list(range(0, len(docs), size))
    rows: list[dict | None] = [None] * len(docs)
    done = 0

    def got(k: int, part: list[Any]) -> None:
        nonlocal done
        i = starts[k]
        rows[i:i + len(part)] = part
        done += len(part)
        if progress:
            progress(done, len(docs))

    try:
        ray_map(_chunk, [(docs[i:i + size], max_rate, force) for i in starts], address=address, on_result=got)
    except Interrupted:
        raise Interrupted(rows) from None
    return rows  # type: ignore[return-value]


def run_configs(docs: list[dict[str, Any]], *, executor: str = "local", workers: int | None = None,
                max_rate: bool = False, progress: Progress = None) -> list[dict[str, Any]]:
    """Evaluate ``docs`` and return their rows in the same order."""
    if executor == "local":
        return run_local(docs, workers=workers, max_rate=max_rate, progress=progress)
    if executor == "ray" or executor.startswith("ray:"):
        return run_ray(docs, address=executor.partition(":")[2] or None, max_rate=max_rate, progress=progress)
    raise CapsimError(f"unknown executor {executor!r}; use local, ray or ray:ADDRESS")
