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
import os
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))

    import moto.dynamodb.models.table as moto_table
    from moto.server import DomainDispatcherApplication, create_backend_app

    moto_table.RESULT_SIZE_LIMIT = int(os.environ.get("CLEARING_MOTO_PAGE_BYTES", 32 * 1024 * 1024))
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
