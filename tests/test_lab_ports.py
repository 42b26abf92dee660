"""The ports a lab of its own takes: free, and never where outgoing connections take theirs."""

from __future__ import annotations

import socket

import pytest

from foundation.errors import CielError
from lab import runner


def test_a_labs_ports_are_free_and_outside_the_kernels_ephemeral_range():
    low, high = runner._ephemeral_port_range()
    for _ in range(20):
        ports = runner.free_ports()
        taken = range(ports.api, ports.api + 3 + runner.DERIVED_PORTS)
        assert (ports.s3, ports.proxy) == (ports.api + 1, ports.api + 2)
        assert all(port < low or port > high for port in taken), (ports, low, high)
        assert all(runner._port_free(port) for port in taken)


def test_a_taken_port_is_never_chosen(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        # Two candidate blocks: the first holds the taken port (as the lab's proxy port).
        first = taken - 2
        monkeypatch.setattr(runner, "_ephemeral_port_range", lambda: (65000, 65535))
        ports = runner.free_ports(first, first + 16)
        assert ports.api == first + 8


def test_no_room_outside_the_ephemeral_range_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(runner, "_ephemeral_port_range", lambda: (1024, 65535))
    with pytest.raises(CielError, match="outside the ephemeral range 1024-65535"):
        runner.free_ports()
