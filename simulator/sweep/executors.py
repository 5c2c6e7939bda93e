"""Where a sweep's configurations run: a local process pool (default, all cores) or a Ray cluster."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from ..errors import CapsimError
from .evaluate import evaluate

Progress = Callable[[float, int], None] | None   # (configurations done, a fraction within one; all of them)


def _chunk(docs: list[dict[str, Any]], max_rate: bool) -> list[dict[str, Any]]:
    return [evaluate(d, max_rate) for d in docs]


def run_local(docs: list[dict[str, Any]], *, workers: int | None, max_rate: bool, progress: Progress) -> list[dict]:
    n = len(docs)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    if workers == 1:
        serial: list[dict] = []
        for i, d in enumerate(docs):
            # a max-rate search runs many simulations: report each of them as a share of its configuration
            step = (lambda f, i=i: progress(i + f, n)) if progress and max_rate else None
            serial.append(evaluate(d, max_rate, step))
            if progress:
                progress(i + 1, n)
        return serial
    size = max(1, min(32, n // (workers * 4) or 1))
    chunks = [(i, docs[i:i + size]) for i in range(0, n, size)]
    rows: list[dict | None] = [None] * n
    done = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_chunk, c, max_rate): i for i, c in chunks}
        for f in as_completed(futures):
            i = futures[f]
            part = f.result()
            rows[i:i + len(part)] = part
            done += len(part)
            if progress:
                progress(done, n)
    return rows  # type: ignore[return-value]


def run_ray(docs: list[dict[str, Any]], *, address: str | None, max_rate: bool, progress: Progress) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise CapsimError("the Ray executor needs ray: pip install 'capsim[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, configure_logging=False)
    try:
        remote = ray.remote(_chunk)
        size = max(1, min(32, len(docs) // 64 or 1))
        refs = {remote.remote(docs[i:i + size], max_rate): i for i in range(0, len(docs), size)}
        rows: list[dict | None] = [None] * len(docs)
        pending, done = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = refs[ref]
                part = ray.get(ref)
                rows[i:i + len(part)] = part
                done += len(part)
                if progress:
                    progress(done, len(docs))
        return rows  # type: ignore[return-value]
    finally:
        if started:
            ray.shutdown()


def run_configs(docs: list[dict[str, Any]], *, executor: str = "local", workers: int | None = None,
                max_rate: bool = False, progress: Progress = None) -> list[dict[str, Any]]:
    """Evaluate ``docs`` and return their rows in the same order."""
    if executor == "local":
        return run_local(docs, workers=workers, max_rate=max_rate, progress=progress)
    if executor == "ray" or executor.startswith("ray:"):
        return run_ray(docs, address=executor.partition(":")[2] or None, max_rate=max_rate, progress=progress)
    raise CapsimError(f"unknown executor {executor!r}; use local, ray or ray:ADDRESS")
