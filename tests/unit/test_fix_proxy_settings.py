"""Proxy configuration: environment, Secrets Manager password, composition root."""

from __future__ import annotations

import json

import boto3
from clearing_fix import proxy as proxy_module
from clearing_fix.proxy import ProxySettings, build_proxy, resolve_password
from clearing_fix.publisher import KafkaExecutionPublisher, LogExecutionPublisher
from moto import mock_aws


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FIX_SENDER_COMP_ID", "CCP1")
    monkeypatch.setenv("FIX_HEARTBEAT_INTERVAL", "5")
    monkeypatch.setenv("FIX_STORE_DIR", str(tmp_path))
    monkeypatch.setenv("FIX_PASSWORD", "local-secret")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")

    settings = ProxySettings()
    proxy = build_proxy(settings)

    assert proxy.session.config.sender_comp_id == "CCP1"
    assert proxy.session.config.heartbeat_interval == 5
    assert proxy.session.config.password == "local-secret"
    assert isinstance(proxy.publisher, KafkaExecutionPublisher)
    assert (tmp_path / "CCP1-EXCHANGE" / "seqnums").exists()
    assert "local-secret" not in repr(settings)


def test_without_kafka_executions_are_only_logged(monkeypatch, tmp_path):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("FIX_STORE_DIR", str(tmp_path))

    assert isinstance(build_proxy(ProxySettings()).publisher, LogExecutionPublisher)


@mock_aws
def test_password_from_secrets_manager_wins(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("secretsmanager", region_name="us-east-1")
    plain = client.create_secret(Name="fix/plain", SecretString="from-secret")["ARN"]
    wrapped = client.create_secret(Name="fix/json", SecretString=json.dumps({"password": "from-json"}))["ARN"]

    assert resolve_password(ProxySettings(fix_password="env", fix_password_secret_arn=plain)) == "from-secret"
    assert resolve_password(ProxySettings(fix_password_secret_arn=wrapped)) == "from-json"
    assert resolve_password(ProxySettings(fix_password="env")) == "env"


def test_invalid_configuration_exits_2_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.setenv("FIX_HEARTBEAT_INTERVAL", "often")

    assert proxy_module.main() == 2
    assert "FIX_HEARTBEAT_INTERVAL" in capsys.readouterr().out.upper()
