"""The demo's HTML report reads like a clearing report: formatted amounts with the currency, who pays
and who receives, margin calls with shortfalls, rejections by reason, a note when latency is queueing."""

from __future__ import annotations

from decimal import Decimal

from clearing_tools.local.report import latency_note, money, obligations_by_member, write_report

ROWS = [  # two members trading one symbol: net cash sums to zero, fees on top
    {"member_id": "MBR01", "symbol": "ACME", "settlement_date": "2026-11-25", "net_quantity": 100,
     "net_cash": "-12540.00", "fees": "1.25", "gross_quantity": 100, "gross_cash": "12540.00", "leg_count": 1},
    {"member_id": "MBR02", "symbol": "ACME", "settlement_date": "2026-11-25", "net_quantity": -100,
     "net_cash": "12540.00", "fees": "2.51", "gross_quantity": 100, "gross_cash": "12540.00", "leg_count": 1},
]  # fmt: skip


def summary(publish_rate: float = 100.0) -> dict:
    return {
        "orders": 2,
        "business_date": "2026-11-24",
        "currency": "USD",
        "parameters": {"orders": 2, "rate": 0, "seed": 1},
        "accepted": 2,
        "rejected": 3,
        "unaccounted": 0,
        "rejected_by_reason": {"BAD_LOT": 2, "MALFORMED": 1},
        "trades": 1,
        "cleared_notional": "12540.00",
        "throughput_orders_per_sec": 100.0,
        "publish_rate_orders_per_sec": publish_rate,
        "latency_ms": {"p50": 12.0, "p99": 40.0, "max": 41.0},
        "netting_efficiency": 0.5,
        "netting": {"gross_settlements": 2, "net_settlements": 2},
        "margin_calls": 1,
        "invariants_ok": True,
        "violations": [],
        "cpu_seconds_by_component": {"moto": 0.5, "broker": 0.1},
        "cpu_ms_per_order": 300.0,
        "cpu_cores": 2,
        "invocations": {"MatchOrdersFunction.OrdersAccepted.w0": {
            "invocations": 2, "records_per_invocation": 1.0, "mean_invocation_ms": 5.0}},
        "_charts": {
            "started": 0.0, "published_at": [0.1, 0.2], "cleared_at": [0.5], "latencies": [12.0],
            "netting_rows": ROWS,
            "margin": [
                {"member_id": "MBR01", "initial_margin": "1000.00", "variation_margin": "-50.00",
                 "requirement": "1050.00", "collateral": "400.00", "shortfall": "650.00", "worst_scenario": 3},
                {"member_id": "MBR02", "initial_margin": "900.00", "variation_margin": "50.00",
                 "requirement": "900.00", "collateral": "5000.00", "shortfall": "0", "worst_scenario": 2},
            ],
        },
    }  # fmt: skip


def test_obligations_are_signed_from_the_members_side_fees_included():
    by_member = {o["member_id"]: o for o in obligations_by_member(ROWS)}
    assert by_member["MBR01"]["net_cash"] == Decimal("-12541.25")  # buyer pays principal and fee
    assert by_member["MBR02"]["net_cash"] == Decimal("12537.49")  # seller receives principal less fee
    assert by_member["MBR01"]["receive"] == {"ACME": 100} and by_member["MBR02"]["deliver"] == {"ACME": 100}


def test_amounts_are_formatted_with_the_currency():
    assert money("5721056703", "USD") == "5,721,056,703.00 USD"


def test_report_has_the_clearing_tables_and_no_python_reprs(tmp_path):
    text = write_report(summary(), tmp_path / "r.html").read_text()
    assert "12,541.25 USD" in text and "12,537.49 USD" in text  # MBR01 pays, MBR02 receives
    assert "<th>pays</th>" in text and "<th>receives</th>" in text
    assert "650.00 USD" in text and "CALL" in text  # margin call with its shortfall
    assert "BAD_LOT" in text and "66.7%" in text  # rejections by reason with shares
    assert "2026-11-24" in text and "business (trade) date" in text
    assert "{'" not in text and "True" not in text and "Decimal(" not in text
    assert text.count("data:image/png") == 5
    assert text.index("Developer section") > text.index("Margin (USD)")  # CPU figures at the end


def test_a_publish_burst_is_called_out_as_queueing():
    assert latency_note(summary(publish_rate=100.0)) is None
    note = latency_note(summary(publish_rate=5800.0))
    assert note and "58.0 times" in note and "queueing" in note
