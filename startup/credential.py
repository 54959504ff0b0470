"""Git credential helper: hands git the token from the environment when git asks.

Configured per host in the user's global git config, as
``credential.<scheme>://<host>.helper = <python> <this file>``, so the token itself is
never written to ``.git/config``, a remote URL, a log or a process's arguments. It is
read at the moment git asks, from ``MLOPS_IDE_GIT_TOKEN`` or from the file named by
``MLOPS_IDE_GIT_TOKEN_FILE`` (a mounted Kubernetes Secret, say).

Standard library only: git runs it as a script, with no PYTHONPATH.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_USERNAME = "x-access-token"  # what GitHub expects beside an OAuth or app token


def read_token(environ: dict[str, str] | None = None) -> str | None:
    """The token, or None when none is configured (or its file cannot be read)."""
    env = os.environ if environ is None else environ
    token = env.get("MLOPS_IDE_GIT_TOKEN", "").strip()
    if token:
        return token
    token_file = env.get("MLOPS_IDE_GIT_TOKEN_FILE", "").strip()
    if token_file:
        try:
            return Path(token_file).read_text().strip() or None
        except OSError:
            return None
    return None


def answer(operation: str, request: str, environ: dict[str, str] | None = None) -> str:
    """What the helper prints for one git credential request (empty: no opinion)."""
    if operation != "get":
        return ""  # store / erase: the token lives in the environment, nothing to do
    token = read_token(environ)
    if not token:
        return ""
    env = os.environ if environ is None else environ
    asked = dict(line.split("=", 1) for line in request.splitlines() if "=" in line)
    username = asked.get("username") or env.get("MLOPS_IDE_GIT_USERNAME") or DEFAULT_USERNAME
    return f"username={username}\npassword={token}\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    operation = args[-1] if args else ""
    sys.stdout.write(answer(operation, sys.stdin.read() if operation == "get" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
