"""A dispatcher worker killed mid-send (SIGKILL, a real process) strands no reply and
sends none twice (moto server, the provider sandbox).

The worker (tests/integration/dispatch_worker.py) runs the real dispatcher handler on
the job and reports each point of the send on a pipe; the test kills it at one point,
then runs the dispatcher again on the same job, as SQS would redeliver it once its
visibility timeout ran out: first while the dead worker's claim is fresh, then with
the dispatcher's clock past the claim timeout (no waiting for minutes)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.integration.dispatch_worker import POINTS
from tests.integration.test_outbound import (  # noqa: F401
    api_post,
    customer_for,
    pipeline,
    status_post,
    timeline,
)
from tests.integration.test_twilio_ingest import sms
from threadline.schema import utc_now

REPO_ROOT = Path(__file__).resolve().parents[2]
# How long a worker may take to reach a point (its imports, moto, the sandbox) on a
# busy machine; a wait on the pipe, returning as soon as the point is reported.
POINT_TIMEOUT = 120.0


class Worker:
    """One dispatcher process, stopped at ``stop_at`` and killed there."""

    def __init__(self, stop_at: str, record: dict, env: dict[str, str]) -> None:
        self.read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.dispatch_worker", stop_at, str(write_fd)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(record).encode())
        self.process.stdin.close()
        self.points: list[str] = []

    def wait_for(self, point: str) -> None:
        buffer = b""
        deadline = utc_now() + timedelta(seconds=POINT_TIMEOUT)
        while point not in self.points:
            left = (deadline - utc_now()).total_seconds()
            ready, _, _ = select.select([self.read_fd], [], [], max(left, 0))
            assert ready, f"the worker never reached {point!r} (reached {self.points})"
            chunk = os.read(self.read_fd, 4096)
            assert chunk, f"the worker exited before {point!r} (reached {self.points})"
            buffer += chunk
            *lines, rest = buffer.split(b"\n")
            buffer = rest
            self.points += [line.decode() for line in lines]

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL
        os.close(self.read_fd)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.kill()


@pytest.mark.parametrize(
    ("stop_at", "sends", "status", "error_code"),
    [
        # The claim is written, the provider not called: provably unsent, sent once.
        ("claimed", 1, "sent", None),
        # Marked calling, killed just before the request left: we cannot tell that
        # apart from a lost answer, so it is failed, never sent twice.
        ("calling", 0, "failed", "send_outcome_unknown"),
        # The provider took it; the status was never written: unknown, not re-sent.
        ("provider_called", 1, "failed", "send_outcome_unknown"),
        # Everything written, the job not acknowledged: the redelivery does nothing.
        ("status_written", 1, "sent", None),
    ],
)
def test_a_killed_worker_strands_nothing_and_sends_nothing_twice(
    stop_at,
    sends,
    status,
    error_code,
    workers,
    stack,
    twilio_post,
    api_get,
    api_post,  # noqa: F811 (the fixture imported above)
    pipeline,  # noqa: F811
    provider_sandbox,
    dispatcher_module,
    monkeypatch,
):
    number = f"+155512410{POINTS.index(stop_at):02d}"
    twilio_post(sms(f"SM{POINTS.index(stop_at):02d}" + "e1" * 15, sender=number))
    customer_id = customer_for(api_get, number)
    reply = api_post(f"/v1/customers/{customer_id}/messages", {"text": "once only"})
    assert reply["statusCode"] == 202, reply
    message_id = json.loads(reply["body"])["id"]
    pipeline.publish()
    record = pipeline.receive_job(message_id)

    env = {**os.environ, **stack.function_environment("DispatcherFunction")}
    worker = Worker(stop_at, record, env)
    workers.append(worker)
    worker.wait_for(stop_at)
    worker.kill()
    assert worker.points == list(POINTS[: POINTS.index(stop_at) + 1])

    def current() -> dict:
        return next(m for m in timeline(api_get, customer_id) if m["id"] == message_id)

    if stop_at in ("claimed", "calling", "provider_called"):
        # Redelivered while the dead worker's claim is fresh: nothing is sent, and the
        # job is reported back (kept) rather than dropped.
        assert len(pipeline.dispatch([record])["batchItemFailures"]) == 1
        assert current()["status"] == "queued"
    sent_before = len(provider_sandbox.outbox("twilio"))

    dispatcher = dispatcher_module.dispatcher
    later = utc_now() + dispatcher.claim_timeout + timedelta(seconds=1)
    monkeypatch.setattr(dispatcher, "clock", lambda: later)
    assert pipeline.dispatch([record])["batchItemFailures"] == []
    # And a further redelivery changes nothing.
    assert pipeline.dispatch([record])["batchItemFailures"] == []

    outbox = [r for r in provider_sandbox.outbox("twilio") if r.form["To"] == [number]]
    assert len(outbox) == sends
    assert len(provider_sandbox.outbox("twilio")) - sent_before == (
        1 if stop_at == "claimed" else 0
    )
    pipeline.delete([record])  # acknowledged, as Lambda does after a clean batch
    message = current()
    assert message["status"] == status
    assert message["status_history"][-1].get("error_code") == error_code


def test_a_status_callback_before_the_redelivery_settles_an_unknown_outcome(
    workers,
    stack,
    twilio_post,
    api_get,
    api_post,  # noqa: F811
    pipeline,  # noqa: F811
    provider_sandbox,
    status_post,  # noqa: F811
    dispatcher_module,
    monkeypatch,
):
    number = "+15551241099"
    twilio_post(sms("SM99" + "e2" * 15, sender=number))
    customer_id = customer_for(api_get, number)
    reply = api_post(f"/v1/customers/{customer_id}/messages", {"text": "once only"})
    message_id = json.loads(reply["body"])["id"]
    pipeline.publish()
    record = pipeline.receive_job(message_id)
    worker = Worker(
        "provider_called",
        record,
        {**os.environ, **stack.function_environment("DispatcherFunction")},
    )
    workers.append(worker)
    worker.wait_for("provider_called")
    worker.kill()

    # Twilio took the message and reports it, naming it in the callback URL.
    (request,) = [r for r in provider_sandbox.outbox("twilio") if r.form["To"] == [number]]
    callback = request.form["StatusCallback"][0]
    delivered = {"MessageSid": "SM" + "e3" * 16, "MessageStatus": "delivered"}
    assert status_post(delivered, callback)["statusCode"] == 200

    dispatcher = dispatcher_module.dispatcher
    later = utc_now() + dispatcher.claim_timeout + timedelta(seconds=1)
    monkeypatch.setattr(dispatcher, "clock", lambda: later)
    assert pipeline.dispatch([record])["batchItemFailures"] == []
    pipeline.delete([record])
    message = next(m for m in timeline(api_get, customer_id) if m["id"] == message_id)
    assert message["status"] == "delivered"
    assert [h["status"] for h in message["status_history"]] == ["queued", "delivered"]
    assert len([r for r in provider_sandbox.outbox("twilio") if r.form["To"] == [number]]) == 1
