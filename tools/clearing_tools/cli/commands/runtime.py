"""`clearing up | down | status | invoke`: the local runtime (no Docker, no AWS) from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from clearing_tools.local.config import RuntimeConfig


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", type=Path, help="pid files, logs, ports (default .clearing/, env CLEARING_STATE_DIR)"
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Only the flags that were given: the environment and defaults fill in the rest."""
    names = {
        "state_dir": "state_dir",
        "broker_port": "broker_port",
        "moto_port": "moto_port",
        "template": "template_path",
        "table_prefix": "table_prefix",
        "partitions": "default_partitions",
        "window": "batching_window_cap_s",
        "partitions_per_worker": "partitions_per_worker",
        "max_retries": "default_max_retry_attempts",
        "bootstrap_servers": "kafka_bootstrap_servers",
        "dynamodb_endpoint": "dynamodb_endpoint_url",
        "exchange": "start_exchange",
        "exchange_port": "exchange_sim_port",
        "exchange_control_port": "exchange_sim_control_port",
        "proxy_port": "proxy_gateway_port",
        "proxy_health_port": "proxy_health_port",
        "exchange_endpoint": "exchange_endpoint",
        "proxy_endpoint": "proxy_endpoint",
        "console_port": "console_port",
    }
    out = {
        field: getattr(args, flag) for flag, field in names.items() if getattr(args, flag, None) is not None
    }
    if getattr(args, "functions", None):
        out["functions"] = [f for part in args.functions for f in part.split(",") if f]
    if getattr(args, "with_components", None):
        out["extra_components"] = args.with_components
    if getattr(args, "no_esm", False):
        out["start_esm"] = False
    return out


def saved_config(args: argparse.Namespace) -> RuntimeConfig:
    """The config `up` saved in the state dir (so down/status/invoke see its ports), else env + flags."""
    base = RuntimeConfig(**_overrides(args))
    saved = base.state_path / "runtime.json"
    if saved.is_file():
        return RuntimeConfig.model_validate_json(saved.read_text())
    return base


# ----------------------------------------------------------------------------- up / down / status


