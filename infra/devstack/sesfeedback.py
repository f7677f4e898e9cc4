"""SNS topics feeding functions, and SES feedback on demand (``POST /_dev/email/feedback``).

Deployed, SNS invokes a function with a ``Type: SNS`` event itself. Locally each
such event gets a dev-only SQS queue subscribed to the topic in the embedded AWS
(moto delivers SNS to SQS, with SNS's JSON envelope) and a poller that invokes the
function with the event Lambda would get: one record per invocation, as SNS does.
A failed invocation is retried as Lambda retries asynchronous events (twice by
default, or the function's ``EventInvokeConfig.MaximumRetryAttempts``), a few
seconds apart rather than minutes, then dropped with a console line.

The embedded SES accepts mail but never bounces it, so the local stack publishes
SES's feedback on request: :class:`SesFeedback` builds the notification SES's event
publishing would send for a mail the dispatcher sent (``eventType`` Bounce,
Complaint or Delivery, with the mail's ``messageId``, source and destination) and
publishes it to the SNS topic of every ``AWS::SES::ConfigurationSetEventDestination``
of the template that matches that event type. From there it takes the path above.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from devstack.aws import AwsTarget
from devstack.functions import FunctionSpec, event_sources
from devstack.pollers import DEFAULT_POLL_INTERVAL, Invoke, QueuePoller
from devstack.resources import StackResources

EVENT_DESTINATION = "AWS::SES::ConfigurationSetEventDestination"
# Lambda's default for asynchronous invocations.
DEFAULT_ASYNC_RETRIES = 2
# Seconds before a failed delivery is retried (Lambda waits a minute, then two).
RETRY_DELAY_SECONDS = 2
FEEDBACK_TYPES = ("Bounce", "Complaint", "Delivery")


@dataclass(frozen=True)
class SnsSubscription:
    function: str
    event: str
    topic_arn: str
    max_retries: int = DEFAULT_ASYNC_RETRIES


def sns_subscriptions(
    stack: StackResources, functions: Mapping[str, FunctionSpec]
) -> list[SnsSubscription]:
    """Every function's ``AWS::SNS::Subscription`` (a SAM ``Type: SNS`` event)."""
    sources = event_sources(stack, functions, "AWS::SNS::Subscription", lambda p: p.get("Endpoint"))
    return [
        SnsSubscription(source.function, source.event, str(source.properties["TopicArn"]))
        for source in sources
        if str(source.properties.get("TopicArn", "")).startswith("arn:")
    ]


class SnsFunctionPoller(QueuePoller):
    """Invokes a function once per SNS notification that reached its dev queue."""

    def __init__(
        self,
        subscription: SnsSubscription,
        aws: AwsTarget,
        invoke: Invoke,
        queue_arn: str,
        subscription_arn: str,
        *,
        interval: float = DEFAULT_POLL_INTERVAL,
        log: TextIO | None = None,
        source_name: str | None = None,
    ) -> None:
        source = source_name or subscription.topic_arn.rsplit(":", 1)[-1]
        super().__init__(
            subscription.function,
            aws,
            queue_arn,
            batch_size=1,
            interval=interval,
            log=log,
            description=f"SNS {source} -> {subscription.function} (dev queue, async retries "
            f"{subscription.max_retries})",
        )
        self.subscription = subscription
        self.subscription_arn = subscription_arn
        self.invoke = invoke

    def consume(self, records: list[dict[str, Any]]) -> Collection[str]:
        failed = []
        for record in records:
            try:
                envelope = json.loads(record["body"])
            except ValueError:
                self._say("a message on the dev queue is not SNS's envelope; dropped")
                continue
            invocation = self.invoke(
                self.subscription.function,
                {"Records": [lambda_sns_record(envelope, self.subscription_arn)]},
            )
            if invocation.ok:
                self._say(f"1 notification ok in {invocation.duration_ms:.0f} ms")
                continue
            attempts = int(record["attributes"].get("ApproximateReceiveCount", "1"))
            if attempts <= self.subscription.max_retries:
                self._say(
                    f"function error {invocation.error_type}: {invocation.error_message}; "
                    f"retry {attempts} of {self.subscription.max_retries} in "
                    f"{RETRY_DELAY_SECONDS} s"
                )
                failed.append(record["messageId"])
            else:
                self._say(
                    f"function error {invocation.error_type} after {attempts} attempts; "
                    "the notification is dropped (deployed: its OnFailure destination)"
                )
        return failed


