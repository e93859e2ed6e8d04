"""Run a template function's handler locally, as Lambda would: environment, context and MSK event shape.

Shared by the local event-source mappings (clearing_tools.local.esm) and `clearing invoke FUNCTION -e FILE`
(the no-Docker equivalent of `sam local invoke`).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import importlib.util
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clearing_tools import template_model
from clearing_tools.local.config import RuntimeConfig

ACCOUNT_ID = "123456789012"
LOCAL_DYNAMODB_BOUNDS = {
    "DYNAMODB_CONNECT_TIMEOUT": "2",
    "DYNAMODB_READ_TIMEOUT": "20",
    "DYNAMODB_MAX_ATTEMPTS": "2",
}
LOCAL_ENV_DEFAULTS = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "ClearingPipeline",
    "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
    "AWS_LAMBDA_RUNTIME_API": "",
}


def _fast_loader():
    """template_model's CloudFormation-tag loader on libyaml (10x faster) when PyYAML has it."""
    import yaml

    base = getattr(template_model, "_CfnLoader", None)
    if base is None or not getattr(yaml, "__with_libyaml__", False):
        return None

    class CfnCLoader(yaml.CSafeLoader):
        pass

    CfnCLoader.yaml_constructors = dict(base.yaml_constructors)
    return CfnCLoader


@functools.lru_cache(maxsize=8)
def _parsed_template(path: str, mtime_ns: int) -> dict[str, Any]:  # noqa: ARG001 - mtime keys the cache
    loader = _fast_loader()
    if loader is None:
        return template_model.load_template(path)
    import yaml

    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - safe loader


def load_template(config: RuntimeConfig) -> dict[str, Any]:
    """template.yaml parsed once per process (a large template takes ~0.6 s to parse)."""
    path = config.template_file().resolve()
    return copy.deepcopy(_parsed_template(str(path), path.stat().st_mtime_ns))


def load_functions(config: RuntimeConfig) -> dict[str, template_model.LambdaFunction]:
    return template_model.functions(load_template(config), config.template_parameters or None)


def find_function(config: RuntimeConfig, name: str) -> template_model.LambdaFunction:
    """A function by logical id (ValidateOrdersFunction) or folder name (validate_orders)."""
    fns = load_functions(config)
    for fn in fns.values():
        if name in (fn.logical_id, fn.name):
            return fn
    raise KeyError(f"no function {name!r} in {config.template_file()}; known: {', '.join(sorted(fns))}")


def _env_value(value: Any, config: RuntimeConfig, table_ids: set[str], conditions: dict[str, bool]) -> str:
    if isinstance(value, dict) and "Fn::If" in value:
        name, if_true, if_false = value["Fn::If"]
        return _env_value(if_true if conditions.get(name) else if_false, config, table_ids, conditions)
    if isinstance(value, dict):
        if "Ref" in value:
            ref = value["Ref"]
            if ref in table_ids:
                return config.table_name(ref)
            if ref == "AWS::Region":
                return config.region
            return str(ref)
        if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
            subs = {"AWS::Region": config.region, "AWS::AccountId": ACCOUNT_ID}
            subs.update({t: config.table_name(t) for t in table_ids})
            return re.sub(r"\$\{([^}]+)\}", lambda m: subs.get(m.group(1), m.group(0)), value["Fn::Sub"])
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def function_environment(config: RuntimeConfig, fn: template_model.LambdaFunction) -> dict[str, str]:
    """The environment a handler gets locally: Globals + function Environment, local endpoints, dummy AWS."""
    template = load_template(config)
    table_ids = set(template_model.tables(template))
    conditions: dict[str, bool] = {}
    if hasattr(template_model, "conditions"):
        conditions = template_model.conditions(template, config.template_parameters or None)
    env = {k: _env_value(v, config, table_ids, conditions) for k, v in fn.environment.items()}
    env = {k: v for k, v in env.items() if v != "AWS::NoValue"}
    env.setdefault("POWERTOOLS_SERVICE_NAME", fn.name)
    for key, value in LOCAL_ENV_DEFAULTS.items():
        env.setdefault(key, value)
    env["POWERTOOLS_TRACE_DISABLED"] = "true"  # no X-Ray daemon locally
    env.pop("AWS_LAMBDA_RUNTIME_API", None)
    if config.local_broker:
        # Tansu speaks plain TCP: no SASL/TLS locally, whatever the template says for MSK.
        for key in [k for k in env if k.startswith("KAFKA_SASL_")]:
            del env[key]
        env["KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": config.bootstrap_servers,
            "DYNAMODB_ENDPOINT_URL": config.dynamodb_url,
            "AWS_DEFAULT_REGION": config.region,
            "AWS_REGION": config.region,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing")
            if not config.local_dynamodb
            else "testing",
            "AWS_SECRET_ACCESS_KEY": (
                os.environ.get("AWS_SECRET_ACCESS_KEY", "testing") if not config.local_dynamodb else "testing"
            ),
            "AWS_LAMBDA_FUNCTION_NAME": lambda_function_name(config, fn),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_size(fn)),
            "TABLE_PREFIX": config.table_prefix,
            "CLEARING_LOCAL": "1",
        }
    )
    if config.local_dynamodb:
        env["AWS_SESSION_TOKEN"] = "testing"
        # moto answers in milliseconds or is down: fail a call in seconds (clearing.adapters.dynamodb)
        env.update(LOCAL_DYNAMODB_BOUNDS)
    if "PROXY_HOST" in env:
        env.update(proxy_environment(config))
    return env


