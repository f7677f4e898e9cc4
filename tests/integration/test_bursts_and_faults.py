"""Bursts and faults against moto: what a flaky network and an eager provider do.

* Concurrent first messages from one new number: one customer, every message, only
  200 or 503 (never 500), and every 503 lands on the provider's retry.
* 10 % of DynamoDB calls fail (half before the request is sent, half after DynamoDB
  took it, the answer lost) while messages arrive with provider-style retries:
  every message is stored exactly once.

Every ``make test`` runs them small (16 concurrent first messages, 80 messages under
faults: about half a minute, and they held at a load average of 20 on two CPUs).
``THREADLINE_LOAD_TESTS=1`` runs the sizes of issue 16's figures (50 concurrent,
``FAULT_MESSAGES`` under faults: 200 by default, 1 000 for the report). Each test
prints its figures and what DynamoDB answered (pytest -s shows them).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ReadTimeoutError

from tests.integration.test_twilio_ingest import _fail, items_with_prefix, sms

PROVIDER_RETRIES = 10
FULL_SIZE = os.environ.get("THREADLINE_LOAD_TESTS") == "1"
BURST = 50 if FULL_SIZE else 16
FAULT_MESSAGES = int(os.environ.get("FAULT_MESSAGES", "200" if FULL_SIZE else "80"))


def _post_until_stored(twilio_post: Any, params: dict[str, str]) -> list[int]:
    """Post as Twilio does with ``#rc=..``: again after any 5xx; every answer."""
    answers = []
    for attempt in range(PROVIDER_RETRIES):
        answers.append(twilio_post(params)["statusCode"])
        if answers[-1] < 500:
            break
        # Providers wait before retrying (Twilio's #rp, Slack's schedule), with jitter.
        time.sleep(random.uniform(0, 0.05 * 2**attempt))
    return answers


def _stored_messages(aws: Any, sids: set[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    pages = aws.dynamodb.get_paginator("scan").paginate(TableName=aws.table)
    for page in pages:
        for item in page["Items"]:
            sid = item.get("provider_message_id", {}).get("S")
            if item["sk"]["S"].startswith("MSG#") and sid in sids:
                found[sid] += 1
    return found


class DynamoOutcomes:
    """What the store's DynamoDB client met, counted at the SDK boundary (botocore
    events): transactions and why DynamoDB cancelled them, SDK retries, timeouts."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __enter__(self) -> DynamoOutcomes:
        self.client.meta.events.register("after-call.dynamodb", self._answered)
        self.client.meta.events.register("needs-retry.dynamodb", self._retry)
        return self

    def __exit__(self, *_: object) -> None:
        self.client.meta.events.unregister("after-call.dynamodb", self._answered)
        self.client.meta.events.unregister("needs-retry.dynamodb", self._retry)

    def _answered(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        error = parsed.get("Error") or {}
        reasons = [r.get("Code") for r in parsed.get("CancellationReasons") or []]
        with self._lock:
            self.counts[model.name] += 1
            if error:
                detail = "+".join(sorted({r for r in reasons if r and r != "None"}))
                self.counts[f"{model.name} {error.get('Code')} {detail}".strip()] += 1

    def _retry(self, attempts: int, response: Any, caught_exception: Any, **_: Any) -> None:
        if caught_exception is not None:
            cause = type(caught_exception).__name__
        elif response and response[0].status_code >= 500:
            cause = f"HTTP {response[0].status_code}"
        else:
            return
        with self._lock:
            self.counts[f"SDK retry after {cause}"] += 1


def test_a_burst_of_first_messages_from_one_new_number(aws, twilio_module, twilio_post, api_get):
    sender = "+15551239050"
    count = BURST
    start = threading.Barrier(count)
    sids = [f"SM{index:030d}b5" for index in range(count)]

    def post(sid: str) -> list[int]:
        start.wait()
        return _post_until_stored(twilio_post, sms(sid, sender=sender))

    with (
        DynamoOutcomes(twilio_module.store.dynamodb) as seen,
        ThreadPoolExecutor(max_workers=count) as pool,
    ):
        answers = list(pool.map(post, sids))
    first = Counter(a[0] for a in answers)
    retries = sum(len(a) - 1 for a in answers)
    print(
        f"\nburst of {count}: first answers {dict(first)}, provider retries {retries}, "
        f"DynamoDB {dict(seen.counts)}"
    )
    assert set(first) <= {200, 503}, first
    assert all(a[-1] == 200 for a in answers), answers

    identity = items_with_prefix(aws, aws.table, f"IDENT#phone#{sender}")
    assert len(identity) == 1
    stored = _stored_messages(aws, set(sids))
    assert stored == Counter({sid: 1 for sid in sids})


def test_faults_on_10_percent_of_dynamodb_calls_lose_and_duplicate_nothing(
    aws, twilio_module, twilio_post
):
    total = FAULT_MESSAGES
    client = twilio_module.store.dynamodb
    chance = random.Random(16)
    lock = threading.Lock()
    injected = Counter[str]()
    before, _ = _fail("", 500, "InternalServerError")

    def fail_before_send(request: Any, **kwargs: Any) -> Any:
        with lock:
            roll = chance.random()
        if roll < 0.05:
            injected["before send"] += 1
            return before(request, **kwargs)
        return None

    def lose_the_answer(**_: Any) -> None:
        with lock:
            roll = chance.random()
        if roll < 0.05:
            injected["answer lost"] += 1
            # DynamoDB took the request; its answer timed out on the way back.
            raise ReadTimeoutError(endpoint_url="dynamodb (answer lost)")

    client.meta.events.register_first("before-send.dynamodb", fail_before_send)
    client.meta.events.register("after-call.dynamodb", lose_the_answer)
    senders = [f"+1555124{n:04d}" for n in range(max(total // 20, 1))]
    sids = [f"SM{index:030d}fa" for index in range(total)]

    def deliver(index: int) -> list[int]:
        params = sms(sids[index], sender=senders[index % len(senders)])
        answers: list[int] = []
        for attempt in range(PROVIDER_RETRIES):
            answers.append(twilio_post(params)["statusCode"])
            if answers[-1] < 500:
                break
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
        return answers

    try:
        with DynamoOutcomes(client) as seen, ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(deliver, range(total)))
    finally:
        client.meta.events.unregister("before-send.dynamodb", fail_before_send)
        client.meta.events.unregister("after-call.dynamodb", lose_the_answer)
    first = Counter(a[0] for a in answers)
    final = Counter(a[-1] for a in answers)
    stored = _stored_messages(aws, set(sids))
    once = sum(1 for sid in sids if stored[sid] == 1)
    print(
        f"\nfaults: {total} messages, injected {dict(injected)}, first answers {dict(first)}, "
        f"final answers {dict(final)}, provider retries {sum(len(a) - 1 for a in answers)}, "
        f"stored exactly once {once}, DynamoDB {dict(seen.counts)}"
    )
    assert sum(injected.values()) > 0
    # A storage fault is a 503 (the provider retries), never a 500.
    assert {status for a in answers for status in a} <= {200, 503}
    assert all(a[-1] == 200 for a in answers), [a for a in answers if a[-1] != 200][:5]
    assert once == total, {sid: n for sid, n in stored.items() if n != 1}
