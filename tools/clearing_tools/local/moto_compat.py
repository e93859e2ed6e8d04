"""The one place where the local DynamoDB launcher touches moto's internals.

moto has no supported API for "serve DynamoDB behind my own WSGI server", and its internals change
between patch releases (5.2.4 changed the request type its handlers expect: a Flask request made
every call answer 500 with `'Request' object has no attribute 'from_wsgi_server'`). Everything the
launcher (`clearing_tools.local.moto_http11`) needs from moto's insides goes through this module, and
`check()` verifies each of them against the installed moto, naming its version, so an upgrade that
breaks one fails a test with a clear line instead of a 500 in a log file. uv.lock pins the version
these were tested with; `make upgrade` re-resolves and runs the tests (docs/local-runtime.md).

What is used, and why:
- `request_from_environ` / `request_url`: moto's own server request class (`BackendRequest`, 5.2.4+)
  and the raw URL its Flask wrapper hands the handler; before 5.2.4 a Flask request and `url`.
- `DynamoHandler.dispatch`: the handler `moto_server` ends in for every DynamoDB call.
- `DomainDispatcherApplication(create_backend_app)`: moto_server's full app, for other services.
- `moto.dynamodb.models.table.RESULT_SIZE_LIMIT`: the page size of Scan/Query (see moto_http11).
- `DynamoResult.execute_result`: replaced for reads by one json.dumps (moto's generic serialiser
  took ~70% of a large Scan).
- `method_names_from_class`, `gen_amzn_requestid_long`: per-request constants moto recomputes on
  every call (cached / drawn with uuid4).
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Callable
from typing import Any

FAST_READS = frozenset({"Scan", "Query", "GetItem", "BatchGetItem"})

TESTED = "5.2.3 (Flask request) and 5.2.5 (BackendRequest)"  # run against both here


class MotoIncompatible(RuntimeError):
    """The installed moto lacks an internal the launcher relies on."""


def moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


def _need(module: str, attribute: str) -> Any:
    """`module`'s `attribute` (a dotted path such as "DynamoHandler.dispatch"), or MotoIncompatible."""
    import importlib

    try:
        found: Any = importlib.import_module(module)
        for name in attribute.split("."):
            found = getattr(found, name)
        return found
    except (ImportError, AttributeError) as exc:
        raise MotoIncompatible(
            f"moto {moto_version()}: {module}.{attribute} is missing ({exc}); the local DynamoDB launcher "
            f"was tested with moto {TESTED} (pinned in uv.lock): adapt clearing_tools/local/moto_compat.py "
            f"or reinstall from the lock (make install)"
        ) from exc


def _backend_request_class() -> tuple[type, Callable[[Any], str]]:
    """moto's server request class and how the handler's URL is read from it."""
    try:  # moto >= 5.2.4: handlers act on moto's normalised request, built by its Flask app
        from moto.moto_server.werkzeug_app import BackendRequest

        return BackendRequest, lambda request: request.raw_url
    except ImportError:  # moto <= 5.2.3: the Flask request itself
        from flask import Request

        return Request, lambda request: request.url


def check() -> str:
    """Verify every internal the launcher uses; returns the moto version, raises MotoIncompatible."""
    _need("moto.dynamodb.responses", "DynamoHandler.dispatch")
    _need("moto.dynamodb.responses", "DynamoResult.execute_result")
    _need("moto.server", "DomainDispatcherApplication")
    _need("moto.server", "create_backend_app")
    _need("moto.dynamodb.models.table", "RESULT_SIZE_LIMIT")
    _need("moto.core.responses", "method_names_from_class")
    _need("moto.core.responses", "gen_amzn_requestid_long")
    _need("moto.utilities.aws_headers", "gen_amzn_requestid_long")
    request_class, _ = _backend_request_class()
    import moto.core.request as core

    # From 5.2.4 on, handlers read `from_wsgi_server` (and `raw_url`) off moto's own Request: the
    # class we build must be that Request, marked as coming from a real server.
    if hasattr(getattr(core, "Request", None), "from_wsgi_server") and not (
        issubclass(request_class, core.Request) and request_class.from_wsgi_server is True
    ):
        raise MotoIncompatible(
            f"moto {moto_version()}: handlers expect moto.core.request.Request from a WSGI server and "
            f"{request_class.__module__}.{request_class.__name__} is not one; the launcher was tested "
            f"with moto {TESTED}"
        )
    return moto_version()


def set_page_bytes(limit: int) -> None:
    import moto.dynamodb.models.table as moto_table

    moto_table.RESULT_SIZE_LIMIT = limit


def _wire(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    return value


def install_fast_reads() -> None:
    """Reads answered with one json.dumps of moto's result instead of its generic serialiser."""
    from moto.dynamodb import responses as dynamo_responses

    generic = dynamo_responses.DynamoResult.execute_result

    def execute_result(self, context):
        if context.operation_model.name not in FAST_READS:
            return generic(self, context)
        body = json.dumps(_wire(self.result), separators=(",", ":"), default=str)
        return 200, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-requestid": uuid.uuid4().hex}, body

    dynamo_responses.DynamoResult.execute_result = execute_result  # type: ignore[method-assign]


def install_per_request_caches() -> None:
    """Two per-request costs of moto that do not depend on the request (measured in-process: 0.5 ms
    and 0.2 ms of a 1.2 ms PutItem): the handler's method names, listed with inspect.getmembers on
    every call, and a 52-character request id drawn one random.choice at a time."""
    from moto.core import responses as core_responses
    from moto.utilities import aws_headers

    core_responses.method_names_from_class = functools.lru_cache(maxsize=None)(
        core_responses.method_names_from_class
    )

    def request_id(headerdict=None):
        req_id = uuid.uuid4().hex + uuid.uuid4().hex[:20]  # 52 characters, like moto's
        if isinstance(headerdict, dict):
            headerdict["x-amzn-requestid"] = req_id
        return req_id

    core_responses.gen_amzn_requestid_long = request_id
    aws_headers.gen_amzn_requestid_long = request_id


def dynamodb_wsgi_app() -> Callable:
    """WSGI app: DynamoDB calls straight to moto's DynamoHandler, anything else to moto's full app."""
    from botocore.exceptions import ClientError
    from moto.dynamodb.responses import DynamoHandler
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.wrappers import Response

    every_service = DomainDispatcherApplication(create_backend_app)
    request_class, url_of = _backend_request_class()

    def app(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return every_service(environ, start_response)
        request = request_class(environ)
        try:  # what moto's convert_to_flask_response does around the handler
            status, headers, body = DynamoHandler.dispatch(request, url_of(request), dict(request.headers))
        except ClientError as exc:
            status, headers, body = 400, {}, exc.response["Error"]["Message"]
        return Response(body, status=status, headers=headers)(environ, start_response)

    return app
