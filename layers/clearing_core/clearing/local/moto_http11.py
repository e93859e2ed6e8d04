"""moto_server with HTTP/1.1 keep-alive and large Scan/Query pages.

`moto_server` serves HTTP/1.0: a new TCP connection (and a new thread) for every DynamoDB call. The
pipeline makes many small calls, so per-request overhead bounds local throughput; keep-alive lets
botocore reuse its connections (measured here: about +20% BatchWriteItem requests/s). Same moto
backend and WSGI app as `moto_server`; only the request handler differs.

Pages: moto walks a table from its first item to the ExclusiveStartKey for every page, so a Scan of
n items costs O(n^2 / page size); with DynamoDB's 1 MB pages `clearing verify` over a 100,000-order
run did not finish in 8 minutes. Locally pages may hold CLEARING_MOTO_PAGE_BYTES (default 32 MB);
our adapter paginates the same way whatever the page size, and real DynamoDB keeps its 1 MB.

    python -m clearing.local.moto_http11 -H 127.0.0.1 -p 18000
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))

    import moto.dynamodb.models.table as moto_table
    from moto.server import DomainDispatcherApplication, create_backend_app

    moto_table.RESULT_SIZE_LIMIT = int(os.environ.get("CLEARING_MOTO_PAGE_BYTES", 32 * 1024 * 1024))
    if os.environ.get("CLEARING_MOTO_FAST_READS", "1") != "0":
        _install_fast_reads()
    from werkzeug.serving import WSGIRequestHandler, run_simple

    class KeepAliveHandler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_request(self, *args, **kwargs) -> None:  # one line per call would dominate the log
            pass

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, app, threaded=True, request_handler=KeepAliveHandler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
