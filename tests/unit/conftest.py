"""Unit tests never reach the network: sockets may connect to loopback (local test servers) only."""

from __future__ import annotations

import ipaddress
import socket

import pytest

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _loopback_only(address) -> None:
    if isinstance(address, str | bytes):  # unix socket
        return
    host = address[0]
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if host == "localhost":
            return
    raise RuntimeError(f"unit tests must not use the network (tried to connect to {address!r})")


@pytest.fixture(autouse=True)
def block_network(monkeypatch):
    def connect(self, address):
        _loopback_only(address)
        return _connect(self, address)

    def connect_ex(self, address):
        _loopback_only(address)
        return _connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
