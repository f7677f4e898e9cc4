"""The local stack's SES feedback: what it publishes is what SES publishes, and what
SNS hands Lambda; read back with threadline's own parser."""

from __future__ import annotations

import json

import pytest

from devstack.sesfeedback import FeedbackError, lambda_sns_record, ses_event
from threadline.email_feedback import parse_notification, sns_messages


@pytest.mark.parametrize("kind", ["Bounce", "Complaint", "Delivery"])
def test_the_simulated_notification_reads_as_ses_feedback(kind):
    event = ses_event(
        kind,
        ses_message_id="0100abc-000000",
        source="support@threadline.localhost",
        recipients=["ana@example.com"],
        account_id="123456789012",
        region="us-east-1",
        configuration_set="threadline-dev",
    )
    assert set(event) == {"eventType", "mail", kind.lower()}
    assert event["mail"]["tags"] == {"ses:configuration-set": ["threadline-dev"]}
    feedback = parse_notification(json.dumps(event))
    assert feedback is not None
    assert (feedback.kind, feedback.ses_message_id) == (kind, "0100abc-000000")
    assert [r.address for r in feedback.recipients] == ["ana@example.com"]
    assert feedback.at is not None


def test_a_simulated_transient_bounce_keeps_its_type():
    event = ses_event(
        "Bounce",
        ses_message_id="m",
        source="s@x.example",
        recipients=["a@example.com"],
        account_id="1",
        region="us-east-1",
        bounce_type="Transient",
        bounce_subtype="MailboxFull",
    )
    feedback = parse_notification(json.dumps(event))
    assert feedback is not None and not feedback.permanent
    assert feedback.recipients[0].diagnostic_code == "smtp; 452 4.2.2 mailbox full"


def test_unknown_kinds_are_refused():
    with pytest.raises(FeedbackError):
        ses_event("Open", ses_message_id="m", source="s", recipients=[], account_id="1", region="r")


def test_snss_sqs_envelope_becomes_lambdas_sns_record():
    envelope = {
        "Type": "Notification",
        "MessageId": "95df01b4",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:feedback",
        "Message": '{"eventType": "Delivery"}',
        "Timestamp": "2026-11-23T10:41:03.000Z",
        "SignatureVersion": "1",
        "Signature": "sig",
        "SigningCertURL": "https://sns.example/cert.pem",
        "UnsubscribeURL": "https://sns.example/unsubscribe",
        "MessageAttributes": {"kind": {"Type": "String", "Value": "x"}},
    }
    record = lambda_sns_record(envelope, "arn:aws:sns:us-east-1:123456789012:feedback:sub")
    assert record["EventSource"] == "aws:sns"
    assert record["Sns"]["SigningCertUrl"] == "https://sns.example/cert.pem"
    assert record["Sns"]["MessageAttributes"] == {"kind": {"Type": "String", "Value": "x"}}
    assert sns_messages({"Records": [record]}) == ['{"eventType": "Delivery"}']
