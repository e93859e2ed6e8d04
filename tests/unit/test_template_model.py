"""template_model reads template.yaml into plain data: tags, functions, Kafka events, tables."""

from __future__ import annotations

import textwrap

import boto3
import pytest
from clearing_tools import template_model as tm
from moto import mock_aws

SMALL_TEMPLATE = textwrap.dedent(
    """
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Batch: {Type: Number, Default: 250}
      Cluster: {Type: String, Default: arn:aws:kafka:us-east-1:1:cluster/c/u}
    Globals:
      Function:
        Environment:
          Variables:
            ORDERS_TABLE: !Ref OrdersTable
            STAGE: dev
    Resources:
      OrdersTable:
        Type: AWS::DynamoDB::Table
        Properties:
          BillingMode: PAY_PER_REQUEST
          AttributeDefinitions:
            - {AttributeName: pk, AttributeType: S}
            - {AttributeName: sk, AttributeType: S}
            - {AttributeName: gsi1pk, AttributeType: S}
            - {AttributeName: gsi1sk, AttributeType: S}
          KeySchema:
            - {AttributeName: pk, KeyType: HASH}
            - {AttributeName: sk, KeyType: RANGE}
          GlobalSecondaryIndexes:
            - IndexName: gsi1
              KeySchema:
                - {AttributeName: gsi1pk, KeyType: HASH}
                - {AttributeName: gsi1sk, KeyType: RANGE}
              Projection: {ProjectionType: ALL}
          TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}
      SamFn:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/sam_fn/
          Handler: app.lambda_handler
          Environment: {Variables: {EXTRA: !Sub "${AWS::Region}-x"}}
          Events:
            New:
              Type: MSK
              Properties:
                Stream: !Ref Cluster
                Topics: [orders.new]
                StartingPosition: TRIM_HORIZON
                BatchSize: !Ref Batch
                MaximumBatchingWindowInSeconds: 1
                ConsumerGroupId: g-sam
                BisectBatchOnFunctionError: true
                MaximumRetryAttempts: 5
                FunctionResponseTypes: [ReportBatchItemFailures]
                DestinationConfig: {OnFailure: {Destination: !GetAtt Dlq.Arn}}
                ProvisionedPollerConfig: {MinimumPollers: 1, MaximumPollers: 4}
            Tick:
              Type: Schedule
              Properties: {Schedule: rate(15 minutes)}
      CfnFn:
        Type: AWS::Serverless::Function
        Properties: {CodeUri: functions/cfn_fn, Handler: pkg.app.run}
      CfnMapping:
        Type: AWS::Lambda::EventSourceMapping
        Properties:
          FunctionName: !GetAtt CfnFn.Arn
          EventSourceArn: !Ref Cluster
          Topics: [trades.executed]
          StartingPosition: LATEST
          BatchSize: 10
          AmazonManagedKafkaEventSourceConfig: {ConsumerGroupId: g-cfn}
          BisectBatchOnFunctionError: "false"
    """
)


@pytest.fixture()
def small(tmp_path):
    path = tmp_path / "template.yaml"
    path.write_text(SMALL_TEMPLATE)
    return tm.load_template(path)


def test_short_form_tags_become_long_form_dicts(small):
    fn = small["Resources"]["SamFn"]["Properties"]
    assert fn["Environment"]["Variables"]["EXTRA"] == {"Fn::Sub": "${AWS::Region}-x"}
    assert fn["Events"]["New"]["Properties"]["Stream"] == {"Ref": "Cluster"}
    assert fn["Events"]["New"]["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["Dlq", "Arn"]
    }


def test_sam_msk_event_is_read_with_parameters_resolved(small):
    fn = tm.functions(small)["SamFn"]
    (ev,) = fn.kafka_events
    assert fn.name == "sam_fn" and fn.handler_module == "app" and fn.handler_function == "lambda_handler"
    assert ev.topics == ("orders.new",)
    assert ev.batch_size == 250  # !Ref Batch -> Default
    assert ev.consumer_group_id == "g-sam"
    assert ev.bisect_batch_on_function_error is True and ev.maximum_retry_attempts == 5
    assert ev.reports_batch_item_failures
    assert ev.provisioned_poller_config == {"MinimumPollers": 1, "MaximumPollers": 4}
    assert ev.stream == "arn:aws:kafka:us-east-1:1:cluster/c/u"
    assert fn.schedules == {"Tick": "rate(15 minutes)"}
    assert fn.environment["ORDERS_TABLE"] == {"Ref": "OrdersTable"} and fn.environment["STAGE"] == "dev"


