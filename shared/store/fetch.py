"""Reading many objects with a bounded number of reads in flight, results in key order."""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from shared.store.base import ObjectStore


def fetch_in_order(
    store: ObjectStore, keys: Iterable[str], *, concurrency: int | None = None
) -> Generator[tuple[str, bytes | Exception]]:
    """Each key's body (or the exception its read raised), in the order of `keys`.

    At most `concurrency` (default: the store's `read_concurrency`) reads are in flight
    and at most twice that many bodies wait to be consumed, so memory follows the
    concurrency, not the number of keys. A read that fails is handed to the caller
    with its key, so that one missing object does not end the others.
    """
    workers = max(1, concurrency or store.read_concurrency)

    def read(key: str) -> bytes:
        return store.get(key).body

    if workers == 1:
        for key in keys:
            try:
                yield key, read(key)
            except Exception as exc:  # handed to the caller, who knows what it means
                yield key, exc
        return
    pending: deque[tuple[str, Future[bytes]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        try:
            for key in keys:
                pending.append((key, pool.submit(read, key)))
                if len(pending) >= 2 * workers:
                    yield _result(*pending.popleft())
            while pending:
                yield _result(*pending.popleft())
        finally:
            # The consumer stopped early (or raised): reads not begun are not begun.
            for _, future in pending:
                future.cancel()


def _result(key: str, future: Future[bytes]) -> tuple[str, bytes | Exception]:
    try:
        return key, future.result()
    except Exception as exc:
        return key, exc
