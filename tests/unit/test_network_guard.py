"""The unit-test network guard refuses non-loopback connections before any packet is sent."""

import socket

import pytest


def test_a_non_loopback_connection_is_refused_before_it_is_attempted():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(RuntimeError, match="network"):
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed; the guard raises before connecting
