"""Audit export of a member's day: every record of that member and day, nothing of others, checksummed."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime

import pytest
from clearing.repositories import keys
from clearing.services.audit import KINDS, export_member_day
from clearing.services.queries import original_message
from clearing.services.reports import run_margin
from clearing_tools.bench.harness import InMemoryPipeline
from clearing_tools.local.oms import generate_orders

DAY = "2026-11-24"


class NoScanStore:
    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        if name == "scan":
            raise AssertionError("Scan while exporting one member's day")
        return getattr(self.store, name)


@pytest.fixture(scope="module")
def seeded():
    p = InMemoryPipeline()
    for m in generate_orders(1500, seed=11):
        p.log.append("orders.new", m.key.encode(), m.value)
    p.drain(batch_size=200)
    run_margin(p.store, p.refdata.current(), run_at=datetime(2026, 11, 24, 18, 0, tzinfo=UTC))
    return p


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_by_scan(store, member):
    """The oracle: what a full scan says belongs to the member's day."""
    orders = store.scan(keys.ORDERS)
    accepted = {
        i["sk"][2:-2]: i
        for i in orders
        if i["pk"] == member and i.get("decision") == "ACCEPTED" and (i.get("sent_at") or "").startswith(DAY)
    }
    states = [
        i for i in orders if i["pk"] == member and i.get("kind") == "STATE" and i["sk"][2:-2] in accepted
    ]
    rejections = [
        i
        for i in orders
        if i.get("decision") == "REJECTED"
        and i.get("member_id") == member
        and ((original_message(i) or {}).get("sent_at") or "").startswith(DAY)
    ]
    executed = [
        t
        for t in store.scan(keys.TRADES)
        if t["sk"] == "EXECUTED"
        and t["trade_date"] == DAY
        and member in (t["buy"]["member_id"], t["sell"]["member_id"])
    ]
    cleared = {t["trade_id"]: t for t in store.scan(keys.TRADES) if t["sk"] == "CLEARED"}
    legs = [leg for t in executed for leg in cleared[t["trade_id"]]["legs"] if leg["member_id"] == member]
    dates = {leg["settlement_date"] for leg in legs}
    obligations = [
        o
        for o in store.scan(keys.OBLIGATIONS)
        if o.get("member_id") == member
        and o.get("settlement_date") in dates
        and o.get("kind") != "INSTRUCTION"
    ]
    margin = [
        m for m in store.scan(keys.MARGIN) if m.get("member_id") == member and m.get("kind") == "MARGIN"
    ]
    calls = [
        m for m in store.scan(keys.MARGIN) if m.get("member_id") == member and m.get("kind") == "MARGIN_CALL"
    ]
    return {
        "orders": len(accepted) + len(states),
        "rejections": len(rejections),
        "trades": len(executed),
        "legs": len(legs),
        "obligations": len(obligations),
        "margin": len(margin),
        "margin_calls": len(calls),
    }


@pytest.mark.parametrize("member", ["MBR02", "MBR06"])
def test_the_export_holds_every_record_of_the_members_day_and_nothing_else(seeded, member, tmp_path):
    manifest = export_member_day(NoScanStore(seeded.store), member, DAY, tmp_path)
    assert manifest["record_counts"] == expected_by_scan(seeded.store, member)
    assert manifest["record_counts"]["trades"] > 10 and manifest["record_counts"]["margin"] == 1
    rows = {kind: read_jsonl(tmp_path / f"{kind}.jsonl") for kind in KINDS}
    for kind, records in rows.items():
        assert len(records) == manifest["record_counts"][kind]
        for r in records:
            if kind == "trades":
                assert member in (r["buy"]["member_id"], r["sell"]["member_id"]) and r["trade_date"] == DAY
            else:
                assert r.get("member_id") == member, (kind, r)
    # provenance travels with every stream-written record
    assert all(r["src"].startswith("orders.new/") and r["written_by"] for r in rows["rejections"])
    assert all((r.get("src") or r.get("last_src")) and r["written_by"] for r in rows["orders"])
    assert all(r["source"]["topic"] == "orders.accepted" and r["cleared_from"] for r in rows["trades"])
    assert all(r["src"].startswith("trades.executed/") for r in rows["legs"])
    # legs of the day's trades are exactly the member's side of each
    assert len(rows["legs"]) == sum(
        (t["buy"]["member_id"] == member) + (t["sell"]["member_id"] == member) for t in rows["trades"]
    )


def test_manifest_checksums_and_csv_match_the_files(seeded, tmp_path):
    manifest = export_member_day(seeded.store, "MBR03", DAY, tmp_path)
    assert set(manifest["files"]) == {f"{k}.{e}" for k in KINDS for e in ("jsonl", "csv")}
    for name, meta in manifest["files"].items():
        data = (tmp_path / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["bytes"]
        if name.endswith(".csv"):
            with open(tmp_path / name, newline="") as f:
                assert len(list(csv.DictReader(f))) == meta["records"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest


def test_another_day_and_another_member_share_nothing(seeded, tmp_path):
    empty = export_member_day(seeded.store, "MBR02", "2026-11-23", tmp_path / "a")
    assert not any(empty["record_counts"].values())
    a = export_member_day(seeded.store, "MBR02", DAY, tmp_path / "b")
    export_member_day(seeded.store, "MBR04", DAY, tmp_path / "c")
    ids = lambda d: {json.dumps([r.get("pk"), r.get("sk")]) for r in read_jsonl(d / "orders.jsonl")}  # noqa: E731
    assert a["record_counts"]["orders"] and not ids(tmp_path / "b") & ids(tmp_path / "c")


def test_cli_audit_writes_the_export(seeded, tmp_path, monkeypatch, capsys):
    import clearing_tools.cli.context as context
    from clearing_tools.cli.main import main

    monkeypatch.setattr(context, "data_store", lambda: seeded.store)
    assert main(["audit", "--member", "MBR01", "--date", DAY, "--out", str(tmp_path), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["record_counts"] == expected_by_scan(seeded.store, "MBR01")
    assert (tmp_path / "manifest.json").exists()
