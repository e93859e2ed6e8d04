"""The gateway Lambda's adapter to the FIX proxy: blocking TCP client of the framed protocol.

TLS: the NLB's listener in AWS is TLS (template.yaml), so with `tls=True` (PROXY_TLS=true) the socket
is wrapped with ssl and the listener's certificate is verified against the system trust store, or
against `ca_file` (PROXY_TLS_CA_FILE, e.g. a private CA's bundle), for the name `server_name`
(PROXY_TLS_SERVER_NAME, default: the host connected to). There is no switch to skip verification.

Bounded everywhere: the connect timeout bounds reaching the proxy (via the NLB), the response
timeout bounds each request's round trip. The connection is kept open across requests and warm
invocations; a request that fails on a reused connection (the NLB closes idle flows) is sent once
more on a fresh one, which is safe because the proxy is idempotent by request id. Anything else
raises ProxyUnavailableError so the invocation fails and the event-source mapping retries.
"""

from __future__ import annotations

import socket
import ssl

from clearing.fix.gateway_protocol import (
    FrameError,
    GatewayResponse,
    GatewayStatus,
    encode_frame,
    recv_frame,
)
from clearing.ports import ExchangeUnavailable


class ProxyUnavailableError(ExchangeUnavailable):
    """The proxy could not be reached or answered too late / UNAVAILABLE: retry the batch later."""


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Client context that verifies the certificate chain and host name (TLS 1.2 or later)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ProxyClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 2.0,
        response_timeout: float = 5.0,
        tls: bool = False,
        ca_file: str | None = None,
        server_name: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.server_name = server_name or host
        self._tls_context = tls_context(ca_file) if tls else None
        self._sock: socket.socket | None = None

    @property
    def tls(self) -> bool:
        return self._tls_context is not None

    def submit(self, request: dict) -> GatewayResponse:
        """Send one request frame, return the proxy's answer (UNAVAILABLE raises)."""
        response = self._with_one_retry(lambda: self._round_trip(request))
        self._check(request, response)
        return response

    def submit_many(self, requests: list[dict]) -> list[GatewayResponse]:
        """Pipelined: write every request frame, then read the answers, which the proxy gives in order.
        One network round trip per call instead of one per request, and the proxy sends the FIX
        messages back to back (so the exchange's acks come back together and go to Kafka in one
        flush). Answers stop at the first UNAVAILABLE (the proxy closes the connection after it, so no
        later request of the call reaches the exchange before it) and that raises, like `submit`."""
        if not requests:
            return []
        # A retry on a fresh connection resends every request: those already sent come back DUPLICATE.
        responses = self._with_one_retry(lambda: self._pipelined(requests))
        for request, response in zip(requests, responses, strict=False):
            self._check(request, response)
        return responses

    def _with_one_retry(self, exchange):
        """Run `exchange` on the kept connection; a failure on a reused one (the NLB closes idle flows)
        gets one fresh attempt, which is safe because the proxy is idempotent by request id."""
        reused = self._sock is not None
        try:
            return exchange()
        except (OSError, FrameError) as exc:
            self.close()
            if not reused:
                raise ProxyUnavailableError(f"proxy {self.host}:{self.port}: {exc!r}") from exc
            try:
                return exchange()
            except (OSError, FrameError) as retry_exc:
                self.close()
                raise ProxyUnavailableError(f"proxy {self.host}:{self.port}: {retry_exc!r}") from retry_exc

    def _check(self, request: dict, response: GatewayResponse) -> None:
        if response.status is GatewayStatus.UNAVAILABLE:
            self.close()  # the proxy closes a connection after UNAVAILABLE
            raise ProxyUnavailableError(f"proxy has no FIX session: {response.reason}")
        if response.request_id is not None and response.request_id != request.get("request_id"):
            self.close()
            raise ProxyUnavailableError(
                f"answer for {response.request_id}, expected {request.get('request_id')}"
            )

    def _pipelined(self, requests: list[dict]) -> list[GatewayResponse]:
        sock = self._connection()
        sock.sendall(b"".join(encode_frame(r) for r in requests))
        responses = []
        for _ in requests:
            response = GatewayResponse.model_validate(recv_frame(sock))
            responses.append(response)
            if response.status is GatewayStatus.UNAVAILABLE:
                break
        return responses

    def _round_trip(self, request: dict) -> GatewayResponse:
        sock = self._connection()
        sock.sendall(encode_frame(request))
        return GatewayResponse.model_validate(recv_frame(sock))

    def _connection(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls_context is not None:
                try:  # the handshake is part of reaching the proxy: bounded by the connect timeout
                    sock = self._tls_context.wrap_socket(sock, server_hostname=self.server_name)
                except BaseException:
                    sock.close()
                    raise
            sock.settimeout(self.response_timeout)
            self._sock = sock
        return self._sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
