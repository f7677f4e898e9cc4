"""Business metrics and X-Ray tracing, cheap at cold start.

Metrics are CloudWatch embedded-metric-format (EMF) lines that Powertools prints to
stdout: CloudWatch Logs turns them into metrics, so counting costs no API call and
no client. Each count is one line with its own ``channel`` dimension (namespace
``POWERTOOLS_METRICS_NAMESPACE``, ``service`` from ``POWERTOOLS_SERVICE_NAME``), which
the stack's dashboard SEARCHes: ``MessagesReceived``, ``MessagesSent``,
``MessagesFailed``.

Tracing: ``traced`` wraps a Lambda handler in Powertools' Tracer, built on the first
invocation rather than at import (the X-Ray SDK and its botocore patch cost about
half an ``import boto3``; `make bench` measures it). Responses and errors are not
recorded in traces: they carry message bodies and phone numbers.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

Handler = TypeVar("Handler", bound=Callable[..., Any])

MESSAGES_RECEIVED = "MessagesReceived"
MESSAGES_SENT = "MessagesSent"
MESSAGES_FAILED = "MessagesFailed"
_DEFAULT_NAMESPACE = "threadline"


def count_message(metric: str, channel: str) -> None:
    """Add one to ``metric`` for ``channel`` (an EMF line on stdout).

    ``POWERTOOLS_METRICS_DISABLED=true`` turns it off, as it does Powertools' Metrics
    (whose single_metric does not read it).
    """
    from aws_lambda_powertools.metrics import MetricUnit, single_metric
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    if is_metrics_disabled():
        return

    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or _DEFAULT_NAMESPACE
    with single_metric(
        name=metric, unit=MetricUnit.Count, value=1, namespace=namespace
    ) as metric_line:
        metric_line.add_dimension(name="channel", value=channel)


@functools.cache
def tracer() -> Tracer:
    """The execution environment's Tracer; patches botocore so AWS calls are subsegments."""
    from aws_lambda_powertools import Tracer

    return Tracer(patch_modules=["botocore"])


def traced(handler: Handler) -> Handler:
    """``handler`` run inside an X-Ray subsegment with a ColdStart annotation."""
    wrapped: Callable[..., Any] | None = None

    @functools.wraps(handler)
    def lambda_handler(event: Any, context: Any) -> Any:
        nonlocal wrapped
        if wrapped is None:
            wrapped = tracer().capture_lambda_handler(
                handler, capture_response=False, capture_error=False
            )
        return wrapped(event, context)

    return lambda_handler  # type: ignore[return-value]
