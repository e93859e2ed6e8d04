"""ProxyClient over TLS (the NLB's listener in AWS) against a local TLS server on 127.0.0.1.

The certificates are made here with `cryptography`: a private CA that signs a server certificate for
`proxy.clearing.internal` and 127.0.0.1, and an unrelated self-signed certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clearing import bootstrap
from clearing.config import ConfigurationError
from clearing.fix.client import ProxyClient, ProxyUnavailableError
from clearing.fix.gateway_protocol import GatewayStatus, encode_frame, recv_frame
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVER_NAME = "proxy.clearing.internal"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, subject_key, issuer, issuer_key, *, ca: bool, names=()) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Pki:
    ca_file: Path  # the private CA the client trusts
    server_cert: Path  # signed by it, for SERVER_NAME and 127.0.0.1
    server_key: Path
    other_ca_file: Path  # a CA that did not sign the server certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca_key, other_key, server_key = _key(), _key(), _key()
    ca = _certificate(_name("clearing test CA"), ca_key, _name("clearing test CA"), ca_key, ca=True)
    other = _certificate(_name("other CA"), other_key, _name("other CA"), other_key, ca=True)
    server = _certificate(
        _name(SERVER_NAME), server_key, ca.subject, ca_key, ca=False,
        names=[x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )  # fmt: skip
    paths = Pki(root / "ca.pem", root / "server.pem", root / "server.key", root / "other-ca.pem")
    paths.ca_file.write_bytes(_pem(ca))
    paths.server_cert.write_bytes(_pem(server))
    paths.server_key.write_bytes(_key_pem(server_key))
    paths.other_ca_file.write_bytes(_pem(other))
    return paths


class TlsProxyStub:
    """A TLS server on 127.0.0.1 that answers each request frame SENT (what the proxy would)."""

    def __init__(self, pki: Pki) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.requests: list[dict] = []
        self.handshake_failures = 0
        self.tls_versions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    self.tls_versions.append(conn.version() or "")
                    self._answer(conn)
            except (ssl.SSLError, ConnectionError, TimeoutError):
                self.handshake_failures += 1
                raw.close()

    def _answer(self, conn: ssl.SSLSocket) -> None:
        while True:
            try:
                request = recv_frame(conn)
            except ConnectionError:
                return
            self.requests.append(request)
            seq = len(self.requests)
            conn.sendall(encode_frame({"v": 1, "request_id": request["request_id"], "status": "SENT",
                                       "msg_seq_num": seq, "reason": None}))  # fmt: skip

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def tls_proxy(pki) -> Iterator[TlsProxyStub]:
    stub = TlsProxyStub(pki)
    yield stub
    stub.close()


def _request(n: int) -> dict:
    return {"v": 1, "request_id": f"T-0-{n}-0", "kind": "TRADE_REPORT"}


def test_a_client_that_trusts_the_ca_talks_to_the_proxy_over_tls(pki, tls_proxy):
    # Given a client with PROXY_TLS on and the private CA's bundle, naming the certificate's host
    client = ProxyClient("127.0.0.1", tls_proxy.port, tls=True, ca_file=str(pki.ca_file),
                         server_name=SERVER_NAME, connect_timeout=2, response_timeout=2)  # fmt: skip
    # When it sends two requests on its kept connection
    first, second = client.submit(_request(1)), client.submit(_request(2))
    client.close()
    # Then both arrive decrypted, in order, over one TLS (1.2+) connection
    assert [first.status, second.status] == [GatewayStatus.SENT, GatewayStatus.SENT]
    assert [first.msg_seq_num, second.msg_seq_num] == [1, 2]
    assert [r["request_id"] for r in tls_proxy.requests] == ["T-0-1-0", "T-0-2-0"]
    assert len(tls_proxy.tls_versions) == 1 and tls_proxy.tls_versions[0] in ("TLSv1.2", "TLSv1.3")


def test_the_connected_ip_is_the_default_name_checked(pki, tls_proxy):
    # The certificate also names 127.0.0.1, so no server name override is needed
    client = ProxyClient("127.0.0.1", tls_proxy.port, tls=True, ca_file=str(pki.ca_file))
    assert client.server_name == "127.0.0.1"
    assert client.submit(_request(1)).status is GatewayStatus.SENT
    client.close()


def test_a_certificate_from_an_untrusted_ca_is_refused(pki, tls_proxy):
    # Given the default trust (the system store) or another CA: the private CA is not trusted
    for ca_file in (None, str(pki.other_ca_file)):
        client = ProxyClient("127.0.0.1", tls_proxy.port, tls=True, ca_file=ca_file, server_name=SERVER_NAME)
        # Then nothing is sent: the invocation fails (the mapping retries) and names the reason
        with pytest.raises(ProxyUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            client.submit(_request(1))
    assert tls_proxy.requests == []


def test_a_certificate_for_another_name_is_refused(pki, tls_proxy):
    client = ProxyClient("127.0.0.1", tls_proxy.port, tls=True, ca_file=str(pki.ca_file),
                         server_name="someone-else.internal")  # fmt: skip
    with pytest.raises(ProxyUnavailableError, match="CERTIFICATE_VERIFY_FAILED|match"):
        client.submit(_request(1))
    assert tls_proxy.requests == []


def test_a_plain_client_cannot_talk_to_the_tls_listener(tls_proxy):
    client = ProxyClient("127.0.0.1", tls_proxy.port, connect_timeout=1, response_timeout=1)
    with pytest.raises(ProxyUnavailableError):
        client.submit(_request(1))
    assert tls_proxy.requests == []


def test_proxy_tls_settings_come_from_the_environment(pki, tls_proxy, monkeypatch):
    # Given the gateway's environment as template.yaml sets it, plus the private CA
    monkeypatch.setenv("PROXY_HOST", "127.0.0.1")
    monkeypatch.setenv("PROXY_PORT", str(tls_proxy.port))
    monkeypatch.setenv("PROXY_TLS", "true")
    monkeypatch.setenv("PROXY_TLS_CA_FILE", str(pki.ca_file))
    monkeypatch.setenv("PROXY_TLS_SERVER_NAME", SERVER_NAME)
    bootstrap.exchange_proxy.cache_clear()
    try:
        client = bootstrap.exchange_proxy()
        # Then the handler's adapter speaks TLS and verifies the proxy's certificate
        assert client.tls and client.server_name == SERVER_NAME
        assert client.submit(_request(7)).status is GatewayStatus.SENT
        client.close()
    finally:
        bootstrap.exchange_proxy.cache_clear()


def test_plain_tcp_unless_proxy_tls_is_true(monkeypatch):
    monkeypatch.setenv("PROXY_HOST", "127.0.0.1")
    monkeypatch.setenv("PROXY_PORT", "19000")
    monkeypatch.setenv("PROXY_TLS", "false")
    bootstrap.exchange_proxy.cache_clear()
    try:
        assert not bootstrap.exchange_proxy().tls
    finally:
        bootstrap.exchange_proxy.cache_clear()


def test_an_unreadable_ca_file_is_a_configuration_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PROXY_HOST", "127.0.0.1")
    monkeypatch.setenv("PROXY_PORT", "19000")
    monkeypatch.setenv("PROXY_TLS", "true")
    monkeypatch.setenv("PROXY_TLS_CA_FILE", str(tmp_path / "missing.pem"))
    bootstrap.exchange_proxy.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="PROXY_TLS_CA_FILE"):
            bootstrap.exchange_proxy()
    finally:
        bootstrap.exchange_proxy.cache_clear()