def lambda_sns_record(envelope: Mapping[str, Any], subscription_arn: str) -> dict[str, Any]:
    """SNS's delivery envelope (as an SQS subscriber gets it) as a Lambda SNS record."""
    attributes = envelope.get("MessageAttributes") or {}
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": envelope.get("Type", "Notification"),
            "MessageId": envelope.get("MessageId"),
            "TopicArn": envelope.get("TopicArn"),
            "Subject": envelope.get("Subject"),
            "Message": envelope.get("Message", ""),
            "Timestamp": envelope.get("Timestamp"),
            "SignatureVersion": envelope.get("SignatureVersion", "1"),
            "Signature": envelope.get("Signature", ""),
            "SigningCertUrl": envelope.get("SigningCertURL", ""),
            "UnsubscribeUrl": envelope.get("UnsubscribeURL", ""),
            "MessageAttributes": {
                name: {"Type": value.get("Type"), "Value": value.get("Value")}
                for name, value in attributes.items()
                if isinstance(value, Mapping)
            },
        },
    }


def sns_pollers(
    stack: StackResources,
    functions: Mapping[str, FunctionSpec],
    aws: AwsTarget,
    invoke: Invoke,
    *,
    stack_name: str,
    names: Mapping[str, str] | None = None,
    retries: Mapping[str, int] | None = None,
    interval: float = DEFAULT_POLL_INTERVAL,
    log: TextIO | None = None,
) -> list[SnsFunctionPoller]:
    """A dev queue subscribed to each SNS event's topic, and its poller (not started)."""
    names = names or {}
    pollers = []
    sqs = aws.client("sqs")
    sns = aws.client("sns")
    for subscription in sns_subscriptions(stack, functions):
        if retries and subscription.function in retries:
            subscription = SnsSubscription(
                subscription.function,
                subscription.event,
                subscription.topic_arn,
                retries[subscription.function],
            )
        queue_name = f"{stack_name}-devstack-sns-{subscription.function}"[:80]
        url = sqs.create_queue(
            QueueName=queue_name, Attributes={"VisibilityTimeout": str(RETRY_DELAY_SECONDS)}
        )["QueueUrl"]
        # Notifications of an earlier run against a persistent endpoint are stale.
        with contextlib.suppress(sqs.exceptions.PurgeQueueInProgress):
            sqs.purge_queue(QueueUrl=url)
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        subscription_arn = sns.subscribe(
            TopicArn=subscription.topic_arn, Protocol="sqs", Endpoint=queue_arn
        )["SubscriptionArn"]
        pollers.append(
            SnsFunctionPoller(
                subscription,
                aws,
                invoke,
                queue_arn,
                subscription_arn,
                interval=interval,
                log=log,
                source_name=names.get(subscription.topic_arn),
            )
        )
    return pollers


def async_retries(stack: StackResources, functions: Mapping[str, FunctionSpec]) -> dict[str, int]:
    """``MaximumRetryAttempts`` of each function's ``AWS::Lambda::EventInvokeConfig``."""
    found = {}
    sources = event_sources(
        stack, functions, "AWS::Lambda::EventInvokeConfig", lambda p: p.get("FunctionName")
    )
    for source in sources:
        value = source.properties.get("MaximumRetryAttempts")
        if isinstance(value, int | str) and str(value).isdigit():
            found[source.function] = int(value)
    return found


# ---------------------------------------------------------------------- feedback


