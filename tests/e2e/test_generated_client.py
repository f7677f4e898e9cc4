"""A CRM's view: a Python client generated from the served OpenAPI document, typed results.

openapi-python-client (the CLI) generates the package from /v1/openapi.json into a
temporary folder; the test imports it and finds a customer, reads the timeline and sends
a reply over HTTP to the local stack.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from tests.e2e.conftest import RunningStack
from tests.e2e.test_local_stack import signed_twilio_post

PACKAGE = "threadline_api_client"


def generate_client(stack: RunningStack, into: Path) -> Any:
    """The generated package, imported from ``into``."""
    served = requests.get(
        stack.base_url + "/v1/openapi.json",
        headers={"Authorization": f"Bearer {stack.api_token}"},
        timeout=10,
    )
    assert served.status_code == 200, served.text
    document = into / "openapi.json"
    document.write_text(json.dumps(served.json()))
    config = into / "config.yaml"
    config.write_text(
        f"project_name_override: threadline-api-client\npackage_name_override: {PACKAGE}\n"
    )
    generator = Path(sys.executable).with_name("openapi-python-client")
    run = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(document),
            "--config",
            str(config),
            "--output-path",
            str(into / "client" / PACKAGE),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        # Its post-hooks format the code with ruff, found on PATH: the venv's own.
        env={**os.environ, "PATH": f"{generator.parent}{os.pathsep}{os.environ['PATH']}"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # A warning means an operation or a schema the generator had to skip.
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    sys.path.insert(0, str(into / "client"))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(into / "client"))


def test_a_generated_client_finds_a_customer_reads_the_timeline_and_replies(local_stack, tmp_path):
    number = "+15551239960"
    inbound = {
        "MessageSid": "SM" + "gen" * 10 + "01",
        "AccountSid": "AC" + "0" * 32,
        "From": number,
        "To": "+15557650000",
        "Body": "Where is my order?",
        "NumMedia": "0",
    }
    assert signed_twilio_post(local_stack, inbound).status_code == 200

    generate_client(local_stack, tmp_path)
    client_module = importlib.import_module(f"{PACKAGE}.client")
    find_customer = importlib.import_module(f"{PACKAGE}.api.customers.find_customer")
    get_timeline = importlib.import_module(f"{PACKAGE}.api.customers.get_timeline")
    send_message = importlib.import_module(f"{PACKAGE}.api.messages.send_message")
    models = importlib.import_module(f"{PACKAGE}.models")
    client = client_module.AuthenticatedClient(
        base_url=local_stack.base_url, token=local_stack.api_token, timeout=10.0
    )

    customer = find_customer.sync(client=client, identity=f"phone:{number}")
    assert isinstance(customer, models.Customer)
    assert [(i.kind, i.value) for i in customer.identities] == [("phone", number)]

    timeline = get_timeline.sync(customer.id, client=client)
    assert isinstance(timeline, models.TimelinePage)
    assert isinstance(timeline.items[0], models.Message)
    assert timeline.items[0].channel == models.Channel.SMS

    reply = send_message.sync_detailed(
        customer.id,
        client=client,
        body=models.SendMessageRequest(text="It ships today"),
        idempotency_key="generated-client-reply-1",
    )
    assert reply.status_code == 202
    assert isinstance(reply.parsed, models.Message)
    assert reply.parsed.status == models.MessageStatus.QUEUED
    assert reply.parsed.customer_id == customer.id

    missing = find_customer.sync_detailed(client=client, identity="phone:+15551239961")
    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.Error)
    assert missing.parsed.error.code == "not_found"
