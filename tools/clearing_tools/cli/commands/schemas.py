"""`clearing schemas [--check]`: write (or check) schemas/*.schema.json and docs/wire-format.md."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schemas",
        help="write the JSON Schema of every topic and docs/wire-format.md from the message types",
        description="Generate schemas/<topic>.schema.json and docs/wire-format.md from clearing/messages.py.",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file is stale")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clearing_tools.schemas import ROOT, stale_files, write_files

    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run `clearing schemas` and commit the result)")
        if not stale:
            print("schemas and docs/wire-format.md are up to date")
        return 1 if stale else 0
    written = write_files()
    for path in written:
        print(f"wrote {path.relative_to(ROOT)}")
    if not written:
        print("schemas and docs/wire-format.md were already up to date")
    return 0
