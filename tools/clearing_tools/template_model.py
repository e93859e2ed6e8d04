"""Read template.yaml (the SAM application) into plain Python data, one source of truth.

The local runtime (local event-source mappings, table creation in moto) and the tests use this
module so that what runs locally is what the template deploys.

`functions()` resolves parameters and conditions, so with the default parameters what it returns is
what a dev deploy gets (e.g. ConsumerGroupId `clearing-dev-match-orders`, POWERTOOLS_LOG_LEVEL DEBUG).

Functions:
- `find_template(start=None) -> Path`: the template path; `$CLEARING_TEMPLATE` if set, else the first
  `template.yaml` found walking up from `start` (default: this file's folder, then the cwd).
- `load_template(path=None) -> dict`: the YAML parsed with the CloudFormation short-form tags
  (`!Ref X` -> `{"Ref": "X"}`, `!Sub s` -> `{"Fn::Sub": s}`, `!GetAtt A.B` -> `{"Fn::GetAtt": ["A", "B"]}`,
  `!If`, `!Select`, `!Split`, `!Join`, `!Equals`, `!Not`, `!And`, `!Or`, `!FindInMap`, `!Condition`,
  `!ImportValue`, `!Base64`, `!Cidr`, `!GetAZs`) turned into the long-form dicts.
- `parameter_values(template, overrides=None) -> dict`: each parameter's Default, then `overrides`.
- `conditions(template=None, parameters=None) -> dict[str, bool]`: the Conditions evaluated for the
  parameter values (Equals/Not/And/Or/Condition over parameters).
- `resolve(value, parameters, conditions=None) -> Any`: resolves `Fn::If` on known conditions (dropping
  `AWS::NoValue`), replaces `{"Ref": <parameter>}` by the parameter's value and a
  string `{"Fn::Sub": ...}` whose `${...}` names are all parameters by the substituted string (so
  `!Sub clearing-${Stage}-match-orders` -> `clearing-dev-match-orders`); other intrinsics stay as written.
- `functions(template=None, parameters=None) -> dict[str, LambdaFunction]`: every
  AWS::Serverless::Function by logical id, with CodeUri, Handler, the environment (Globals merged
  with the function's own) and its Kafka event sources, read from both forms:
  SAM `Events` of Type MSK / SelfManagedKafka, and AWS::Lambda::EventSourceMapping resources whose
  FunctionName refers to the function.
- `kafka_event_sources(template=None, parameters=None) -> list[KafkaEventSource]`: all of them, flat.
- `tables(template=None) -> dict[str, TableDefinition]`: every AWS::DynamoDB::Table by logical id
  (KeySchema, AttributeDefinitions, GSIs, TTL attribute).
- `table_env_vars(template=None) -> dict[str, str]`: env var name (ORDERS_TABLE ...) -> table logical id,
  from the Globals environment (`ORDERS_TABLE: !Ref OrdersTable`).
- `create_table_kwargs(table, table_name) -> dict`: boto3 `create_table` keyword arguments for one
  table definition under a given name (BillingMode PAY_PER_REQUEST). TTL is a separate boto3 call
  (`update_time_to_live`); `ttl_kwargs(table, table_name)` gives its kwargs or None.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_ENV = "CLEARING_TEMPLATE"
KAFKA_EVENT_TYPES = ("MSK", "SelfManagedKafka")
_SUB_VAR = re.compile(r"\$\{([A-Za-z0-9_:.]+)\}")

# ----------------------------------------------------------------------------- YAML with CFN tags


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that knows the CloudFormation short-form intrinsic tags."""


def _make_constructor(tag: str):
    key = {"Ref": "Ref", "Condition": "Condition"}.get(tag, f"Fn::{tag}")

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                # !GetAtt Resource.Attribute(.Nested) -> [Resource, Attribute(.Nested)]
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag in (
    "Ref",
    "Condition",
    "Sub",
    "GetAtt",
    "If",
    "Select",
    "Split",
    "Join",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "ImportValue",
    "Base64",
    "Cidr",
    "GetAZs",
    "Transform",
    "Length",
    "ToJsonString",
):
    _CfnLoader.add_constructor(f"!{_tag}", _make_constructor(_tag))


