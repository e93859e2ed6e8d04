"""The FIX proxy: the long-running asyncio service (Fargate task) between the gateway Lambda and the exchange.

It holds one FIX 4.4 initiator session with the exchange (reconnecting with capped exponential
backoff), listens on a gateway port for framed requests from the exchange_gateway Lambda (behind the
NLB), answers an HTTP health check (200 only while logged on) and publishes what the exchange sends
back to `exchange.executions`. Rejections by the exchange raise an alarm metric (EMF line).

Composition: `ProxySettings` (environment) -> `build_proxy()` -> `FixProxy.serve()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
from pathlib import Path
from typing import Any

import simplefix
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from clearing.fix.gateway_protocol import (
    CancelOrderRequest,
    FrameError,
    GatewayResponse,
    GatewayStatus,
    NewOrderRequest,
    ReplaceOrderRequest,
    TradeReportRequest,
    encode_frame,
    parse_request,
    read_frame,
)
from clearing.topics import EXCHANGE_EXECUTIONS
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from clearing_fix import messages as fix
from clearing_fix.publisher import (
    ExecutionPublisher,
    KafkaExecutionPublisher,
    LogExecutionPublisher,
)
from clearing_fix.session import FixSession, SessionApplication, SessionConfig, SessionNotLoggedOn
from clearing_fix.store import FileSessionStore, SessionStore

METRICS_NAMESPACE = "ClearingPipeline"


class ProxySettings(BaseSettings):
    """The proxy's environment (names are the upper-cased field names)."""

    model_config = SettingsConfigDict(extra="ignore")

    fix_sender_comp_id: str = "CLEARHOUSE"
    fix_target_comp_id: str = "EXCHANGE"
    fix_username: str | None = None
    fix_password: SecretStr | None = None
    fix_password_secret_arn: str | None = None  # Secrets Manager; wins over FIX_PASSWORD
    fix_heartbeat_interval: int = 30
    fix_store_dir: Path = Path("/var/lib/clearing-fix")
    fix_store_fsync: bool = True
    exchange_host: str = "127.0.0.1"
    exchange_port: int = 9878
    exchange_connect_timeout: float = 5.0
    reconnect_min_backoff: float = 0.5
    reconnect_max_backoff: float = 30.0
    gateway_host: str = "0.0.0.0"
    gateway_port: int = 9000
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    kafka_bootstrap_servers: str | None = None
    executions_topic: str = EXCHANGE_EXECUTIONS
    metrics_namespace: str = METRICS_NAMESPACE


def resolve_password(settings: ProxySettings) -> str | None:
    """FIX password from Secrets Manager (prod) or the environment (local)."""
    if settings.fix_password_secret_arn:
        import boto3

        secret = boto3.client("secretsmanager").get_secret_value(SecretId=settings.fix_password_secret_arn)
        text = secret.get("SecretString") or ""
        with contextlib.suppress(json.JSONDecodeError, AttributeError, TypeError):
            return str(json.loads(text)["password"])
        return text
    return settings.fix_password.get_secret_value() if settings.fix_password else None


def build_fix_message(request: Any) -> simplefix.FixMessage:
    if isinstance(request, TradeReportRequest):
        return fix.trade_capture_report(request)
    if isinstance(request, NewOrderRequest):
        return fix.new_order_single(request)
    if isinstance(request, CancelOrderRequest):
        return fix.order_cancel_request(request)
    if isinstance(request, ReplaceOrderRequest):
        return fix.order_cancel_replace_request(request)
    raise TypeError(f"no FIX message for {type(request).__name__}")


class AlarmMetrics:
    """Counts exchange rejections and writes one EMF metric line per rejection (CloudWatch alarm)."""

    def __init__(self, namespace: str = METRICS_NAMESPACE) -> None:
        self.namespace = namespace
        self.counts: dict[str, int] = {}

    def exchange_rejected(self, msg_type: str) -> None:
        self.counts[msg_type] = self.counts.get(msg_type, 0) + 1
        with single_metric(
            name="ExchangeRejects", unit=MetricUnit.Count, value=1, namespace=self.namespace
        ) as m:
            m.add_dimension(name="service", value="fix_proxy")
            m.add_dimension(name="msg_type", value=msg_type)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class _ExchangeFeed(SessionApplication):
    """Session callbacks: every ExecutionReport / TradeCaptureReportAck / reject goes to Kafka."""

    def __init__(self, proxy: FixProxy) -> None:
        self.proxy = proxy

    async def flush(self, session: FixSession) -> None:
        await self.proxy.publisher.flush()

    async def on_message(self, session: FixSession, msg: simplefix.FixMessage) -> None:
        record = fix.decode_exchange_message(msg)
        if record.get("request_id") is None and record.get("ref_seq_num"):
            record["request_id"] = session.store.request_for_seq(record["ref_seq_num"])
        key = record.get("symbol") or record.get("request_id") or str(record["msg_seq_num"])
        self.proxy.publisher.submit(key, record)  # durable at flush(), before the seq number moves
        self.proxy.published += 1
        if fix.is_rejection(record):
            self.proxy.log.warning("exchange rejected a message", extra={"execution": record})
            self.proxy.metrics.exchange_rejected(record["msg_type"])


