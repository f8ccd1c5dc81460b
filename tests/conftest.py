"""Test session setup: refuse every connection outside 127.0.0.0/8; load the lab fixtures."""

from __future__ import annotations

import ipaddress
import socket

import pytest

pytest_plugins = ["lab.pytest_plugin"]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class ForbiddenConnection(OSError):
    """A test tried to reach an address outside the loopback range."""


def _check(sock: socket.socket, address: object) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ForbiddenConnection(f"test tried to connect to a name: {host!r}") from None
    if not ip.is_loopback:
        raise ForbiddenConnection(f"test tried to connect outside 127.0.0.0/8: {host}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _socket_guard():
    """Every test runs with connections limited to loopback; the example holds 192.168.x."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