def find_template(start: str | os.PathLike[str] | None = None) -> Path:
    """The template.yaml to read: $CLEARING_TEMPLATE, else walk up from `start`, this file, the cwd."""
    if os.environ.get(TEMPLATE_ENV):
        return Path(os.environ[TEMPLATE_ENV])
    starts = [Path(start)] if start else [Path(__file__).resolve().parent, Path.cwd()]
    for origin in starts:
        for folder in (origin, *origin.parents):
            candidate = folder / "template.yaml"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"template.yaml not found above {starts}; set {TEMPLATE_ENV}")


def load_template(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Parse template.yaml (CFN tags included) into plain dicts and lists."""
    text = Path(path or find_template()).read_text(encoding="utf-8")
    return yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def _template(template: dict[str, Any] | None) -> dict[str, Any]:
    return template if template is not None else load_template()


def parameter_values(template: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Each parameter's Default, replaced by `overrides` where given."""
    params = {name: spec.get("Default") for name, spec in _template(template).get("Parameters", {}).items()}
    params.update(overrides or {})
    return params


_NO_VALUE = object()


def resolve(value: Any, parameters: dict[str, Any], conditions: dict[str, bool] | None = None) -> Any:
    """Replace parameter Refs, parameter-only Subs and (given `conditions`) Fn::If, recursively."""
    result = _resolve(value, parameters, conditions or {})
    return None if result is _NO_VALUE else result


def _resolve(value: Any, parameters: dict[str, Any], conditions: dict[str, bool]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            if value["Ref"] == "AWS::NoValue":
                return _NO_VALUE
            if value["Ref"] in parameters:
                return parameters[value["Ref"]]
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            names = _SUB_VAR.findall(value["Fn::Sub"])
            if names and all(n in parameters and parameters[n] is not None for n in names):
                return _SUB_VAR.sub(lambda m: str(parameters[m.group(1)]), value["Fn::Sub"])
        if set(value) == {"Fn::If"} and value["Fn::If"][0] in conditions:
            name, when_true, when_false = value["Fn::If"]
            return _resolve(when_true if conditions[name] else when_false, parameters, conditions)
        items = ((k, _resolve(v, parameters, conditions)) for k, v in value.items())
        return {k: v for k, v in items if v is not _NO_VALUE}
    if isinstance(value, list):
        items = (_resolve(v, parameters, conditions) for v in value)
        return [v for v in items if v is not _NO_VALUE]
    return value


def conditions(
    template: dict[str, Any] | None = None, parameters: dict[str, Any] | None = None
) -> dict[str, bool]:
    """The template's Conditions evaluated for the parameter values (defaults, then `parameters`).

    Handles Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition, and Ref / Fn::Join over parameters; a
    condition it cannot evaluate is left out (so Fn::If on it stays unresolved).
    """
    tpl = _template(template)
    params = parameter_values(tpl, parameters)
    specs = tpl.get("Conditions", {}) or {}
    done: dict[str, bool] = {}

    def scalar(expr: Any) -> Any:
        expr = _resolve(expr, params, {})
        if isinstance(expr, dict) and "Fn::Join" in expr:
            sep, parts = expr["Fn::Join"]
            parts = parts if isinstance(parts, list) else [parts]
            flat = [p for part in parts for p in (part if isinstance(part, list) else [part])]
            if all(isinstance(p, str | int | float) for p in flat):
                return sep.join(str(p) for p in flat)
        if isinstance(expr, list):
            return ",".join(str(p) for p in expr)
        return expr

    def evaluate(expr: Any) -> bool:
        ((op, arg),) = expr.items()
        if op == "Condition":
            return evaluate(specs[arg]) if arg not in done else done[arg]
        if op == "Fn::Equals":
            left, right = (scalar(a) for a in arg)
            if isinstance(left, dict) or isinstance(right, dict):
                raise ValueError("not evaluable")
            return str(left if left is not None else "") == str(right if right is not None else "")
        if op == "Fn::Not":
            return not evaluate(arg[0])
        if op == "Fn::And":
            return all(evaluate(a) for a in arg)
        if op == "Fn::Or":
            return any(evaluate(a) for a in arg)
        raise ValueError(f"unsupported condition function {op}")

    for name, expr in specs.items():
        try:
            done[name] = evaluate(expr)
        except (ValueError, KeyError, TypeError):
            continue
    return done


def _as_int(value: Any) -> int | None:
    return None if value is None or isinstance(value, dict) else int(value)


def _as_bool(value: Any, default: bool = False) -> bool:
    if value is None or isinstance(value, dict):
        return default
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


# ----------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class KafkaEventSource:
    """One Kafka event-source mapping of a function (SAM MSK event or EventSourceMapping resource)."""

    name: str  # SAM event name, or the EventSourceMapping's logical id
    function_id: str
    kind: str  # MSK | SelfManagedKafka
    topics: tuple[str, ...]
    starting_position: str | None
    batch_size: int | None
    maximum_batching_window_in_seconds: int | None
    consumer_group_id: str | None
    bisect_batch_on_function_error: bool
    maximum_retry_attempts: int | None
    function_response_types: tuple[str, ...]
    destination_config: dict[str, Any] | None
    provisioned_poller_config: dict[str, Any] | None
    enabled: bool = True
    stream: Any = None  # the cluster ARN expression

    @property
    def reports_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


@dataclass(frozen=True)
class LambdaFunction:
    """One AWS::Serverless::Function of the template."""

    logical_id: str
    code_uri: str
    handler: str
    environment: dict[str, Any] = field(default_factory=dict)
    kafka_events: tuple[KafkaEventSource, ...] = ()
    schedules: dict[str, Any] = field(default_factory=dict)  # event name -> ScheduleExpression
    properties: dict[str, Any] = field(default_factory=dict)  # everything else, as written

    @property
    def name(self) -> str:
        """The function's folder name, e.g. `validate_orders` for CodeUri functions/validate_orders/."""
        return Path(self.code_uri.rstrip("/")).name

    @property
    def handler_module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def handler_function(self) -> str:
        return self.handler.rsplit(".", 1)[1]

    def handler_file(self, root: str | os.PathLike[str] | None = None) -> Path:
        """Path of the handler's .py file, under `root` (default: the template's folder)."""
        base = Path(root) if root else find_template().parent
        return base / self.code_uri / (self.handler_module.replace(".", "/") + ".py")

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(t for ev in self.kafka_events for t in ev.topics)


def _kafka_event(name: str, function_id: str, kind: str, props: dict[str, Any]) -> KafkaEventSource:
    consumer_group = props.get("ConsumerGroupId")
    for cfg_key in ("AmazonManagedKafkaEventSourceConfig", "SelfManagedKafkaEventSourceConfig"):
        consumer_group = consumer_group or (props.get(cfg_key) or {}).get("ConsumerGroupId")
    return KafkaEventSource(
        name=name,
        function_id=function_id,
        kind=kind,
        topics=tuple(props.get("Topics") or ()),
        starting_position=props.get("StartingPosition"),
        batch_size=_as_int(props.get("BatchSize")),
        maximum_batching_window_in_seconds=_as_int(props.get("MaximumBatchingWindowInSeconds")),
        consumer_group_id=consumer_group,
        bisect_batch_on_function_error=_as_bool(props.get("BisectBatchOnFunctionError")),
        maximum_retry_attempts=_as_int(props.get("MaximumRetryAttempts")),
        function_response_types=tuple(props.get("FunctionResponseTypes") or ()),
        destination_config=props.get("DestinationConfig"),
        provisioned_poller_config=props.get("ProvisionedPollerConfig"),
        enabled=_as_bool(props.get("Enabled"), default=True),
        stream=props.get("Stream", props.get("EventSourceArn")),
    )


def _function_ref(value: Any) -> str | None:
    """Logical id named by an EventSourceMapping's FunctionName (!Ref X, !GetAtt X.Arn, !Sub ${X})."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
        if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
            return value["Fn::Sub"].strip("${}").split(".")[0]
    return None


def functions(
    template: dict[str, Any] | None = None, parameters: dict[str, Any] | None = None
) -> dict[str, LambdaFunction]:
    """Every AWS::Serverless::Function by logical id, parameters resolved (defaults, then overrides)."""
    tpl = _template(template)
    params = parameter_values(tpl, parameters)
    conds = conditions(tpl, parameters)
    resources = tpl.get("Resources", {})
    global_env = (
        (tpl.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables")
    ) or {}

    mappings: dict[str, list[KafkaEventSource]] = {}
    for logical_id, res in resources.items():
        if res.get("Type") != "AWS::Lambda::EventSourceMapping":
            continue
        props = resolve(res.get("Properties", {}), params, conds)
        if not props.get("Topics"):
            continue  # not a Kafka mapping
        target = _function_ref(props.get("FunctionName"))
        kind = "SelfManagedKafka" if "SelfManagedEventSource" in props else "MSK"
        if target:
            mappings.setdefault(target, []).append(_kafka_event(logical_id, target, kind, props))

    result: dict[str, LambdaFunction] = {}
    for logical_id, res in resources.items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = resolve(res.get("Properties", {}), params, conds)
        events, schedules = [], {}
        for ev_name, ev in (props.get("Events") or {}).items():
            ev_type, ev_props = ev.get("Type"), ev.get("Properties") or {}
            if ev_type in KAFKA_EVENT_TYPES:
                events.append(_kafka_event(ev_name, logical_id, ev_type, ev_props))
            elif ev_type in ("Schedule", "ScheduleV2"):
                schedules[ev_name] = ev_props.get("Schedule") or ev_props.get("ScheduleExpression")
        events.extend(mappings.get(logical_id, []))
        env = dict(resolve(global_env, params, conds))
        env.update(((props.get("Environment") or {}).get("Variables")) or {})
        result[logical_id] = LambdaFunction(
            logical_id=logical_id,
            code_uri=props["CodeUri"],
            handler=props["Handler"],
            environment=env,
            kafka_events=tuple(events),
            schedules=schedules,
            properties=props,
        )
    return result


def kafka_event_sources(
    template: dict[str, Any] | None = None, parameters: dict[str, Any] | None = None
) -> list[KafkaEventSource]:
    """All Kafka event sources of all functions, in template order."""
    return [ev for fn in functions(template, parameters).values() for ev in fn.kafka_events]


# ----------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class TableDefinition:
    """The key design of one AWS::DynamoDB::Table (what a local table needs)."""

    logical_id: str
    key_schema: tuple[dict[str, str], ...]
    attribute_definitions: tuple[dict[str, str], ...]
    global_secondary_indexes: tuple[dict[str, Any], ...] = ()
    ttl_attribute: str | None = None

    @property
    def index_names(self) -> tuple[str, ...]:
        return tuple(g["IndexName"] for g in self.global_secondary_indexes)


def tables(template: dict[str, Any] | None = None) -> dict[str, TableDefinition]:
    """Every AWS::DynamoDB::Table by logical id."""
    result = {}
    for logical_id, res in _template(template).get("Resources", {}).items():
        if res.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = res.get("Properties", {})
        ttl = props.get("TimeToLiveSpecification") or {}
        result[logical_id] = TableDefinition(
            logical_id=logical_id,
            key_schema=tuple(props["KeySchema"]),
            attribute_definitions=tuple(props["AttributeDefinitions"]),
            global_secondary_indexes=tuple(props.get("GlobalSecondaryIndexes") or ()),
            ttl_attribute=ttl.get("AttributeName") if _as_bool(ttl.get("Enabled")) else None,
        )
    return result


def table_env_vars(template: dict[str, Any] | None = None) -> dict[str, str]:
    """Env var name -> table logical id, from the Globals environment (`ORDERS_TABLE: !Ref OrdersTable`)."""
    tpl = _template(template)
    table_ids = set(tables(tpl))
    env = ((tpl.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables")) or {}
    return {
        name: value["Ref"]
        for name, value in env.items()
        if isinstance(value, dict) and value.get("Ref") in table_ids
    }


def table_names(physical_name) -> dict[str, str]:
    """Logical table name the services use (orders, trades, ...) -> physical name, one per `*_TABLE`
    variable of the Globals environment; `physical_name(logical_id)` names each table."""
    return {
        env[: -len("_TABLE")].lower(): physical_name(logical) for env, logical in table_env_vars().items()
    }


def create_table_kwargs(table: TableDefinition, table_name: str) -> dict[str, Any]:
    """boto3 `create_table` kwargs for `table` named `table_name`, billed on demand."""
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": [dict(k) for k in table.key_schema],
        "AttributeDefinitions": [dict(a) for a in table.attribute_definitions],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.global_secondary_indexes:
        kwargs["GlobalSecondaryIndexes"] = [
            {
                "IndexName": gsi["IndexName"],
                "KeySchema": [dict(k) for k in gsi["KeySchema"]],
                "Projection": dict(gsi.get("Projection") or {"ProjectionType": "ALL"}),
            }
            for gsi in table.global_secondary_indexes
        ]
    return kwargs


def ttl_kwargs(table: TableDefinition, table_name: str) -> dict[str, Any] | None:
    """boto3 `update_time_to_live` kwargs for the table's TTL attribute, or None when it has none."""
    if not table.ttl_attribute:
        return None
    return {
        "TableName": table_name,
        "TimeToLiveSpecification": {"Enabled": True, "AttributeName": table.ttl_attribute},
    }
