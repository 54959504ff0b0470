"""Airflow's sessions follow the hub: on a real platform (hub + Airflow), a person demoted
at the hub loses Airflow's admin role, and a removed one Airflow itself, within 30 s of the
change (their session's JWT is valid 24 h); a current user's session carries on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import requests

from tests.support.local_platform import PlatformConfig, RunningPlatform, wait_for

PREFIX = "/services/airflow"
FOLLOWS_THE_HUB_WITHIN = 30  # seconds (mlops_ide/in_airflow/hub_logins.py: FRESH_FOR)
SLACK = 15  # one poll, a busy machine


PLATFORM = PlatformConfig(
    "airflow-sessions", {"MLOPS_IDE_SERVICES": "airflow"}, timeout=180, stops_cleanly=True
)


def airflow_session(platform: RunningPlatform, username: str) -> requests.Session:
    """`username` logged in to the hub, then to Airflow through it (OAuth, no second login)."""
    session = platform.login(username)
    landed = session.get(f"{platform.url}{PREFIX}/auth/hub/login", timeout=60)
    assert landed.status_code == 200, landed.text[-2000:]
    return session


def hub_api(platform: RunningPlatform) -> requests.Session:
    """The hub's API as its first admin, with a token of their own."""
    admin = platform.login("admin")
    made = admin.post(
        f"{platform.url}/hub/api/users/admin/tokens",
        json={"expires_in": 900, "note": "Airflow sessions test"},
        headers={"X-XSRFToken": admin.cookies.get("_xsrf", path="/hub/")},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    api = requests.Session()
    api.headers["Authorization"] = f"token {made.json()['token']}"
    return api


def status(session: requests.Session, platform: RunningPlatform, path: str, **headers: str) -> int:
    return session.get(f"{platform.url}{PREFIX}/api/v2/{path}", headers=headers, timeout=30).status_code


def followed_within(check, what: str) -> float:
    """Seconds until `check()` holds, polled each second; fails past the promised bound."""
    started = time.monotonic()
    wait_for(check, FOLLOWS_THE_HUB_WITHIN + SLACK, what, step=1)
    return time.monotonic() - started


def test_a_demoted_admin_loses_airflows_admin_role_and_keeps_airflow(platform: RunningPlatform) -> None:
    platform.add_user("ops", "--admin")
    ops = airflow_session(platform, "ops")
    assert status(ops, platform, "connections") == 200  # a hub admin: Airflow's ADMIN

    changed = hub_api(platform).patch(f"{platform.url}/hub/api/users/ops", json={"admin": False}, timeout=30)
    assert changed.status_code == 200 and changed.json()["admin"] is False

    took = followed_within(
        lambda: status(ops, platform, "connections") == 403, "ops' Airflow admin role to go"
    )
    print(f"demotion followed in {took:.1f} s")
    # the same session, now as a user: past the 30 s, the hub was asked again and said so
    assert status(ops, platform, "dags") == 200


def test_a_removed_user_loses_airflow_and_the_api_token_they_made(platform: RunningPlatform) -> None:
    carol, dan = airflow_session(platform, "carol"), airflow_session(platform, "dan")
    made = carol.post(f"{platform.url}{PREFIX}/ui/auth/token", json={"token_type": "cli"}, timeout=30)
    assert made.status_code == 200, made.text
    token = made.json()["access_token"]  # valid an hour, by Airflow's own reckoning
    assert status(carol, platform, "dags") == 200
    assert status(requests.Session(), platform, "dags", Authorization=f"Bearer {token}") == 200

    removed = platform.users("remove", "carol")
    assert removed.returncode == 0, removed.stderr

    took = followed_within(
        lambda: (
            status(carol, platform, "dags") in (401, 403)
            and status(requests.Session(), platform, "dags", Authorization=f"Bearer {token}") in (401, 403)
        ),
        "carol's Airflow session and token to be refused",
    )
    print(f"removal followed in {took:.1f} s")
    assert status(dan, platform, "dags") == 200  # dan's session carries on


def test_logging_out_of_the_hub_ends_the_airflow_session(platform: RunningPlatform) -> None:
    erin = airflow_session(platform, "erin")
    kept = requests.Session()  # Airflow's cookie, kept after the logout (as a copied cookie would be)
    kept.cookies.set("_token", erin.cookies.get("_token", path=f"{PREFIX}/"), path=f"{PREFIX}/")
    assert status(kept, platform, "dags") == 200

    erin.get(f"{platform.url}/hub/logout", timeout=30)  # the hub deletes that login's tokens

    took = followed_within(lambda: status(kept, platform, "dags") in (401, 403), "erin's session to end")
    print(f"hub logout followed in {took:.1f} s")


def signed_jwt(platform: RunningPlatform, claims: dict) -> str:
    """A JWT as Airflow signs its sessions (HS512 with its JWT secret, its audience)."""
    now = int(time.time())
    claims = {
        "aud": "apache-airflow",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
        **claims,
    }

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    body = f"{part({'alg': 'HS512', 'typ': 'JWT'})}.{part(claims)}"
    secret = (platform.home / "airflow-auth" / "jwt_secret").read_text().strip().encode()
    signature = hmac.new(secret, body.encode(), hashlib.sha512).digest()
    return f"{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_a_session_that_names_no_hub_login_works_for_password_accounts_only(
    platform: RunningPlatform,
) -> None:
    # what a hub login made before sessions carried its hub token: a name and a role alone
    before = signed_jwt(platform, {"sub": "ops", "role": "ADMIN", "teams": []})
    platform_account = signed_jwt(platform, {"sub": "mlops-ide-platform", "role": "ADMIN", "teams": []})
    anonymous = requests.Session()

    assert status(anonymous, platform, "connections", Authorization=f"Bearer {platform_account}") == 200
    assert status(anonymous, platform, "connections", Authorization=f"Bearer {before}") == 403
