"""Small asyncio helpers the shells share."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def first_of(*coros: Coroutine[Any, Any, T]) -> list[asyncio.Task[T]]:
    """Run ``coros`` as tasks until the first of them ends, then cancel the others and wait
    until they are gone: no task outlives the call, however it is left (a cancellation
    included). Returns the tasks in the order given, for the caller to read the one that
    ended."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return tasks
