"""template.yaml's analytics lake: the named queries carry exactly the SQL that
`make report` runs locally, the Glue table has the columns DuckDB is given, and the
delivery stream writes the layout the local lake copies."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_template
from threadline_analytics.lake import EVENTS_PREFIX, FILE_SUFFIX, LAKE_COLUMNS, glue_type
from threadline_analytics.report import METRICS, query_text

RESOURCES: dict[str, Any] = load_template()["Resources"]


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_each_named_query_is_its_sql_file(metric):
    query = RESOURCES[metric.logical_id]
    assert query["Type"] == "AWS::Athena::NamedQuery"
    assert query["Properties"]["QueryString"] == query_text(metric.name)
    assert query["Properties"]["Database"] == {"Ref": "AnalyticsDatabase"}
    assert query["Properties"]["WorkGroup"] == {"Ref": "AnalyticsWorkGroup"}


def test_every_named_query_in_the_template_is_a_metric():
    named = {k for k, r in RESOURCES.items() if r["Type"] == "AWS::Athena::NamedQuery"}
    assert named == {m.logical_id for m in METRICS}


def test_the_glue_table_has_the_columns_the_local_report_reads():
    table = RESOURCES["AnalyticsEventsTable"]["Properties"]["TableInput"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns == {name: glue_type(column) for name, column in LAKE_COLUMNS.items()}
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert table["Name"] == "threadline_events"  # the name the SQL files use
    assert table["Parameters"]["projection.enabled"] == "true"


def test_the_delivery_stream_writes_the_local_lake_layout():
    stream = RESOURCES["AnalyticsDeliveryStream"]["Properties"]
    destination = stream["ExtendedS3DestinationConfiguration"]
    assert destination["Prefix"] == f"{EVENTS_PREFIX}/dt=!{{partitionKeyFromQuery:dt}}/"
    assert destination["FileExtension"] == FILE_SUFFIX
    assert destination["CompressionFormat"] == "GZIP"
    [extract, delimit] = destination["ProcessingConfiguration"]["Processors"]
    assert {
        "ParameterName": "MetadataExtractionQuery",
        "ParameterValue": "{dt: .occurred_at[0:10]}",
    } in extract["Parameters"]
    assert delimit["Type"] == "AppendDelimiterToRecord"


def test_every_event_goes_to_the_lake_as_its_detail():
    rule = RESOURCES["AnalyticsEventsRule"]["Properties"]
    assert rule["EventBusName"] == {"Ref": "EventBus"}
    assert rule["EventPattern"] == {"source": ["threadline"]}
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["AnalyticsDeliveryStream", "Arn"]}
    assert target["InputPath"] == "$.detail"


def test_the_lake_survives_the_stack():
    bucket = RESOURCES["AnalyticsLakeBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["UpdateReplacePolicy"] == "Retain"
