"""Components of the local runtime: each can start, stop and report its health.

The core ones are the broker (Tansu), DynamoDB (moto_server), the exchange side (the exchange simulator
and the FIX proxy, clearing_tools.exchange.local) and the event-source mappings (the ESM supervisor). Components
plug in by name: `register_component("fix-proxy", "clearing_tools.exchange.local:fix_proxy_component")` (or an
entry in COMPONENT_FACTORIES) names a factory `factory(config) -> Component`; the exchange side is
started by RuntimeConfig.start_exchange, any other registered one by `clearing up --with NAME` or
CLEARING_EXTRA_COMPONENTS='["NAME"]' (after the mappings; `down` stops it first).
`ProcessComponent` covers the usual case: one background process listening on one port.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.processes import (
    OWNER_ENV,
    RuntimeStartError,
    ensure_port_free,
    pid_alive,
    port_is_open,
    read_pid,
    spawn,
    stop_pid,
    wait_for_port,
    with_log_cause,
)


@dataclass
class ComponentStatus:
    name: str
    address: str
    state: str  # running | stopped | external | degraded
    pid: int | None = None
    detail: str = ""


class Component(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def health(self) -> ComponentStatus: ...


@dataclass
class ProcessComponent:
    """One background process, its pid file in <state>/pids/<name>.pid, its log in <state>/logs/."""

    name: str
    argv_factory: Callable[[], list[str]]
    config: RuntimeConfig
    host: str | None = None
    port: int | None = None
    external_address: str | None = None  # set: a real service is used, nothing is started
    ready_timeout: float = 30.0
    env: dict[str, str] | None = None
    after_start: Callable[[], None] | None = field(default=None, repr=False)
    port_hint: str | None = None  # the flag / env that moves `port`, named when it is taken
    # Connected to for readiness and health instead of `port`: a FIX acceptor would take a probe
    # connection on its own port for its counterparty and drop the live session.
    probe_port: int | None = None

    @property
    def pid_path(self) -> Path:
        return self.config.state_path / "pids" / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.config.state_path / "logs" / f"{self.name}.log"

    @property
    def address(self) -> str:
        if self.external_address:
            return self.external_address
        return f"{self.host}:{self.port}" if self.port else "-"

    def start(self) -> None:
        if self.external_address:
            return
        pid = read_pid(self.pid_path)
        if pid and pid_alive(pid):
            return  # already up (idempotent `up`)
        if self.port:
            ensure_port_free(self.host or self.config.host, self.port, self.name, self.port_hint)
        env = {**(self.env if self.env is not None else os.environ), OWNER_ENV: str(self.config.state_path)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            argv = self.argv_factory()
        except RuntimeStartError as exc:
            raise RuntimeStartError(f"{self.name}: {exc}") from exc
        try:
            proc = spawn(argv, self.log_path, self.pid_path, env=env)
        except RuntimeStartError as exc:
            raise RuntimeStartError(f"{self.name}: {exc}") from exc
        try:
            if self.probe_port or self.port:
                wait_for_port(
                    self.host or self.config.host, self.probe_port or self.port, self.ready_timeout, proc
                )
            if self.after_start:
                self.after_start()
        except Exception as exc:
            self.stop()  # never leave a half-started process behind
            message = str(exc) if str(exc).startswith(f"{self.name}:") else f"{self.name}: {exc}"
            raise RuntimeStartError(with_log_cause(message, self.log_path, log_offset)) from exc

    def stop(self) -> None:
        pid = read_pid(self.pid_path)
        if pid:
            stop_pid(pid)
        self.pid_path.unlink(missing_ok=True)

    def health(self) -> ComponentStatus:
        if self.external_address:
            return ComponentStatus(self.name, self.address, "external")
        pid = read_pid(self.pid_path)
        alive = bool(pid and pid_alive(pid))
        probe = self.probe_port or self.port
        listening = port_is_open(self.host or self.config.host, probe) if probe else alive
        state = "running" if alive and listening else ("degraded" if alive or listening else "stopped")
        return ComponentStatus(self.name, self.address, state, pid if alive else None)


def broker_component(config: RuntimeConfig) -> ProcessComponent:
    from clearing_tools.local.broker import broker_argv

    return ProcessComponent(
        name="broker",
        argv_factory=lambda: broker_argv(config.host, config.broker_port, config.broker_binary),
        config=config,
        host=config.host,
        port=config.broker_port,
        external_address=config.kafka_bootstrap_servers,
        ready_timeout=15,
        port_hint="--broker-port / CLEARING_BROKER_PORT",
    )


def moto_component(config: RuntimeConfig) -> ProcessComponent:
    from clearing_tools.local.dynamodb import dynamodb_resource, moto_argv, wait_for_dynamodb

    def answering() -> None:  # listening is not enough: moto must answer DynamoDB calls
        wait_for_dynamodb(dynamodb_resource(config.dynamodb_url, config.region), timeout=20.0)

    return ProcessComponent(
        name="moto",
        argv_factory=lambda: moto_argv(config.host, config.moto_port),
        config=config,
        host=config.host,
        port=config.moto_port,
        external_address=config.dynamodb_endpoint_url,
        after_start=answering,
        port_hint="--moto-port / CLEARING_MOTO_PORT",
    )


def esm_component(config: RuntimeConfig, owner_pid: int | None = None) -> ProcessComponent:
    """The ESM supervisor (it starts and restarts the mapping workers)."""
    config_path = config.state_path / "runtime.json"

    def argv() -> list[str]:
        cmd = [sys.executable, "-m", "clearing_tools.local.esm", "supervise", str(config_path)]
        return cmd + (["--owner-pid", str(owner_pid)] if owner_pid else [])

    component = ProcessComponent(name="esm-supervisor", argv_factory=argv, config=config)
    original_stop = component.stop

    def stop() -> None:
        from clearing_tools.local.esm import stop_recorded_workers

        original_stop()  # the supervisor stops its workers on SIGTERM
        stop_recorded_workers(config)  # and anything it could not (it was SIGKILLed, say)

    component.stop = stop  # type: ignore[method-assign]
    return component


# name -> "module:function" of a factory(config) -> Component; imported only when used.
COMPONENT_FACTORIES: dict[str, str] = {}


def register_component(name: str, factory_path: str) -> None:
    COMPONENT_FACTORIES[name] = factory_path


# The exchange side, in start order (LocalRuntime starts them after moto, before the mappings).
EXCHANGE_COMPONENTS = ("exchange-sim", "fix-proxy")
register_component("exchange-sim", "clearing_tools.exchange.local:exchange_sim_component")
register_component("fix-proxy", "clearing_tools.exchange.local:fix_proxy_component")
register_component("console", "clearing_tools.local.console:console_component")  # `clearing up` adds it


def extra_component(name: str, config: RuntimeConfig) -> Component:
    try:
        path = COMPONENT_FACTORIES[name]
    except KeyError:
        raise RuntimeStartError(f"unknown component {name!r}; known: {sorted(COMPONENT_FACTORIES)}") from None
    module_name, _, attr = path.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(config)
