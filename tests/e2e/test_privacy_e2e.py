"""Export and erasure over HTTP against the local stack: the API starts the job, the
stack's own queue poller runs the privacy worker, the presigned link downloads the zip
from the embedded S3, and the publisher announces the erasure.

Numbers are +1555128xxxx: the e2e modules share one stack, and the conversations and
webhooks modules write as +1555126xxxx (an export would hold their messages too)."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
import requests

from tests.e2e.conftest import RunningStack
from tests.e2e.test_outbound_e2e import (
    api,
    customer_of,
    events,
    eventually,
    inbound,
    schema_validator,
)

pytestmark = pytest.mark.e2e


def job_done(stack: RunningStack, path: str) -> dict[str, Any] | None:
    response = api(stack, "GET", path)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["state"] != "failed", job
    return job if job["state"] == "done" else None


def test_export_downloads_a_zip_of_the_customers_messages(local_stack):
    number = "+15551280001"
    inbound(local_stack, number, "Where is parcel 4471?")
    inbound(local_stack, number, "It was due Monday")
    customer_id = customer_of(local_stack, number)

    started = api(local_stack, "POST", f"/v1/customers/{customer_id}/exports")
    assert started.status_code == 202, started.text
    status_path = started.headers["Location"]
    done = eventually(lambda: job_done(local_stack, status_path), "finished export")
    assert done["items_done"] == done["items_total"] >= 2

    # The presigned URL points at the embedded S3 and works without credentials.
    download = requests.get(done["download_url"], timeout=10)
    assert download.status_code == 200, download.text
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    texts = [
        json.loads(archive.read(name))["parts"][0]["text"]
        for name in archive.namelist()
        if name.startswith("messages/")
    ]
    assert sorted(texts) == ["It was due Monday", "Where is parcel 4471?"]
    assert json.loads(archive.read("customer.json"))["identities"] == [f"phone:{number}"]


def test_erasure_removes_the_customer_and_announces_it_without_personal_data(local_stack):
    number = "+15551280002"
    inbound(local_stack, number, "Please delete my data, I am Quinn")
    customer_id = customer_of(local_stack, number)

    erased = api(local_stack, "DELETE", f"/v1/customers/{customer_id}")
    assert erased.status_code == 202, erased.text
    done = eventually(lambda: job_done(local_stack, erased.headers["Location"]), "erasure")
    assert done["counts"]["messages"] == 1 and done["counts"]["identities"] == 1
    assert api(local_stack, "GET", f"/v1/customers/{customer_id}").status_code == 404
    assert api(local_stack, "GET", f"/v1/customers/{customer_id}/timeline").status_code == 404

    (event,) = eventually(
        lambda: events(local_stack, type="customer.erased", customer_id=customer_id),
        "customer.erased event",
    )
    detail = event["detail"]
    schema_validator("customer.erased").validate(detail)
    assert number not in json.dumps(event) and "Quinn" not in json.dumps(event)

    # The number is free again: writing in makes a new customer.
    inbound(local_stack, number, "hello again")
    assert customer_of(local_stack, number) != customer_id
