"""moto's DynamoDB backend behind a keep-alive WSGI server, with large Scan/Query pages.

Why not plain `moto_server`: it runs werkzeug's development server, which answers every request with
`Connection: close` (werkzeug 3 always does), so botocore opens a new TCP connection, and the server
a new thread, for every DynamoDB call; and every call goes through Flask routing and moto's
host-based dispatcher. The pipeline makes many small calls, so that per-request overhead bounds
local throughput. Here:
- waitress (a production WSGI server, HTTP/1.1 keep-alive, a fixed thread pool) serves the app;
- DynamoDB calls (`X-Amz-Target: DynamoDB_20120810.*`) go straight to moto's `DynamoHandler`, the
  same handler `moto_server` ends in; any other request (S3, ...) goes through moto's full app.
Measured here (same client, loopback): one TCP connection for a whole run instead of one per call,
see docs/local-runtime.md for the figures.

Pages: moto walks a table from its first item to the ExclusiveStartKey for every page, so a Scan of
n items costs O(n^2 / page size); with DynamoDB's 1 MB pages `clearing verify` over a 100,000-order
run did not finish in 8 minutes. Locally pages may hold CLEARING_MOTO_PAGE_BYTES (default 32 MB);
our adapter paginates the same way whatever the page size, and real DynamoDB keeps its 1 MB.
Reads (Scan, Query, GetItem, BatchGetItem) are serialised with one json.dumps instead of moto's
generic serialiser, which took ~70% of a large Scan.

    python -m clearing.local.moto_http11 -H 127.0.0.1 -p 18000 [--threads 8]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import uuid

FAST_READS = frozenset({"Scan", "Query", "GetItem", "BatchGetItem"})
DYNAMODB_TARGET = "DynamoDB_"


def _wire(value):
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    return value


def _install_fast_reads() -> None:
    from moto.dynamodb import responses as dynamo_responses

    generic = dynamo_responses.DynamoResult.execute_result

    def execute_result(self, context):
        if context.operation_model.name not in FAST_READS:
            return generic(self, context)
        body = json.dumps(_wire(self.result), separators=(",", ":"), default=str)
        return 200, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-requestid": uuid.uuid4().hex}, body

    dynamo_responses.DynamoResult.execute_result = execute_result


def _install_per_request_caches() -> None:
    """Two per-request costs of moto that do not depend on the request (measured in-process: 0.5 ms
    and 0.2 ms of a 1.2 ms PutItem): the handler's method names, listed with inspect.getmembers on
    every call, and a 52-character request id drawn one random.choice at a time."""
    import functools
    import uuid as uuid_module

    from moto.core import responses as core_responses
    from moto.utilities import aws_headers

    core_responses.method_names_from_class = functools.lru_cache(maxsize=None)(
        core_responses.method_names_from_class
    )

    def request_id(headerdict=None):
        req_id = uuid_module.uuid4().hex + uuid_module.uuid4().hex[:20]  # 52 characters, like moto's
        if isinstance(headerdict, dict):
            headerdict["x-amzn-requestid"] = req_id
        return req_id

    core_responses.gen_amzn_requestid_long = request_id
    aws_headers.gen_amzn_requestid_long = request_id


def dynamodb_app():
    """WSGI app: DynamoDB calls straight to moto's DynamoHandler, anything else to moto's full app."""
    from botocore.exceptions import ClientError
    from flask import Request
    from moto.dynamodb.responses import DynamoHandler
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.wrappers import Response

    every_service = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET):
            return every_service(environ, start_response)
        request = Request(environ)
        try:  # what moto's convert_to_flask_response does around the handler
            status, headers, body = DynamoHandler.dispatch(request, request.url, dict(request.headers))
        except ClientError as exc:
            status, headers, body = 400, {}, exc.response["Error"]["Message"]
        return Response(body, status=status, headers=headers)(environ, start_response)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))

    import moto.dynamodb.models.table as moto_table
    from waitress import serve

    moto_table.RESULT_SIZE_LIMIT = int(os.environ.get("CLEARING_MOTO_PAGE_BYTES", 32 * 1024 * 1024))
    if os.environ.get("CLEARING_MOTO_FAST_READS", "1") != "0":
        _install_fast_reads()
    _install_per_request_caches()  # answers unchanged: only constants moto recomputed per call
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # connection_limit: every worker's botocore pool keeps its connections open (keep-alive)
    serve(dynamodb_app(), host=args.host, port=args.port, threads=args.threads, connection_limit=1000,
          channel_timeout=600, _quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
