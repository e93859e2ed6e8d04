"""Shared fixtures: the local Kafka broker (Tansu), moto_server and the template's tables.

All are session-scoped and start lazily, only when a test asks for them:
- `kafka_broker` -> "127.0.0.1:PORT" (Tansu, memory storage, killed after the session);
- `moto_server` -> "http://127.0.0.1:PORT";
- `dynamodb_tables` -> {logical_id: table_name}, every table of template.yaml under a unique prefix;
- `free_port()` -> an unused TCP port on 127.0.0.1.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clearing_tools.local.processes import free_port as _free_port
from clearing_tools.local.processes import stop_pid

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


def venv_tool(name: str) -> str:
    """A console script of the venv running the tests (sam, cfn-lint, clearing): never one found on PATH,
    which may belong to another Python. Missing is a failure: the lock installs every tool."""
    import sys

    tool = Path(sys.executable).parent / name
    assert tool.exists(), (
        f"{name} is not installed in {tool.parent}: install from the lock (make install-dev)"
    )
    return str(tool)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    return _free_port()


@pytest.fixture(scope="session")
def session_state_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="clearing-test-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def kafka_broker(session_state_dir: Path) -> Iterator[str]:
    """A Tansu broker on a free loopback port for the whole session: yields its bootstrap address."""
    from clearing_tools.local.broker import start_broker

    port = free_port()
    proc = start_broker("127.0.0.1", port, session_state_dir / "logs" / "broker.log", detached=False)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_pid(proc.pid)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server(session_state_dir: Path) -> Iterator[str]:
    """moto_server on a free loopback port for the whole session: yields its endpoint URL."""
    from clearing_tools.local.dynamodb import start_moto

    port = free_port()
    proc = start_moto("127.0.0.1", port, session_state_dir / "logs" / "moto.log", detached=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_pid(proc.pid)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def dynamodb_tables(moto_server: str) -> dict[str, str]:
    """Every table of template.yaml created in moto under a unique prefix: {logical_id: table_name}."""
    from clearing_tools.local.dynamodb import create_tables, dynamodb_resource

    prefix = f"test-{uuid.uuid4().hex[:6]}-"
    return create_tables(dynamodb_resource(moto_server), prefix)


@pytest.fixture(autouse=True)
def every_published_message_follows_its_topic_contract(monkeypatch):
    """Every message any test publishes through the in-memory publishers (the core's, the in-memory
    log of the bench harness and the replay, and the FIX proxy's) is parsed with its topic's pydantic adapter (clearing.messages): a producer that drifts
    from the committed schema fails the test that made it produce."""
    from clearing.adapters.memory import InMemoryPublisher
    from clearing.messages import EXCHANGE_MESSAGE, TOPIC_MESSAGES
    from clearing_fix.publisher import InMemoryExecutionPublisher
    from clearing_tools.bench.harness import InMemoryLog

    def checked(publish):
        def checked_publish(self, messages):
            for m in messages:
                adapter = TOPIC_MESSAGES.get(m.topic)
                if adapter is not None:
                    adapter.validate_json(m.value)
            return publish(self, messages)

        return checked_publish

    submit = InMemoryExecutionPublisher.submit

    def checked_submit(self, key, value):
        EXCHANGE_MESSAGE.validate_python(value)
        return submit(self, key, value)

    monkeypatch.setattr(InMemoryPublisher, "publish", checked(InMemoryPublisher.publish))
    monkeypatch.setattr(InMemoryLog, "publish", checked(InMemoryLog.publish))
    monkeypatch.setattr(InMemoryExecutionPublisher, "submit", checked_submit)
