"""A dispatcher worker process for tests/integration/test_outbound_claims.py to kill.

Runs the real dispatcher handler (functions/dispatcher) on one dispatch-queue record,
with the real Twilio sender (pointed at the provider sandbox by the function's
environment). At each point of a send it writes the point's name to the file
descriptor it is given, and at ``stop_at`` it waits there to be killed (SIGKILL):

- ``claimed``: the claim's UpdateItem answered; the provider has not been called;
- ``calling``: the ``calling`` mark is written; the provider call is next;
- ``provider_called``: the provider answered; the status is not written;
- ``status_written``: the handler returned; the job is not acknowledged.

Usage: python -m tests.integration.dispatch_worker STOP_AT FD < record.json
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from tests.conftest import load_handler_module
from tests.integration.conftest import LambdaContext
from threadline.channels.base import Sender, SendResult
from threadline.channels.registry import sender_factory
from threadline.schema import Channel, Message

POINTS = ("claimed", "calling", "provider_called", "status_written")


class Checkpoints:
    def __init__(self, fd: int, stop_at: str) -> None:
        self.fd = fd
        self.stop_at = stop_at

    def reached(self, point: str) -> None:
        os.write(self.fd, f"{point}\n".encode())
        if point == self.stop_at:
            while True:  # held here until the test kills the process
                signal.pause()


class CheckpointSender:
    """The channel's real sender, reporting the points around its provider call."""

    def __init__(self, sender: Sender, checkpoints: Checkpoints) -> None:
        self.sender = sender
        self.provider = sender.provider
        self.checkpoints = checkpoints

    def send(self, message: Message) -> SendResult:
        self.checkpoints.reached("calling")
        result = self.sender.send(message)
        self.checkpoints.reached("provider_called")
        return result


def main(stop_at: str, fd: int, record: dict[str, Any]) -> None:
    checkpoints = Checkpoints(fd, stop_at)
    app = load_handler_module("functions/dispatcher")
    factory = sender_factory(Channel.SMS)
    assert factory is not None
    app.dispatcher.senders[Channel.SMS] = CheckpointSender(factory(), checkpoints)
    updates = 0

    def after_update(**_: Any) -> None:
        nonlocal updates
        updates += 1
        if updates == 1:  # the first UpdateItem of a dispatch is the claim
            checkpoints.reached("claimed")

    app.dispatcher.store.dynamodb.meta.events.register(
        "after-call.dynamodb.UpdateItem", after_update
    )
    response = app.lambda_handler({"Records": [record]}, LambdaContext())
    assert response["batchItemFailures"] == [], response
    checkpoints.reached("status_written")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), json.load(sys.stdin))
