"""Stopping and starting one function of the running local stack, as a crash or deploy would.

``POST /_dev/functions/<LogicalId>/stop`` pauses the function's event sources (its SQS
and stream pollers; the round in progress finishes first) and stops its warm
workers; what arrives meanwhile waits in its queue or stream, as it would while a
Lambda function is throttled or broken. ``POST /_dev/functions/<LogicalId>/start``
resumes them; the next invocation is a cold start. HTTP routes keep working (API
Gateway would invoke the function anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from devstack.pollers import FunctionQueuePoller, Poller, StreamPoller
from devstack.runtime import FunctionRuntime


class FunctionControl:
    def __init__(self, runtime: FunctionRuntime, pollers: Sequence[Poller]) -> None:
        self.runtime = runtime
        self.pollers = pollers

    def knows(self, logical_id: str) -> bool:
        return logical_id in self.runtime.functions

    def _sources(self, logical_id: str) -> list[Poller]:
        return [
            poller
            for poller in self.pollers
            if isinstance(poller, FunctionQueuePoller | StreamPoller)
            and poller.mapping.function == logical_id
        ]

    def stop(self, logical_id: str) -> dict[str, Any]:
        sources = self._sources(logical_id)
        for poller in sources:
            poller.pause()
        stopped = self.runtime.pool(logical_id).recycle()
        return {
            "function": logical_id,
            "state": "stopped",
            "event_sources_paused": len(sources),
            "workers_stopped": stopped,
        }

    def start(self, logical_id: str) -> dict[str, Any]:
        sources = self._sources(logical_id)
        for poller in sources:
            poller.resume()
        return {"function": logical_id, "state": "running", "event_sources": len(sources)}
