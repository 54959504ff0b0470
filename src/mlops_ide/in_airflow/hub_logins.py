"""What the hub says now about a login it made: whose it is, admin or not, or that it ended.

Airflow's session (a JWT, valid 24 h) carries the hub OAuth token of the login that made it.
Each request's user is what the hub answers for that token now, asked at most once per login
every FRESH_FOR seconds: a person removed from the hub, demoted, renamed or logged out of it
loses Airflow, or its admin role, within that. A hub that does not answer: the last answer
stands until it is TRUST_SILENT_HUB_FOR seconds old, then the login is refused until the hub
answers again (fail closed). Standard library only: it runs inside Airflow's API server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FRESH_FOR = 30.0  # seconds an answer is used without asking again
TRUST_SILENT_HUB_FOR = 60.0  # seconds an answer stands while the hub does not answer
RETRY_SILENT_HUB_AFTER = 5.0  # a silent hub is not asked again sooner (each try may wait TIMEOUT)
TIMEOUT = 5.0

log = logging.getLogger(__name__)

UserModel = dict[str, Any]


class HubSilent(Exception):
    """The hub did not answer (down, timed out, an error of its own): no verdict on the login."""


@dataclass
class Answer:
    model: UserModel | None  # None: the token opens nothing at the hub any more
    answered_at: float
    asked_at: float


NEVER = float("-inf")


def hub_user_asker(hub_api_url: str, timeout: float = TIMEOUT) -> Callable[[str], UserModel | None]:
    """Asks the hub's `/user` with a login's token: its user model, or None when the hub
    refuses the token (the user was removed or logged out: the hub deleted it)."""
    # straight to the hub: a person's token never goes through an HTTP proxy of the environment
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = hub_api_url.rstrip("/") + "/user"

    def ask(token: str) -> UserModel | None:
        request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        try:
            with opener.open(request, timeout=timeout) as response:
                model = json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):
                return None
            raise HubSilent(f"the hub answered {error.code} at {url}") from None
        except (OSError, ValueError) as error:  # URLError, timeouts, a reset; not JSON
            raise HubSilent(f"{url}: {error}") from None
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            raise HubSilent(f"{url} answered something other than a user")
        return model

    return ask


class HubLogins:
    """The hub's last answer for each login (keyed by a hash of its token), asked again when
    older than `fresh_for`; one question at a time per login, however many requests wait."""

    def __init__(
        self,
        ask: Callable[[str], UserModel | None],
        *,
        fresh_for: float = FRESH_FOR,
        trust_silent_hub_for: float = TRUST_SILENT_HUB_FOR,
        retry_silent_hub_after: float = RETRY_SILENT_HUB_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ask = ask
        self.fresh_for = fresh_for
        self.trust_silent_hub_for = trust_silent_hub_for
        self.retry_silent_hub_after = retry_silent_hub_after
        self.clock = clock
        self.answers: dict[str, Answer] = {}
        self.asking: dict[str, asyncio.Lock] = {}

    def remember(self, token: str, model: UserModel) -> None:
        """What the hub just said at login: no second question for this login yet."""
        now = self.clock()
        self.answers[key(token)] = Answer(model, now, now)

    async def current(self, token: str) -> UserModel | None:
        """The user the hub says this login is now; None: refuse it."""
        login = key(token)
        answer = self.answers.get(login)
        if answer and self.clock() - answer.answered_at < self.fresh_for:
            return answer.model
        async with self.asking.setdefault(login, asyncio.Lock()):
            answer = self.answers.get(login)
            now = self.clock()
            if answer and now - answer.answered_at < self.fresh_for:
                return answer.model  # another request asked while this one waited
            if answer is None or now - answer.asked_at >= self.retry_silent_hub_after:
                try:
                    model = await asyncio.to_thread(self.ask, token)
                except HubSilent as silent:
                    log.warning("the hub did not answer about a login: %s", silent)
                    known = (answer.model, answer.answered_at) if answer else (None, NEVER)
                    answer = self.answers[login] = Answer(*known, asked_at=now)
                else:
                    now = self.clock()
                    self.answers[login] = Answer(model, now, now)
                    self.forget_old(now)
                    return model
            if now - answer.answered_at < self.trust_silent_hub_for:
                return answer.model
            return None

    def forget_old(self, now: float) -> None:
        """Answers too old to stand and not asked about lately: memory stays bounded."""
        horizon = max(self.trust_silent_hub_for, self.retry_silent_hub_after)
        for login, answer in list(self.answers.items()):
            if now - max(answer.answered_at, answer.asked_at) >= horizon:
                lock = self.asking.get(login)
                if lock is None or not lock.locked():
                    del self.answers[login]
                    self.asking.pop(login, None)


def key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
