"""`clearing bench ...`: benchmarks, one sub-subcommand each.

Hook for more benchmarks: any module in the `clearing_tools.bench` package that defines
`register_bench(bench_subparsers)` is picked up automatically (e.g. clearing_tools/bench/handlers.py
adding `clearing bench handlers`). A module elsewhere can instead append its register function
to `BENCH_COMMANDS` at import time.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import clearing_tools.bench

# Extra `register_bench(bench_subparsers)` callables, for benchmarks living outside clearing_tools.bench.
BENCH_COMMANDS: list[Callable[[Any], None]] = []


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks (matching engine, ...)")
    bench_sub = parser.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    parser.set_defaults(func=lambda args: _print_help(parser))
    registrars: list[Callable[[Any], None]] = []
    for info in sorted(pkgutil.iter_modules(clearing_tools.bench.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{clearing_tools.bench.__name__}.{info.name}")
        register_bench = getattr(module, "register_bench", None)
        if register_bench is not None:
            registrars.append(register_bench)
    for register_bench in registrars + BENCH_COMMANDS:
        register_bench(bench_sub)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
