"""Parsers for settings: text in, value out, or `Invalid` with what to set instead."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from mlops_ide.portable import dag_folder
from mlops_ide.settings import Invalid

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# An image reference with a tag or a digest: registry[:port]/path:tag or ...@sha256:<hex>.
IMAGE = re.compile(
    r"^[a-z0-9][a-z0-9._/:-]*?(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@sha256:[0-9a-f]{64})$"
)
STORAGE = re.compile(r"^[1-9][0-9]*(Mi|Gi|Ti)$")  # a Kubernetes quantity: 10Gi, 500Mi, 1Ti
# GitHub: an organization, or organization:team (team slug), as oauthenticator takes them.
GITHUB_ORG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?::[A-Za-z0-9_.-]{1,100})?$")
HOST = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
# A password, or a token as the user part (https://TOKEN@host/...): git would store either in
# .git/config. SSH's user part (ssh://git@host/...) is no secret.
URL_WITH_CREDENTIALS = re.compile(r"^(?:[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@|https?://[^/@]+@)", re.IGNORECASE)


def choice(options: tuple[str, ...], what: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in options:
            quoted = " or ".join(f"'{option}'" for option in options)
            raise Invalid(f"is not {what}: set {quoted}.")
        return value

    return parse


def port(raw: str) -> int:
    if raw.isdigit() and 1 <= int(raw) <= 65535:
        return int(raw)
    raise Invalid("is not a port: set a whole number from 1 to 65535.")


def ip(raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise Invalid("is not an IP address: set one such as 127.0.0.1 or 0.0.0.0.") from None
    return raw


def folder(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if path.exists() and not path.is_dir():
        raise Invalid("is a file: set it to a folder (it is created if missing).")
    return path


def config_folder(raw: str) -> Path:
    path = Path(raw).expanduser().absolute()
    if not path.is_dir():
        raise Invalid(
            "is not a folder: set it to the folder of your own *.py hub configuration, or unset it."
        )
    return path


def readable_file(what: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        path = Path(raw).expanduser().absolute()
        if not path.is_file():
            raise Invalid(f"is not a file: set it to {what}, or unset it.")
        return str(path)

    return parse


def flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise Invalid("is not 1 or 0: set 1 to turn it on, 0 (or nothing) to leave it off.")


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def existing_file(raw: str) -> str:
    if not Path(raw).is_file():
        raise Invalid("is not a file: set it to the file that holds the token, or unset it.")
    return raw


def at_least(characters: int, advice: str) -> Callable[[str], str]:
    """A secret of at least `characters` characters (its value is never shown)."""

    def parse(raw: str) -> str:
        if len(raw) < characters:
            raise Invalid(f"is shorter than {characters} characters: {advice}", show_value=False)
        return raw

    return parse


password = at_least(8, "set a longer one, or unset it to have one generated.")
webhook_secret = at_least(
    16, "set a longer one (`openssl rand -hex 20`), the same in the repository's GitHub webhook."
)


def names(raw: str) -> tuple[str, ...]:
    """A comma-separated list; blanks dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def usernames(what: str, advice: str) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        listed = tuple(name.lower() for name in names(raw))
        bad = [name for name in listed if not USERNAME.match(name)]
        if bad:
            raise Invalid(f"has names that are not {what} ({', '.join(bad)}): {advice}", show_value=False)
        return listed

    return parse


def github_orgs(raw: str) -> tuple[str, ...]:
    listed = names(raw)
    bad = [org for org in listed if not GITHUB_ORG.match(org)]
    if bad:
        raise Invalid(
            f"has entries that are not 'org' or 'org:team' ({', '.join(bad)}): list GitHub organizations "
            "or organization:team-slug, separated by commas.",
            show_value=False,
        )
    return listed


def branch(raw: str) -> str:
    result = subprocess.run(["git", "check-ref-format", "--branch", raw], capture_output=True)
    if result.returncode or raw.startswith("-"):
        raise Invalid("is not a valid git branch name: set one such as main.")
    return raw


def dags_folder(raw: str) -> str:
    try:
        return dag_folder.parse(raw)
    except dag_folder.BadFolder as error:
        raise Invalid(str(error)) from None


def repo_url(raw: str) -> str:
    if URL_WITH_CREDENTIALS.match(raw):
        raise Invalid(
            "contains a password or token: remove it and set MLOPS_IDE_GIT_TOKEN (or "
            "MLOPS_IDE_GIT_TOKEN_FILE) instead.",
            show_value=False,
        )
    return raw


def url(what: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(f"is not an http(s) URL: set it to {what}.")
        return value

    return parse


def matching(pattern: re.Pattern[str], reason: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not pattern.fullmatch(raw):
            raise Invalid(reason)
        return raw

    return parse


host = matching(HOST, "is not a host name: set one such as hub.example.org.")
storage_size = matching(STORAGE, "is not a size: set one such as 10Gi or 500Mi.")


def callback_url(raw: str) -> str:
    if urlsplit(raw).scheme in ("http", "https") and raw.endswith("/hub/oauth_callback"):
        return raw
    raise Invalid(
        "is not the hub's callback: set https://<your hub's host>/hub/oauth_callback (and the same "
        "in the GitHub OAuth app)."
    )


def image(raw: str) -> str:
    match = IMAGE.match(raw)
    if match is None or match.group("tag") == "latest":
        raise Invalid(
            "has no fixed tag: name a version or commit tag (or an @sha256 digest), never :latest, "
            "so every user gets the same image."
        )
    return raw


def idle_timeout(raw: str) -> int:
    if not raw.isdigit() or 0 < int(raw) < 60:
        raise Invalid("is not a timeout: set seconds, 60 or more (or 0 to never stop idle servers).")
    return int(raw)


def count(least: int, most: int, what: str) -> Callable[[str], int]:
    """A whole number from `least` to `most`."""

    def parse(raw: str) -> int:
        if not raw.strip().isdigit() or not least <= int(raw) <= most:
            raise Invalid(f"is not a number of {what}: set a whole number from {least} to {most}.")
        return int(raw)

    return parse


def seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise Invalid("is not a number of seconds: set one above 0, such as 60.")
    return value


def crypt_key(raw: str) -> str:
    """JupyterHub takes 32-byte keys, hex or base64 (`openssl rand -hex 32`), `;`-separated."""
    if not all(is_crypt_key(key) for key in raw.split(";") if key):
        raise Invalid(
            "is not a 32-byte key: set it to the output of `openssl rand -hex 32`.", show_value=False
        )
    return raw


def is_crypt_key(key: str) -> bool:
    try:
        raw = (
            bytes.fromhex(key)
            if re.fullmatch(r"[0-9a-fA-F]{64}", key)
            else base64.b64decode(key, validate=True)
        )
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32
