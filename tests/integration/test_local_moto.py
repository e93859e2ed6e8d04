"""The local moto launcher (waitress keep-alive, direct DynamoDB dispatch, big pages, direct JSON for reads)
answers like moto_server, over one reused connection."""

from __future__ import annotations

import subprocess
import sys

import pytest
import urllib3.connection
from clearing.adapters.dynamodb import DynamoItemStore, dynamodb_client
from clearing.ports import StaleCheckpoint
from clearing_tools.local.processes import free_port, stop_started, wait_for_port
from clearing_tools.template_model import create_table_kwargs, tables

pytestmark = pytest.mark.integration


def _server(argv):
    port = free_port()
    proc = subprocess.Popen(
        [*argv, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port("127.0.0.1", port, 30, proc)
        client = dynamodb_client(f"http://127.0.0.1:{port}", aws_access_key_id="x", aws_secret_access_key="x")
        for logical, name in (("OrdersTable", "orders"), ("StateTable", "state")):
            client.create_table(**create_table_kwargs(tables()[logical], name))
    except BaseException:
        stop_started(proc)  # a failed start leaves no server behind
        raise
    return proc, DynamoItemStore(client, {"orders": "orders", "state": "state"})


def _exercise(store) -> dict:
    items = [
        {
            "pk": f"M{i % 3}",
            "sk": f"O#{i:05d}#V",
            "gsi1pk": f"S{i % 2}",
            "gsi1sk": str(i),
            "n": i,
            "price": "125.40",
            "legs": [{"a": i}],
            "flag": None,
        }
        for i in range(600)
    ]
    store.put_many("orders", items)
    store.put_many("state", [{"pk": "BOOK#X", "sk": "-", "book": b"\x00\xffbytes", "version": 3}])
    return {
        "get": store.get_many("orders", [("M1", "O#00001#V"), ("M0", "missing")]),
        "query": store.query("orders", "M2", sk_prefix="O#001"),
        "index": store.query("orders", "S1", index="gsi1")[:5],
        "scan": sorted((i["pk"], i["sk"], i["n"]) for i in store.scan("orders")),
        "bytes": store.get_many("state", [("BOOK#X", "-")]),
        "conditional": _conditional_puts(store),
    }


def _conditional_puts(store) -> list:
    outcomes = []
    for expected in (None, None, 1, 1, 2):
        try:
            store.put_if_version(
                "state", {"pk": "CKPT#p0", "sk": "-", "version": (expected or 0) + 1}, expected
            )
            outcomes.append("ok")
        except StaleCheckpoint:
            outcomes.append("stale")
    return outcomes + [store.get_many("state", [("CKPT#p0", "-")])]


def test_launcher_reads_equal_moto_servers_even_with_small_pages(monkeypatch):
    monkeypatch.setenv("CLEARING_MOTO_PAGE_BYTES", "20000")  # many pages: pagination is exercised
    ours, plain = (
        _server([sys.executable, "-m", "clearing_tools.local.moto_http11"]),
        _server(["moto_server"]),
    )
    try:
        answers = _exercise(ours[1])
        assert answers == _exercise(plain[1])
        assert len(answers["scan"]) == 600
        assert answers["conditional"][:5] == ["ok", "stale", "ok", "stale", "ok"]
    finally:
        for proc, _ in (ours, plain):
            proc.terminate()


def test_launcher_keeps_connections_alive(monkeypatch):
    """moto_server closes every connection (a TCP connect and a server thread per call); ours must not."""
    connects = []
    real_connect = urllib3.connection.HTTPConnection.connect

    def counting_connect(self):
        connects.append(1)
        return real_connect(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "connect", counting_connect)
    ours, plain = (
        _server([sys.executable, "-m", "clearing_tools.local.moto_http11"]),
        _server(["moto_server"]),
    )
    try:
        for (_, store), label in ((ours, "ours"), (plain, "moto_server")):
            connects.clear()
            store.put_many("orders", [{"pk": "M", "sk": f"O#{i}", "n": i} for i in range(100)])  # 4 calls
            for i in range(20):
                store.get_many("orders", [("M", f"O#{i}")])
            if label == "ours":
                assert len(connects) <= 1
            else:
                assert len(connects) >= 20  # what the launcher exists to avoid
    finally:
        for proc, _ in (ours, plain):
            proc.terminate()
