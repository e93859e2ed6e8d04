"""The local console: the member API's handler and the web console over HTTP, with development tokens.

`clearing up` starts it as the component `console` (default 127.0.0.1:19100, CLEARING_CONSOLE_PORT or
`--console-port`); `clearing console` runs it in the foreground. It serves:
- /api/v1/... : the same resolver the query_api Lambda runs (clearing.api.routes). In AWS API Gateway's
  JWT authorizer verifies Cognito's RS256 tokens and the Lambda reads their claims from the request
  context; here this server verifies a development token (HS256, a secret kept in
  <state>/console/jwt-secret, issued by `clearing token`) and puts its claims in the same place of the
  same HTTP API (v2) event. No token, or a bad, expired or wrongly-signed one: 401 before any read.
- / : the web console's static files (console/ at the repository root, or CLEARING_CONSOLE_ASSETS).
- /api/v1/health (operators): the local runtime's status (lag per mapping, records done, on-failure,
  FIX session), plus rejects by reason, tallied incrementally from `orders.rejected`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import threading
import time
import traceback
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from clearing.api.access import GROUPS_CLAIM, MEMBER_CLAIM, OPERATORS_GROUP

ISSUER = "clearing-local"
AUDIENCE = "clearing-console"
ALGORITHM = "HS256"
DEFAULT_TTL_S = 12 * 3600
CONSOLE = "console"
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


class InvalidToken(Exception):
    pass


# ------------------------------------------------------------------ development tokens
def secret_path(state_path: Path) -> Path:
    return Path(state_path) / "console" / "jwt-secret"


def signing_secret(state_path: Path) -> bytes:
    """The HS256 secret of this state dir, created (mode 0600) on first use."""
    path = secret_path(state_path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def issue_token(
    secret: bytes,
    member: str | None = None,
    operator: bool = False,
    ttl_s: int = DEFAULT_TTL_S,
    now: float | None = None,
) -> str:
    """A development token with the claims Cognito's would carry (custom:member_id, cognito:groups)."""
    import jwt

    if not member and not operator:
        raise ValueError("a token names a member, the operators group, or both")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": f"dev-{member or 'operator'}",
        "iat": issued,
        "exp": issued + ttl_s,
        "token_use": "id",
    }
    if member:
        claims[MEMBER_CLAIM] = member
    if operator:
        claims[GROUPS_CLAIM] = [OPERATORS_GROUP]
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: bytes, token: str) -> dict[str, Any]:
    """The claims of a token this state dir issued; InvalidToken when forged, expired or malformed."""
    import jwt

    try:
        return jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # never "none", never a key-confusion algorithm
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None


def api_gateway_event(method: str, path: str, query: str, headers: dict[str, str], claims: dict) -> dict:
    """An API Gateway HTTP API (payload 2.0) event, as the JWT authorizer hands it to the Lambda."""
    params: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        params[k] = f"{params[k]},{v}" if k in params else v  # API Gateway joins repeats with commas
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {k.lower(): v for k, v in headers.items() if k.lower() != "authorization"},
        "queryStringParameters": params or None,
        "requestContext": {
            "accountId": "local",
            "apiId": "local",
            "authorizer": {"jwt": {"claims": claims, "scopes": None}},
            "domainName": "localhost",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "",
            },
            "requestId": secrets.token_hex(8),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }


# ------------------------------------------------------------------ the server
def default_assets_dir() -> Path:
    if os.environ.get("CLEARING_CONSOLE_ASSETS"):
        return Path(os.environ["CLEARING_CONSOLE_ASSETS"])
    from clearing_tools.template_model import find_template

    return find_template().parent / "console"


