"""`clearing bench exchange` sends every report in both modes through a real proxy and simulator."""

from __future__ import annotations

import json

import pytest
from clearing_tools.cli.main import main

pytestmark = [pytest.mark.integration]


def test_bench_exchange_json_reports_both_modes(capsys):
    assert main(["bench", "exchange", "--reports", "60", "--depth", "25", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["reports"] == 60 and figures["pipeline_depth"] == 25
    for mode in ("sequential", "pipelined"):
        assert figures[mode]["sent_per_sec"] > 0 and figures[mode]["acked_per_sec"] > 0
