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

    python -m clearing_tools.local.moto_http11 -H 127.0.0.1 -p 18000 [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from clearing_tools.local import moto_compat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))

    from waitress import serve

    try:
        version = moto_compat.check()
    except moto_compat.MotoIncompatible as exc:
        print(f"moto_http11: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"moto_http11: moto {version} on {args.host}:{args.port}", file=sys.stderr, flush=True)
    moto_compat.set_page_bytes(int(os.environ.get("CLEARING_MOTO_PAGE_BYTES", 32 * 1024 * 1024)))
    if os.environ.get("CLEARING_MOTO_FAST_READS", "1") != "0":
        moto_compat.install_fast_reads()
    moto_compat.install_per_request_caches()  # answers unchanged: only constants moto recomputed per call
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # connection_limit: every worker's botocore pool keeps its connections open (keep-alive)
    serve(
        moto_compat.dynamodb_wsgi_app(),
        host=args.host,
        port=args.port,
        threads=args.threads,
        connection_limit=1000,
        channel_timeout=600,
        _quiet=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
