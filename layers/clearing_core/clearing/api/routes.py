"""The member API's HTTP routes (/api/v1/...), one Powertools APIGatewayHttpResolver.

The resolver is built by `build_api(deps)` (never at import time) and served twice: by the query_api
Lambda behind API Gateway (HTTP API, JWT authorizer), and by the local console server, which verifies
its development token itself and passes the same claims in the same request-context shape. Each route
reads the caller from the claims (clearing.api.access), restricts the member scope, and calls one read
model function (clearing.api.views). Query parameters are validated (patterns, bounds) before any read:
a value that could carry an injection never reaches the store. The OpenAPI document is generated from
these routes (`openapi_json()`; committed as docs/api/openapi.json, kept fresh by a test).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from clearing.api import access, views
from clearing.ports import ItemStore

API_PREFIX = "/api/v1"
API_TITLE = "Clearing member API"
API_VERSION = "1.0.0"

MEMBER = r"^[A-Za-z0-9_-]{1,32}$"
SYMBOL = r"^[A-Za-z0-9._-]{1,32}$"
STATUS = r"^[A-Za-z_]{1,32}$"
DAY = r"^\d{4}-\d{2}-\d{2}$"
SINCE = r"^\d{4}-\d{2}-\d{2}([T ][0-9:.]{1,15}Z?)?$"
ORDER_ID = (
    r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"  # order ids, client order ids (contract alphabet), trade ids
)
ORDER_ID_IN_PATH = r"^[A-Za-z0-9:_.%-]{1,384}$"  # percent-encoded as browsers send it (":" -> %3A)
TOKEN = r"^[A-Za-z0-9_-]{1,512}$"

Member = Annotated[str | None, Query(pattern=MEMBER, description="member id (operators; members: their own)")]
Symbol = Annotated[str | None, Query(pattern=SYMBOL, description="instrument symbol")]
Day = Annotated[str | None, Query(pattern=DAY, description="settlement date YYYY-MM-DD")]
Limit = Annotated[int, Query(ge=1, le=views.MAX_LIMIT, description="rows per page")]
NextToken = Annotated[str | None, Query(pattern=TOKEN, description="next_token of the previous page")]
Order = Annotated[
    str, Query(pattern=r"^(asc|desc)$", description="asc: oldest first (default); desc: newest first")
]


@dataclass
class QueryApiDeps:
    """What the API reads: the store (DynamoDB or in memory), reference data, optionally the Kafka log
    (an order's life from its topics; None in AWS, where the query Lambda has no MSK access) and a
    pipeline-health source (the local runtime's; None in AWS: CloudWatch holds it there)."""

    store: ItemStore
    refdata: Callable[[], Any]
    log_factory: Callable[[], Any] | None = None
    health: Callable[[], dict[str, Any]] | None = None


def _json_error(status: int, message: str) -> Response:
    return Response(status_code=status, content_type="application/json", body={"message": message})


def claims_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """The verified JWT claims API Gateway's JWT authorizer puts in an HTTP API (v2) event."""
    ctx = event.get("requestContext") or {}
    return ((ctx.get("authorizer") or {}).get("jwt") or {}).get("claims")


def build_api(deps: QueryApiDeps) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)

    def no_store(app_: APIGatewayHttpResolver, next_middleware) -> Response:
        """Answers are per caller: never cached (CloudFront keys /api/* on Authorization with TTL 0 too)."""
        response = next_middleware(app_)
        response.headers["Cache-Control"] = "no-store"
        return response

    app.use(middlewares=[no_store])

    def decoded_id(raw: str) -> str:
        """A path id percent-decoded, then held to the id alphabet (anything else cannot exist)."""
        value = unquote(raw)
        if not re.match(ORDER_ID, value):
            raise NotFoundError(f"no record {raw}")
        return value

    def caller() -> access.Principal:
        return access.principal_from_claims(claims_of(app.current_event.raw_event))

    @app.exception_handler(access.NotAuthenticated)
    def _unauthenticated(exc: Exception) -> Response:
        return _json_error(401, str(exc))

    @app.exception_handler(access.AccessDenied)
    def _denied(exc: Exception) -> Response:
        return _json_error(403, str(exc))

    @app.exception_handler(views.BadToken)
    def _bad_token(exc: Exception) -> Response:
        return _json_error(400, str(exc))

    @app.exception_handler(LookupError)
    def _ambiguous(exc: Exception) -> Response:
        return _json_error(400, str(exc))

    @app.get(f"{API_PREFIX}/orders", summary="Orders with their current status", tags=["orders"])
    def get_orders(
        member: Member = None,
        symbol: Symbol = None,
        status: Annotated[str | None, Query(pattern=STATUS, description="status or OPEN")] = None,
        limit: Limit = views.DEFAULT_LIMIT,
        next_token: NextToken = None,
        order: Order = "asc",
    ) -> dict:
        scope = access.member_scope(caller(), member)
        rows = views.orders(deps.store, deps.refdata(), scope, symbol, status)
        rows = rows[::-1] if order == "desc" else rows
        filters = {"r": "orders", "m": scope, "s": symbol, "st": status, "o": order}
        result = views.page(rows, limit, next_token, filters)
        del result["_start"]
        return result

    @app.get(f"{API_PREFIX}/orders/<order_id>", summary="One order's whole life", tags=["orders"])
    def get_order(
        order_id: Annotated[
            str, Path(pattern=ORDER_ID_IN_PATH, description="MBR01:CLIENTID or the client order id")
        ],
        member: Member = None,
    ) -> dict:
        principal = caller()
        order_id = decoded_id(order_id)
        scope = access.member_scope(principal, member)
        refdata = deps.refdata()
        found = views.resolve_order_id(deps.store, refdata, order_id, scope)
        if found is None:
            raise NotFoundError(f"no order {order_id}")
        log = deps.log_factory() if deps.log_factory else None
        try:
            life = views.order(deps.store, refdata, log, *found)
        except Exception as exc:  # noqa: BLE001 - Kafka unreadable: the tables still tell most of it
            if log is None:
                raise
            if hasattr(log, "reset"):
                log.reset()
            life = views.order(deps.store, refdata, None, *found)
            if life is not None:
                life["log_error"] = f"Kafka not readable: {type(exc).__name__}"
            log = None
        finally:
            if log is not None:  # a shared reader is kept (release), a per-request one closed
                (getattr(log, "release", None) or getattr(log, "close", None) or (lambda: None))()
        if life is None or not principal.can_read(life["order"]["member_id"]):
            raise NotFoundError(f"no order {order_id}")
        return life

    @app.get(f"{API_PREFIX}/trades", summary="Trades with both cleared legs", tags=["trades"])
    def get_trades(
        member: Member = None,
        symbol: Symbol = None,
        since: Annotated[str | None, Query(pattern=SINCE, description="executed at or after")] = None,
        limit: Limit = views.DEFAULT_LIMIT,
        next_token: NextToken = None,
        order: Order = "asc",
    ) -> dict:
        principal = caller()
        scope = access.member_scope(principal, member)
        filters = {"r": "trades", "m": scope, "s": symbol, "t": since, "o": order}
        if order == "desc" and not since:
            # newest first: only the newest items of each symbol are read (the blotter polls this)
            start = views.start_of(next_token, filters)
            rows, more = views.newest_trades(deps.store, deps.refdata(), scope, symbol, start + limit)
            rows = rows if principal.operator else [views.as_seen_by_member(t, scope) for t in rows]
            result = views.page(rows, limit, next_token, filters, more=more, total=None)
        else:
            rows = views.trades(deps.store, deps.refdata(), scope, symbol, since)
            rows = rows if principal.operator else [views.as_seen_by_member(t, scope) for t in rows]
            rows = rows[::-1] if order == "desc" else rows
            result = views.page(rows, limit, next_token, filters)
        del result["_start"]
        return result

    @app.get(f"{API_PREFIX}/trades/<trade_id>", summary="One trade", tags=["trades"])
    def get_trade(trade_id: Annotated[str, Path(pattern=ORDER_ID_IN_PATH)]) -> dict:
        principal = caller()
        trade_id = decoded_id(trade_id)
        view = views.trade(deps.store, trade_id, None if principal.operator else principal.member_id)
        if view is None:
            raise NotFoundError(f"no trade {trade_id}")
        return view if principal.operator else views.as_seen_by_member(view, principal.member_id)

    @app.get(
        f"{API_PREFIX}/positions", summary="Positions per member, account, symbol, date", tags=["clearing"]
    )
    def get_positions(member: Member = None, symbol: Symbol = None) -> dict:
        scope = access.member_scope(caller(), member)
        rows = views.positions(deps.store, deps.refdata(), scope, symbol)
        return {"items": rows, "count": len(rows)}

    @app.get(
        f"{API_PREFIX}/obligations",
        summary="Net obligations: signed, pay/receive, currency",
        tags=["clearing"],
    )
    def get_obligations(member: Member = None, date: Day = None) -> dict:
        scope = access.member_scope(caller(), member)
        return views.obligations(deps.store, deps.refdata(), scope, date)

    @app.get(f"{API_PREFIX}/margin", summary="Latest margin per member and margin calls", tags=["clearing"])
    def get_margin(member: Member = None) -> dict:
        scope = access.member_scope(caller(), member)
        return views.margin(deps.store, deps.refdata(), scope)

    @app.get(
        f"{API_PREFIX}/settlement-instructions",
        summary="End-of-day settlement instructions",
        tags=["clearing"],
    )
    def get_settlement_instructions(member: Member = None, date: Day = None) -> dict:
        scope = access.member_scope(caller(), member)
        rows = views.settlement_instructions(deps.store, deps.refdata(), scope, date)
        return {"items": rows, "count": len(rows)}

    @app.get(f"{API_PREFIX}/me", summary="Who the token says the caller is", tags=["operations"])
    def get_me() -> dict:
        p = caller()
        return {"subject": p.subject, "member_id": p.member_id, "operator": p.operator}

    @app.get(f"{API_PREFIX}/health", summary="Pipeline health (operators only)", tags=["operations"])
    def get_health() -> dict:
        access.require_operator(caller())
        if deps.health is None:
            return {
                "source": "aws",
                "detail": "pipeline health in AWS is on the CloudWatch dashboard and alarms of the stack",
            }
        return deps.health()

    return app


def openapi_json() -> str:
    """The OpenAPI document of the routes (no store is touched to generate it)."""
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    app = build_api(QueryApiDeps(store=None, refdata=lambda: None))  # type: ignore[arg-type]
    return app.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description="Read-only member API of the clearing house. Bearer JWT: `custom:member_id` names the "
        "member; `cognito:groups` containing `operators` reads every member. See docs/console-and-api.md.",
        security_schemes={"jwt": HTTPBearer(bearerFormat="JWT")},
        security=[{"jwt": []}],
    )
