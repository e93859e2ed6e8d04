"""`clearing up/status/down/invoke` and the LocalRuntime API on loopback ports (no Docker, no AWS)."""

from __future__ import annotations

import base64
import json
import socket

import pytest
from clearing.domain.refdata import ReferenceData, bundled_reference_data_raw
from clearing.topics import TOPICS
from clearing_tools.cli.main import main
from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.dynamodb import dynamodb_resource, read_reference_data
from clearing_tools.local.invoke import find_function
from clearing_tools.local.processes import RuntimeStartError, pid_alive, read_pid
from clearing_tools.local.runtime import LocalRuntime
from kafka import KafkaConsumer

from tests.conftest import free_port
from tests.integration.esm_support import APP_DIR, TEMPLATE

pytestmark = [pytest.mark.integration]


def test_up_creates_topics_tables_and_reference_data_and_down_stops_its_processes(tmp_path, capsys):
    state = tmp_path / "state"
    broker_port, moto_port, console_port = free_port(), free_port(), free_port()
    flags = ["--state-dir", str(state)]
    # When `clearing up` starts broker, moto and the console (mappings off: this test is about the components)
    assert main(["up", *flags, "--broker-port", str(broker_port), "--moto-port", str(moto_port), "--no-esm",
                 "--table-prefix", "rt-", "--partitions", "2", "--console-port", str(console_port)]) == 0  # fmt: skip
    pids = {name: read_pid(state / "pids" / f"{name}.pid") for name in ("broker", "moto", "console")}
    try:
        assert all(pid and pid_alive(pid) for pid in pids.values())
        # Then every topic exists with the configured partitions
        consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{broker_port}")
        for topic in TOPICS:
            assert consumer.partitions_for_topic(topic) == {0, 1}, topic
        consumer.close()
        # and the template's tables exist, the reference data reads back as the bundled file
        dynamodb = dynamodb_resource(f"http://127.0.0.1:{moto_port}")
        names = set(dynamodb.meta.client.list_tables()["TableNames"])
        assert {"rt-OrdersTable", "rt-ReferenceTable", "rt-StateTable"} <= names
        raw = read_reference_data(dynamodb.Table("rt-ReferenceTable"))
        assert ReferenceData.from_dict(raw) == ReferenceData.from_dict(bundled_reference_data_raw())
        # and status reports both components running, as JSON too
        capsys.readouterr()
        assert main(["status", *flags, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        states = {c["name"]: (c["state"], c["address"]) for c in status["components"]}
        assert states["broker"] == ("running", f"127.0.0.1:{broker_port}")
        assert states["moto"] == ("running", f"127.0.0.1:{moto_port}")
        assert states["console"] == ("running", f"127.0.0.1:{console_port}")
    finally:
        assert main(["down", *flags]) == 0
    # Then down stopped exactly the recorded pids
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not (state / "pids" / "broker.pid").exists()


def test_up_names_the_port_that_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runtime = LocalRuntime(RuntimeConfig(state_dir=tmp_path, broker_port=port, start_esm=False))
        with pytest.raises(RuntimeStartError, match=f"127.0.0.1:{port}.*broker"):
            runtime.start()


def test_a_missing_binary_is_named(tmp_path):
    from clearing_tools.local.components import ProcessComponent

    component = ProcessComponent(
        "fix-proxy", lambda: ["/nonexistent/fix-proxy"], RuntimeConfig(state_dir=tmp_path)
    )
    with pytest.raises(RuntimeStartError, match="binary not found: /nonexistent/fix-proxy"):
        component.start()


def test_env_for_function_points_the_handler_at_the_local_endpoints(tmp_path):
    config = RuntimeConfig(state_dir=tmp_path, broker_port=1111, moto_port=2222, table_prefix="x-")
    env = LocalRuntime(config).env_for_function("ValidateOrdersFunction")
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:1111"
    assert env["DYNAMODB_ENDPOINT_URL"] == "http://127.0.0.1:2222"
    assert env["ORDERS_TABLE"] == "x-OrdersTable" and env["REFERENCE_TABLE"] == "x-ReferenceTable"
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true" and env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert env["POWERTOOLS_SERVICE_NAME"] == "validate_orders"
    assert all(isinstance(v, str) and not v.startswith("{") for v in env.values()), env
    assert find_function(config, "validate_orders").logical_id == "ValidateOrdersFunction"


def test_invoke_runs_the_handler_in_process_with_an_event_file(tmp_path, capsys, monkeypatch):
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE.format(code_uri=str(APP_DIR), batch_size=10, retries=0, bisect="false"))
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv("CLEARING_TEMPLATE_PARAMETERS", json.dumps({"ResultsFile": str(results)}))
    value = base64.b64encode(json.dumps({"n": 7}).encode()).decode()
    event = {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/test/1",
        "bootstrapServers": "127.0.0.1:9092",
        "records": {"esm.test-0": [{"topic": "esm.test", "partition": 0, "offset": 3, "timestamp": 1,
                                    "timestampType": "CREATE_TIME", "value": value, "headers": []}]},
    }  # fmt: skip
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))
    capsys.readouterr()
    code = main(["invoke", "EchoFunction", "-e", str(event_file), "--template", str(template),
                 "--state-dir", str(tmp_path / "state")])  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"batchItemFailures": []}
    assert json.loads(results.read_text())["n"] == 7


