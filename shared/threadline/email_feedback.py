"""SES feedback: bounces, complaints and deliveries of the replies threadline sent.

SES publishes what became of each mail as JSON through SNS: the stack's
configuration set (``EmailConfigurationSet``) has an SNS event destination
(``eventType``), and an operator may also point an identity's notification topics
at the same topic (``notificationType``); both shapes are read. The topic runs
``functions/email_feedback`` with Lambda's SNS event.

What each notification does:

- a **Permanent** bounce marks each bounced address undeliverable on its ``IDENT``
  item (time, bounce type and subtype, the recipient's status and diagnostic code,
  SES's message and feedback ids); a complaint records the complaint there the same
  way. Either stops e-mail to that address: the API answers 409
  (``email_undeliverable`` / ``email_complained``) and the dispatcher fails a reply
  already queued with that code, without calling SES;
- a bounce of any type moves the mail's message to ``failed`` with
  ``email_bounced_<type>``; a Delivery moves it to ``delivered``. Statuses only move
  forward (``TimelineStore.apply_status``): a late or repeated notification changes
  nothing;
- **Transient** and **Undetermined** bounces do not mark the address: a full mailbox
  or a greylisting server may take the next mail.

SNS delivers at least once, so everything is idempotent: the first evidence of an
address's bounce or complaint is kept (``if_not_exists``), and a repeated status
change is refused by the status rules. A notification that cannot be read is logged
and skipped (a retry would not change it); only a storage failure raises, so Lambda
retries the event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from threadline.channels.base import StatusUpdate
from threadline.dal.base import Update, WriteCancelled
from threadline.errors import StorageUnavailable
from threadline.items import IDENT_SK, identity_pk
from threadline.logs import logger
from threadline.schema import Identity, IdentityKind, MessageStatus
from threadline.store import TimelineStore

PROVIDER = "ses"
BOUNCE = "Bounce"
COMPLAINT = "Complaint"
DELIVERY = "Delivery"
PERMANENT = "Permanent"
# The IDENT item's attributes that stop e-mail to the address.
UNDELIVERABLE_ATTRIBUTE = "email_undeliverable"
COMPLAINT_ATTRIBUTE = "email_complaint"
UNDELIVERABLE_CODE = "email_undeliverable"
COMPLAINED_CODE = "email_complained"
_MAX_TEXT = 1024


def bounce_error_code(bounce_type: str) -> str:
    """``email_bounced_permanent``, ``..._transient``, ``..._undetermined``."""
    kind = bounce_type.lower() if bounce_type in {"Permanent", "Transient"} else "undetermined"
    return f"email_bounced_{kind}"


def email_block(identity_item: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(error code, reason) when an e-mail identity must not be sent to, else None."""
    if not identity_item:
        return None
    if identity_item.get(UNDELIVERABLE_ATTRIBUTE):
        return UNDELIVERABLE_CODE, "the address bounced permanently; SES will not deliver to it"
    if identity_item.get(COMPLAINT_ATTRIBUTE):
        return COMPLAINED_CODE, "the recipient marked our mail as spam: e-mail to them stopped"
    return None


@dataclass(frozen=True)
class Recipient:
    address: str
    status: str | None = None
    action: str | None = None
    diagnostic_code: str | None = None


@dataclass(frozen=True)
class Feedback:
    """One SES notification, the fields threadline acts on."""

    kind: str
    """Bounce, Complaint or Delivery."""
    ses_message_id: str
    """``mail.messageId``: the MessageId SendEmail returned for our reply."""
    at: datetime | None
    recipients: list[Recipient] = field(default_factory=list)
    feedback_id: str | None = None
    bounce_type: str | None = None
    bounce_subtype: str | None = None
    complaint_feedback_type: str | None = None
    complaint_subtype: str | None = None
    user_agent: str | None = None
    smtp_response: str | None = None
    reporting_mta: str | None = None

    @property
    def permanent(self) -> bool:
        return self.kind == BOUNCE and self.bounce_type == PERMANENT


def _text(value: Any) -> str | None:
    return str(value)[:_MAX_TEXT] if isinstance(value, str | int | float) and value != "" else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def parse_notification(message: str) -> Feedback | None:
    """An SES notification (the SNS ``Message``) as :class:`Feedback`.

    None for anything threadline does not act on: other event types (Send, Reject,
    Open, DeliveryDelay, SNS subscription notices) and notifications it cannot read.
    """
    try:
        document = json.loads(message)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    kind = document.get("eventType") or document.get("notificationType")
    mail = document.get("mail")
    if kind not in {BOUNCE, COMPLAINT, DELIVERY} or not isinstance(mail, dict):
        return None
    ses_message_id = _text(mail.get("messageId"))
    body = document.get(kind.lower())
    if not ses_message_id or not isinstance(body, dict):
        return None
    common = {"kind": kind, "ses_message_id": ses_message_id, "at": _time(body.get("timestamp"))}
    if kind == BOUNCE:
        return Feedback(
            **common,
            recipients=[
                Recipient(
                    address=str(r["emailAddress"]),
                    status=_text(r.get("status")),
                    action=_text(r.get("action")),
                    diagnostic_code=_text(r.get("diagnosticCode")),
                )
                for r in _list(body.get("bouncedRecipients"))
                if isinstance(r, dict) and isinstance(r.get("emailAddress"), str)
            ],
            feedback_id=_text(body.get("feedbackId")),
            bounce_type=_text(body.get("bounceType")) or "Undetermined",
            bounce_subtype=_text(body.get("bounceSubType")),
            reporting_mta=_text(body.get("reportingMTA")),
        )
    if kind == COMPLAINT:
        return Feedback(
            **common,
            recipients=[
                Recipient(address=str(r["emailAddress"]))
                for r in _list(body.get("complainedRecipients"))
                if isinstance(r, dict) and isinstance(r.get("emailAddress"), str)
            ],
            feedback_id=_text(body.get("feedbackId")),
            complaint_feedback_type=_text(body.get("complaintFeedbackType")),
            complaint_subtype=_text(body.get("complaintSubType")),
            user_agent=_text(body.get("userAgent")),
        )
    return Feedback(
        **common,
        recipients=[
            Recipient(address=r) for r in _list(body.get("recipients")) if isinstance(r, str)
        ],
        smtp_response=_text(body.get("smtpResponse")),
        reporting_mta=_text(body.get("reportingMTA")),
    )