def proxy_environment(config: RuntimeConfig) -> dict[str, str]:
    """PROXY_* of a function that talks to the FIX proxy: the local proxy (plain TCP), or the named one.

    In AWS PROXY_HOST is the NLB's DNS name and its listener is TLS; the local proxy listens in plain TCP.
    """
    host, port = config.proxy_address
    tls = bool(config.proxy_endpoint and config.proxy_tls)
    env = {"PROXY_HOST": host, "PROXY_PORT": str(port), "PROXY_TLS": "true" if tls else "false"}
    for key in ("PROXY_TLS_CA_FILE", "PROXY_TLS_SERVER_NAME"):  # a TLS proxy's, from the caller
        if tls and os.environ.get(key):
            env[key] = os.environ[key]
    return env


def proxy_clients(config: RuntimeConfig) -> list[str]:
    """Logical ids of the functions whose mappings run locally and that talk to the FIX proxy."""
    if not config.start_esm:
        return []
    return [
        fn.logical_id
        for fn in load_functions(config).values()
        if "PROXY_HOST" in fn.environment
        and any(ev.enabled for ev in fn.kafka_events)
        and (not config.functions or fn.logical_id in config.functions or fn.name in config.functions)
    ]


def lambda_function_name(config: RuntimeConfig, fn: template_model.LambdaFunction) -> str:
    return f"{config.table_prefix}{fn.logical_id}"


def _globals(config: RuntimeConfig) -> dict[str, Any]:
    return load_template(config).get("Globals", {}).get("Function", {})


def memory_size(fn: template_model.LambdaFunction, globals_: dict[str, Any] | None = None) -> int:
    return int(fn.properties.get("MemorySize") or (globals_ or {}).get("MemorySize") or 1024)


def timeout_seconds(fn: template_model.LambdaFunction, globals_: dict[str, Any] | None = None) -> int:
    return int(fn.properties.get("Timeout") or (globals_ or {}).get("Timeout") or 60)


@contextlib.contextmanager
def patched_environ(env: dict[str, str]) -> Iterator[None]:
    """os.environ with `env` applied, restored afterwards (in-process invokes must not leak it)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class LambdaContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    def __init__(
        self, function_name: str, memory_limit_in_mb: int, timeout_s: float, region: str = "us-east-1"
    ):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/{os.getpid()}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LocalFunction:
    """One template function loaded for local invocation: handler, environment and a context factory."""

    def __init__(
        self, config: RuntimeConfig, fn: template_model.LambdaFunction, apply_environment: bool = True
    ):
        self.config = config
        self.fn = fn
        globals_ = _globals(config)
        self.environment = function_environment(config, fn)
        self.memory = memory_size(fn, globals_)
        self.timeout = timeout_seconds(fn, globals_)
        self.name = lambda_function_name(config, fn)
        if apply_environment:
            os.environ.update(self.environment)
        self.handler = load_handler(
            fn.handler_file(config.template_file().parent), fn.handler_function, fn.logical_id
        )

    def new_context(self) -> LambdaContext:
        return LambdaContext(self.name, self.memory, self.timeout, self.config.region)

    def invoke(self, event: dict[str, Any]) -> Any:
        return self.handler(event, self.new_context())


def load_handler(path: Path, function_name: str, label: str) -> Callable[[dict[str, Any], Any], Any]:
    """Import the handler file by path under a unique module name (two app.py files never collide)."""
    if not path.is_file():
        raise FileNotFoundError(f"handler file {path} not found")
    safe_label = re.sub(r"\W", "_", label)
    module_name = f"clearing_local_fn_{safe_label}_{uuid.uuid4().hex[:8]}"
    code_dir = str(path.parent)
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)  # Lambda puts CodeUri on the path too
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return getattr(module, function_name)


def kafka_record(record: Any) -> dict[str, Any]:
    """One Kafka record (kafka-python ConsumerRecord) in the shape of Lambda's MSK event."""
    item: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestampType": "LOG_APPEND_TIME" if record.timestamp_type == 1 else "CREATE_TIME",
    }
    if record.key is not None:
        item["key"] = base64.b64encode(record.key).decode("ascii")
    if record.value is not None:
        item["value"] = base64.b64encode(record.value).decode("ascii")
    item["headers"] = [{name: list(value or b"")} for name, value in (record.headers or [])]
    return item


