"""The chaos run (clearing_tools.local.chaos): the same order flow clean and under every fault kind.

Given a flow of orders with malformed and oversized records mixed in,
when it runs once cleanly and once while workers, the FIX proxy and the exchange simulator are
SIGKILLed, the broker and DynamoDB are stopped for seconds, DynamoDB throttles a share of the calls
and every batch is delivered twice,
then the final states are equal item by item: no order lost, none doubled, the same exchange acks.
"""

from __future__ import annotations

import pytest
from clearing_tools.local.chaos import FAULT_KINDS, run_chaos

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_chaos_run_ends_in_the_state_of_the_clean_run(tmp_path):
    result, errors = run_chaos(orders=1500, seed=5, rate=250, throttle=0.05, pause_s=2.0, state_dir=tmp_path)
    summary = result.to_dict()
    assert not errors, errors
    for kind in FAULT_KINDS:
        assert summary["faults"][kind]["injected"] >= 1, f"{kind} not injected: {summary['faults']}"
    assert summary["faults"]["worker-kill"]["injected"] >= 4  # every mapping's worker
    assert result.items["trades"] > 100 and result.exchange_acks[0] > 50
    assert result.orders_lost == 0 and result.orders_doubled == 0, summary
    assert not result.verify_clean and not result.verify_chaos, summary["verify"]  # log and store reconcile
    assert result.equal, summary
