"""`clearing replay`: rebuild a stage from the retained Kafka log into fresh tables and diff with live."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from clearing.services.replay import STAGES


def register(sub) -> None:
    p = sub.add_parser(
        "replay",
        help="re-run a stage over the retained Kafka log into fresh tables and compare "
        "with the live state item by item; non-zero exit on any difference",
    )
    p.add_argument("--stage", required=True, choices=[*STAGES, "all"])
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument(
        "--from-beginning", action="store_true", help="replay all the log holds into empty tables"
    )
    start.add_argument(
        "--from-offsets",
        type=Path,
        metavar="FILE",
        help='JSON {"topic": {"partition": first_offset}}; the target tables must already hold '
        "the state as of those offsets (e.g. restored from a backup)",
    )
    p.add_argument("--target-prefix", help="table name prefix of the rebuild (default replay-<UTC time>-)")
    p.add_argument("--target-endpoint", help="DynamoDB endpoint of the rebuild (default: the live one)")
    p.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (default KAFKA_BOOTSTRAP_SERVERS or the local broker)"
    )
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument(
        "--fresh-credit",
        action="store_true",
        help="decide credit afresh instead of taking live CREDIT_LIMIT decisions as recorded",
    )
    p.add_argument("--max-diffs", type=int, default=50, help="differences printed (all are counted)")
    p.add_argument("--drop-target", action="store_true", help="delete the rebuilt tables when done")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_replay)


def target_store(live, endpoint: str | None, prefix: str):
    """The rebuild's ItemStore: every table of template.yaml created as <prefix><LogicalId>."""
    import boto3
    from clearing.adapters.dynamodb import DynamoItemStore

    from clearing_tools.local.dynamodb import create_tables
    from clearing_tools.template_model import table_names

    endpoint = endpoint or live.client.meta.endpoint_url
    region = live.client.meta.region_name
    local = "127.0.0.1" in endpoint or "localhost" in endpoint
    creds = {"aws_access_key_id": "local", "aws_secret_access_key": "local"} if local else {}
    resource = boto3.resource("dynamodb", region_name=region, endpoint_url=endpoint, **creds)
    physical = create_tables(resource, prefix)
    names = table_names(physical.__getitem__)
    # a plain client: a resource's client (de)serialises attribute values itself
    return DynamoItemStore(
        boto3.client("dynamodb", region_name=region, endpoint_url=endpoint, **creds), names
    )


def _replay(args) -> int:
    from clearing.adapters.refdata import StaticReferenceData
    from clearing.services.replay import checkpoints_in, load_offsets, replay

    from clearing_tools.cli.commands.queries import retained_log
    from clearing_tools.cli.context import data_store, reference_data

    live = data_store()
    prefix = args.target_prefix or f"replay-{datetime.now(UTC):%Y%m%d%H%M%S}-"
    target = target_store(live, args.target_endpoint, prefix)
    if set(target.table_names.values()) & set(live.table_names.values()):
        print(
            "the target tables are the live tables: choose another --target-prefix or endpoint",
            file=sys.stderr,
        )
        return 2
    from_offsets = load_offsets(args.from_offsets.read_text()) if args.from_offsets else None
    if from_offsets is None and (held := checkpoints_in(target, [args.stage])):
        print(
            f"target tables are not fresh (checkpoints {', '.join(held[:3])}...): use a new --target-prefix",
            file=sys.stderr,
        )
        return 2
    if args.bootstrap:
        import os

        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = args.bootstrap
    log = retained_log()
    try:
        report = replay(
            [args.stage],
            log,
            live,
            target,
            StaticReferenceData(reference_data(live)),
            from_offsets=from_offsets,
            batch_size=args.batch_size,
            max_differences=args.max_diffs,
            recorded_credit=not args.fresh_credit,
        )
    finally:
        log.close()
    if args.drop_target:
        for name in target.table_names.values():
            target.client.delete_table(TableName=name)
    result = {**report.to_dict(), "target_tables": target.table_names, "target_dropped": args.drop_target}
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(
            f"replayed {', '.join(report.stages)} in {report.seconds:.1f} s: "
            + ", ".join(f"{t} {n:,}" for t, n in report.records_read.items())
        )
        print("compared: " + ", ".join(f"{t} {n:,}" for t, n in report.compared.items()))
        if report.credit_decisions_as_recorded:
            print(f"credit decisions taken as recorded: {report.credit_decisions_as_recorded}")
        for d in report.differences:
            print(
                f"{d.kind:<19} {d.where:<24} {d.key}"
                + (f"  {json.dumps(d.fields, default=str)}" if d.fields else "")
            )
        print(
            "rebuilt state equals the live state"
            if report.ok
            else f"{report.differences_total} difference(s)"
        )
        print(f"rebuilt tables: prefix {prefix}" + (" (dropped)" if args.drop_target else ""))
    return 0 if report.ok else 1