def test_invoke_leaves_the_callers_environment_as_it_was(tmp_path, capsys, monkeypatch):
    import os

    before = dict(os.environ)
    test_invoke_runs_the_handler_in_process_with_an_event_file(tmp_path, capsys, monkeypatch)
    monkeypatch.undo()
    assert dict(os.environ) == before
    assert "DYNAMODB_ENDPOINT_URL" not in os.environ or before.get("DYNAMODB_ENDPOINT_URL")


def test_invoke_never_reads_or_advances_the_running_stacks_checkpoints(
    tmp_path, capsys, moto_server, dynamodb_tables
):
    from clearing_tools.local.dynamodb import seed_reference_data
    from clearing_tools.local.processes import free_port

    # Given a "running stack": its tables (reference data seeded) in moto, runtime.json in the state dir
    prefix = dynamodb_tables["OrdersTable"].removesuffix("OrdersTable")
    dynamodb = dynamodb_resource(moto_server)
    seed_reference_data(dynamodb.Table(dynamodb_tables["ReferenceTable"]))
    state = tmp_path / "state"
    state.mkdir()
    config = RuntimeConfig(
        state_dir=state, moto_port=int(moto_server.rsplit(":", 1)[1]), broker_port=free_port(),
        table_prefix=prefix, kafka_bootstrap_servers=None, dynamodb_endpoint_url=None,
    )  # fmt: skip
    (state / "runtime.json").write_text(config.model_dump_json())
    capsys.readouterr()
    # When a handler is invoked with the sample event (offsets 0-4 of orders.new-0)
    effects = tmp_path / "effects.json"
    code = main(["invoke", "validate_orders", "-e", "events/validate_orders_valid.json", "--state-dir", str(state),
                 "--effects", str(effects)])  # fmt: skip
    # Then it ran, and says what it did: items written and records published, in its own namespace
    assert code == 0
    err = capsys.readouterr().err
    assert "isolated" in err and "orders.accepted key=ACME" in err
    done = json.loads(effects.read_text())
    assert len(done["published"]) == 5 and done["items"]["state"]
    # and the stack's tables hold no checkpoint, no order: live orders at offsets 0-4 are not skipped
    for logical in ("StateTable", "OrdersTable"):
        assert dynamodb.Table(dynamodb_tables[logical]).scan()["Items"] == [], logical


def test_invoke_of_the_exchange_gateway_needs_consent(tmp_path, capsys):
    capsys.readouterr()
    code = main(["invoke", "exchange_gateway", "-e", "events/exchange_gateway_trades.json",
                 "--state-dir", str(tmp_path / "state")])  # fmt: skip
    assert code == 2
    assert "--send-to-exchange" in capsys.readouterr().err


def test_handlers_get_bounded_dynamodb_timeouts_locally(tmp_path, monkeypatch):
    from clearing.adapters.dynamodb import dynamodb_client

    env = LocalRuntime(RuntimeConfig(state_dir=tmp_path)).env_for_function("ValidateOrdersFunction")
    assert (env["DYNAMODB_CONNECT_TIMEOUT"], env["DYNAMODB_READ_TIMEOUT"], env["DYNAMODB_MAX_ATTEMPTS"]) == (
        "2",
        "20",
        "2",
    )
    for key in ("DYNAMODB_CONNECT_TIMEOUT", "DYNAMODB_READ_TIMEOUT", "DYNAMODB_MAX_ATTEMPTS"):
        monkeypatch.setenv(key, env[key])
    config = dynamodb_client(
        "http://127.0.0.1:1", aws_access_key_id="x", aws_secret_access_key="x"
    ).meta.config
    assert (config.connect_timeout, config.read_timeout, config.retries["total_max_attempts"]) == (2, 20, 2)
