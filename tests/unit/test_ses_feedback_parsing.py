"""Reading SES's bounce, complaint and delivery notifications, and what stops e-mail."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tests.unit import ses_feedback_payloads as sf
from threadline.email_feedback import (
    bounce_error_code,
    email_block,
    parse_notification,
    sns_messages,
)


def test_a_permanent_bounce_from_event_publishing():
    feedback = parse_notification(json.dumps(sf.bounce(recipient="ana@example.com")))
    assert feedback is not None
    assert (feedback.kind, feedback.bounce_type, feedback.bounce_subtype) == (
        "Bounce",
        "Permanent",
        "General",
    )
    assert feedback.permanent
    assert feedback.ses_message_id == sf.SES_MESSAGE_ID
    [recipient] = feedback.recipients
    assert recipient.address == "ana@example.com"
    assert recipient.diagnostic_code == "smtp; 550 5.1.1 user unknown"
    assert recipient.status == "5.1.1"
    assert feedback.feedback_id and feedback.feedback_id.endswith("-000000")
    assert feedback.at is not None and feedback.at.isoformat() == "2026-11-23T10:41:02.669000+00:00"


def test_a_transient_bounce_is_not_permanent():
    feedback = parse_notification(
        json.dumps(sf.bounce(bounce_type="Transient", subtype="MailboxFull"))
    )
    assert feedback is not None and not feedback.permanent
    assert feedback.bounce_type == "Transient"


def test_a_complaint_from_an_identity_notification_topic():
    feedback = parse_notification(json.dumps(sf.complaint(recipient="ana@example.com")))
    assert feedback is not None
    assert feedback.kind == "Complaint"
    assert [r.address for r in feedback.recipients] == ["ana@example.com"]
    assert feedback.complaint_feedback_type == "abuse"
    assert feedback.user_agent == "ExampleCorp Feedback Loop (V0.01)"


def test_a_delivery():
    feedback = parse_notification(json.dumps(sf.delivery(recipient="ana@example.com")))
    assert feedback is not None and feedback.kind == "Delivery"
    assert feedback.smtp_response == "250 ok:  Message 64111812 accepted"
    assert [r.address for r in feedback.recipients] == ["ana@example.com"]


def test_other_events_and_unreadable_messages_are_not_acted_on():
    assert parse_notification(json.dumps(sf.send_event())) is None
    subscription = {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"}
    assert parse_notification(json.dumps(subscription)) is None
    assert parse_notification("not json") is None
    assert parse_notification("[1, 2]") is None
    no_id = sf.bounce()
    del no_id["mail"]["messageId"]
    assert parse_notification(json.dumps(no_id)) is None
    no_body = sf.bounce()
    del no_body["bounce"]
    assert parse_notification(json.dumps(no_body)) is None


def test_bounce_error_codes():
    assert bounce_error_code("Permanent") == "email_bounced_permanent"
    assert bounce_error_code("Transient") == "email_bounced_transient"
    assert bounce_error_code("Undetermined") == "email_bounced_undetermined"
    assert bounce_error_code("") == "email_bounced_undetermined"


def test_what_stops_email_to_an_identity():
    assert email_block(None) is None
    assert email_block({"customer_id": "c"}) is None
    assert email_block({"email_undeliverable": {"kind": "bounce"}})[0] == "email_undeliverable"
    assert email_block({"email_complaint": {"kind": "complaint"}})[0] == "email_complained"
    both = {"email_undeliverable": {"kind": "bounce"}, "email_complaint": {"kind": "complaint"}}
    assert email_block(both)[0] == "email_undeliverable"


def test_sns_messages_reads_every_record_and_skips_junk():
    event = sf.sns_event(sf.bounce(), sf.delivery())
    event["Records"].append({"Sns": {"Message": 5}})
    event["Records"].append("junk")
    assert [json.loads(m)["eventType"] for m in sns_messages(event)] == ["Bounce", "Delivery"]
    assert sns_messages({}) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(st.text())
def test_any_text_is_read_or_refused_never_raises(text):
    parse_notification(text)


@given(
    st.sampled_from(["Bounce", "Complaint", "Delivery"]),
    st.sampled_from(["eventType", "notificationType"]),
    json_values,
    json_values,
)
def test_any_shaped_notification_never_raises(kind, key, mail, body):
    parse_notification(json.dumps({key: kind, "mail": mail, kind.lower(): body}))
    document = (
        sf.bounce()
        if kind == "Bounce"
        else sf.complaint()
        if kind == "Complaint"
        else sf.delivery()
    )
    document[kind.lower()] = {
        **document[kind.lower()],
        "timestamp": mail,
        "bouncedRecipients": body,
        "complainedRecipients": body,
        "recipients": body,
        "bounceType": mail,
    }
    parse_notification(json.dumps(document))
