"""The hub's SQLite database, tuned for a team on one disk."""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine


def commit_without_waiting_for_the_disk() -> None:
    """The hub's SQLite database in WAL mode, synchronous=NORMAL: a commit no longer waits
    for an fsync, which on a disk busy with a team's server starts (clones, caches) took the
    hub's event loop a quarter of the time (py-spy, bench/many_users.py 20). Still atomic
    and never corrupt; a power cut may lose the last commits (a token, a server's state)."""
    if not event.contains(Engine, "connect", sqlite_pragmas):
        event.listen(Engine, "connect", sqlite_pragmas)


def sqlite_pragmas(connection, _record) -> None:
    if isinstance(connection, sqlite3.Connection):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
