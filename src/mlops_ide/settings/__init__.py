"""Settings declared as a table, read and validated in one place.

Each setting is one `Setting` row: its environment variable, the attribute it becomes,
its default, the parser that turns text into a value (and says what is wrong), its help
(docs/operator-guide.md's and docs/kubernetes.md's tables are generated from it) and the modes that
read it. Rows live beside what they configure: the platform's in `settings/core.py`,
each service's in its module under `services/`; `mlops_ide.hub.modes` joins them.

`read()` reports every problem at once, one line each, naming the variable and what to
set, so the hub (and `make up`) stop before anything starts. Standard library only.

Why not pydantic-settings or traitlets: the same rows must be readable where neither is
installed (the DAGs' Airflow environment, the git hook, the single-user image), our
messages say what to set rather than which type failed, and defaults depend on other
settings and on the mode; a loader of ~100 lines does that and stays ours to word.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parents[3]
MODES = ("local", "kubernetes")

Values = Mapping[str, Any]  # the attributes read so far, by name
Rule = Callable[[Values, Mapping[str, str]], Iterable[str]]  # a cross-setting check: its problems


class Invalid_:
    """What a cross-setting rule sees for a value that failed to parse (already reported)."""

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "<invalid>"


INVALID = Invalid_()


class SettingsError(ValueError):
    """One or more settings are wrong; the message says which and what to do."""


class Invalid(ValueError):
    """Raised by a parser: `reason` completes "<NAME>=<value> ..." (or "<NAME> ...")."""

    def __init__(self, reason: str, show_value: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.show_value = show_value


def text(raw: str) -> str:
    return raw


@dataclass(frozen=True)
class Setting:
    """One environment variable: where it goes, its default, how it is parsed, its help."""

    name: str
    attr: str
    help: str
    default: str | Callable[[Values], str | None] | None = None  # text, parsed like a value
    parse: Callable[[str], Any] = text
    modes: tuple[str, ...] = MODES
    required: str | None = None  # when missing: "<NAME> is not set: <required>"
    required_in: tuple[str, ...] = ()  # modes that need it (default: every mode that reads it)
    refused_in: Mapping[str, str] = field(default_factory=dict)  # mode -> why it must not be set
    secret: bool = False  # never echoed in a message
    default_doc: str | Mapping[str, str] | None = None  # the docs' "default" column
    # "hub": read at start; otherwise who reads it from the environment; per mode: {mode: reader}
    read_by: str | Mapping[str, str] = "hub"

    def reader(self, mode: str) -> str:
        """Who reads it in `mode`: "hub" (the platform, at start) unless the row names another."""
        if isinstance(self.read_by, Mapping):
            return self.read_by.get(mode, "hub")
        return self.read_by

    def needed_in(self, mode: str) -> bool:
        return self.required is not None and mode in (self.required_in or self.modes)

    def documented_default(self, mode: str) -> str:
        doc = self.default_doc
        if isinstance(doc, Mapping):  # per mode; a mode it does not name gets the plain default
            doc = doc.get(mode)
        if doc is not None:
            return doc
        if self.needed_in(mode):
            return "required"
        return f"`{self.default}`" if isinstance(self.default, str) and self.default else "unset"


class Settings:
    """The values of one mode's settings, as attributes named by each row's `attr`."""

    def __init__(self, mode: str, values: Mapping[str, Any]) -> None:
        self.__dict__["mode"] = mode
        self.__dict__["_values"] = dict(values)

    def __getattr__(self, attr: str) -> Any:
        values = self.__dict__.get("_values")
        if values is None or attr.startswith("__"):  # copy and pickle ask before __init__ ran
            raise AttributeError(attr)
        try:
            return values[attr]
        except KeyError:
            raise AttributeError(f"{attr!r} is not a setting of {self.mode} mode") from None

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError("settings are read once, at start; they cannot be changed")

    def replace(self, **changes: Any) -> Settings:
        return Settings(self.mode, {**self.__dict__["_values"], **changes})

    # -- derived from the settings: the state folder's layout and the addresses -------------

    @property
    def public_url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        scheme = "https" if self._values.get("ssl_cert") else "http"
        return f"{scheme}://{host}:{self.port}/"

    @property
    def hub_port(self) -> int:
        """The hub's own API port: MLOPS_IDE_HUB_PORT on Kubernetes, the public port + 1 locally."""
        return self._values.get("hub_port") or self.port + 1

    @property
    def proxy_api_port(self) -> int:
        """configurable-http-proxy's REST API port in local mode: the public port + 2."""
        return self.port + 2

    @property
    def local_remote(self) -> Path:
        return self.home / "remote" / "pipelines.git"

    @property
    def effective_repo_url(self) -> str:
        return self.repo_url or str(self.local_remote)

    @property
    def dataset(self) -> Path:
        """The skin-lesion dataset the workflow trains on (seeded with synthetic images)."""
        return self.home / "data" / "skin-lesions"

    @property
    def homes(self) -> Path:
        return self.home / "homes"


def read(
    table: Iterable[Setting], mode: str, rules: Iterable[Rule] = (), environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the rows of `table` that `mode` reads, in order (a default may use the values
    read before it), then run `rules`; raise SettingsError listing every problem."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    values: dict[str, Any] = {"mode": mode}
    failed: set[str] = set()
    for row in table:
        if row.reader(mode) != "hub" or row.attr in values:
            continue
        raw = env.get(row.name, "")
        raw = raw if row.secret else raw.strip()  # a secret is taken as it is
        if mode not in row.modes:
            if raw and mode in row.refused_in:
                problems.append(f"{row.name} is set, but {row.refused_in[mode]}")
            continue
        reported = len(problems)
        values[row.attr] = parse(row, raw, values, problems)
        if len(problems) > reported:
            failed.add(row.attr)
    # The rules see a value that failed as INVALID, so that they do not report it again.
    seen = {attr: INVALID if attr in failed else value for attr, value in values.items()}
    for rule in rules:
        problems.extend(rule(seen, env))
    if problems:
        raise SettingsError("\n".join(problems))
    return Settings(mode, values)


def parse(row: Setting, raw: str, values: Values, problems: list[str]) -> Any:
    """The value of one row; a problem is appended (and the default's value kept) when it is wrong."""
    default = row.default(values) if callable(row.default) else row.default
    if not raw:
        if default is None:
            if row.needed_in(values["mode"]):
                problems.append(f"{row.name} is not set: {row.required}")
            return None
        raw = default
    try:
        return row.parse(raw)
    except Invalid as error:
        shown = f"={raw!r}" if error.show_value and not row.secret else ""
        problems.append(f"{row.name}{shown} {error.reason}")
    try:
        return row.parse(default) if default is not None and default != raw else None
    except Invalid:
        return None
