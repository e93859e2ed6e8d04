"""template.yaml is the deployable application: lint-clean, complete, least-privilege, consistent with the code.

The checks that shell out (cfn-lint, sam validate) need no AWS credentials; region us-east-1.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
from clearing.topics import TOPICS
from clearing_tools import template_model as tm

from tests.conftest import venv_tool

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

STREAM_FUNCTIONS = {
    "ValidateOrdersFunction": "validate_orders",
    "MatchOrdersFunction": "match_orders",
    "ClearTradesFunction": "clear_trades",
    "ExchangeGatewayFunction": "exchange_gateway",
}
SCHEDULED_FUNCTIONS = {"MarginRunFunction": "margin_run", "SettleEodFunction": "settle_eod"}
TABLES = (
    "OrdersTable",
    "TradesTable",
    "PositionsTable",
    "ObligationsTable",
    "StateTable",
    "ReferenceTable",
    "MarginTable",
)

# Actions that may stand on Resource "*": they have no resource-level permissions in IAM.
ACTIONS_WITHOUT_RESOURCES = {
    "ecr:getauthorizationtoken",
    "xray:puttracesegments",
    "xray:puttelemetryrecords",
    "ec2:createnetworkinterface",
    "ec2:deletenetworkinterface",
    "ec2:describenetworkinterfaces",
}
DATA_PLANE_PREFIXES = (
    "dynamodb:",
    "kafka-cluster:",
    "s3:",
    "sqs:",
    "sns:",
    "secretsmanager:",
    "kms:",
    "kafka:",
)


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(SAM_CLI_TELEMETRY="0", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    return env


@pytest.fixture(scope="module")
def template() -> dict:
    return tm.load_template(TEMPLATE)


@pytest.fixture(scope="module")
def functions(template):
    return tm.functions(template)


@pytest.fixture(scope="module")
def translated(template) -> dict:
    """The template after the SAM transform (generated roles and event-source mappings included)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    doc = copy.deepcopy(template)
    for res in doc["Resources"].values():
        props = res.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):  # sam validate does the same: local paths become S3 URIs
            if isinstance(props.get(key), str):
                props[key] = "s3://artifacts/" + props[key].strip("/")
    old = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    try:
        return transform(doc, {}, NoManagedPolicies())
    finally:
        if old is None:
            os.environ.pop("AWS_DEFAULT_REGION")
        else:
            os.environ["AWS_DEFAULT_REGION"] = old


# ----------------------------------------------------------------------------- linters