def kafka_event(records: Iterable[Any], event_source_arn: str, bootstrap_servers: str) -> dict[str, Any]:
    """Lambda's MSK event for records: {"eventSource": "aws:kafka", ..., "records": {"topic-N": [...]}}."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(f"{record.topic}-{record.partition}", []).append(kafka_record(record))
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": event_source_arn,
        "bootstrapServers": bootstrap_servers,
        "records": grouped,
    }


# ----------------------------------------------------------------------------- isolated invoke


@dataclass
class InvokeEffects:
    """What an isolated invocation did: items written per table (logical name), records published."""

    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    published: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "published": [
                {
                    "topic": m.topic,
                    "key": m.key.decode("utf-8", "replace"),
                    "value": m.value.decode("utf-8", "replace"),
                    "headers": {k: v.decode("utf-8", "replace") for k, v in m.headers},
                }
                for m in self.published
            ],
        }

    def summary_lines(self, value_chars: int = 160) -> list[str]:
        written = (
            ", ".join(f"{table} {len(items)}" for table, items in sorted(self.items.items())) or "nothing"
        )
        lines = [f"items written: {written}", f"records published: {len(self.published)}"]
        for m in self.published:
            value = m.value.decode("utf-8", "replace")
            value = value if len(value) <= value_chars else value[: value_chars - 3] + "..."
            lines.append(f"  {m.topic} key={m.key.decode('utf-8', 'replace')} {value}")
        return lines


_BOOTSTRAP_CACHED = (
    "stream_settings",
    "shared_store",
    "shared_publisher",
    "shared_refdata",
    "validate_orders_service",
    "match_orders_service",
    "clear_trades_service",
    "job_settings",
    "job_store",
)


@contextlib.contextmanager
def isolated_adapters() -> Iterator[InvokeEffects]:
    """The handlers' store and publisher replaced by in-memory ones for the duration (in-process).

    `clearing invoke` runs a handler this way by default: the running stack's tables, checkpoints and
    topics are neither read nor advanced (an invoke of events/validate_orders_valid.json used to write
    the live checkpoint of orders.new-0 up to its offsets, and the live mapping then skipped real orders
    as already done). The store starts with the bundled reference data and nothing else; what the
    handler wrote and published comes back as InvokeEffects.
    """
    from clearing import bootstrap
    from clearing.adapters.memory import InMemoryItemStore, InMemoryPublisher
    from clearing.adapters.refdata import seed_reference_data

    store = InMemoryItemStore()
    seed_reference_data(store)
    before = {table: dict(rows) for table, rows in store.tables.items()}
    publisher = InMemoryPublisher()
    saved = {name: getattr(bootstrap, name) for name in ("shared_store", "shared_publisher", "job_store")}
    for name in _BOOTSTRAP_CACHED:
        getattr(bootstrap, name).cache_clear()
    bootstrap.shared_store = lambda: store  # type: ignore[assignment]
    bootstrap.shared_publisher = lambda: publisher  # type: ignore[assignment]
    bootstrap.job_store = lambda: store  # type: ignore[assignment]
    effects = InvokeEffects()
    try:
        yield effects
    finally:
        for name, original in saved.items():
            setattr(bootstrap, name, original)
        for name in _BOOTSTRAP_CACHED:
            getattr(bootstrap, name).cache_clear()
        for table, rows in store.tables.items():
            changed = [item for key, item in rows.items() if before.get(table, {}).get(key) != item]
            if changed:
                effects.items[table] = changed
        effects.published = list(publisher.messages)
