"""Privacy queue messages: what the worker accepts, and what it refuses loudly."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadline.privacy import (
    JobKind,
    JobState,
    PrivacyJob,
    export_key,
    job_from_queue_body,
    job_message,
)

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", list(JobKind))
def test_a_job_message_round_trips(kind):
    job = PrivacyJob(
        job_id="01JOB", kind=kind, customer_id="01CUST", state=JobState.QUEUED, requested_at=AT
    )
    assert job_from_queue_body(job_message(job)) == (kind, "01CUST", "01JOB")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        json.dumps({"kind": "export", "customer_id": "01C"}),
        json.dumps({"kind": "shred", "customer_id": "01C", "job": "01J"}),
        json.dumps({"kind": "erasure", "customer_id": "", "job": "01J"}),
        json.dumps({"kind": "erasure", "customer_id": 7, "job": "01J"}),
        json.dumps({"kind": "erasure", "customer_id": "01C", "job": None}),
    ],
)
def test_anything_else_is_refused(body):
    with pytest.raises(ValueError):
        job_from_queue_body(body)


@given(st.one_of(st.text(max_size=200), st.dictionaries(st.text(max_size=8), st.text(max_size=8))))
def test_arbitrary_bodies_are_a_job_or_a_value_error(body):
    text = body if isinstance(body, str) else json.dumps(body)
    try:
        kind, customer_id, job_id = job_from_queue_body(text)
    except ValueError:
        return
    assert isinstance(kind, JobKind) and customer_id and job_id


def test_archives_are_kept_under_their_customer():
    # Erasure deletes the prefix <customer id>/ of the export bucket.
    assert export_key("01CUST", "01JOB") == "01CUST/01JOB.zip"
