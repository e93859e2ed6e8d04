"""`clearing demo`: the main job (see clearing_tools.local.demo)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline locally end to end and report")
    p.add_argument("--orders", type=int, default=100_000, help="orders to publish (default 100000)")
    p.add_argument("--rate", type=float, default=0, help="orders/s to publish at (0: as fast as possible)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--report", default="reports/demo.html", help="HTML report path ('' for none)")
    p.add_argument("--keep-running", action="store_true", help="leave the stack up afterwards")
    p.add_argument("--state-dir", help="local runtime state folder (default .clearing)")
    p.add_argument("--functions", action="append", default=None, help="only these functions' mappings")
    p.add_argument("--batching-window", type=float, default=None, help="cap of the local batching window (s)")
    p.add_argument(
        "--no-console",
        action="store_true",
        help="do not start the web console / member API (clearing console)",
    )
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    from clearing_tools.local.config import RuntimeConfig
    from clearing_tools.local.demo import print_summary, run_demo

    overrides = {}
    if args.state_dir:
        overrides["state_dir"] = Path(args.state_dir)
    if args.functions:
        overrides["functions"] = args.functions
    if args.batching_window is not None:
        overrides["batching_window_cap_s"] = args.batching_window
    from clearing_tools.local.processes import one_line

    try:
        config = RuntimeConfig(**overrides)
        if not args.no_console and "console" not in config.extra_components:
            # the console and member API run beside the pipeline: with --keep-running it shows the run
            config = config.model_copy(update={"extra_components": [*config.extra_components, "console"]})
        summary = run_demo(
            args.orders,
            args.rate,
            args.seed,
            config,
            keep_running=args.keep_running,
            quiet=args.json,
            report=Path(args.report) if args.report else None,
        )
    except KeyboardInterrupt:
        print("clearing demo interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line naming the cause, never a traceback
        from clearing_tools.local.processes import RuntimeStartError, RuntimeStateError

        what = (
            str(exc)
            if isinstance(exc, RuntimeStartError | RuntimeStateError)
            else f"{type(exc).__name__}: {exc}"
        )
        print(f"clearing demo failed: {one_line(what, 1000)}", file=sys.stderr)
        return 1
    if args.json:
        keys = (
            "orders",
            "accepted",
            "rejected",
            "trades",
            "throughput_orders_per_sec",
            "latency_ms",
            "netting_efficiency",
            "invariants_ok",
        )
        print(json.dumps({k: summary[k] for k in keys}))
    else:
        print_summary(summary)
        if args.keep_running and not args.no_console:
            print(
                f"console: http://{config.host}:{config.console_port}/ (a token: clearing token --operator, "
                f"or --member MBR01; state in {config.state_path}); stop with: clearing down",
                file=sys.stderr,
            )
    return 0 if summary["invariants_ok"] and summary["unaccounted"] == 0 else 1
