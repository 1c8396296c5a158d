"""devstack.process.free_port: ports for servers, never from the ephemeral
range that outgoing connections draw from (a port picked early and bound
later was taken meanwhile: a rollout replica failed with 'Address already in use')."""

from __future__ import annotations

import socket
from pathlib import Path

from devstack.process import ephemeral_ports, free_port


def test_free_ports_are_outside_the_ephemeral_range_and_bindable() -> None:
    ephemeral = ephemeral_ports()
    for _ in range(50):
        port = free_port()
        assert port not in ephemeral
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_ephemeral_range_is_read_from_the_kernel(tmp_path: Path) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("40000\t50000\n")
    assert ephemeral_ports(setting) == range(40000, 50001)
    assert ephemeral_ports(tmp_path / "absent") == range(32768, 61000)
