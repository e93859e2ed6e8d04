"""`clearing token`, `clearing console`: development tokens and the local member API + web console."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _config(args):
    from clearing_tools.cli.commands.runtime import saved_config
    from clearing_tools.local.config import RuntimeConfig

    if getattr(args, "config", None):
        return RuntimeConfig.model_validate_json(Path(args.config).read_text())
    return saved_config(args)


def cmd_token(args: argparse.Namespace) -> int:
    from clearing_tools.local.console import issue_token, signing_secret

    if not args.member and not args.operator:
        print("clearing token: name --member MEMBER, --operator, or both", file=__import__("sys").stderr)
        return 2
    config = _config(args)
    token = issue_token(signing_secret(config.state_path), args.member, args.operator, ttl_s=args.ttl)
    if args.json:
        url = f"http://{config.host}:{config.console_port}/#token={token}"
        print(json.dumps({"token": token, "url": url}))
    else:
        print(token)
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from clearing_tools.local.console import serve

    config = _config(args)
    serve(config, args.host, args.port)
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "token",
        help="a development token for the local member API / console (HS256, secret in the state dir)",
    )
    p.add_argument("--state-dir", type=Path, help="state dir of `clearing up` (default .clearing/)")
    who = p.add_argument_group("who (one or both)")
    who.add_argument("--member", help="member id the token acts for (custom:member_id)")
    who.add_argument("--operator", action="store_true", help="in the operators group: reads every member")
    p.add_argument("--ttl", type=int, default=12 * 3600, help="seconds until it expires (default 12 h)")
    p.add_argument("--json", action="store_true", help="token and console URL as JSON")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("console", help="serve the member API and web console in the foreground")
    p.add_argument("--state-dir", type=Path, help="state dir of `clearing up` (default .clearing/)")
    p.add_argument("--config", help="runtime.json to read (what `clearing up` saved)")
    p.add_argument("--host", help="bind address (default the runtime's host)")
    p.add_argument("--port", type=int, help="port (default CLEARING_CONSOLE_PORT or 19100)")
    p.set_defaults(func=cmd_console)
