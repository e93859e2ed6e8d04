"""`clearing publish`: the OMS simulator, publishing orders to `orders.new` (key: member id)."""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

from clearing.topics import ORDERS_NEW


def _bootstrap(args: argparse.Namespace) -> str:
    if args.bootstrap_servers:
        return args.bootstrap_servers
    from clearing_tools.local.config import RuntimeConfig

    config = RuntimeConfig(**({"state_dir": args.state_dir} if args.state_dir else {}))
    saved = config.state_path / "runtime.json"
    if saved.is_file() and not config.kafka_bootstrap_servers:
        config = RuntimeConfig.model_validate_json(saved.read_text())
    return config.bootstrap_servers


def _lost_broker(args: argparse.Namespace) -> str | None:
    """One line when the local runtime's broker lost its run (restarted empty): records published
    into it would go to a log the mappings no longer follow."""
    if args.bootstrap_servers:
        return None
    from clearing_tools.local.config import RuntimeConfig
    from clearing_tools.local.identity import broker_problem, read_identity

    config = RuntimeConfig(**({"state_dir": args.state_dir} if args.state_dir else {}))
    saved = config.state_path / "runtime.json"
    if not saved.is_file() or config.kafka_bootstrap_servers:
        return None
    config = RuntimeConfig.model_validate_json(saved.read_text())
    identity = read_identity(config)
    problem = broker_problem(config, identity) if identity else None
    if problem is None or not problem.lost:
        return None  # an unreachable broker is reported by the producer below
    return f"{problem}; `clearing down` then `clearing up` starts a new run"


def _messages(args: argparse.Namespace):
    from clearing_tools.local.oms import OrderMix, generate_orders, orders_from_lines

    if args.file:
        fmt = args.format or ("csv" if args.file.suffix.lower() == ".csv" else "jsonl")
        handle = sys.stdin if str(args.file) == "-" else args.file.open(encoding="utf-8", newline="")
        messages = orders_from_lines(iter(handle), fmt)
        return messages if args.count is None else itertools.islice(messages, args.count), args.count
    count = 1000 if args.count is None else args.count
    return (
        generate_orders(
            count,
            seed=args.seed,
            mix=OrderMix.parse(args.mix) if args.mix else None,
            invalid_fraction=args.invalid_fraction,
            exchange_fraction=args.exchange_fraction,
            id_prefix=args.id_prefix,
        ),
        count,
    )


def cmd_publish(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    messages, total = _messages(args)
    if args.dry_run:
        for message in messages:
            sys.stdout.write(message.value.decode("utf-8", "replace") + "\n")
        return 0
    from kafka import KafkaProducer

    from clearing_tools.local.oms import create_time_ms, wait_until_due

    bootstrap = _bootstrap(args)
    lost = _lost_broker(args)
    if lost:
        console.print(f"[red]not publishing:[/red] {lost}", soft_wrap=True)
        return 1
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1, retries=5)
    except Exception as exc:  # noqa: BLE001 - NoBrokersAvailable and friends
        console.print(f"[red]cannot reach Kafka at {bootstrap}:[/red] {exc} (is `clearing up` running?)")
        return 1
    sent = invalid = 0
    started = time.monotonic()
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[rate]:.0f} msg/s"), console=console, disable=args.quiet,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"publishing to {args.topic}", total=total, rate=0.0)
        for message in messages:
            wait_until_due(started, sent, args.rate or 0)
            producer.send(
                args.topic,
                key=message.key.encode() if message.key else None,
                value=message.value,
                timestamp_ms=create_time_ms(message),
            )
            sent += 1
            invalid += message.invalid is not None
            if sent % 50 == 0 or sent == total:
                elapsed = max(1e-6, time.monotonic() - started)
                progress.update(task, completed=sent, rate=sent / elapsed)
        producer.flush()
        progress.update(task, completed=sent)
    producer.close()
    elapsed = max(1e-6, time.monotonic() - started)
    console.print(
        f"published {sent} message(s) to {args.topic} at {bootstrap} in {elapsed:.2f} s "
        f"({sent / elapsed:.0f}/s); {invalid} deliberately invalid"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("publish", help="OMS simulator: publish orders to orders.new")
    p.add_argument(
        "-n", "--count", type=int, help="messages to publish (default 1000; a file: all its lines)"
    )
    p.add_argument("--seed", type=int, default=0, help="same seed, same orders (default 0)")
    p.add_argument(
        "--rate", type=float, default=0, help="target messages per second (0: as fast as possible)"
    )
    p.add_argument(
        "--mix",
        help="weights, e.g. 'limit=0.5,market=0.05,ioc=0.1,fok=0.05,post_only=0.05,cancel=0.15,replace=0.1'",
    )
    p.add_argument(
        "--invalid-fraction", type=float, default=0.02, help="share of deliberately invalid orders"
    )
    p.add_argument(
        "--exchange-fraction", type=float, default=0.01, help="share of NEW orders routed to the exchange"
    )
    p.add_argument(
        "--id-prefix", help="client order id prefix (default S<seed>-; change it to publish the seed again)"
    )
    p.add_argument(
        "--file", type=Path, help="publish the orders of a JSON Lines or CSV file instead ('-': stdin)"
    )
    p.add_argument("--format", choices=("jsonl", "csv"), help="file format (default: from the extension)")
    p.add_argument("--topic", default=ORDERS_NEW)
    p.add_argument(
        "--bootstrap-servers", help="default: KAFKA_BOOTSTRAP_SERVERS, else what `clearing up` started"
    )
    p.add_argument("--state-dir", type=Path, help="state dir of `clearing up` (default .clearing/)")
    p.add_argument("--dry-run", action="store_true", help="print the messages instead of publishing them")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_publish)
