"""`clearing chaos`: a clean run and a run under injected faults of the same flow (clearing_tools.local.chaos)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "chaos",
        help="run the same order flow clean and under faults (kills, outages, throttling, redelivery); "
        "compare the final states",
    )
    p.add_argument("--orders", type=int, default=3000, help="orders in the flow (default 3000)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--rate", type=float, default=400.0, help="orders/s published (default 400)")
    p.add_argument(
        "--throttle", type=float, default=0.03, help="share of DynamoDB calls throttled (default 0.03)"
    )
    p.add_argument("--pause", type=float, default=3.0, help="seconds the broker and DynamoDB are stopped")
    p.add_argument("--state-dir", default=".clearing-chaos", help="where both runs keep their state")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_chaos)


def _chaos(args) -> int:
    from clearing_tools.local.chaos import print_chaos, run_chaos

    def log(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    result, errors = run_chaos(
        orders=args.orders,
        seed=args.seed,
        rate=args.rate,
        throttle=args.throttle,
        pause_s=args.pause,
        state_dir=Path(args.state_dir),
        log=log,
    )
    if args.json:
        print(json.dumps({**result.to_dict(), "injection_errors": errors}, indent=2))
    else:
        print_chaos(result, errors)
    return 0 if result.equal and not errors else 1
