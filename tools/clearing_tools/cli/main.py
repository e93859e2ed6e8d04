"""Entry point of the `clearing` command.

Each module in clearing_tools.cli.commands defines `register(subparsers)`; it adds its subcommand(s)
and sets `func` (a callable taking the parsed args and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from clearing_tools.cli import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clearing", description="Clearing-house trade pipeline")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def explain(exc: BaseException) -> str | None:
    """One line for an error a user can cause (missing file, a stack that is not running, bad
    configuration); None for a bug, which keeps its traceback. Wrapped causes are looked at too
    (adapters raise InfrastructureError from botocore's and kafka-python's errors)."""
    seen: BaseException | None = exc
    while seen is not None:
        line = _explain_one(seen)
        if line is not None:
            return line
        seen = seen.__cause__ or seen.__context__
    from clearing.ports import InfrastructureError

    if isinstance(exc, InfrastructureError):
        return f"{exc} (is the local stack running? `clearing status`)"
    return None


def _explain_one(exc: BaseException) -> str | None:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
    from clearing.config import ConfigurationError

    try:
        from kafka.errors import KafkaError, NoBrokersAvailable
    except ImportError:  # pragma: no cover - kafka-python is a runtime dependency
        KafkaError = NoBrokersAvailable = ()  # noqa: N806

    from clearing_tools.cli.context import StackNotRunning

    if isinstance(exc, StackNotRunning):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    if isinstance(exc, IsADirectoryError | PermissionError):
        return f"cannot read {exc.filename}: {exc.strerror}"
    if isinstance(exc, EndpointConnectionError):
        return (
            f"DynamoDB is not answering at {exc.kwargs.get('endpoint_url')}: is the local stack running? "
            "(`clearing status`, `clearing up`; or set DYNAMODB_ENDPOINT_URL / ORDERS_TABLE for real tables)"
        )
    if (
        isinstance(exc, ClientError)
        and exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"
    ):
        return (
            "a table is missing: is the local stack running? (`clearing status`, `clearing up`), "
            f"or are ORDERS_TABLE & co. right? ({exc.response['Error'].get('Message')})"
        )
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials for DynamoDB: configure them (aws configure) or point at the local stack"
    if NoBrokersAvailable and isinstance(exc, NoBrokersAvailable):
        return "Kafka is not answering: is the local stack running? (`clearing status`) or set KAFKA_BOOTSTRAP_SERVERS"
    if KafkaError and isinstance(exc, KafkaError):
        return f"Kafka: {exc}"
    if isinstance(exc, ConfigurationError):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused ({exc}): is the local stack running? (`clearing status`)"
    return None


def main(argv: list[str] | None = None) -> int:
    import os

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `clearing ... --json | head`: the reader left; stop quietly (and keep Python's exit flush quiet)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("clearing: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        line = explain(exc)
        if line is None or os.environ.get("CLEARING_DEBUG"):
            raise
        print(f"clearing {args.command}: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
