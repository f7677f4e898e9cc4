"""Creating template.yaml's resources in the embedded AWS, straight with boto3.

moto's CloudFormation deploy has gaps (a ``!Ref`` to an EventBus fails, among
others), so each supported resource type has a small provisioner here instead.
Types that are not emulated still get a physical name and ARN, so ``!Ref`` and
``!GetAtt`` to them resolve exactly as they would in a deployed stack.

Adding a type is one function (an SNS topic, say)::

    @provisioner("AWS::SNS::Topic")
    def _topic(ctx, logical_id, raw):
        properties = ctx.resolve(raw)
        name = properties.get("TopicName") or ctx.name(logical_id, max_length=256)
        arn = ctx.client("sns").create_topic(Name=name)["TopicArn"]
        attributes = {"TopicArn": arn, "TopicName": name}
        return PhysicalResource(logical_id, "AWS::SNS::Topic", arn, attributes, emulated=True)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.aws import AwsTarget, physical_name, stable_suffix
from devstack.intrinsics import PseudoParameters, Resolver, references
from devstack.template import Template, TemplateError


@dataclass(frozen=True)
class PhysicalResource:
    """What one logical resource became: its ``!Ref`` value and ``!GetAtt`` values."""

    logical_id: str
    type: str
    ref: str
    attributes: Mapping[str, str]
    emulated: bool
    # Properties the local stack read but does not apply (e.g. a lifecycle policy).
    ignored_properties: tuple[str, ...] = ()

    @property
    def arn(self) -> str:
        return self.attributes.get("Arn", self.ref)


@dataclass
class StackResources:
    """logical id -> :class:`PhysicalResource`, plus what resolving more values needs."""

    template: Template
    aws: AwsTarget
    pseudo: PseudoParameters
    parameters: Mapping[str, Any]
    resources: dict[str, PhysicalResource] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.resolver = Resolver(self.template, self.parameters, self.pseudo, self)

    def __getitem__(self, logical_id: str) -> PhysicalResource:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise TemplateError(f"resource {logical_id} was not created") from None

    def __contains__(self, logical_id: object) -> bool:
        return logical_id in self.resources

    def __iter__(self) -> Iterator[str]:
        return iter(self.resources)

    def physical_id(self, logical_id: str) -> str:
        return self[logical_id].ref

    def arn(self, logical_id: str) -> str:
        return self[logical_id].arn

    def physical_ids(self) -> dict[str, str]:
        return {logical_id: resource.ref for logical_id, resource in self.resources.items()}

    # ResourceLookup, for the resolver.
    def ref(self, logical_id: str) -> Any:
        return self[logical_id].ref

    def get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self[logical_id]
        if attribute not in resource.attributes:
            raise TemplateError(
                f"!GetAtt {logical_id}.{attribute}: the local stack knows only "
                f"{sorted(resource.attributes)} for {resource.type}"
            )
        return resource.attributes[attribute]

    def resolve(self, value: Any) -> Any:
        return self.resolver.resolve(value)


@dataclass(frozen=True)
class ProvisionContext:
    """What a provisioner gets: the target AWS, the stack's names, a resolver."""

    aws: AwsTarget
    stack: StackResources

    @property
    def stack_name(self) -> str:
        return self.stack.pseudo.stack_name

    def resolve(self, value: Any) -> Any:
        return self.stack.resolve(value)

    def name(self, logical_id: str, *, max_length: int = 128, lowercase: bool = False) -> str:
        return physical_name(
            self.stack_name, logical_id, max_length=max_length, lowercase=lowercase
        )

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        where = f"{self.aws.region}:{self.aws.account_id}" if region else ":"
        return f"arn:{self.stack.pseudo.partition}:{service}:{where}:{resource}"

    def client(self, service: str) -> Any:
        return self.aws.client(service)


Provisioner = Callable[[ProvisionContext, str, Mapping[str, Any]], PhysicalResource]
PROVISIONERS: dict[str, Provisioner] = {}


def provisioner(*resource_types: str) -> Callable[[Provisioner], Provisioner]:
    """Register a function that creates (or names) resources of these types."""

    def register(function: Provisioner) -> Provisioner:
        for resource_type in resource_types:
            PROVISIONERS[resource_type] = function
        return function

    return register


