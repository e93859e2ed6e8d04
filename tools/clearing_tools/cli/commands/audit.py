"""`clearing audit`: export everything that happened for a member on a date (JSON Lines, CSV, manifest)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="export a member's day: orders, rejections, trades, legs, obligations, "
        "margin calls as JSON Lines and CSV with a manifest (counts, SHA-256)",
    )
    p.add_argument("--member", required=True)
    p.add_argument("--date", required=True, type=date.fromisoformat, help="YYYY-MM-DD (trade date)")
    p.add_argument("--out", type=Path, help="output folder (default reports/audit/<member>-<date>)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=_audit)


def _audit(args) -> int:
    from clearing.services.audit import export_member_day

    from clearing_tools.cli.context import data_store

    day = args.date.isoformat()
    out = args.out or Path("reports/audit") / f"{args.member}-{day}"
    manifest = export_member_day(data_store(), args.member, day, out)
    if args.json:
        print(json.dumps(manifest))
        return 0
    counts = ", ".join(f"{k} {v}" for k, v in manifest["record_counts"].items())
    print(f"{args.member} {day}: {counts}")
    if manifest["notes"]["undated_rejections"]:
        print(
            f"rejections that cannot be dated (original not JSON): {manifest['notes']['undated_rejections']}"
        )
    print(f"written to {out} (manifest.json holds the SHA-256 of each file)")
    return 0