class FixProxy:
    def __init__(
        self,
        *,
        session_config: SessionConfig,
        store: SessionStore,
        publisher: ExecutionPublisher,
        exchange_host: str,
        exchange_port: int,
        gateway_host: str = "127.0.0.1",
        gateway_port: int = 0,
        health_host: str = "127.0.0.1",
        health_port: int = 0,
        connect_timeout: float = 5.0,
        reconnect_min_backoff: float = 0.5,
        reconnect_max_backoff: float = 30.0,
        metrics: AlarmMetrics | None = None,
        logger: Any = None,
    ) -> None:
        self.log = logger or Logger(service="fix_proxy")
        self.store = store
        self.publisher = publisher
        self.metrics = metrics or AlarmMetrics()
        self.session = FixSession(session_config, store, _ExchangeFeed(self), initiator=True, logger=self.log)
        self.exchange_host, self.exchange_port = exchange_host, exchange_port
        self._gateway_addr = (gateway_host, gateway_port)
        self._health_addr = (health_host, health_port)
        self.connect_timeout = connect_timeout
        self.min_backoff, self.max_backoff = reconnect_min_backoff, reconnect_max_backoff
        self.gateway_port = 0
        self.health_port = 0
        self.published = 0
        self.connections = 0
        self.requests: dict[str, int] = {status.value: 0 for status in GatewayStatus}
        self._servers: list[asyncio.base_events.Server] = []
        self._session_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        gateway = await asyncio.start_server(self._serve_gateway_client, *self._gateway_addr)
        health = await asyncio.start_server(self._serve_health_check, *self._health_addr)
        self._servers = [gateway, health]
        self.gateway_port = gateway.sockets[0].getsockname()[1]
        self.health_port = health.sockets[0].getsockname()[1]
        self._session_task = asyncio.create_task(self._keep_session(), name="fix-session")
        self.log.info(
            "FIX proxy started",
            extra={
                "gateway_port": self.gateway_port,
                "health_port": self.health_port,
                "exchange": f"{self.exchange_host}:{self.exchange_port}",
                "next_sender_seq": self.store.next_sender_seq,
                "next_target_seq": self.store.next_target_seq,
            },
        )

    async def stop(self) -> None:
        """Graceful: stop taking requests, Logout, stop reconnecting, flush the publisher."""
        self._stopping.set()
        for server in self._servers:
            server.close()
        await self.session.logout("proxy shutting down")
        if self._session_task is not None:
            self._session_task.cancel()
            await asyncio.gather(self._session_task, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        await self.publisher.close()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
        self.log.info("FIX proxy stopped", extra={"next_sender_seq": self.store.next_sender_seq})

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT (the container's stop), then shut down gracefully."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        self.log.info("termination signal received")
        await self.stop()

    async def wait_logged_on(self, timeout: float) -> None:
        async def poll() -> None:
            while not self.session.logged_on:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(poll(), timeout)

    async def _keep_session(self) -> None:
        backoff = self.min_backoff
        while not self._stopping.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.exchange_host, self.exchange_port), self.connect_timeout
                )
            except (TimeoutError, OSError) as exc:
                self.log.warning(f"exchange connect failed: {exc!r}; retrying in {backoff:.2f}s")
            else:
                self.connections += 1
                logons_before = self.session.stats["logons"]
                await self.session.run(reader, writer)
                self.log.warning("FIX connection closed", extra={"state": self.session.state.value})
                if self.session.stats["logons"] > logons_before:
                    backoff = self.min_backoff  # the link worked: start the backoff over
            if self._stopping.is_set():
                return
            # Jitter so a fleet of restarts does not hammer the exchange in step.
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.max_backoff)

    # ------------------------------------------------------------------ gateway port

    async def submit(self, payload: dict[str, Any]) -> GatewayResponse:
        """One gateway request -> SENT / DUPLICATE / REJECTED / UNAVAILABLE."""
        request_id = payload.get("request_id") if isinstance(payload.get("request_id"), str) else None
        try:
            request = parse_request(payload)
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            return self._answer(request_id, GatewayStatus.REJECTED, reason=reason)
        seq = self.store.seq_for_request(request.request_id)
        if seq is not None:
            return self._answer(request.request_id, GatewayStatus.DUPLICATE, seq)
        if self._stopping.is_set() or not self.session.logged_on:
            return self._answer(
                request.request_id,
                GatewayStatus.UNAVAILABLE,
                reason=f"FIX session {self.session.state.value}",
            )
        try:
            seq = self.session.send_application(build_fix_message(request), request.request_id)
        except SessionNotLoggedOn as exc:
            return self._answer(request.request_id, GatewayStatus.UNAVAILABLE, reason=str(exc))
        await self.session.drain()
        return self._answer(request.request_id, GatewayStatus.SENT, seq)

    def _answer(
        self, request_id: str | None, status: GatewayStatus, seq: int | None = None, reason: str | None = None
    ) -> GatewayResponse:
        self.requests[status.value] += 1
        if status is not GatewayStatus.SENT:
            self.log.info(
                "gateway request answered",
                extra={
                    "request_id": request_id,
                    "status": status.value,
                    "msg_seq_num": seq,
                    "reason": reason,
                },
            )
        return GatewayResponse(request_id=request_id, status=status, msg_seq_num=seq, reason=reason)

    async def _serve_gateway_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    payload = await read_frame(reader)
                except FrameError as exc:
                    response = GatewayResponse(
                        request_id=None, status=GatewayStatus.REJECTED, reason=str(exc)
                    )
                    writer.write(encode_frame(response.model_dump(mode="json")))
                    break
                if payload is None:
                    break
                response = await self.submit(payload)
                writer.write(encode_frame(response.model_dump(mode="json")))
                await writer.drain()
                if response.status is GatewayStatus.UNAVAILABLE:
                    # A pipelining client may have more requests in flight on this connection: none
                    # of them may reach the exchange ahead of this one, so they are not read at all.
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # ------------------------------------------------------------------ health port

    def health(self) -> dict[str, Any]:
        return {
            "status": "UP" if self.session.logged_on else "DOWN",
            "session": self.session.state.value,
            "next_sender_seq": self.store.next_sender_seq,
            "next_target_seq": self.store.next_target_seq,
            "published": self.published,
            "exchange_rejects": self.metrics.total,
        }

    async def _serve_health_check(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(
                asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError
            ):
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
            body = json.dumps(self.health()).encode()
            status = "200 OK" if self.session.logged_on else "503 Service Unavailable"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def build_proxy(
    settings: ProxySettings, *, publisher: ExecutionPublisher | None = None, logger: Any = None
) -> FixProxy:
    """Composition root of the proxy container."""
    log = logger or Logger(service="fix_proxy")
    session_config = SessionConfig(
        sender_comp_id=settings.fix_sender_comp_id,
        target_comp_id=settings.fix_target_comp_id,
        heartbeat_interval=settings.fix_heartbeat_interval,
        username=settings.fix_username,
        password=resolve_password(settings),
    )
    store = FileSessionStore(
        settings.fix_store_dir, session_config.session_id, fsync=settings.fix_store_fsync
    )
    if publisher is None:
        if settings.kafka_bootstrap_servers:
            publisher = KafkaExecutionPublisher(settings.kafka_bootstrap_servers, settings.executions_topic)
        else:
            log.warning("KAFKA_BOOTSTRAP_SERVERS not set: executions are only logged")
            publisher = LogExecutionPublisher(log)
    return FixProxy(
        session_config=session_config,
        store=store,
        publisher=publisher,
        exchange_host=settings.exchange_host,
        exchange_port=settings.exchange_port,
        gateway_host=settings.gateway_host,
        gateway_port=settings.gateway_port,
        health_host=settings.health_host,
        health_port=settings.health_port,
        connect_timeout=settings.exchange_connect_timeout,
        reconnect_min_backoff=settings.reconnect_min_backoff,
        reconnect_max_backoff=settings.reconnect_max_backoff,
        metrics=AlarmMetrics(settings.metrics_namespace),
        logger=log,
    )


def main() -> int:
    """Container entry point: `python -m clearing_fix.proxy`."""
    try:
        settings = ProxySettings()
    except ValidationError as exc:
        print(f"invalid FIX proxy configuration: {exc}")
        return 2
    asyncio.run(build_proxy(settings).serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