def create_resources(
    template: Template,
    endpoint_url: str,
    *,
    region: str = "us-east-1",
    account_id: str | None = None,
    stack_name: str | None = None,
    parameters: Mapping[str, str] | None = None,
) -> StackResources:
    """Create every supported resource of ``template`` at ``endpoint_url``.

    Returns the map logical id -> physical resource, in dependency order. Existing
    resources with the same (stable) names are reused, so a restart against a
    persistent endpoint is idempotent.
    """
    aws = AwsTarget(endpoint_url, region)
    aws = AwsTarget(endpoint_url, region, account_id) if account_id else aws.discover_account_id()
    values = template.parameter_values(parameters)
    pseudo = PseudoParameters(
        region=aws.region,
        account_id=aws.account_id,
        stack_name=stack_name or default_stack_name(values),
    )
    stack = StackResources(template, aws, pseudo, values)
    context = ProvisionContext(aws, stack)
    for logical_id in creation_order(template):
        resource = template.resource(logical_id)
        condition = resource.get("Condition")
        if condition is not None and not stack.resolver.condition(str(condition)):
            continue
        kind = str(resource.get("Type", ""))
        create = PROVISIONERS.get(kind, _placeholder)
        stack.resources[logical_id] = create(context, logical_id, template.properties(logical_id))
    return stack


def default_stack_name(parameters: Mapping[str, Any]) -> str:
    stage = parameters.get("Stage")
    return f"threadline-{stage}" if isinstance(stage, str) and stage else "threadline-local"


def creation_order(template: Template) -> list[str]:
    """Logical ids with every resource after the resources it refers to."""
    known = set(template.resources)
    needs: dict[str, set[str]] = {}
    for logical_id, resource in template.resources.items():
        depends_on = resource.get("DependsOn") or []
        depends = {depends_on} if isinstance(depends_on, str) else set(depends_on)
        needs[logical_id] = (references(resource.get("Properties")) | depends) & known
        needs[logical_id].discard(logical_id)
    ordered: list[str] = []
    done: set[str] = set()
    while len(ordered) < len(needs):
        ready = [lid for lid in needs if lid not in done and needs[lid] <= done]
        if not ready:
            cycle = sorted(set(needs) - done)
            raise TemplateError(f"circular references between resources: {', '.join(cycle)}")
        for logical_id in ready:
            ordered.append(logical_id)
            done.add(logical_id)
    return ordered


def _unhandled(properties: Mapping[str, Any], handled: set[str]) -> tuple[str, ...]:
    return tuple(sorted(set(properties) - handled))


# --- emulated types ---------------------------------------------------------------

_TABLE_PROPERTIES = {
    "TableName",
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "StreamSpecification",
    "SSESpecification",
    "TimeToLiveSpecification",
    "PointInTimeRecoverySpecification",
    "TableClass",
    "DeletionProtectionEnabled",
    "Tags",
}