def test_cfn_lint_is_clean_with_the_serverless_transform():
    cfn_lint = venv_tool("cfn-lint")
    result = subprocess.run(
        [cfn_lint, str(TEMPLATE)], capture_output=True, text=True, env=_tool_env(), timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_is_clean():
    sam = venv_tool("sam")
    result = subprocess.run(
        [sam, "validate", "--lint", "--region", "us-east-1", "--template-file", str(TEMPLATE)],
        capture_output=True,
        text=True,
        env=_tool_env(),
        cwd=ROOT,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


# ----------------------------------------------------------------------------- functions and handlers


def _handler_params():
    fns = tm.functions(tm.load_template(TEMPLATE))
    params = []
    for logical_id, fn in fns.items():
        path = fn.handler_file(ROOT)
        mark = pytest.mark.xfail(
            not path.exists(),
            reason=f"{path.relative_to(ROOT)} not written yet (another helper's work)",
            strict=False,
        )
        params.append(pytest.param(logical_id, marks=mark, id=logical_id))
    return params


@pytest.mark.parametrize("logical_id", _handler_params())
def test_every_handler_resolves_to_a_real_module_and_function(logical_id, functions, monkeypatch):
    fn = functions[logical_id]
    path = fn.handler_file(ROOT)
    assert path.is_file(), f"{logical_id}: handler file {path} is missing"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    top_level |= {
        t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    assert fn.handler_function in top_level, f"{path} defines no {fn.handler_function}"

    # Importing it must work with the environment the template gives (resource names stubbed).
    for name, value in fn.environment.items():
        # Resource references (table names, the NLB DNS name) get stand-ins; literals are used as they are.
        monkeypatch.setenv(name, str(value) if isinstance(value, str | int) else f"test-{name.lower()}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ClearingPipeline")
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location(f"handler_{fn.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, fn.handler_function))


def test_the_pipeline_functions_exist_with_their_folders(functions):
    expected = {**STREAM_FUNCTIONS, **SCHEDULED_FUNCTIONS}
    assert set(expected) <= set(functions)
    for logical_id, folder in expected.items():
        fn = functions[logical_id]
        assert fn.code_uri.rstrip("/") == f"functions/{folder}" and fn.handler == "app.lambda_handler"
        assert fn.environment["POWERTOOLS_SERVICE_NAME"] == folder


def test_every_topic_in_an_msk_event_is_a_pipeline_topic(functions):
    topics = {t for fn in functions.values() for ev in fn.kafka_events for t in ev.topics}
    assert topics, "no MSK events found"
    assert topics <= set(TOPICS), f"unknown topics: {topics - set(TOPICS)}"


def test_stream_functions_consume_the_designed_topics(functions):
    consumed = {lid: set(functions[lid].topics) for lid in STREAM_FUNCTIONS}
    assert consumed == {
        # orders.events and exchange.executions: the exposure releases (INTERNAL, exchange-routed)
        "ValidateOrdersFunction": {"orders.new", "orders.events", "exchange.executions"},
        "MatchOrdersFunction": {"orders.accepted"},
        "ClearTradesFunction": {"trades.executed"},
        "ExchangeGatewayFunction": {"trades.executed", "orders.exchange"},
    }


def test_every_kafka_mapping_is_ordered_bounded_and_has_an_on_failure_destination(functions):
    groups = []
    for lid in STREAM_FUNCTIONS:
        for ev in functions[lid].kafka_events:
            where = f"{lid}.{ev.name}"
            assert ev.starting_position == "TRIM_HORIZON", where  # never skip orders on a new mapping
            assert ev.batch_size and ev.batch_size >= 100, where
            assert ev.maximum_batching_window_in_seconds is not None, where
            assert ev.bisect_batch_on_function_error, where
            assert ev.maximum_retry_attempts is not None and ev.maximum_retry_attempts >= 0, where
            assert ev.reports_batch_item_failures, where
            assert ev.destination_config["OnFailure"]["Destination"] == {
                "Fn::GetAtt": ["StreamOnFailureQueue", "Arn"]
            }
            pollers = ev.provisioned_poller_config
            assert pollers and {"MinimumPollers", "MaximumPollers"} <= set(pollers), where
            assert isinstance(ev.consumer_group_id, str) and ev.consumer_group_id.startswith(
                "clearing-dev-"
            ), where
            groups.append(ev.consumer_group_id)
    assert len(groups) == len(set(groups)), "each mapping needs its own consumer group"


def test_scheduled_jobs_run_on_eventbridge_schedules_one_at_a_time(functions):
    for lid in SCHEDULED_FUNCTIONS:
        fn = functions[lid]
        assert fn.schedules and all(str(s).startswith(("cron(", "rate(")) for s in fn.schedules.values()), lid
        assert fn.properties["ReservedConcurrentExecutions"] == 1, lid
    (margin,) = functions["MarginRunFunction"].schedules.values()
    assert "0/15" in margin  # every 15 minutes in market hours
    assert "SETTLEMENT_BUCKET" in functions["SettleEodFunction"].environment


def test_gateway_reaches_the_proxy_through_the_nlb(functions):
    env = functions["ExchangeGatewayFunction"].environment
    assert env["PROXY_HOST"] == {"Fn::GetAtt": ["ProxyLoadBalancer", "DNSName"]}
    assert env["PROXY_PORT"] == 9443 and env["PROXY_TLS"] == "true"


def test_globals_runtime_architecture_tracing_and_environment(template):
    glob = template["Globals"]["Function"]
    assert (
        glob["Runtime"] == "python3.11" and glob["Architectures"] == ["arm64"] and glob["Tracing"] == "Active"
    )
    env = glob["Environment"]["Variables"]
    for name in (
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
        "STAGE",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_SECRET_ARN",
        "ORDERS_TABLE",
        "TRADES_TABLE",
        "POSITIONS_TABLE",
        "OBLIGATIONS_TABLE",
        "STATE_TABLE",
        "REFERENCE_TABLE",
        "MARGIN_TABLE",
    ):
        assert name in env, name
    assert "VpcConfig" in glob
    layer = template["Resources"]["ClearingCoreLayer"]
    assert layer["Metadata"]["BuildMethod"] == "python3.11"
    assert (ROOT / layer["Properties"]["ContentUri"] / "requirements.txt").is_file()


# ----------------------------------------------------------------------------- tables


def test_tables_are_on_demand_encrypted_recoverable_and_protected_in_prod(template):
    resources = template["Resources"]
    for logical_id in TABLES:
        props = resources[logical_id]["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", logical_id
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, logical_id
        assert (
            props["SSESpecification"]["SSEType"] == "KMS" and props["SSESpecification"]["KMSMasterKeyId"]
        ), logical_id
        assert props["DeletionProtectionEnabled"] == {"Fn::If": ["IsProd", True, False]}, logical_id
        assert resources[logical_id]["DeletionPolicy"] == "Retain", logical_id
    assert tm.tables(template)["StateTable"].ttl_attribute == "expires_at"


def test_tables_the_code_uses_are_defined_with_their_keys_and_indexes(template):
    tables = tm.tables(template)
    assert set(tm.table_env_vars(template)) == {
        "ORDERS_TABLE",
        "TRADES_TABLE",
        "POSITIONS_TABLE",
        "OBLIGATIONS_TABLE",
        "STATE_TABLE",
        "REFERENCE_TABLE",
        "MARGIN_TABLE",
    }
    for table in tables.values():
        assert [k["AttributeName"] for k in table.key_schema] == ["pk", "sk"]
    for logical_id in ("OrdersTable", "TradesTable", "ObligationsTable"):
        assert tables[logical_id].index_names == ("gsi1",)


def test_every_template_table_can_be_created_locally_from_its_definition(template, monkeypatch):
    import boto3
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for logical_id, table in tm.tables(template).items():
            client.create_table(**tm.create_table_kwargs(table, f"test-{logical_id}"))
            if ttl := tm.ttl_kwargs(table, f"test-{logical_id}"):
                client.update_time_to_live(**ttl)
        assert len(client.list_tables()["TableNames"]) == len(TABLES)


CREATE_TABLE = re.compile(r"\.create_table\(")


def test_code_and_tests_create_tables_only_from_template_definitions():
    """Tables made in moto must match what the template deploys, so they come from template_model."""
    offenders = []
    for folder in (
        ROOT / "tests",
        ROOT / "layers" / "clearing_core" / "clearing",
        ROOT / "proxy",
        ROOT / "tools",
    ):
        for path in folder.rglob("*.py"):
            text = path.read_text(encoding="utf-8", errors="replace")
            if (
                CREATE_TABLE.search(text)
                and "create_table_kwargs" not in text
                and path.name != "template_model.py"
                # the local runtime's run-identity sentinel: a local-only table, never deployed
                and path.relative_to(ROOT).as_posix() != "tools/clearing_tools/local/identity.py"
            ):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"create_table without template_model.create_table_kwargs in: {offenders}"


# ----------------------------------------------------------------------------- IAM


def _statements(translated: dict):
    """(resource id, statement) for every identity policy statement, after the SAM transform."""
    for logical_id, res in translated["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs = [props["PolicyDocument"]]
        else:
            continue
        for doc in docs:
            for stmt in doc.get("Statement", []):
                if isinstance(stmt, dict) and set(stmt) == {"Fn::If"}:
                    stmt = stmt["Fn::If"][1]  # the statement the condition switches on
                yield logical_id, stmt


def _as_list(value):
    return value if isinstance(value, list) else [value]


def test_no_iam_statement_grants_data_plane_actions_on_star(translated):
    offenders = []
    for logical_id, stmt in _statements(translated):
        if stmt.get("Effect") != "Allow":
            continue
        resources = _as_list(stmt.get("Resource"))
        actions = [a.lower() for a in _as_list(stmt.get("Action"))]
        if any(r == "*" or (isinstance(r, str) and r.endswith(":*")) for r in resources):
            bad = [
                a for a in actions if a not in ACTIONS_WITHOUT_RESOURCES or a.startswith(DATA_PLANE_PREFIXES)
            ]
            if bad:
                offenders.append((logical_id, stmt.get("Sid"), bad))
        assert not any(a.endswith(":*") or a == "*" for a in actions), (logical_id, actions)
    assert not offenders, offenders


def test_function_roles_name_their_cluster_topics_groups_and_tables(translated):
    roles = {lid: res for lid, res in translated["Resources"].items() if res["Type"] == "AWS::IAM::Role"}
    for lid in STREAM_FUNCTIONS:
        text = str(roles[f"{lid}Role"]["Properties"]["Policies"])
        assert "kafka-cluster:ReadData" in text and ":topic/${C}/" in text and ":group/${C}/" in text, lid
        assert "dynamodb:" in text and "Table" in text, lid
    # Only the stage that owns a table writes it.
    clear_text = str(roles["ClearTradesFunctionRole"]["Properties"]["Policies"])
    match_text = str(roles["MatchOrdersFunctionRole"]["Properties"]["Policies"])
    assert "PositionsTable" in clear_text and "PositionsTable" not in match_text
    # Each stage may produce to its dead-letter topic (validate_orders: unreadable orders.events).
    validate_text = str(roles["ValidateOrdersFunctionRole"]["Properties"]["Policies"])
    assert "topic/${C}/orders.deadletter" in match_text and "topic/${C}/trades.deadletter" in clear_text
    assert "topic/${C}/orders.deadletter" in validate_text


def test_kafka_mappings_after_transform_carry_retries_pollers_and_destinations(translated):
    mappings = [
        r["Properties"]
        for r in translated["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    assert len(mappings) == 7
    for props in mappings:
        assert props["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
        assert props["ProvisionedPollerConfig"] and props["DestinationConfig"]["OnFailure"]["Destination"]
        assert props["BisectBatchOnFunctionError"] is True and props["FunctionResponseTypes"] == [
            "ReportBatchItemFailures"
        ]


# ----------------------------------------------------------------------------- exchange path and operations


def test_exchange_path_is_private_tls_and_single_session(template):
    res = template["Resources"]
    assert res["ProxyLoadBalancer"]["Properties"]["Scheme"] == "internal"
    assert res["ProxyTlsListener"]["Properties"]["Protocol"] == "TLS"
    tg = res["ProxyTargetGroup"]["Properties"]
    assert tg["HealthCheckProtocol"] == "HTTP" and tg["HealthCheckPort"] == {"Ref": "ProxyHealthPort"}
    svc = res["ProxyService"]["Properties"]
    assert svc["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert svc["DeploymentConfiguration"]["MaximumPercent"] == 100  # never two FIX sessions at once
    container = res["ProxyTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert {s["Name"] for s in container["Secrets"]} == {"FIX_USERNAME", "FIX_PASSWORD"}
    # NLB accepts only the Lambda group; the proxy accepts only the NLB group.
    nlb_in = res["NlbSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [r["SourceSecurityGroupId"] for r in nlb_in] == [{"Ref": "LambdaSecurityGroup"}]
    proxy_in = res["ProxySecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert all(r["SourceSecurityGroupId"] == {"Ref": "NlbSecurityGroup"} for r in proxy_in)
    assert res["ProxyRepository"]["Type"] == "AWS::ECR::Repository"


def test_alarms_cover_lag_errors_throttles_failures_margin_calls_and_rejections(template):
    alarms = {
        lid: r["Properties"]
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    metrics = set()
    for props in alarms.values():
        metrics.add(props.get("MetricName"))
        for m in props.get("Metrics", []):
            metrics.add(m.get("MetricStat", {}).get("Metric", {}).get("MetricName"))
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert {
        "OffsetLag",
        "Errors",
        "Throttles",
        "ApproximateNumberOfMessagesVisible",
        "MarginCalls",
        "OrdersRejected",
    } <= metrics
    lag_functions = {
        p["Dimensions"][0]["Value"]["Ref"] for p in alarms.values() if p.get("MetricName") == "OffsetLag"
    }
    assert lag_functions == set(STREAM_FUNCTIONS)
    assert "OperationsDashboard" in template["Resources"]


def test_outputs_give_the_operator_every_endpoint(template):
    outputs = set(template["Outputs"])
    assert {f"{t}Name" for t in TABLES} <= outputs
    assert {
        "ProxyRepositoryUri",
        "ProxyLoadBalancerDns",
        "StreamOnFailureQueueUrl",
        "SettlementBucketName",
        "FixCredentialsSecretArn",
        "DashboardUrl",
        "MskClusterArn",
    } <= outputs


def test_samconfig_has_default_dev_and_prod():
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert {"default", "dev", "prod"} <= set(config)
    params = tm.parameter_values(tm.load_template(TEMPLATE))
    for env in ("dev", "prod"):
        overrides = config[env]["deploy"]["parameters"]["parameter_overrides"]
        names = {o.split("=", 1)[0] for o in overrides}
        assert names <= set(params), names - set(params)
        assert f"Stage={env}" in overrides


def test_proxy_container_environment_matches_the_proxy_settings(template):
    """Every variable the task definition sets is one the proxy reads (clearing_fix.proxy.ProxySettings)."""
    proxy = pytest.importorskip("clearing_fix.proxy")
    fields = {name.upper() for name in proxy.ProxySettings.model_fields}
    container = template["Resources"]["ProxyTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    names = {e["Name"] for e in container["Environment"]} | {s["Name"] for s in container["Secrets"]}
    kafka_auth = {
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_SECRET_ARN",
    }  # pipeline-wide names
    assert names - {"STAGE"} - kafka_auth <= fields, (names - {"STAGE"} - kafka_auth) - fields
    assert {"GATEWAY_PORT", "HEALTH_PORT", "FIX_STORE_DIR"} <= names
    mounts = {m["ContainerPath"] for m in container["MountPoints"]}
    assert "/var/lib/clearing-fix" in mounts  # the session store survives task replacement (EFS)