class FeedbackError(ValueError):
    """The request cannot become a notification (the message is in ``args[0]``)."""


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def ses_event(
    kind: str,
    *,
    ses_message_id: str,
    source: str,
    recipients: list[str],
    account_id: str,
    region: str,
    configuration_set: str | None = None,
    bounce_type: str = "Permanent",
    bounce_subtype: str = "General",
    diagnostic_code: str | None = None,
    complaint_feedback_type: str = "abuse",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The event SES's event publishing sends to SNS (docs: "Contents of event data")."""
    now = now or datetime.now(UTC)
    mail: dict[str, Any] = {
        "timestamp": _iso(now),
        "source": source,
        "sourceArn": f"arn:aws:ses:{region}:{account_id}:identity/{source.rpartition('@')[2]}",
        "sendingAccountId": account_id,
        "messageId": ses_message_id,
        "destination": recipients,
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": source},
            {"name": "To", "value": ", ".join(recipients)},
        ],
        "commonHeaders": {"from": [source], "to": recipients},
        "tags": {"ses:configuration-set": [configuration_set]} if configuration_set else {},
    }
    feedback_id = f"{uuid.uuid4()}-000000"
    if kind == "Bounce":
        permanent = bounce_type == "Permanent"
        body: dict[str, Any] = {
            "bounceType": bounce_type,
            "bounceSubType": bounce_subtype,
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": "5.1.1" if permanent else "4.4.7",
                    "diagnosticCode": diagnostic_code
                    or (
                        "smtp; 550 5.1.1 user unknown"
                        if permanent
                        else "smtp; 452 4.2.2 mailbox full"
                    ),
                }
                for address in recipients
            ],
            "timestamp": _iso(now),
            "feedbackId": feedback_id,
            "reportingMTA": "dns; threadline.localhost",
        }
    elif kind == "Complaint":
        body = {
            "complainedRecipients": [{"emailAddress": address} for address in recipients],
            "timestamp": _iso(now),
            "feedbackId": feedback_id,
            "userAgent": "threadline local stack",
            "complaintFeedbackType": complaint_feedback_type,
            "arrivalDate": _iso(now),
        }
    elif kind == "Delivery":
        body = {
            "timestamp": _iso(now),
            "processingTimeMillis": 42,
            "recipients": recipients,
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "threadline.localhost",
        }
    else:
        raise FeedbackError(f"type must be one of {', '.join(FEEDBACK_TYPES)}")
    return {"eventType": kind, "mail": mail, kind.lower(): body}


@dataclass(frozen=True)
class Destination:
    configuration_set: str
    topic_arn: str
    event_types: frozenset[str]


class SesFeedback:
    """Publishes SES feedback for mail the embedded SES accepted."""

    def __init__(self, stack: StackResources, sent: Any = None) -> None:
        self.aws = stack.aws
        self.sent = sent
        self.destinations = [
            Destination(
                resource.attributes.get("ConfigurationSetName", ""),
                resource.attributes.get("TopicARN", ""),
                frozenset(
                    t.strip().lower()
                    for t in resource.attributes.get("MatchingEventTypes", "").split(",")
                    if t.strip()
                ),
            )
            for resource in (stack[lid] for lid in stack)
            if resource.type == EVENT_DESTINATION
            and resource.attributes.get("TopicARN", "").startswith("arn:")
            and resource.attributes.get("Enabled") == "true"
        ]

    def publish(self, request: Mapping[str, Any]) -> list[dict[str, str]]:
        """Publish the notification ``request`` describes; what was published where."""
        kind = str(request.get("type") or "")
        if kind not in FEEDBACK_TYPES:
            raise FeedbackError(f"type must be one of {', '.join(FEEDBACK_TYPES)}")
        ses_message_id = request.get("message_id")
        if not isinstance(ses_message_id, str) or not ses_message_id:
            raise FeedbackError("message_id (the SES MessageId of a sent mail) is required")
        mail = self._sent_mail(ses_message_id)
        recipients = request.get("recipients") or (mail or {}).get("form", {}).get("To")
        source = request.get("source") or ((mail or {}).get("form", {}).get("From") or [""])[0]
        if not recipients or not isinstance(recipients, list):
            raise FeedbackError(
                'no sent mail has this message_id: name its recipients ("recipients": [...])'
            )
        destinations = [d for d in self.destinations if kind.lower() in d.event_types]
        if not destinations:
            raise FeedbackError(f"no configuration set of the template publishes {kind} events")
        published = []
        for destination in destinations:
            event = ses_event(
                kind,
                ses_message_id=ses_message_id,
                source=str(source or "support@threadline.localhost"),
                recipients=[str(r) for r in recipients],
                account_id=self.aws.account_id,
                region=self.aws.region,
                configuration_set=destination.configuration_set,
                bounce_type=str(request.get("bounce_type") or "Permanent"),
                bounce_subtype=str(request.get("bounce_subtype") or "General"),
                diagnostic_code=request.get("diagnostic_code"),
                complaint_feedback_type=str(request.get("complaint_feedback_type") or "abuse"),
            )
            answer = self.aws.client("sns").publish(
                TopicArn=destination.topic_arn, Message=json.dumps(event)
            )
            published.append(
                {"topic_arn": destination.topic_arn, "sns_message_id": str(answer["MessageId"])}
            )
        return published

    def _sent_mail(self, ses_message_id: str) -> dict[str, Any] | None:
        if self.sent is None:
            return None
        for mail in self.sent.sent():
            if mail.get("message_id") == ses_message_id:
                return dict(mail)
        return None
