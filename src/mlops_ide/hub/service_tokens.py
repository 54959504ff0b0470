"""Tokens a user's server gets for one hub service each (git, MLflow): made at each start,
the one made at the start before deleted, never the server's own token (which opens the
user's server). Both spawners use it: local processes and KubeSpawner pods."""

from __future__ import annotations

from typing import Any


def renew(user: Any, db: Any, note: str, scope: str) -> str:
    """A new token of `user` with `scope` alone, noted `note`; the previous one so noted is gone."""
    for token in list(user.api_tokens):
        if token.note == note:
            db.delete(token)
    db.commit()
    return user.new_api_token(note=note, scopes=[scope])
