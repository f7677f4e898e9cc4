"""Message metrics are EMF lines with a channel dimension; a provider retry is not counted."""

from __future__ import annotations

import json
from dataclasses import replace

from tests.unit import twilio_payloads as tw
from tests.unit.webhook_events import AUTH_TOKEN, RecordingStore, signed_event
from threadline.channels.twilio.messaging import TwilioMessaging
from threadline.telemetry import MESSAGES_RECEIVED, count_message, traced
from threadline.webhook import handle_webhook

CHANNEL = TwilioMessaging(auth_token=lambda: AUTH_TOKEN)


def _metric_lines(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def test_a_count_is_one_emf_line_in_the_stage_namespace(capsys, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "threadline/test")
    count_message(MESSAGES_RECEIVED, "whatsapp")
    (line,) = _metric_lines(capsys.readouterr().out)
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "threadline/test"
    assert "channel" in directive["Dimensions"][0]
    assert directive["Metrics"] == [{"Name": "MessagesReceived", "Unit": "Count"}]
    assert line["channel"] == "whatsapp"
    assert line["MessagesReceived"] == [1.0]


def test_the_webhook_pipeline_counts_a_stored_message_once_per_channel(capsys):
    handle_webhook(signed_event(tw.SMS), CHANNEL, RecordingStore())
    lines = _metric_lines(capsys.readouterr().out)
    assert [(line["channel"], line.get("MessagesReceived")) for line in lines] == [("sms", [1.0])]


class DuplicateStore(RecordingStore):
    def ingest(self, inbound, raw, *, received_at=None):
        return replace(super().ingest(inbound, raw, received_at=received_at), duplicate=True)


def test_a_provider_retry_is_not_counted_again(capsys):
    response = handle_webhook(signed_event(tw.SMS), CHANNEL, DuplicateStore())
    assert response["statusCode"] == 200
    assert _metric_lines(capsys.readouterr().out) == []


def test_traced_keeps_the_handler_and_its_answer():
    @traced
    def lambda_handler(event, context):
        return {"echo": event}

    assert lambda_handler.__name__ == "lambda_handler"
    assert lambda_handler({"a": 1}, None) == {"echo": {"a": 1}}


def test_metrics_can_be_turned_off(capsys, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    count_message(MESSAGES_RECEIVED, "sms")
    assert _metric_lines(capsys.readouterr().out) == []
