"""Configuration of each function: one pydantic-settings model, validated at cold start.

Handlers never read os.environ themselves; the composition root (clearing.bootstrap) builds these
models once per container and turns a validation failure into a ConfigurationError that names the
missing or bad variable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from clearing.domain.orders import SentAtWindow


class ConfigurationError(RuntimeError):
    """The function's environment is missing or has a bad variable (message names it)."""


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = Field(min_length=1)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["AWS_MSK_IAM", "SCRAM-SHA-512", "SCRAM-SHA-256"] | None = None
    kafka_sasl_secret_arn: str | None = None  # SCRAM username/password (JSON) in Secrets Manager
    kafka_flush_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    aws_region: str = Field(default="us-east-1", validation_alias="AWS_REGION")


class TableSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    dynamodb_endpoint_url: str | None = None  # moto_server locally; unset in AWS
    orders_table: str = Field(min_length=3)
    trades_table: str = Field(min_length=3)
    positions_table: str = Field(min_length=3)
    obligations_table: str = Field(min_length=3)
    state_table: str = Field(min_length=3)
    reference_table: str = Field(min_length=3)
    margin_table: str = Field(min_length=3)
    aws_region: str = Field(default="us-east-1", validation_alias="AWS_REGION")

    def table_names(self) -> dict[str, str]:
        return {
            "orders": self.orders_table,
            "trades": self.trades_table,
            "positions": self.positions_table,
            "obligations": self.obligations_table,
            "state": self.state_table,
            "reference": self.reference_table,
            "margin": self.margin_table,
        }


class SentAtSettings(BaseSettings):
    """validate_orders' plausibility window for sent_at, against the Kafka record's timestamp.

    24 h back: an OMS that stores and forwards orders through a broker outage still gets them
    decided (staleness as a trading policy is another matter), while a sent_at from another day
    or era (a broken clock, a corrupted or replayed file) is refused. 5 min ahead: hosts synchronised
    by NTP differ by milliseconds; minutes ahead means a broken clock, and an order must not carry a
    trade time (and trade date) that has not happened yet."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    sent_at_max_age_seconds: float = Field(default=24 * 3600.0, ge=0)
    sent_at_max_lead_seconds: float = Field(default=300.0, ge=0)

    def window(self) -> SentAtWindow:
        from datetime import timedelta

        from clearing.domain.orders import SentAtWindow

        return SentAtWindow(
            max_age=timedelta(seconds=self.sent_at_max_age_seconds),
            max_lead=timedelta(seconds=self.sent_at_max_lead_seconds),
        )


class StreamFunctionSettings(KafkaSettings, TableSettings, SentAtSettings):
    """validate_orders, match_orders, clear_trades: Kafka out, DynamoDB state."""

    refdata_ttl_seconds: float = Field(default=60.0, ge=0)
    function_version: str = Field(default="$LATEST", validation_alias="AWS_LAMBDA_FUNCTION_VERSION")
    function_name: str = Field(default="local", validation_alias="AWS_LAMBDA_FUNCTION_NAME")


class ScheduledJobSettings(TableSettings):
    """margin_run, settle_eod: DynamoDB only."""

    settlement_output_dir: str | None = None  # local CSV/JSON output; S3 bucket in AWS
    settlement_bucket: str | None = None


class ExchangeGatewaySettings(BaseSettings):
    """exchange_gateway: where the FIX proxy listens (the NLB in AWS) and how long to wait for it."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    proxy_host: str = Field(min_length=1)
    proxy_port: int = Field(gt=0, lt=65536)
    proxy_connect_timeout: float = Field(2.0, gt=0, le=30)
    proxy_response_timeout: float = Field(5.0, gt=0, le=60)
    proxy_tls: bool = False  # the NLB listener is TLS in AWS; the local proxy is plain TCP
    proxy_tls_ca_file: str | None = None  # CA bundle for a private CA; default: the system trust store
    proxy_tls_server_name: str | None = None  # name the certificate must carry; default: PROXY_HOST


class QueryApiSettings(TableSettings):
    """query_api: reads only. The state table is never read by the API (no permission on it)."""

    state_table: str = "unused-by-query-api"
    refdata_ttl_seconds: float = Field(default=300.0, ge=0)


S = TypeVar("S", bound=BaseSettings)


def load_settings(model: type[S]) -> S:
    try:
        return model()
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False):
            name = str(e["loc"][0]).upper() if e["loc"] else "?"
            problems.append(f"{name}: {e['msg']}")
        raise ConfigurationError(
            f"{model.__name__}: bad or missing environment variable(s): " + "; ".join(problems)
        ) from None
