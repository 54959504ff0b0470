"""`champion` is the tracked branch's: MLflow's gate refuses to point it at a model version
that a preview made (a branch `preview/<person>/<topic>`, whose runs record to the experiment
named after the branch, portable/previews.py `Preview.experiment`).

Serving loads the version `champion` names, so a preview that moved it would serve its model.
A version is a preview's when its source run (`run_id`) is in an experiment named
`preview/...`. A version with no run, or whose run or experiment cannot be read, does not
become champion either: the gate cannot tell who made it (closed when in doubt); register
it from a run of the tracked branch (the workflow's `log_model(registered_model_name=...)`).

This guards against mistakes (a preview's workflow that compares and promotes, a notebook
pointed at the wrong version), not against the people who may push the tracked branch:
previews run with the pipeline's identity, which may rename an experiment or register a
version from another run's files on a store MLflow does not check (docs/previews.md#mlflow).

The preview identity (hub service `pipeline-preview`, whose token a preview's tasks get) never
moves `champion`, whatever its version's experiment: it may not set or delete that alias, nor
delete or rename a registered model, nor delete the version `champion` names (each takes
`champion` from what serving loads). So a preview branch whose code records to the tracked
branch's experiment (made before previews had their own) still cannot promote its model.

Pure parsing and rules, plus lookups that ask MLflow through the gate's `ask`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from mlops_ide.portable import previews

CHAMPION = "champion"  # the alias serving follows (skin_cancer.CHAMPION)
ALIAS_FIELDS = ("name", "alias", "version")  # SetRegisteredModelAlias: one spelling each
Ask = Callable[[str], Awaitable[dict | None]]  # MLflow's JSON answer to a GET, or None


class AliasRequest(NamedTuple):
    model: str
    alias: str
    version: str


class BadAliasRequest(ValueError):
    """An alias request the gate would read otherwise than MLflow, or MLflow refuses anyway."""


def is_preview_experiment(name: str) -> bool:
    """Whether `name` is a preview's experiment: it starts with `preview/`, in any case and
    after any white space (a database that compares without case takes `PREVIEW/x` for
    `preview/x`; the tracked branch's workflow names none so)."""
    return name.strip().casefold().startswith(previews.BRANCH_PREFIX)


def is_champion(alias: str) -> bool:
    """`champion` as MLflow's stores may match it (MySQL without case, trailing blanks)."""
    return alias.strip().casefold() == CHAMPION


def alias_request(request: dict, query: dict[str, list[bytes]]) -> AliasRequest:
    """What a POST registered-models/alias sets, read as MLflow reads it: from the JSON body
    alone (`request`, already parsed with each key once). MLflow ignores a POST's query, so a
    query that names the model, alias or version too is refused rather than read."""
    if any(field in query for field in ALIAS_FIELDS):
        raise BadAliasRequest("send name, alias and version in the JSON body only, not in the query")
    values = [request.get(field) for field in ALIAS_FIELDS]
    if not all(isinstance(value, str) and value for value in values):
        raise BadAliasRequest(
            'send {"name": "<model>", "alias": "<alias>", "version": "<number>"}, each a string'
        )
    return AliasRequest(*values)


def refusal(model: str, version: str, why: str) -> str:
    return (
        f"version {version} of {model} may not become `{CHAMPION}` (what serving loads): {why}. "
        f"`{CHAMPION}` goes to versions of the tracked branch's runs: merge the preview branch into "
        "the tracked branch and let its workflow train and compare"
    )


PREVIEW_REFUSAL = (
    "a preview cannot move `champion` (what serving loads): its tasks have the preview identity "
    "({what}). Merge the branch into the tracked branch, whose workflow trains, compares and promotes"
)
# What the preview identity may not do at all: each takes `champion` with it.
PREVIEW_NEVER = ("registered-models/delete", "registered-models/rename")


def mlflow_route(path: str) -> str:
    """`registered-models/alias` for `api/2.0/mlflow/registered-models/alias` (or `ajax-api/`)."""
    return path.split("/mlflow/", 1)[-1]


async def why_not_from_preview(ask: Ask, method: str, path: str, request: dict, query: dict) -> str | None:
    """Why the preview identity may not make this request of the registry (a message for the
    caller), or None. `path` as the gate has it (below its prefix), `request` the JSON body
    (parsed with each key once), `query` the query's arguments. Closed when in doubt: a
    request whose alias or version cannot be read is refused."""
    route = mlflow_route(path)
    if route == "registered-models/alias" and method in ("POST", "DELETE"):
        if any(field in query for field in ALIAS_FIELDS):
            raise BadAliasRequest("send name, alias and version in the JSON body only, not in the query")
        alias = request.get("alias")
        if not isinstance(alias, str) or is_champion(alias):
            verb = "set" if method == "POST" else "delete"
            return PREVIEW_REFUSAL.format(what=f"it may {verb} other aliases, never `{CHAMPION}`")
        return None
    if route in PREVIEW_NEVER:
        return PREVIEW_REFUSAL.format(what=f"{route} would take `{CHAMPION}` with it")
    if route == "model-versions/delete":
        model, version = request.get("name"), request.get("version")
        if query or not (isinstance(model, str) and isinstance(version, str)):
            return PREVIEW_REFUSAL.format(what="name the version to delete in the JSON body")
        found = await ask(query_of("model-versions/get", name=model, version=version))
        # MLflow's JSON leaves out an empty list: no `aliases` is none
        aliases = (found or {}).get("model_version", {}).get("aliases", []) if found else None
        if not isinstance(aliases, list) or any(is_champion(str(alias)) for alias in aliases):
            return PREVIEW_REFUSAL.format(what=f"version {version} of {model} is `{CHAMPION}` or unreadable")
    return None


async def why_not_champion(ask: Ask, model: str, version: str) -> str | None:
    """Why `version` of `model` may not become champion (a message for the caller), or None
    when its source run is in an experiment that is not a preview's."""
    found = await ask(query_of("model-versions/get", name=model, version=version))
    if found is None:
        return refusal(model, version, "MLflow has no such version")
    run_id = found.get("model_version", {}).get("run_id")
    if not run_id:
        # MLflow's registry keeps no other link to a version's origin (its REST answers carry
        # no logged model id): the source alone, which the gate cannot read as a run
        return refusal(model, version, "it was registered from no run, so where it comes from is unknown")
    run = await ask(query_of("runs/get", run_id=run_id))
    experiment_id = (run or {}).get("run", {}).get("info", {}).get("experiment_id")
    experiment = (
        await ask(query_of("experiments/get", experiment_id=experiment_id)) if experiment_id else None
    )
    name = (experiment or {}).get("experiment", {}).get("name")
    if not isinstance(name, str):
        return refusal(model, version, f"the experiment of its run {run_id} cannot be read")
    if is_preview_experiment(name):
        return refusal(model, version, f"its run {run_id} is in the preview experiment {name!r}")
    return None


def query_of(route: str, **query: str) -> str:
    """MLflow's REST path for `route` with `query` encoded (names may hold `&`, `#`, spaces)."""
    encoded = urllib.parse.urlencode(query)
    return f"api/2.0/mlflow/{route}" + (f"?{encoded}" if encoded else "")
