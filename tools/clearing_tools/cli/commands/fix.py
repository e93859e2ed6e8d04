"""`clearing proxy`, `clearing exchange-sim`, `clearing exchange-fault`: the exchange side as services.

`proxy` runs the FIX proxy exactly as the container does (configuration from the environment, see
docs/exchange.md); flags override the most used variables for local runs. `exchange-sim` runs the
FIX 4.4 exchange simulator with its fault-injection control port; `exchange-fault` sends one
control command to a running simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
from typing import Any

_PROXY_FLAGS = {
    "exchange_host": "EXCHANGE_HOST",
    "exchange_port": "EXCHANGE_PORT",
    "gateway_port": "GATEWAY_PORT",
    "health_port": "HEALTH_PORT",
    "store_dir": "FIX_STORE_DIR",
    "heartbeat_interval": "FIX_HEARTBEAT_INTERVAL",
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
}


def register(subparsers: Any) -> None:
    proxy = subparsers.add_parser("proxy", help="run the FIX proxy (gateway port, health port, FIX session)")
    proxy.add_argument("--exchange-host")
    proxy.add_argument("--exchange-port", type=int)
    proxy.add_argument("--gateway-port", type=int)
    proxy.add_argument("--health-port", type=int)
    proxy.add_argument("--store-dir", help="FIX session store directory (FIX_STORE_DIR)")
    proxy.add_argument("--heartbeat-interval", type=int)
    proxy.add_argument("--kafka-bootstrap-servers")
    proxy.set_defaults(func=run_proxy)

    sim = subparsers.add_parser("exchange-sim", help="run the FIX 4.4 exchange simulator (acceptor)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9878)
    sim.add_argument("--control-port", type=int, default=9879, help="fault-injection control port")
    sim.add_argument("--sender-comp-id", default="EXCHANGE")
    sim.add_argument("--target-comp-id", default="CLEARHOUSE")
    sim.add_argument("--password", default=os.environ.get("EXCHANGE_SIM_PASSWORD"))
    sim.add_argument(
        "--store-dir", help="keep the session's sequence numbers here (default: in memory, reset on restart)"
    )
    sim.add_argument("--heartbeat-interval", type=int, default=30, help="HeartBtInt in seconds")
    sim.add_argument("--no-fsync", action="store_true", help="do not fsync the store (local runs)")
    sim.set_defaults(func=run_exchange_sim)

    fault = subparsers.add_parser(
        "exchange-fault", help="send a fault command to a running exchange simulator"
    )
    fault.add_argument(
        "command",
        nargs="+",
        help="drop | drop-next | skip N | reject session|business|app | "
        "silence | resume | resend BEGIN [END] | status",
    )
    fault.add_argument("--host", default="127.0.0.1")
    fault.add_argument("--control-port", type=int, default=9879)
    fault.set_defaults(func=send_fault)


def run_proxy(args: argparse.Namespace) -> int:
    for flag, env in _PROXY_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[env] = str(value)
    from clearing_fix.proxy import main

    return main()


def run_exchange_sim(args: argparse.Namespace) -> int:
    from clearing_tools.exchange.simulator import ExchangeSimulator, run_simulator

    logging.basicConfig(
        level=logging.INFO, format='{"level":"%(levelname)s","logger":"%(name)s","message":"%(message)s"}'
    )
    store = None
    if args.store_dir:
        from clearing_fix.session import SessionConfig
        from clearing_fix.store import FileSessionStore

        session_id = SessionConfig(args.sender_comp_id, args.target_comp_id).session_id
        store = FileSessionStore(args.store_dir, session_id, fsync=not args.no_fsync)
    simulator = ExchangeSimulator(
        sender_comp_id=args.sender_comp_id,
        target_comp_id=args.target_comp_id,
        password=args.password,
        host=args.host,
        port=args.port,
        control_port=args.control_port,
        heartbeat_interval=args.heartbeat_interval,
        store=store,
    )
    asyncio.run(run_simulator(simulator))
    return 0


def send_fault(args: argparse.Namespace) -> int:
    with socket.create_connection((args.host, args.control_port), timeout=5) as sock:
        sock.sendall((" ".join(args.command) + "\n").encode())
        answer = sock.makefile().readline()
    print(answer.strip())
    return 0 if json.loads(answer).get("ok") else 1
