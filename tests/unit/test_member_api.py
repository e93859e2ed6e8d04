"""The member API: who reads what (clearing.api.access), and the routes over a seeded in-memory run.

Decisions pinned here (docs/console-and-api.md):
- no token, a tampered, expired or wrongly-signed one, a token naming neither member nor operator: 401;
- a member naming another member in a listing (`?member=MBR02`): 403;
- one order or trade of another member: 404, as for an id that does not exist (ids are not confirmed);
- every route reads by key: the store below fails on Scan.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import pytest
from clearing.adapters.retained_log import InMemoryRetainedLog
from clearing.api import access
from clearing.api.routes import QueryApiDeps, build_api
from clearing.services.reports import run_margin, settle_eod
from clearing_tools.bench.harness import InMemoryPipeline
from clearing_tools.local.console import ConsoleServer, api_gateway_event, issue_token, verify_token
from clearing_tools.local.oms import generate_orders

from tests.unit.handlers import FakeContext, load_handler

SECRET = b"s" * 64


class NoScanStore:
    """The store with Scan forbidden: every API path must read by key."""

    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        if name == "scan":
            raise AssertionError("Scan on a per-request API path")
        return getattr(self.store, name)


@pytest.fixture(scope="module")
def run():
    p = InMemoryPipeline()
    for m in generate_orders(1500, seed=11):
        p.log.append("orders.new", m.key.encode(), m.value)
    p.drain(batch_size=200)
    refdata = p.refdata.current()
    # MBR03 with almost no collateral: the margin run calls it
    poor = dataclasses.replace(refdata.members["MBR03"], collateral=Decimal("1000"))
    run_margin(p.store, dataclasses.replace(refdata, members={**refdata.members, "MBR03": poor}))
    dates = sorted({i["settlement_date"] for i in p.store.scan("obligations")})
    settle_eod(p.store, refdata, dates[0])
    return p


@pytest.fixture(scope="module")
def api(run):
    deps = QueryApiDeps(
        store=NoScanStore(run.store),
        refdata=run.refdata.current,
        log_factory=lambda: InMemoryRetainedLog(run.log),
    )
    return build_api(deps)


@pytest.fixture(scope="module")
def server(api):
    return ConsoleServer(api, SECRET, assets_dir=None)


OPERATOR = {"sub": "op-1", "cognito:groups": ["operators"]}
MBR01 = {"sub": "u-1", "custom:member_id": "MBR01"}
MBR02 = {"sub": "u-2", "custom:member_id": "MBR02"}


def call(api, path: str, claims: dict | None, query: str = "") -> tuple[int, dict]:
    """One request as API Gateway hands it to the Lambda after its JWT authorizer (claims in context)."""
    event = api_gateway_event("GET", path, query, {}, claims or {})
    if claims is None:
        event["requestContext"].pop("authorizer")
    answer = api.resolve(event, FakeContext())
    return answer["statusCode"], json.loads(answer["body"])


# ------------------------------------------------------------------ the access rule (pure)
def test_claims_make_a_member_an_operator_or_nobody():
    assert access.principal_from_claims(MBR01) == access.Principal("u-1", "MBR01", False)
    assert access.principal_from_claims(OPERATOR).operator
    # API Gateway passes cognito:groups as text: "[operators admins]"
    assert access.principal_from_claims({"sub": "x", "cognito:groups": "[admins operators]"}).operator
    assert access.principal_from_claims({"sub": "x", "cognito:groups": '["operators"]'}).operator
    assert not access.principal_from_claims({**MBR01, "cognito:groups": "[operatorsx]"}).operator
    for claims in (None, {}, {"sub": "x"}, {"sub": "x", "cognito:groups": "[traders]"}):
        with pytest.raises(access.NotAuthenticated):
            access.principal_from_claims(claims)
    with pytest.raises(access.NotAuthenticated):  # a member id that could smuggle a key prefix
        access.principal_from_claims({"custom:member_id": "MBR01#O"})


def test_member_scope_is_the_callers_own_and_operators_choose():
    member, operator = access.principal_from_claims(MBR01), access.principal_from_claims(OPERATOR)
    assert access.member_scope(member, None) == "MBR01"
    assert access.member_scope(member, "MBR01") == "MBR01"
    with pytest.raises(access.AccessDenied):
        access.member_scope(member, "MBR02")
    assert access.member_scope(operator, None) is None  # all members
    assert access.member_scope(operator, "MBR02") == "MBR02"
    assert member.can_read("MBR01") and not member.can_read("MBR02") and operator.can_read("MBR02")


# ------------------------------------------------------------------ routes, as the Lambda sees them
def test_a_member_sees_only_its_own_orders_and_an_operator_sees_every_member(api):
    status, mine = call(api, "/api/v1/orders", MBR01, "limit=500")
    assert status == 200 and mine["total"] > 50
    assert {o["member_id"] for o in mine["items"]} == {"MBR01"}
    status, every = call(api, "/api/v1/orders", OPERATOR, "limit=500")
    assert status == 200 and every["total"] > mine["total"]
    assert len({o["member_id"] for o in every["items"]}) > 3
    status, theirs = call(api, "/api/v1/orders", OPERATOR, "member=MBR01&limit=500")
    assert theirs["total"] == mine["total"]


def test_a_member_naming_another_member_is_refused_with_403(api):
    for path in ("orders", "trades", "positions", "obligations", "margin", "settlement-instructions"):
        status, body = call(api, f"/api/v1/{path}", MBR01, "member=MBR02")
        assert status == 403, (path, body)


def test_pagination_walks_every_row_once_and_refuses_foreign_tokens(api):
    _, whole = call(api, "/api/v1/orders", MBR01, "limit=500")
    seen, token, pages = [], None, 0
    while True:
        _, page = call(api, "/api/v1/orders", MBR01, "limit=40" + (f"&next_token={token}" if token else ""))
        seen += [o["order_id"] for o in page["items"]]
        pages += 1
        token = page["next_token"]
        if not token:
            break
    assert seen == [o["order_id"] for o in whole["items"]] and pages > 1
    _, first = call(api, "/api/v1/orders", MBR01, "limit=10")
    status, _ = call(api, "/api/v1/orders", MBR01, f"limit=10&status=FILLED&next_token={first['next_token']}")
    assert status == 400  # a token of another listing
    status, _ = call(api, "/api/v1/orders", MBR01, "next_token=bm90LWEtdG9rZW4")
    assert status == 400


def test_order_life_by_order_id_or_client_order_id_and_404_for_another_members(api):
    _, page = call(api, "/api/v1/orders", MBR01, "status=FILLED&limit=1")
    order = page["items"][0]
    status, by_order_id = call(api, f"/api/v1/orders/{order['order_id']}", MBR01)
    assert status == 200 and by_order_id["order"]["order_id"] == order["order_id"]
    assert [s["step"] for s in by_order_id["steps"]][:2] == ["RECEIVED", "ACCEPTED"]
    assert "FILLED" in [s["step"] for s in by_order_id["steps"]] and by_order_id["trade_ids"]
    status, by_client_id = call(api, f"/api/v1/orders/{order['client_order_id']}", MBR01)
    assert status == 200 and by_client_id["order"]["order_id"] == order["order_id"]
    status, encoded = call(api, f"/api/v1/orders/{order['order_id'].replace(':', '%3A')}", MBR01)
    assert status == 200 and encoded["order"]["order_id"] == order["order_id"]  # as browsers send it
    status, by_operator = call(api, f"/api/v1/orders/{order['client_order_id']}", OPERATOR)
    assert status == 200 and by_operator["order"]["member_id"] == "MBR01"
    # another member: not found, whichever id it uses
    for oid in (order["order_id"], order["client_order_id"]):
        status, _ = call(api, f"/api/v1/orders/{oid}", MBR02)
        assert status == 404
    status, _ = call(api, "/api/v1/orders/MBR01:NO-SUCH-ORDER", MBR01)
    assert status == 404


def test_trades_are_those_the_member_is_on_and_one_trade_is_404_for_others(api):
    _, mine = call(api, "/api/v1/trades", MBR01, "limit=500")
    assert mine["total"] > 10
    assert all("MBR01" in (t["buy"]["member_id"], t["sell"]["member_id"]) for t in mine["items"])
    # after novation a member's counterparty is the CCP: the other member is not shown
    for t in mine["items"]:
        assert {t["buy"]["member_id"], t["sell"]["member_id"]} <= {"MBR01", "CCP"}
        assert t["legs"] and {leg["member_id"] for leg in t["legs"]} == {"MBR01"}
        assert "MBR0" not in json.dumps({k: t[k] for k in ("buy", "sell")}).replace("MBR01", "")
    _, every = call(api, "/api/v1/trades", OPERATOR, "limit=500")
    assert every["total"] > mine["total"]
    other = next(t for t in every["items"] if "MBR01" not in (t["buy"]["member_id"], t["sell"]["member_id"]))
    assert call(api, f"/api/v1/trades/{other['trade_id']}", MBR01)[0] == 404
    assert call(api, f"/api/v1/trades/{other['trade_id']}", OPERATOR)[0] == 200
    status, newest = call(api, "/api/v1/trades", MBR01, "order=desc&limit=1")
    assert newest["items"][0]["trade_id"] == mine["items"][-1]["trade_id"]


def test_positions_obligations_margin_and_instructions_are_scoped(api):
    for path, rows in (
        ("positions", lambda b: b["items"]),
        ("obligations", lambda b: b["rows"]),
        ("margin", lambda b: b["requirements"]),
        ("settlement-instructions", lambda b: b["items"]),
    ):
        status, body = call(api, f"/api/v1/{path}", MBR01)
        assert status == 200 and rows(body), path
        assert {r["member_id"] for r in rows(body)} == {"MBR01"}, path
        status, body = call(api, f"/api/v1/{path}", OPERATOR)
        assert len({r["member_id"] for r in rows(body)}) > 3, path


def test_obligations_are_signed_with_pay_receive_and_currency(api):
    _, body = call(api, "/api/v1/obligations", OPERATOR)
    for r in body["rows"]:
        assert r["currency"] == "USD"
        assert r["cash"] == (
            "PAY" if Decimal(r["net_cash"]) < 0 else "RECEIVE" if Decimal(r["net_cash"]) else "NONE"
        )
        assert Decimal(r["cash_amount"]) == abs(Decimal(r["net_cash"]))
    # multilateral netting: what members pay in, others receive (principal; fees go to the CCP)
    assert sum(Decimal(r["net_cash"]) for r in body["rows"]) == 0
    for m in body["members"]:
        assert Decimal(m["pay"]) == 0 or Decimal(m["receive"]) == 0


def test_margin_shows_the_call_and_shortfall_only_to_the_called_member_and_operators(api):
    _, op = call(api, "/api/v1/margin", OPERATOR)
    called = {c["member_id"] for c in op["margin_calls"]}
    assert "MBR03" in called and "MBR01" not in called
    assert all(Decimal(c["shortfall"]) > 0 for c in op["margin_calls"])
    _, theirs = call(api, "/api/v1/margin", {"sub": "u", "custom:member_id": "MBR03"})
    assert theirs["margin_calls"] and theirs["requirements"][0]["is_call"] is True
    _, mine = call(api, "/api/v1/margin", MBR01)
    assert mine["margin_calls"] == []


def test_health_is_for_operators_only(api):
    assert call(api, "/api/v1/health", MBR01)[0] == 403
    status, body = call(api, "/api/v1/health", OPERATOR)
    assert status == 200 and body["source"] == "aws"  # no local runtime behind this API


def test_no_claims_is_401_even_if_the_authorizer_were_bypassed(api):
    assert call(api, "/api/v1/orders", None)[0] == 401
    assert call(api, "/api/v1/orders", {"sub": "nobody"})[0] == 401


@pytest.mark.parametrize(
    "query",
    [
        "member=MBR01'%20OR%20'1'='1",
        "symbol=ACME%23O%23",
        "symbol=ACME;DROP%20TABLE",
        "status=FILLED%22%7D",
        "member=%00",
        "limit=-1",
        "limit=100000",
        "next_token=%7B%22o%22:0%7D",
        "since=2026-01-01'--",
    ],
)
def test_injection_attempts_in_query_parameters_are_refused_before_any_read(api, query):
    status, body = call(api, "/api/v1/orders" if "since" not in query else "/api/v1/trades", OPERATOR, query)
    assert status in (400, 422), body


def test_path_ids_with_key_characters_find_nothing(api):
    for oid in ("MBR02:..%2F..", "MBR01%23O%23", "*", "MBR01:S11-MBR01-0000002%23S", "%00", "MBR01%3A%2A"):
        status, _ = call(api, f"/api/v1/orders/{oid}", MBR01)
        assert status in (404, 422), oid


# ------------------------------------------------------------------ tokens (the local server)
def test_token_round_trip_carries_the_cognito_claims():
    claims = verify_token(SECRET, issue_token(SECRET, member="MBR01"))
    assert claims["custom:member_id"] == "MBR01" and "cognito:groups" not in claims
    claims = verify_token(SECRET, issue_token(SECRET, operator=True))
    assert claims["cognito:groups"] == ["operators"]


def _tampered(token: str) -> str:
    import base64

    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["custom:member_id"] = "MBR02"
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}.{body}.{sig}"


def _alg_none(member: str) -> str:
    import base64

    def b64(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'custom:member_id': member, 'exp': 9999999999})}."


def test_the_local_server_refuses_missing_tampered_expired_and_foreign_tokens(server):
    def status(auth: str | None) -> int:
        headers = {"Authorization": auth} if auth is not None else {}
        return server.api_call("GET", "/api/v1/orders", "", headers)[0]

    good = issue_token(SECRET, member="MBR01")
    assert status(f"Bearer {good}") == 200
    assert status(None) == 401
    assert status("Bearer ") == 401
    assert status(f"Basic {good}") == 401
    assert status(f"Bearer {_tampered(good)}") == 401
    assert status(f"Bearer {issue_token(SECRET, member='MBR01', ttl_s=60, now=1_000_000)}") == 401  # expired
    assert status(f"Bearer {issue_token(b'another-state-dirs-secret-of-32-bytes+', member='MBR01')}") == 401
    assert status(f"Bearer {_alg_none('MBR01')}") == 401
    assert status("Bearer not.a.jwt") == 401


def test_the_local_server_answers_through_http_with_the_same_rules(server):
    import urllib.error
    import urllib.request

    server.start()
    try:

        def get(path, token=None):
            req = urllib.request.Request(server.url + path)
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read()), r.headers
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read()), e.headers

        assert get("/api/v1/orders")[0] == 401
        status, body, headers = get("/api/v1/obligations", issue_token(SECRET, member="MBR02"))
        assert status == 200 and {r["member_id"] for r in body["rows"]} == {"MBR02"}
        assert headers["Cache-Control"] == "no-store"
        assert get("/api/v1/orders", issue_token(SECRET, member="MBR02"))[0] == 200
        assert get("/../template.yaml")[0] == 404  # only the console's own files are served
    finally:
        server.stop()


# ------------------------------------------------------------------ the Lambda entry point
def test_the_lambda_handler_serves_the_routes_with_the_authorizers_claims(api):
    handler = load_handler("query_api")
    event = api_gateway_event("GET", "/api/v1/positions", "", {}, MBR01)
    answer = handler(event, FakeContext(), api=api)
    assert answer["statusCode"] == 200
    assert {p["member_id"] for p in json.loads(answer["body"])["items"]} == {"MBR01"}


# ------------------------------------------------------------------ generated documents
def test_the_committed_openapi_document_is_generated_from_the_routes():
    from pathlib import Path

    from clearing.api.routes import openapi_json

    committed = Path(__file__).resolve().parents[2] / "docs" / "api" / "openapi.json"
    assert committed.read_text() == openapi_json() + "\n", (
        "docs/api/openapi.json is stale: python -c 'from clearing.api.routes import openapi_json; "
        "print(openapi_json())' > docs/api/openapi.json"
    )
    doc = json.loads(committed.read_text())
    assert {
        "/api/v1/orders",
        "/api/v1/orders/{order_id}",
        "/api/v1/trades",
        "/api/v1/positions",
        "/api/v1/obligations",
        "/api/v1/margin",
        "/api/v1/settlement-instructions",
        "/api/v1/health",
    } <= set(doc["paths"])
    assert doc["security"] == [{"jwt": []}]


def test_the_sample_events_are_what_the_authorizer_hands_the_lambda(api):
    from tests.unit.handlers import load_event

    handler = load_handler("query_api")
    answer = handler(load_event("query_api_member_orders.json"), FakeContext(), api=api)
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 200 and {o["member_id"] for o in body["items"]} == {"MBR01"}
    answer = handler(load_event("query_api_operator_health.json"), FakeContext(), api=api)
    assert answer["statusCode"] == 200


@pytest.mark.parametrize("claims", [OPERATOR, MBR01, {"sub": "u-5", "custom:member_id": "MBR05"}])
def test_newest_first_trades_read_only_the_newest_items_and_equal_the_whole_listing(run, api, claims):
    # Given the whole listing, newest first (read whole) for comparison
    from clearing.services.queries import list_trades

    member = claims.get("custom:member_id")
    expected = [t["trade_id"] for t in reversed(list_trades(run.store, member=member))]
    if member is None:
        expected = [
            t["trade_id"]
            for t in sorted(
                (
                    t
                    for s in sorted(run.refdata.current().instruments)
                    for t in list_trades(run.store, symbol=s)
                ),
                key=lambda t: (t["executed_at"] or "", t["trade_id"]),
                reverse=True,
            )
        ]
    # When the blotter's path pages through newest first, with a store that counts what Query returns
    counting = CountingStore(run.store)
    deps = QueryApiDeps(store=NoScanStore(counting), refdata=run.refdata.current)
    blotter = build_api(deps)
    seen, token = [], None
    _, first = call(blotter, "/api/v1/trades", claims, "order=desc&limit=20")
    returned_for_first_page = counting.items
    while True:
        _, page = call(
            blotter,
            "/api/v1/trades",
            claims,
            "order=desc&limit=20" + (f"&next_token={token}" if token else ""),
        )
        seen += [t["trade_id"] for t in page["items"]]
        token = page["next_token"]
        if not token:
            break
    # Then the pages are the whole listing in reverse, and the first page read a fraction of the table
    assert seen == expected and first["items"][0]["trade_id"] == expected[0]
    symbols = len(run.refdata.current().instruments)
    if member is None:  # exactly the newest 20 executed and 20 cleared items per symbol
        assert returned_for_first_page <= 2 * 20 * symbols < len(run.store.tables["trades"])
    else:  # windows of 2 x 20 per symbol, grown only where the member's 20 newest could hide
        assert returned_for_first_page < 0.6 * len(run.store.tables["trades"]) + 50


class CountingStore:
    def __init__(self, store):
        self.store = store
        self.items = 0

    def query(self, *args, **kwargs):
        rows = self.store.query(*args, **kwargs)
        self.items += len(rows)
        return rows

    def __getattr__(self, name):
        return getattr(self.store, name)
