"""Stopping asyncio tasks that may swallow a cancel."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_all(tasks: list[asyncio.Task[Any]], *, grace_s: float = 2.0) -> None:
    """Cancels tasks and waits for them, cancelling again while one swallows the cancel.

    Tasks still running after ``grace_s`` and tasks that failed are logged as warnings.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    pending = {t for t in tasks if not t.done()}
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=min(0.1, grace_s))
    for task in pending:
        log.warning("task %s did not stop within %.1f s", task.get_name(), grace_s)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("task %s failed: %r", task.get_name(), task.exception())
