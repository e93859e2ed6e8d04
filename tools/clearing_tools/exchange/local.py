"""The exchange side as components of the local runtime: the exchange simulator and the FIX proxy.

`clearing up` starts them after moto and before the mappings (registered in
clearing_tools.local.components as "exchange-sim" and "fix-proxy"), each a background process of the same
commands a person would run (`clearing exchange-sim`, `python -m clearing_fix.proxy`, the proxy
container's entry point), on the ports of RuntimeConfig, with their FIX session stores in
<state>/fix/<component>/ and logs in <state>/logs/<component>.log. The proxy publishes what the exchange
sends back to `exchange.executions` on the runtime's broker. `health()` asks the processes themselves:
the proxy's HTTP health port (logged on or not, sequence numbers), the simulator's control port.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clearing_tools.local.components import ComponentStatus, ProcessComponent
from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.processes import RuntimeStartError, ensure_port_free, pid_alive, read_pid

EXCHANGE_SIM = "exchange-sim"
FIX_PROXY = "fix-proxy"
# Variables the proxy reads (clearing_fix.proxy.ProxySettings): never inherited from the caller's shell,
# so a FIX_PASSWORD_SECRET_ARN or GATEWAY_PORT exported for something else cannot leak in.
_PROXY_VARIABLE_PREFIXES = ("FIX_", "EXCHANGE_", "GATEWAY_", "HEALTH_", "RECONNECT_", "KAFKA_")
_PROXY_VARIABLES = {"EXECUTIONS_TOPIC", "METRICS_NAMESPACE"}


def fix_store_root(config: RuntimeConfig) -> Path:
    return config.state_path / "fix"


def endpoint_key(host: str, port: int) -> str:
    """A directory name for an exchange endpoint: `127.0.0.1_19878`."""
    safe = "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in host)
    return f"{safe}_{port}"


def proxy_store_dir(config: RuntimeConfig) -> Path:
    """The local proxy's FIX_STORE_DIR: one per exchange endpoint, so a session's sequence numbers are
    never reused against another exchange (<state>/fix/fix-proxy/<host>_<port>/<Sender>-<Target>/)."""
    return fix_store_root(config) / FIX_PROXY / endpoint_key(*config.exchange_address)


def simulated_session_dirs(config: RuntimeConfig) -> list[Path]:
    """Both ends' stores of the session with the local simulator (wiped with the run)."""
    root = fix_store_root(config)
    return [root / EXCHANGE_SIM, root / FIX_PROXY / endpoint_key(config.host, config.exchange_sim_port)]


def proxy_health(host: str, port: int, timeout: float = 1.0) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of the proxy's health check; (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=timeout) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(exc.read() or b"{}")
        return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


