"""SES feedback as SES publishes it to SNS, shaped after the SES developer guide
("Examples of event data that Amazon SES publishes to Amazon SNS" for configuration
set event publishing, "Amazon SNS notification examples" for identity notifications),
and wrapped in the SNS event Lambda receives."""

from __future__ import annotations

import json
from typing import Any

SES_MESSAGE_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"


def _mail(message_id: str, recipient: str) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-23T10:40:02.012Z",
        "source": "Support <support@threadline.example>",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/threadline.example",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [recipient],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "Support <support@threadline.example>"},
            {"name": "To", "value": recipient},
            {"name": "Subject", "value": "Re: My order has not arrived"},
        ],
        "commonHeaders": {
            "from": ["Support <support@threadline.example>"],
            "to": [recipient],
            "messageId": message_id,
            "subject": "Re: My order has not arrived",
        },
        "tags": {"ses:configuration-set": ["threadline-dev"]},
    }


def bounce(
    message_id: str = SES_MESSAGE_ID,
    recipient: str = "recipient@example.com",
    *,
    bounce_type: str = "Permanent",
    subtype: str = "General",
) -> dict[str, Any]:
    """Event publishing (configuration set): ``eventType``."""
    permanent = bounce_type == "Permanent"
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": "5.1.1" if permanent else "4.2.2",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                    if permanent
                    else "smtp; 452 4.2.2 Mailbox full",
                }
            ],
            "timestamp": "2026-11-23T10:41:02.669Z",
            "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
            "reportingMTA": "dsn; mta.example.com",
        },
        "mail": _mail(message_id, recipient),
    }


def complaint(message_id: str = SES_MESSAGE_ID, recipient: str = "recipient@example.com") -> dict:
    """An identity's notification topic: ``notificationType``, no tags."""
    mail = _mail(message_id, recipient)
    del mail["tags"]
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "ExampleCorp Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": recipient}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2026-11-23T10:42:01.000Z",
            "timestamp": "2026-11-23T10:42:02.000Z",
            "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
        },
        "mail": mail,
    }


def delivery(message_id: str = SES_MESSAGE_ID, recipient: str = "recipient@example.com") -> dict:
    return {
        "eventType": "Delivery",
        "mail": _mail(message_id, recipient),
        "delivery": {
            "timestamp": "2026-11-23T10:40:02.669Z",
            "processingTimeMillis": 546,
            "recipients": [recipient],
            "smtpResponse": "250 ok:  Message 64111812 accepted",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
            "remoteMtaIp": "127.0.2.0",
        },
    }


def send_event(message_id: str = SES_MESSAGE_ID) -> dict:
    return {"eventType": "Send", "mail": _mail(message_id, "recipient@example.com"), "send": {}}


def sns_event(*notifications: dict[str, Any] | str) -> dict[str, Any]:
    """Lambda's SNS event: one record per notification (SNS sends one per invoke)."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:"
                "threadline-dev-email-feedback:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": f"95df01b4-ee98-5cb9-9903-4c221d41eb5{index}",
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:threadline-dev-email-feedback",
                    "Subject": None,
                    "Message": n if isinstance(n, str) else json.dumps(n),
                    "Timestamp": "2026-11-23T10:41:03.000Z",
                    "SignatureVersion": "1",
                    "Signature": "EXAMPLE",
                    "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
                    "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
                    "MessageAttributes": {},
                },
            }
            for index, n in enumerate(notifications)
        ]
    }