class ConsoleServer:
    """The API resolver + static console over HTTP. `api` is a built resolver (clearing.api.routes)."""

    def __init__(
        self, api, secret: bytes, host: str = "127.0.0.1", port: int = 0, assets_dir: Path | None = None
    ):
        self.api = api
        self.secret = secret
        self.assets_dir = Path(assets_dir) if assets_dir else default_assets_dir()
        self.lock = threading.Lock()  # the resolver keeps the current event on itself
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, fmt, *args):  # one line per request on stderr (the component's log)
                sys.stderr.write(f"console {self.address_string()} - {fmt % args}\n")

            def do_GET(self):
                server.handle(self)

            def do_HEAD(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{self.port}"

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str, extra=None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in {**SECURITY_HEADERS, **(extra or {})}.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        if url.path.startswith("/api/"):
            status, body, headers = self.api_call(h.command, url.path, url.query, dict(h.headers.items()))
            self._send(h, status, body, headers.pop("Content-Type", "application/json"), headers)
            return
        asset = ASSETS.get(url.path)
        if asset is None or h.command not in ("GET", "HEAD"):
            self._send(h, 404, b'{"message":"not found"}', "application/json")
            return
        name, content_type = asset
        try:
            body = (self.assets_dir / name).read_bytes()
        except OSError:
            self._send(h, 404, b'{"message":"console assets not found"}', "application/json")
            return
        self._send(h, 200, body, content_type)

    def api_call(
        self, method: str, path: str, query: str, headers: dict[str, str]
    ) -> tuple[int, bytes, dict]:
        """(status, body, headers) of one API request: token verified here, then the shared resolver."""
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, b'{"message":"Unauthorized"}', {"WWW-Authenticate": "Bearer"}
        try:
            claims = verify_token(self.secret, token.strip())
        except InvalidToken:
            return 401, b'{"message":"Unauthorized"}', {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        event = api_gateway_event(method, path, query, headers, claims)
        try:
            with self.lock:
                answer = self.api.resolve(
                    event, SimpleNamespace(aws_request_id=event["requestContext"]["requestId"])
                )
        except Exception:  # noqa: BLE001 - as API Gateway answers a failed Lambda: 500, details in the log
            traceback.print_exc()
            return 500, b'{"message":"Internal Server Error"}', {}
        body = answer.get("body") or ""
        raw = body.encode() if isinstance(body, str) else body
        out_headers = {k: v for k, v in (answer.get("headers") or {}).items() if k.lower() == "content-type"}
        out_headers = {"Content-Type": next(iter(out_headers.values()), "application/json")}
        return int(answer["statusCode"]), raw, out_headers

    def start(self) -> ConsoleServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="console", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------ pipeline health (local runtime)
class RejectTally:
    """Rejects by reason from `orders.rejected`, read incrementally (each record once)."""

    def __init__(self, log):
        self.log = log
        self.next_offset: dict[int, int] = {}
        self.counts: Counter[str] = Counter()

    def update(self) -> dict[str, int]:
        from clearing.topics import ORDERS_REJECTED

        for partition in self.log.partitions(ORDERS_REJECTED):
            for r in self.log.read(ORDERS_REJECTED, partition, self.next_offset.get(partition, 0)):
                self.next_offset[partition] = r.offset + 1
                try:
                    reason = json.loads(r.value).get("reason") or "UNKNOWN"
                except (ValueError, TypeError, AttributeError):
                    reason = "UNREADABLE"
                self.counts[str(reason)] += 1
        return dict(self.counts.most_common())


class LocalHealth:
    """What `clearing status --json` shows, plus rejects by reason; cached for `ttl_s` (polls are frequent)."""

    def __init__(self, config, ttl_s: float = 2.0):
        self.config = config
        self.ttl_s = ttl_s
        self._cached: tuple[float, dict] | None = None
        self._tally: RejectTally | None = None
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if self._cached and now - self._cached[0] < self.ttl_s:
                return self._cached[1]
            result = self.sample()
            self._cached = (now, result)
            return result

    def sample(self) -> dict[str, Any]:
        from clearing.adapters.retained_log import KafkaRetainedLog

        from clearing_tools.local.runtime import LocalRuntime

        status = LocalRuntime(self.config).status().to_dict()
        rejects, error = {}, status.get("error")
        try:
            if self._tally is None:
                self._tally = RejectTally(KafkaRetainedLog(self.config.bootstrap_servers, poll_timeout_s=3))
            rejects = self._tally.update()
        except Exception as exc:  # noqa: BLE001 - health shows what it can
            error = f"rejects unavailable: {exc}"
            if self._tally is not None:
                with contextlib.suppress(Exception):
                    self._tally.log.close()
            self._tally = None
        fix = next((c for c in status["components"] if c["name"] == "fix-proxy"), None)
        return {
            "source": "local-runtime",
            "sampled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sampled_at_ms": int(time.time() * 1000),
            "components": status["components"],
            "mappings": status["mappings"],
            "rejects_by_reason": rejects,
            "onfailure_records": sum(m["onfailure_records"] for m in status["mappings"]),
            "fix_session": {"state": fix["state"], "detail": fix["detail"]} if fix else None,
            "error": error,
        }


class SharedLog:
    """One Kafka reader kept across requests (a new one per request cost ~150 ms of connection and
    metadata round trips); requests run one at a time (ConsoleServer's lock). reset() drops it after
    an error."""

    def __init__(self, bootstrap_servers: str):
        self.bootstrap_servers = bootstrap_servers
        self.log = None

    def __call__(self):
        from clearing.adapters.retained_log import KafkaRetainedLog

        if self.log is None:
            self.log = KafkaRetainedLog(self.bootstrap_servers, poll_timeout_s=3)
        return self

    def __getattr__(self, name):
        return getattr(self.log, name)

    def release(self) -> None:
        pass  # kept for the next request

    def reset(self) -> None:
        if self.log is not None:
            with contextlib.suppress(Exception):
                self.log.close()
        self.log = None


def local_deps(config):
    """The API's dependencies over the local runtime: its tables, its broker, its status."""
    from clearing.adapters.refdata import CachedReferenceData
    from clearing.api.routes import QueryApiDeps

    from clearing_tools.local.dynamodb import local_store

    store = local_store(config)
    refdata = CachedReferenceData(store, ttl_seconds=60)
    return QueryApiDeps(
        store=store,
        refdata=refdata.current,
        log_factory=SharedLog(config.bootstrap_servers),
        health=LocalHealth(config),
    )


def serve(config, host: str | None = None, port: int | None = None) -> None:
    """Run the console in the foreground until SIGTERM / Ctrl-C (the component's process)."""
    import signal

    from clearing.api.routes import build_api

    server = ConsoleServer(
        build_api(local_deps(config)),
        signing_secret(config.state_path),
        host or config.host,
        port if port is not None else config.console_port,
    )
    # shutdown() waits for serve_forever to return: call it from another thread
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.httpd.shutdown).start())
    print(f"console on {server.url}/ (API {server.url}/api/v1)", file=sys.stderr, flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


def console_component(config):
    """`console` for clearing_tools.local.components: `python -m clearing_tools.cli.main console` in the background."""
    from clearing_tools.local.components import ProcessComponent

    config_path = config.state_path / "runtime.json"
    return ProcessComponent(
        name=CONSOLE,
        argv_factory=lambda: [
            sys.executable,
            "-m",
            "clearing_tools.cli.main",
            "console",
            "--config",
            str(config_path),
        ],
        config=config,
        host=config.host,
        port=config.console_port,
        port_hint="--console-port / CLEARING_CONSOLE_PORT",
        ready_timeout=30,
    )