def simulator_status(host: str, control_port: int, timeout: float = 1.0) -> dict[str, Any]:
    """The simulator's `status` answer on its control port; {} when nothing answers."""
    try:
        with socket.create_connection((host, control_port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"status\n")
            return json.loads(sock.makefile().readline() or "{}")
    except (OSError, ValueError):
        return {}


def _check_second_port(component: ProcessComponent, port: int | None, what: str, hint: str) -> None:
    """A taken health / control port is named before the process starts (it would die on bind)."""
    pid = read_pid(component.pid_path)
    if port and not component.external_address and not (pid and pid_alive(pid)):
        ensure_port_free(component.host or component.config.host, port, what, hint)


@dataclass
class ExchangeSimComponent(ProcessComponent):
    control_port: int | None = None

    def start(self) -> None:
        _check_second_port(
            self, self.control_port, "exchange-sim control",
            "--exchange-control-port / CLEARING_EXCHANGE_SIM_CONTROL_PORT",
        )  # fmt: skip
        super().start()

    def health(self) -> ComponentStatus:
        status = super().health()
        if status.state == "running" and self.control_port:
            answer = simulator_status(self.host or self.config.host, self.control_port)
            if answer:
                status.detail = (
                    f"{'logged on' if answer.get('logged_on') else 'no session'}, "
                    f"received {answer.get('received', 0)}, control :{self.control_port}"
                )
        return status


@dataclass
class FixProxyComponent(ProcessComponent):
    health_port: int | None = None
    logon_timeout: float = 20.0

    def start(self) -> None:
        _check_second_port(
            self, self.health_port, "fix-proxy health", "--proxy-health-port / CLEARING_PROXY_HEALTH_PORT"
        )
        super().start()

    def wait_logged_on(self) -> None:
        """Until the proxy's health check says UP (its FIX session is logged on)."""
        host = self.host or self.config.host
        deadline = time.monotonic() + self.logon_timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            code, body = proxy_health(host, self.health_port or 0)
            if code == 200:
                return
            time.sleep(0.05)
        raise RuntimeStartError(
            f"{self.name}: no FIX logon within {self.logon_timeout:.0f} s (session "
            f"{body.get('session', 'unknown')}; log: {self.log_path})"
        )

    def health(self) -> ComponentStatus:
        status = super().health()
        if status.state in ("running", "degraded") and self.health_port:
            code, body = proxy_health(self.host or self.config.host, self.health_port)
            if code == 0:
                return status
            if code != 200:
                status.state = "degraded"  # up, but no FIX session: the gateway gets UNAVAILABLE
            status.detail = (
                f"session {body.get('session', '?')}, seq out {body.get('next_sender_seq', '?')} "
                f"in {body.get('next_target_seq', '?')}, published {body.get('published', 0)}, "
                f"health :{self.health_port}"
            )
        return status


def exchange_sim_component(config: RuntimeConfig) -> ProcessComponent:
    """The FIX 4.4 exchange simulator (acceptor), or nothing started when a real one is named."""
    store_dir = fix_store_root(config) / EXCHANGE_SIM

    def argv() -> list[str]:
        return [
            sys.executable, "-m", "clearing_tools.cli.main", "exchange-sim",
            "--host", config.host,
            "--port", str(config.exchange_sim_port),
            "--control-port", str(config.exchange_sim_control_port),
            "--store-dir", str(store_dir),
            "--heartbeat-interval", str(config.fix_heartbeat_interval),
            *([] if config.fix_store_fsync else ["--no-fsync"]),
        ]  # fmt: skip

    return ExchangeSimComponent(
        name=EXCHANGE_SIM,
        argv_factory=argv,
        config=config,
        host=config.host,
        port=config.exchange_sim_port,
        external_address=config.exchange_endpoint,
        ready_timeout=20,
        port_hint="--exchange-port / CLEARING_EXCHANGE_SIM_PORT",
        probe_port=config.exchange_sim_control_port,  # a probe on the FIX port would kick the proxy off
        control_port=config.exchange_sim_control_port,
    )


def proxy_environment(config: RuntimeConfig) -> dict[str, str]:
    """The proxy process's environment: ProxySettings for a local run."""
    exchange_host, exchange_port = config.exchange_address
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_PROXY_VARIABLE_PREFIXES) and k not in _PROXY_VARIABLES
    }
    return {
        **inherited,
        "FIX_STORE_DIR": str(proxy_store_dir(config)),
        "FIX_STORE_FSYNC": "true" if config.fix_store_fsync else "false",
        "FIX_HEARTBEAT_INTERVAL": str(config.fix_heartbeat_interval),
        "EXCHANGE_HOST": exchange_host,
        "EXCHANGE_PORT": str(exchange_port),
        "RECONNECT_MAX_BACKOFF": "2",  # a restarted simulator is back within a second or two
        "GATEWAY_HOST": config.host,
        "GATEWAY_PORT": str(config.proxy_gateway_port),
        "HEALTH_HOST": config.host,
        "HEALTH_PORT": str(config.proxy_health_port),
        "KAFKA_BOOTSTRAP_SERVERS": config.bootstrap_servers,
        "POWERTOOLS_SERVICE_NAME": "fix_proxy",
    }


def fix_proxy_component(config: RuntimeConfig) -> ProcessComponent:
    """The FIX proxy (what the Fargate task runs), or nothing started when a running one is named."""
    component = FixProxyComponent(
        name=FIX_PROXY,
        argv_factory=lambda: [sys.executable, "-m", "clearing_fix.proxy"],
        config=config,
        host=config.host,
        port=config.proxy_gateway_port,
        external_address=config.proxy_endpoint,
        ready_timeout=20,
        port_hint="--proxy-port / CLEARING_PROXY_GATEWAY_PORT",
        env=proxy_environment(config),
        health_port=config.proxy_health_port,
        logon_timeout=config.fix_logon_timeout,
    )
    component.after_start = component.wait_logged_on
    return component