def cmd_up(args: argparse.Namespace) -> int:
    from rich.console import Console

    from clearing_tools.local.processes import RuntimeStartError, RuntimeStateError, one_line
    from clearing_tools.local.runtime import LocalRuntime

    console = Console(stderr=True)
    try:
        config = RuntimeConfig(**_overrides(args))
        if not args.no_console and "console" not in config.extra_components:
            config = config.model_copy(update={"extra_components": [*config.extra_components, "console"]})
        runtime = LocalRuntime(config)
        with console.status("starting the local runtime..."):
            runtime.start(ready_timeout=args.timeout)
    except (RuntimeStartError, RuntimeStateError, FileNotFoundError) as exc:
        console.print(f"[red]clearing up failed:[/red] {one_line(exc, 1000)}", soft_wrap=True, markup=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        console.print(
            f"[red]clearing up failed:[/red] {one_line(f'{type(exc).__name__}: {exc}', 1000)}", soft_wrap=True
        )
        return 1
    console.print(f"[green]up[/green] - state in {config.state_path}")
    status = runtime.status()
    _print_status(status, as_json=False)
    hint = f"KAFKA_BOOTSTRAP_SERVERS={config.bootstrap_servers} DYNAMODB_ENDPOINT_URL={config.dynamodb_url}"
    if runtime.config.start_exchange:
        host, port = config.proxy_address
        hint += f" PROXY_HOST={host} PROXY_PORT={port}"
    console.print(f"point clients at: {hint}")
    if "console" in config.extra_components:
        console.print(
            f"console: http://{config.host}:{config.console_port}/ (token: `clearing token --operator` "
            "or `--member MBR01`; open .../#token=TOKEN)"
        )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from rich.console import Console

    from clearing_tools.local.runtime import LocalRuntime

    config = saved_config(args)
    recorded = [config.state_path / n for n in ("runtime.json", "identity.json")]
    if not any(path.is_file() for path in recorded) and not list((config.state_path / "pids").glob("*.pid")):
        Console(stderr=True).print(f"nothing recorded in {config.state_path}: nothing to stop")
        return 0
    LocalRuntime(config).down()
    Console(stderr=True).print(
        "[green]down[/green]: stopped what `up` started; the run's state (identity, mapping state, "
        "on-failure records, simulated FIX session) is wiped with the in-memory broker and store"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 when everything runs and nothing is lost; 3 otherwise (a component down, a mapping failed,
    the broker or store reset, lag unknown or impossible)."""
    from clearing_tools.local.runtime import LocalRuntime

    config = saved_config(args)
    status = LocalRuntime(config).status()
    _print_status(status, as_json=args.json)
    return 0 if status.ok else 3


def _print_status(status, as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    if as_json:
        print(json.dumps(status.to_dict(), indent=2))
        return
    console = Console()
    components = Table(title="components")
    for column in ("component", "address", "state", "pid", "detail"):
        components.add_column(column)
    colours = {"running": "green", "external": "cyan", "degraded": "yellow", "stopped": "red"}
    for c in status.components:
        colour = colours.get(c.state, "white")
        components.add_row(
            c.name, c.address, f"[{colour}]{c.state}[/{colour}]", str(c.pid or "-"), c.detail or ""
        )
    console.print(components)
    if status.mappings:
        mappings = Table(title="event-source mappings")
        for column in (
            "mapping",
            "state",
            "group",
            "topics",
            "lag",
            "done",
            "invocations",
            "errors",
            "on-failure",
            "restarts",
        ):
            mappings.add_column(
                column, justify="right" if column not in ("mapping", "state", "group", "topics") else "left"
            )
        states = {
            "running": "green",
            "failed": "red",
            "unknown": "yellow",
            "blocked": "yellow",
            "stopped": "red",
        }
        for m in status.mappings:
            colour = states.get(m.state, "white")
            lag = "?" if m.lag is None else f"[red]{m.lag}[/red]" if m.lag < 0 else str(m.lag)
            onfailure = f"[red]{m.onfailure_records}[/red]" if m.onfailure_records else "0"
            mappings.add_row(
                m.mapping_id, f"[{colour}]{m.state}[/{colour}]", m.group_id, ",".join(m.topics), lag,
                str(m.records_done), str(m.invocations), str(m.function_errors), onfailure, str(m.restarts),
            )  # fmt: skip
        console.print(mappings)
        files = sorted({m.onfailure_file for m in status.mappings if m.onfailure_file})
        if files:
            console.print(f"on-failure records: {', '.join(files)}")
    for problem in status.problems:
        console.print(f"[red]PROBLEM[/red] {problem}", soft_wrap=True)
    if status.error:
        console.print(f"[yellow]{status.error}[/yellow]")


# ----------------------------------------------------------------------------- invoke


def cmd_invoke(args: argparse.Namespace) -> int:
    """Run one handler in-process, isolated from the running stack (see clearing_tools.local.invoke
    .isolated_adapters): stdout gets the handler's response, stderr what it wrote and published."""
    from clearing_tools.local.invoke import (
        LocalFunction,
        find_function,
        function_environment,
        isolated_adapters,
        patched_environ,
    )
    from clearing_tools.local.processes import one_line

    config = saved_config(args)
    try:
        fn = find_function(config, args.function)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"clearing invoke: {one_line(exc)}", file=sys.stderr)
        return 2
    if "PROXY_HOST" in fn.environment and not args.send_to_exchange:
        print(
            f"clearing invoke: {fn.logical_id} sends FIX messages through the FIX proxy to the exchange "
            "session of the running stack (its ids would collide with live ones); pass --send-to-exchange "
            "to do it anyway",
            file=sys.stderr,
        )
        return 2
    try:
        text = sys.stdin.read() if args.event == "-" else Path(args.event).read_text(encoding="utf-8")
        event = json.loads(text)
    except (OSError, ValueError) as exc:
        print(f"clearing invoke: cannot read the event {args.event}: {one_line(exc)}", file=sys.stderr)
        return 2
    try:
        with patched_environ(function_environment(config, fn)), isolated_adapters() as effects:
            response = LocalFunction(config, fn, apply_environment=False).invoke(event)
    except Exception as exc:  # noqa: BLE001 - shown like Lambda's error response
        traceback.print_exc()
        print(json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}))
        return 1
    print(json.dumps(response, indent=2, default=str))
    print(
        "isolated: in-memory store (bundled reference data) and publisher; the running stack's tables, "
        "checkpoints and topics were neither read nor changed",
        file=sys.stderr,
    )
    for line in effects.summary_lines():
        print(line, file=sys.stderr)
    if args.effects:
        Path(args.effects).write_text(json.dumps(effects.to_dict(), indent=2, default=str))
        print(f"effects: {args.effects}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- registration


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up",
        help="start broker, moto_server, topics, tables, exchange simulator, FIX proxy and the local ESMs",
    )
    _common(up)
    up.add_argument("--broker-port", type=int, help="Tansu port (default 19092, env CLEARING_BROKER_PORT)")
    up.add_argument("--moto-port", type=int, help="moto_server port (default 18000, env CLEARING_MOTO_PORT)")
    up.add_argument(
        "--bootstrap-servers", help="use this Kafka instead of starting Tansu (env KAFKA_BOOTSTRAP_SERVERS)"
    )
    up.add_argument(
        "--dynamodb-endpoint", help="use this DynamoDB instead of moto (env DYNAMODB_ENDPOINT_URL)"
    )
    up.add_argument("--template", type=Path, help="template.yaml (default: found from the cwd)")
    up.add_argument("--table-prefix", help="table name prefix (default clearing-local-)")
    up.add_argument("--partitions", type=int, help="partitions per topic (default 3)")
    up.add_argument(
        "--functions", action="append", help="only these functions (logical id or folder; repeatable)"
    )
    up.add_argument("--no-esm", action="store_true", help="do not start the event-source mappings")
    up.add_argument("--window", type=float, help="cap of the batching window in seconds (default 0.2)")
    up.add_argument("--partitions-per-worker", type=int, help="0: one worker process per mapping (default)")
    up.add_argument(
        "--max-retries", type=int, help="MaximumRetryAttempts when the template sets none (default 3)"
    )
    up.add_argument(
        "--exchange",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start the exchange simulator and the FIX proxy (default: when the exchange gateway's "
        "mappings run; env CLEARING_START_EXCHANGE)",
    )
    up.add_argument("--exchange-port", type=int, help="exchange simulator FIX port (default 19878)")
    up.add_argument("--exchange-control-port", type=int, help="simulator fault control port (default 19879)")
    up.add_argument("--proxy-port", type=int, help="FIX proxy gateway port (default 19000)")
    up.add_argument("--proxy-health-port", type=int, help="FIX proxy health port (default 19080)")
    up.add_argument(
        "--exchange-endpoint",
        help="HOST:PORT of a real FIX acceptor: no simulator (CLEARING_EXCHANGE_ENDPOINT)",
    )
    up.add_argument(
        "--proxy-endpoint", help="HOST:PORT of a running FIX proxy: nothing started (CLEARING_PROXY_ENDPOINT)"
    )
    up.add_argument(
        "--with", dest="with_components", action="append", help="optional registered component by name"
    )
    up.add_argument(
        "--console-port",
        type=int,
        help="member API + web console port (default 19100, CLEARING_CONSOLE_PORT)",
    )
    up.add_argument("--no-console", action="store_true", help="do not start the console (member API, web UI)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for everything to be ready")
    up.set_defaults(func=cmd_up)

    down = subparsers.add_parser("down", help="stop what `clearing up` started (recorded pids only)")
    _common(down)
    down.set_defaults(func=cmd_down)

    status = subparsers.add_parser("status", help="components, addresses and consumer lag per mapping")
    _common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    invoke = subparsers.add_parser(
        "invoke",
        help="run a function's handler in-process with an event file, isolated from the running stack "
        "(in-memory store and publisher)",
    )
    _common(invoke)
    invoke.add_argument(
        "function", help="logical id (ValidateOrdersFunction) or folder name (validate_orders)"
    )
    invoke.add_argument("-e", "--event", required=True, help="event JSON file (events/*.json), '-' for stdin")
    invoke.add_argument("--template", type=Path, help="template.yaml (default: found from the cwd)")
    invoke.add_argument("--effects", help="write the items written and records published (JSON) to this file")
    invoke.add_argument(
        "--send-to-exchange",
        action="store_true",
        help="let the exchange gateway talk to the FIX proxy (it is never isolated)",
    )
    invoke.set_defaults(func=cmd_invoke)
