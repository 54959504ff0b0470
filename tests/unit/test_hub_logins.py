"""How Airflow's sessions follow the hub (mlops_ide/in_airflow/hub_logins.py): the hub's `/user` is
asked again at most every 30 s per login, a removed or demoted person is seen within that,
and a hub that does not answer is trusted 60 s at most. Against a hub stand-in over HTTP,
with a clock the tests move."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mlops_ide.in_airflow.hub_logins import HubLogins, HubSilent, hub_user_asker
from tests.support.standins import _Server


class HubUserApi(_Server):
    """The hub's `GET /hub/api/user`: one model per token; `broken` answers 500, `delay`
    answers late; `removed` tokens get 403, as the hub does once it deleted them."""

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, dict[str, Any]] = {}
        self.broken = False
        self.delay = 0.0

    def handle(self, method, path, query, headers, body):
        time.sleep(self.delay)
        if self.broken:
            return 500, {}, {"message": "the hub is in trouble"}
        token = (headers.get("Authorization") or "").removeprefix("token ")
        if method != "GET" or path != "/hub/api/user":
            return 404, {}, {"message": "not found"}
        if token not in self.users:
            return 403, {}, {"status": 403, "message": "Missing or invalid credentials."}
        return 200, {}, self.users[token]

    def asked(self) -> int:
        return self.requests.count("GET /hub/api/user")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hub():
    with HubUserApi() as api:
        api.users["ops-token"] = {"kind": "user", "name": "ops", "admin": True}
        yield api


@pytest.fixture
def clock() -> Clock:
    return Clock()


def logins(hub: HubUserApi, clock: Clock, timeout: float = 5) -> HubLogins:
    return HubLogins(hub_user_asker(hub.url + "/hub/api", timeout=timeout), clock=clock)


def current(sessions: HubLogins, token: str = "ops-token") -> dict[str, Any] | None:
    return asyncio.run(sessions.current(token))


def test_a_demotion_is_seen_once_the_answer_is_30_seconds_old(hub: HubUserApi, clock: Clock) -> None:
    sessions = logins(hub, clock)
    assert current(sessions)["admin"] is True

    hub.users["ops-token"]["admin"] = False
    clock.now += 29.9
    assert current(sessions)["admin"] is True  # the answer of 29.9 s ago: no second question
    assert hub.asked() == 1
    clock.now += 0.1
    assert current(sessions)["admin"] is False
    assert hub.asked() == 2


def test_a_removed_or_logged_out_login_is_refused(hub: HubUserApi, clock: Clock) -> None:
    sessions = logins(hub, clock)
    assert current(sessions)["name"] == "ops"

    del hub.users["ops-token"]  # the hub deletes a removed user's tokens, and a session's at logout
    clock.now += 30
    assert current(sessions) is None
    clock.now += 10
    assert current(sessions) is None  # refused without asking again
    assert hub.asked() == 2


def test_a_login_remembered_at_its_callback_is_not_asked_about_at_once(hub: HubUserApi, clock: Clock) -> None:
    sessions = logins(hub, clock)
    sessions.remember("ops-token", {"kind": "user", "name": "ops", "admin": True})

    assert current(sessions)["admin"] is True
    assert hub.asked() == 0


def test_requests_at_once_ask_the_hub_once(hub: HubUserApi, clock: Clock) -> None:
    sessions = logins(hub, clock)
    hub.delay = 0.3  # every request arrives while the first question is out

    async def many() -> list[dict[str, Any] | None]:
        return await asyncio.gather(*(sessions.current("ops-token") for _ in range(20)))

    answers = asyncio.run(many())

    assert [answer["name"] for answer in answers] == ["ops"] * 20
    assert hub.asked() == 1


def test_a_silent_hub_keeps_the_last_answer_60_seconds_then_the_login_is_refused(
    hub: HubUserApi, clock: Clock
) -> None:
    sessions = logins(hub, clock)
    assert current(sessions)["admin"] is True
    hub.broken = True

    clock.now += 31
    assert current(sessions)["admin"] is True  # asked, no answer: the last one stands
    clock.now += 3
    assert current(sessions)["admin"] is True
    assert hub.asked() == 2  # a silent hub is not asked again within 5 s
    clock.now += 25.9  # 59.9 s after the last answer
    assert current(sessions)["admin"] is True
    clock.now += 0.1
    assert current(sessions) is None  # fail closed
    hub.broken = False
    clock.now += 5
    assert current(sessions)["admin"] is True  # the hub answers again: so does Airflow


def test_a_login_the_hub_never_answered_for_is_refused_while_it_is_silent(
    hub: HubUserApi, clock: Clock
) -> None:
    hub.broken = True

    assert current(logins(hub, clock)) is None


def test_a_hub_that_answers_too_late_or_not_at_all_is_silent(hub: HubUserApi, clock: Clock) -> None:
    hub.delay = 1.0
    with pytest.raises(HubSilent):
        hub_user_asker(hub.url + "/hub/api", timeout=0.3)("ops-token")
    with HubUserApi() as gone:
        url = gone.url
    with pytest.raises(HubSilent):  # nobody listens there any more
        hub_user_asker(url + "/hub/api")("ops-token")


def test_the_login_token_goes_to_the_hub_never_through_a_proxy(
    hub: HubUserApi, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HubUserApi() as proxy:
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)

        assert hub_user_asker(hub.url + "/hub/api")("ops-token")["name"] == "ops"

        assert proxy.requests == []


def test_answers_too_old_to_stand_are_forgotten(hub: HubUserApi, clock: Clock) -> None:
    sessions = logins(hub, clock)
    for number in range(50):
        hub.users[f"token-{number}"] = {"kind": "user", "name": f"user{number}", "admin": False}
        current(sessions, f"token-{number}")
    assert len(sessions.answers) == 50

    clock.now += 61
    current(sessions)

    assert list(sessions.answers) == [next(iter(sessions.answers))]  # ops' answer alone
    assert len(sessions.asking) == 1