def _evidence(feedback: Feedback, recipient: Recipient, now: datetime) -> dict[str, Any]:
    """What is kept on the identity as the reason e-mail to it stopped."""
    record = {
        "at": (feedback.at or now).isoformat(),
        "recorded_at": now.isoformat(),
        "source": "ses",
        "kind": feedback.kind.lower(),
        "ses_message_id": feedback.ses_message_id,
        "feedback_id": feedback.feedback_id,
        "bounce_type": feedback.bounce_type,
        "bounce_subtype": feedback.bounce_subtype,
        "status": recipient.status,
        "action": recipient.action,
        "diagnostic_code": recipient.diagnostic_code,
        "reporting_mta": feedback.reporting_mta,
        "complaint_feedback_type": feedback.complaint_feedback_type,
        "complaint_subtype": feedback.complaint_subtype,
        "user_agent": feedback.user_agent,
    }
    return {key: value for key, value in record.items() if value is not None}


@dataclass(frozen=True)
class FeedbackOutcome:
    kind: str
    addresses_marked: int = 0
    status_changed: bool = False


def apply_feedback(
    store: TimelineStore, feedback: Feedback, *, now: datetime | None = None
) -> FeedbackOutcome:
    """Record one notification: the addresses it stops, the message status it moves."""
    from threadline.schema import utc_now

    now = now or utc_now()
    marked = 0
    attribute = (
        UNDELIVERABLE_ATTRIBUTE
        if feedback.permanent
        else COMPLAINT_ATTRIBUTE
        if feedback.kind == COMPLAINT
        else None
    )
    if attribute is not None:
        for recipient in feedback.recipients:
            if _mark(store, recipient, attribute, _evidence(feedback, recipient, now)):
                marked += 1
    changed = False
    if feedback.kind == BOUNCE:
        reason = "; ".join(
            filter(
                None, [feedback.bounce_subtype, *(r.diagnostic_code for r in feedback.recipients)]
            )
        )
        changed = store.apply_status(
            StatusUpdate(
                provider=PROVIDER,
                provider_message_id=feedback.ses_message_id,
                status=MessageStatus.FAILED,
                at=feedback.at,
                error_code=bounce_error_code(feedback.bounce_type or ""),
                error_message=reason[:_MAX_TEXT] or None,
            ),
            now=now,
        )
    elif feedback.kind == DELIVERY:
        changed = store.apply_status(
            StatusUpdate(
                provider=PROVIDER,
                provider_message_id=feedback.ses_message_id,
                status=MessageStatus.DELIVERED,
                at=feedback.at,
            ),
            now=now,
        )
    logger.info(
        "ses feedback applied",
        extra={
            "kind": feedback.kind,
            "bounce_type": feedback.bounce_type,
            "ses_message_id": feedback.ses_message_id,
            "addresses_marked": marked,
            "status_changed": changed,
        },
    )
    return FeedbackOutcome(feedback.kind, marked, changed)


def _mark(
    store: TimelineStore, recipient: Recipient, attribute: str, evidence: dict[str, Any]
) -> bool:
    """Keep the first evidence on the address's identity; False for no customer's address."""
    try:
        identity = Identity(kind=IdentityKind.EMAIL, value=recipient.address)
    except ValueError:
        return False
    mark = Update(
        key=(identity_pk(identity), IDENT_SK),
        # The first evidence is kept: SNS's redelivery of the same notification, or a
        # later bounce of another mail, changes nothing.
        expression="SET #mark = if_not_exists(#mark, :evidence)",
        condition="attribute_exists(pk)",
        names={"#mark": attribute},
        values={":evidence": evidence},
    )
    try:
        store.data.write([mark])
    except WriteCancelled:
        logger.info("feedback for an address that is no customer's", extra={"kind": attribute})
        return False
    except StorageUnavailable as exc:
        raise StorageUnavailable("the address could not be marked") from exc
    return True


def sns_messages(event: Mapping[str, Any]) -> list[str]:
    """The ``Sns.Message`` of every record of Lambda's SNS event."""
    found = []
    for record in event.get("Records") or []:
        if not isinstance(record, Mapping):
            continue
        sns = record.get("Sns") or {}
        message = sns.get("Message") if isinstance(sns, Mapping) else None
        if isinstance(message, str):
            found.append(message)
    return found


def handle_sns_event(event: Mapping[str, Any], store: TimelineStore) -> list[FeedbackOutcome]:
    """Apply every SES notification an SNS event carries; raises only when storage failed."""
    outcomes = []
    for message in sns_messages(event):
        feedback = parse_notification(message)
        if feedback is None:
            logger.info("sns message not acted on", extra={"size": len(message)})
            continue
        logger.set_correlation_id(feedback.ses_message_id)
        outcomes.append(apply_feedback(store, feedback))
    return outcomes