def test_parameter_overrides_win_over_defaults(small):
    (ev,) = tm.functions(small, {"Batch": 7})["SamFn"].kafka_events
    assert ev.batch_size == 7


def test_event_source_mapping_resource_is_read_as_the_functions_event(small):
    fn = tm.functions(small)["CfnFn"]
    (ev,) = fn.kafka_events
    assert ev.name == "CfnMapping" and ev.function_id == "CfnFn"
    assert ev.topics == ("trades.executed",) and ev.starting_position == "LATEST"
    assert ev.consumer_group_id == "g-cfn" and ev.bisect_batch_on_function_error is False
    assert not ev.reports_batch_item_failures
    assert fn.handler_file("/root").as_posix() == "/root/functions/cfn_fn/pkg/app.py"
    assert [e.name for e in tm.kafka_event_sources(small)] == ["New", "CfnMapping"]


def test_tables_and_create_table_kwargs(small):
    table = tm.tables(small)["OrdersTable"]
    assert table.index_names == ("gsi1",) and table.ttl_attribute == "expires_at"
    kwargs = tm.create_table_kwargs(table, "orders-test")
    assert kwargs["TableName"] == "orders-test" and kwargs["BillingMode"] == "PAY_PER_REQUEST"
    assert kwargs["KeySchema"][0] == {"AttributeName": "pk", "KeyType": "HASH"}
    assert tm.ttl_kwargs(table, "orders-test")["TimeToLiveSpecification"]["AttributeName"] == "expires_at"
    assert tm.table_env_vars(small) == {"ORDERS_TABLE": "OrdersTable"}


def test_create_table_kwargs_are_accepted_by_dynamodb(small, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    table = tm.tables(small)["OrdersTable"]
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**tm.create_table_kwargs(table, "orders-test"))
        client.update_time_to_live(**tm.ttl_kwargs(table, "orders-test"))
        described = client.describe_table(TableName="orders-test")["Table"]
        assert described["GlobalSecondaryIndexes"][0]["IndexName"] == "gsi1"
        ttl = client.describe_time_to_live(TableName="orders-test")["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "expires_at"


def test_the_real_template_has_the_pipeline_tables_and_functions():
    tpl = tm.load_template()
    assert {
        "OrdersTable",
        "TradesTable",
        "PositionsTable",
        "ObligationsTable",
        "StateTable",
        "ReferenceTable",
        "MarginTable",
    } <= set(tm.tables(tpl))
    fns = tm.functions(tpl)
    assert {"ValidateOrdersFunction", "MatchOrdersFunction", "ClearTradesFunction"} <= set(fns)
    assert "orders.new" in fns["ValidateOrdersFunction"].topics
    assert tm.table_env_vars(tpl)["STATE_TABLE"] == "StateTable"
    assert tm.tables(tpl)["StateTable"].ttl_attribute == "expires_at"


def test_conditions_resolve_if_and_drop_no_value(small):
    tpl = {
        "Parameters": {"Stage": {"Default": "dev"}, "Ids": {"Default": ""}},
        "Conditions": {
            "IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
            "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
            "HasIds": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "Ids"}]}, ""]}]},
        },
    }
    assert tm.conditions(tpl) == {"IsProd": False, "NotProd": True, "HasIds": False}
    assert tm.conditions(tpl, {"Stage": "prod"})["IsProd"] is True
    value = {
        "Level": {"Fn::If": ["IsProd", "INFO", "DEBUG"]},
        "Opt": {"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]},
    }
    assert tm.resolve(value, tm.parameter_values(tpl), tm.conditions(tpl)) == {"Level": "DEBUG"}


def test_real_template_resolves_to_what_a_dev_deploy_gets():
    fns = tm.functions(tm.load_template())
    match = fns["MatchOrdersFunction"]
    assert match.kafka_events[0].consumer_group_id == "clearing-dev-match-orders"
    assert match.environment["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    assert match.environment["KAFKA_SASL_MECHANISM"] == "AWS_MSK_IAM"
    prod = tm.functions(tm.load_template(), {"Stage": "prod", "KafkaAuthMode": "SCRAM"})[
        "MatchOrdersFunction"
    ]
    assert prod.environment["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert prod.environment["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert prod.kafka_events[0].consumer_group_id == "clearing-prod-match-orders"