@provisioner("AWS::DynamoDB::Table")
def _table(ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
    properties = ctx.resolve(raw)
    name = properties.get("TableName") or ctx.name(logical_id, max_length=255)
    client = ctx.client("dynamodb")
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        # CloudFormation's default, which then insists on ProvisionedThroughput.
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    for key in (
        "ProvisionedThroughput",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "TableClass",
        "DeletionProtectionEnabled",
        "Tags",
    ):
        if key in properties:
            request[key] = properties[key]
    if "GlobalSecondaryIndexes" in request:
        # CloudFormation-only keys that CreateTable rejects.
        request["GlobalSecondaryIndexes"] = [
            {k: v for k, v in index.items() if k != "ContributorInsightsSpecification"}
            for index in request["GlobalSecondaryIndexes"]
        ]
    stream = properties.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    sse = properties.get("SSESpecification")
    if sse:
        request["SSESpecification"] = {
            "Enabled": bool(sse.get("SSEEnabled")),
            **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
            **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
        }
    # Already there when an earlier run used the same (persistent) endpoint.
    with contextlib.suppress(client.exceptions.ResourceInUseException):
        client.create_table(**request)
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        current = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"}:
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    recovery = properties.get("PointInTimeRecoverySpecification")
    if recovery and recovery.get("PointInTimeRecoveryEnabled"):
        client.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    table = client.describe_table(TableName=name)["Table"]
    attributes = {"Arn": table["TableArn"]}
    if table.get("LatestStreamArn"):
        attributes["StreamArn"] = table["LatestStreamArn"]
    return PhysicalResource(
        logical_id,
        "AWS::DynamoDB::Table",
        name,
        attributes,
        emulated=True,
        ignored_properties=_unhandled(properties, _TABLE_PROPERTIES),
    )


_BUCKET_PROPERTIES = {
    "BucketName",
    "BucketEncryption",
    "VersioningConfiguration",
    "PublicAccessBlockConfiguration",
    "OwnershipControls",
    "LifecycleConfiguration",
    # Its Lambda notifications (SAM's S3 events) are fed by POST /_dev/email (maildrop).
    "NotificationConfiguration",
    "Tags",
}


@provisioner("AWS::S3::Bucket")
def _bucket(ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
    properties = ctx.resolve(raw)
    name = properties.get("BucketName") or ctx.name(logical_id, max_length=63, lowercase=True)
    client = ctx.client("s3")
    create: dict[str, Any] = {"Bucket": name}
    if ctx.aws.region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": ctx.aws.region}
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(**create)
    encryption = properties.get("BucketEncryption")
    if encryption:
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                **(
                    {"BucketKeyEnabled": rule["BucketKeyEnabled"]}
                    if "BucketKeyEnabled" in rule
                    else {}
                ),
            }
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        client.put_bucket_encryption(
            Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules}
        )
    versioning = properties.get("VersioningConfiguration")
    if versioning:
        client.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": versioning["Status"]}
        )
    public_access = properties.get("PublicAccessBlockConfiguration")
    if public_access:
        client.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=public_access)
    ownership = properties.get("OwnershipControls")
    if ownership:
        client.put_bucket_ownership_controls(Bucket=name, OwnershipControls=ownership)
    tags = properties.get("Tags")
    if tags:
        client.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags})
    lifecycle = properties.get("LifecycleConfiguration")
    if lifecycle:
        # Stored so it can be read back; the embedded S3 does not expire objects.
        client.put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in lifecycle["Rules"]]},
        )
    return PhysicalResource(
        logical_id,
        "AWS::S3::Bucket",
        name,
        _bucket_attributes(ctx, name),
        emulated=True,
        ignored_properties=_unhandled(properties, _BUCKET_PROPERTIES),
    )


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the S3 API's shape."""
    api: dict[str, Any] = {
        "ID": rule.get("Id", "rule"),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    noncurrent = rule.get("NoncurrentVersionExpiration")
    if noncurrent:
        api["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(noncurrent["NoncurrentDays"])}
    multipart = rule.get("AbortIncompleteMultipartUpload")
    if multipart:
        api["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(multipart["DaysAfterInitiation"])
        }
    return api


def _bucket_attributes(ctx: ProvisionContext, name: str) -> dict[str, str]:
    region = ctx.aws.region
    return {
        "Arn": ctx.arn("s3", name, region=False),
        "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
        "DualStackDomainName": f"{name}.s3.dualstack.{region}.amazonaws.com",
        "WebsiteURL": f"http://{name}.s3-website-{region}.amazonaws.com",
    }


_QUEUE_ATTRIBUTES = {
    # CloudFormation property -> SQS attribute, for the plain (string-valued) ones.
    "ContentBasedDeduplication": "ContentBasedDeduplication",
    "DeduplicationScope": "DeduplicationScope",
    "DelaySeconds": "DelaySeconds",
    "FifoQueue": "FifoQueue",
    "FifoThroughputLimit": "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds": "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId": "KmsMasterKeyId",
    "MaximumMessageSize": "MaximumMessageSize",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled": "SqsManagedSseEnabled",
    "VisibilityTimeout": "VisibilityTimeout",
}


@provisioner("AWS::SQS::Queue")
def _queue(ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
    properties = ctx.resolve(raw)
    fifo = str(properties.get("FifoQueue", "")).lower() == "true"
    # CloudFormation keeps the mandatory .fifo suffix on the names it makes up.
    name = properties.get("QueueName") or (
        ctx.name(logical_id, max_length=75) + ".fifo"
        if fifo
        else ctx.name(logical_id, max_length=80)
    )
    attributes = {
        attribute: _attribute_text(properties[key])
        for key, attribute in _QUEUE_ATTRIBUTES.items()
        if key in properties
    }
    for key in ("RedrivePolicy", "RedriveAllowPolicy"):
        if key in properties:
            value = properties[key]
            attributes[key] = value if isinstance(value, str) else json.dumps(value)
    client = ctx.client("sqs")
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return PhysicalResource(
        logical_id,
        "AWS::SQS::Queue",
        url,
        {"Arn": arn, "QueueName": name, "QueueUrl": url},
        emulated=True,
        ignored_properties=_unhandled(
            properties, {*_QUEUE_ATTRIBUTES, "QueueName", "RedrivePolicy", "RedriveAllowPolicy"}
        ),
    )


@provisioner("AWS::Events::EventBus")
def _event_bus(ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
    properties = ctx.resolve(raw)
    name = str(properties["Name"])
    client = ctx.client("events")
    if name != "default":
        with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
            client.create_event_bus(Name=name)
    arn = client.describe_event_bus(Name=name)["Arn"]
    return PhysicalResource(
        logical_id,
        "AWS::Events::EventBus",
        name,
        {"Arn": arn, "Name": name},
        emulated=True,
        ignored_properties=_unhandled(properties, {"Name"}),
    )


_RULE_TARGET_KEYS = {
    "Id",
    "Arn",
    "Input",
    "InputPath",
    "InputTransformer",
    "RoleArn",
    # A FIFO queue target's message group (moto, like EventBridge, requires it).
    "SqsParameters",
}
# The target services moto's EventBridge delivers to; it fails the whole PutEvents on
# any other (a Firehose stream, say), so those targets are left out. The analytics
# rule's Firehose target has its local stand-in: the event log writes the lake.
_DELIVERED_TARGET_SERVICES = {"sqs", "logs", "events"}


def _arn_service(arn: Any) -> str:
    parts = str(arn or "").split(":")
    return parts[2] if len(parts) > 2 else ""


@provisioner("AWS::Events::Rule")
def _rule(ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
    properties = ctx.resolve(raw)
    name = properties.get("Name") or ctx.name(logical_id, max_length=64)
    bus = str(properties.get("EventBusName") or "default")
    # Deployed, a rule's events reach SQS, Lambda, ...; locally only what moto
    # delivers itself (SQS queues, log groups, other buses) arrives anywhere.
    request: dict[str, Any] = {
        "Name": name,
        "EventBusName": bus,
        "State": properties.get("State", "ENABLED"),
    }
    if "EventPattern" in properties:
        pattern = properties["EventPattern"]
        request["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    for key in ("ScheduleExpression", "Description"):
        if key in properties:
            request[key] = properties[key]
    client = ctx.client("events")
    arn = client.put_rule(**request)["RuleArn"]
    targets = [
        {key: value for key, value in target.items() if key in _RULE_TARGET_KEYS}
        for target in properties.get("Targets") or []
        if _arn_service(target.get("Arn")) in _DELIVERED_TARGET_SERVICES
    ]
    if targets:
        client.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    # CloudFormation's Ref of a rule on a custom bus is "bus|rule".
    ref = name if bus == "default" else f"{bus}|{name}"
    return PhysicalResource(
        logical_id,
        "AWS::Events::Rule",
        ref,
        {"Arn": arn},
        emulated=True,
        ignored_properties=_unhandled(
            properties,
            {
                "Name",
                "EventBusName",
                "State",
                "EventPattern",
                "ScheduleExpression",
                "Description",
                "Targets",
            },
        ),
    )


# --- SES feedback through SNS ----------------------------------------------------------


@provisioner("AWS::SNS::Topic")
def _topic(ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
    properties = ctx.resolve(raw)
    name = properties.get("TopicName") or ctx.name(logical_id, max_length=256)
    arn = ctx.client("sns").create_topic(Name=name)["TopicArn"]
    return PhysicalResource(
        logical_id,
        "AWS::SNS::Topic",
        arn,
        {"TopicArn": arn, "TopicName": name},
        emulated=True,
        ignored_properties=_unhandled(properties, {"TopicName"}),
    )


@provisioner("AWS::SES::ConfigurationSet")
def _configuration_set(
    ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]
) -> PhysicalResource:
    properties = ctx.resolve(raw)
    name = properties.get("Name") or ctx.name(logical_id, max_length=64)
    client = ctx.client("ses")
    # Kept by the embedded SES (it does not publish events itself: see devstack.sesfeedback).
    with contextlib.suppress(client.exceptions.ConfigurationSetAlreadyExistsException):
        client.create_configuration_set(ConfigurationSet={"Name": name})
    return PhysicalResource(
        logical_id,
        "AWS::SES::ConfigurationSet",
        name,
        {},
        emulated=True,
        ignored_properties=_unhandled(properties, {"Name"}),
    )


@provisioner("AWS::SES::ConfigurationSetEventDestination")
def _event_destination(
    ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]
) -> PhysicalResource:
    """Named, and remembered: ``POST /_dev/email/feedback`` publishes where it says."""
    properties = ctx.resolve(raw)
    destination = properties.get("EventDestination") or {}
    topic = (destination.get("SnsDestination") or {}).get("TopicARN") or ""
    attributes = {
        "ConfigurationSetName": str(properties.get("ConfigurationSetName") or ""),
        "TopicARN": str(topic),
        "MatchingEventTypes": ",".join(str(t) for t in destination.get("MatchingEventTypes", [])),
        "Enabled": "true" if destination.get("Enabled", False) else "false",
    }
    return PhysicalResource(
        logical_id,
        "AWS::SES::ConfigurationSetEventDestination",
        ctx.name(logical_id),
        attributes,
        emulated=False,
    )


@provisioner("AWS::Events::Archive")
def _archive(ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
    """An archive of a bus: moto keeps the events it matches and can replay them."""
    properties = ctx.resolve(raw)
    name = str(properties.get("ArchiveName") or ctx.name(logical_id, max_length=48))
    request: dict[str, Any] = {"ArchiveName": name, "EventSourceArn": properties["SourceArn"]}
    if "RetentionDays" in properties:
        request["RetentionDays"] = int(properties["RetentionDays"])
    if "Description" in properties:
        request["Description"] = properties["Description"]
    if "EventPattern" in properties:
        pattern = properties["EventPattern"]
        request["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    client = ctx.client("events")
    try:
        arn = client.create_archive(**request)["ArchiveArn"]
    except client.exceptions.ResourceAlreadyExistsException:
        # Kept by an earlier run against a persistent endpoint.
        arn = client.describe_archive(ArchiveName=name)["ArchiveArn"]
    return PhysicalResource(
        logical_id,
        "AWS::Events::Archive",
        name,
        {"Arn": arn},
        emulated=True,
        ignored_properties=_unhandled(
            properties, {"ArchiveName", "SourceArn", "RetentionDays", "Description", "EventPattern"}
        ),
    )


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- named, not emulated -------------------------------------------------------------
# The functions are run by devstack.runtime and the API by devstack.gateway, not
# created in moto; everything else here has no local effect worth emulating yet.


@provisioner("AWS::Lambda::Function")
def _function(ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
    name = ctx.resolve(raw.get("FunctionName")) or ctx.name(logical_id, max_length=64)
    arn = ctx.arn("lambda", f"function:{name}")
    return PhysicalResource(logical_id, _kind(ctx, logical_id), name, {"Arn": arn}, False)


@provisioner("AWS::Lambda::LayerVersion")
def _layer(ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
    name = ctx.resolve(raw.get("LayerName")) or ctx.name(logical_id, max_length=140)
    arn = ctx.arn("lambda", f"layer:{name}:1")
    return PhysicalResource(logical_id, _kind(ctx, logical_id), arn, {"Arn": arn}, False)


@provisioner("AWS::ApiGatewayV2::Api")
def _http_api(ctx: ProvisionContext, logical_id: str, _: Mapping[str, Any]) -> PhysicalResource:
    api_id = stable_suffix(ctx.stack_name, logical_id, length=10).lower()
    endpoint = f"https://{api_id}.execute-api.{ctx.aws.region}.amazonaws.com"
    return PhysicalResource(
        logical_id, _kind(ctx, logical_id), api_id, {"ApiEndpoint": endpoint}, False
    )


@provisioner("AWS::Logs::LogGroup")
def _log_group(ctx: ProvisionContext, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
    name = ctx.resolve(raw.get("LogGroupName")) or ctx.name(logical_id, max_length=512)
    arn = ctx.arn("logs", f"log-group:{name}:*")
    return PhysicalResource(logical_id, "AWS::Logs::LogGroup", name, {"Arn": arn}, False)


def _kind(ctx: ProvisionContext, logical_id: str) -> str:
    return ctx.stack.template.resource_type(logical_id)


def _placeholder(ctx: ProvisionContext, logical_id: str, _: Mapping[str, Any]) -> PhysicalResource:
    kind = _kind(ctx, logical_id)
    name = ctx.name(logical_id)
    service = kind.split("::")[1].lower() if kind.count("::") >= 2 else "local"
    arn = ctx.arn(service, f"{kind.split('::')[-1].lower()}/{name}")
    return PhysicalResource(logical_id, kind, name, {"Arn": arn}, False)
