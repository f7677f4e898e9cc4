"""EventBridge schedules, locally: a function's ``Type: Schedule`` event invokes it on time.

Deployed, SAM makes each ``Schedule`` event an EventBridge rule that invokes the
function with a "Scheduled Event" every ``rate(...)``; locally a
:class:`SchedulePoller` thread does the same through the function runtime. The first
invocation comes one period after the stack started, as a new rule's does. Only
``rate(...)`` expressions run locally; a ``cron(...)`` one is listed as not run.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from devstack.aws import AwsTarget
from devstack.functions import FunctionSpec, event_sources
from devstack.pollers import Invoke, Poller
from devstack.resources import StackResources
from devstack.template import TemplateError

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_HANDLED = {"ScheduleExpression", "Description", "State", "Name", "Targets"}
_HANDLED_TARGET = {"Arn", "Id", "Input"}
EVENTS_RULE = "AWS::Events::Rule"


@dataclass(frozen=True)
class ScheduleMapping:
    function: str  # logical id
    event: str
    expression: str
    period_seconds: float
    input: str | None = None


def rate_seconds(expression: str, where: str) -> float | None:
    """Seconds between runs of a ``rate(...)``; None for ``cron(...)``."""
    if expression.startswith("cron("):
        return None
    match = _RATE.match(expression)
    if match is None:
        raise TemplateError(f"{where}: Schedule must be rate(...) or cron(...), not {expression!r}")
    value, unit = int(match.group(1)), match.group(2)
    # EventBridge wants the singular for 1 and the plural otherwise.
    if value < 1 or (value == 1) != (not unit.endswith("s")):
        raise TemplateError(f"{where}: {expression!r} is not a valid rate expression")
    return float(value * _UNIT_SECONDS[unit.rstrip("s")])


def _schedule_target(rule: Mapping[str, Any]) -> Any:
    """The Arn of the rule's first target: SAM gives a Schedule event one, its function."""
    if "ScheduleExpression" not in rule:
        return None
    targets = rule.get("Targets") or [{}]
    return targets[0].get("Arn")


def schedule_mappings(
    stack: StackResources, functions: Mapping[str, FunctionSpec]
) -> tuple[list[ScheduleMapping], list[str]]:
    mappings: list[ScheduleMapping] = []
    notes: list[str] = []
    for source in event_sources(stack, functions, EVENTS_RULE, _schedule_target):
        where = f"{source.function} event {source.event}"
        properties = source.properties
        if source.error is not None:
            notes.append(f"{where}: not run, its properties could not be resolved: {source.error}")
            continue
        if str(properties.get("State", "ENABLED")).upper() == "DISABLED":
            notes.append(f"{where}: disabled; not run")
            continue
        expression = str(properties.get("ScheduleExpression") or "")
        period = rate_seconds(expression, where)
        if period is None:
            notes.append(f"{where}: {expression} is not run locally (rate(...) only)")
            continue
        [target] = properties["Targets"][:1]
        ignored = sorted((set(properties) - _HANDLED) | (set(target) - _HANDLED_TARGET))
        if ignored:
            notes.append(f"{where}: not applied locally: {', '.join(ignored)}")
        raw_input = target.get("Input")
        mappings.append(
            ScheduleMapping(
                source.function,
                source.event,
                expression,
                period,
                str(raw_input) if raw_input is not None else None,
            )
        )
    return mappings, notes


class SchedulePoller(Poller):
    """Invokes one function every period with EventBridge's Scheduled Event."""

    def __init__(
        self,
        mapping: ScheduleMapping,
        aws: AwsTarget,
        invoke: Invoke,
        *,
        log: TextIO | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__(
            f"{mapping.function}.{mapping.event}",
            interval=min(1.0, mapping.period_seconds),
            log=log,
        )
        self.mapping = mapping
        self.aws = aws
        self.invoke = invoke
        self._clock = clock
        self.next_run = clock() + mapping.period_seconds
        self.runs = 0

    def describe(self) -> str:
        return f"{self.mapping.expression} -> {self.mapping.function}"

    def poll(self) -> bool:
        if self._clock() < self.next_run:
            return False
        # Missed runs (a slow invoke, a suspended laptop) are not made up, as with
        # EventBridge: the next one is one period from now.
        self.next_run = self._clock() + self.mapping.period_seconds
        self.run_once()
        return False

    def run_once(self) -> Any:
        invocation = self.invoke(self.mapping.function, self.scheduled_event())
        self.runs += 1
        if invocation.ok:
            self._say(f"ran in {invocation.duration_ms:.0f} ms")
        elif not self.stopping:
            self._say(f"failed: {invocation.error_type}")
        return invocation

    def scheduled_event(self) -> Any:
        if self.mapping.input is not None:
            return json.loads(self.mapping.input)
        region, account = self.aws.region, self.aws.account_id
        rule = f"{self.mapping.function}-{self.mapping.event}"
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region,
            "resources": [f"arn:aws:events:{region}:{account}:rule/{rule}"],
            "detail": {},
        }

    def _say(self, line: str) -> None:
        stream = self._log if self._log is not None else sys.stderr
        print(f"[schedule] {self.name}: {line}", file=stream, flush=True)


def schedule_pollers(
    stack: StackResources,
    functions: Mapping[str, FunctionSpec],
    aws: AwsTarget,
    invoke: Invoke,
    *,
    log: TextIO | None = None,
) -> tuple[list[Poller], list[str]]:
    """A poller for every ``Type: Schedule`` event of ``functions``, not started."""
    mappings, notes = schedule_mappings(stack, functions)
    pollers: list[Poller] = [SchedulePoller(m, aws, invoke, log=log) for m in mappings]
    return pollers, notes
