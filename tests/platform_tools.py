"""Stdlib-only helpers that every virtualenv's tests can use."""

from __future__ import annotations

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tools_file_value(name: str) -> str:
    """A path recorded by scripts/install.sh in .tools.env."""
    for line in (ROOT / ".tools.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    raise KeyError(f"{name} is not in .tools.env: run scripts/install.sh")
