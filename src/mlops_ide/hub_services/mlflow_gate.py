"""MLflow behind the hub's login: every request says who it is, and the registry is the
pipeline's.

MLflow itself has no login here: it listens on a Unix socket that only root and the
pipeline's account can open (machine/components/mlflow.py). This service, a JupyterHub service named
`mlflow` served under /services/mlflow/, is the one way in for everyone else:

- a browser brings the hub's login (OAuth with the hub, no second login);
- a program brings a hub token: `MLFLOW_TRACKING_TOKEN`, which MLflow's client sends as
  `Authorization: Bearer`; user servers get one for this service alone at each start, the
  pipeline (Airflow's tasks, serving) the token of the hub service `pipeline`.

What each may do: everyone reads everything; users create experiments and runs, and change
only their own runs and their artifacts; registering model versions and moving aliases
(`champion`, which serving follows) is the pipeline's, and hub admins', and `champion` never
goes to a version a preview made (mlops_ide/hub_services/mlflow_champion.py); the preview
identity (hub service `pipeline-preview`, a preview's tasks) has the pipeline's rights but
never moves `champion` at all. A run records who
made it (`user_id` and the `mlflow.user` tag are the hub's name for the caller, whatever
the client said). Anything else gets 401 (who are you?) or 403 (not yours), with what to do.

Who may call which route is MLflow's own route table (mlops_ide/hub_services/mlflow_routes.py): the gate
matches the path exactly as MLflow will route it, forwards it as it came, and refuses (400) a
path that does not decode to one plain path and a change that names two different runs.

    python -m mlops_ide.hub_services.mlflow_gate --socket STATE/mlflow/sock --port 5000      (one machine)
    python -m mlops_ide.hub_services.mlflow_gate --mlflow-url http://mlflow:5000 --ip 0.0.0.0 --port 8091
                                                                           (in the hub's pod)

MLflow runs with `--static-prefix /services/mlflow`, so paths go to it as they come.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import socket
import urllib.parse
from typing import Any

from tornado import httpclient, httpserver, web
from tornado.netutil import Resolver

from mlops_ide import names
from mlops_ide.hub_services import mlflow_champion, mlflow_routes
from mlops_ide.processes import until_stopped

log = logging.getLogger("mlops_ide.hub_services.mlflow_gate")
MAX_BODY_BYTES = 1024 * 2**20  # a model's files come through here (ResNet50: ~100 MB)
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
# Artifacts of a run (<experiment>/<run>/artifacts/...) or of a logged model (<experiment>/models/<id>/...)
ARTIFACT = re.compile(
    r"mlflow-artifacts/(artifacts|mpu/create|mpu/complete|mpu/abort)/"
    r"(?P<experiment>[^/]+)/(?P<kind>models/)?(?P<id>[^/]+)/"
)
LOGGED_MODEL = re.compile(r"mlflow/logged-models/(?P<id>[^/]+)")
RUN_KEYS = ("run_id", "run_uuid", "runId", "runUuid")  # every spelling an MLflow handler reads
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
# Not passed on: the caller's credentials, and headers that could make MLflow (or a framework
# under it) act on another method or workspace than the one authorized.
NOT_RELAYED = HOP_BY_HOP | {
    "authorization",
    "cookie",
    "host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-mlflow-workspace",
}


class UnixResolver(Resolver):
    """Every host name is MLflow's Unix socket (as jupyter-server-proxy reaches one)."""

    def initialize(self, socket_path: str) -> None:
        self.socket_path = socket_path

    async def resolve(self, host: str, port: int, *args: Any, **kwargs: Any) -> list:
        return [(socket.AF_UNIX, self.socket_path)]


def caller_of(model: dict) -> tuple[str, bool]:
    """(the name MLflow records, whether it may change the registry) for a hub model."""
    if model.get("kind") == "service":
        return f"service:{model['name']}", model["name"] in (names.PIPELINE, names.PIPELINE_PREVIEW)
    return model["name"], bool(model.get("admin"))


PREVIEW_CALLER = f"service:{names.PIPELINE_PREVIEW}"  # a preview's tasks: never `champion`


def api_path(path: str) -> str:
    """The path below the prefix, e.g. `api/2.0/mlflow/runs/create`."""
    return path[len(names.MLFLOW_PREFIX) :] if path.startswith(names.MLFLOW_PREFIX) else path.lstrip("/")


class MLflow:
    """Where MLflow is: its Unix socket, or its URL (on Kubernetes, its Service)."""

    def __init__(self, socket_path: str | None = None, url: str | None = None) -> None:
        if socket_path:
            resolver = UnixResolver(socket_path=socket_path)
            self.client = httpclient.AsyncHTTPClient(
                force_instance=True, resolver=resolver, max_body_size=MAX_BODY_BYTES
            )
            self.base, self.host = "http://mlflow", "localhost"
        else:
            self.client = httpclient.AsyncHTTPClient(force_instance=True, max_body_size=MAX_BODY_BYTES)
            self.base, self.host = url.rstrip("/"), urllib.parse.urlsplit(url).netloc  # MLflow checks Host

    def url(self, path_and_query: str) -> str:
        return self.base + path_and_query

    async def fetch(self, request: httpclient.HTTPRequest | str, **kwargs: Any) -> httpclient.HTTPResponse:
        return await self.client.fetch(request, raise_error=False, **kwargs)


class HealthHandler(web.RequestHandler):
    def initialize(self, mlflow: MLflow) -> None:
        self.mlflow = mlflow

    async def get(self) -> None:
        response = await self.mlflow.fetch(
            self.mlflow.url(f"{names.MLFLOW_PREFIX}health"),
            headers={"Host": self.mlflow.host},
            request_timeout=5,
        )
        self.set_status(200 if response.code == 200 else 503)
        self.finish("OK" if response.code == 200 else f"MLflow answers {response.code}")


def gate_handler_class() -> type:
    from jupyterhub.services.auth import HubOAuthenticated  # the hub's client; only this process needs it

    class GateHandler(HubOAuthenticated, web.RequestHandler):
        """One request to MLflow: who is asking, may they, then MLflow's answer as it is."""

        def initialize(self, mlflow: MLflow) -> None:
            self.mlflow = mlflow

        def check_xsrf_cookie(self) -> None:
            """Cross-site requests are stopped in `prepare` (by the browser's own headers)."""

        async def prepare(self) -> None:
            self.caller: tuple[str, bool] | None = None
            model = self.get_current_user()
            if model is None:
                self.refuse_anonymous()
                return
            if not self.request.headers.get("Authorization") and self.is_cross_site():
                self.refuse(403, "a request from another site with your login: open MLflow from the hub")
                return
            self.caller = caller_of(model)

        def is_cross_site(self) -> bool:
            """For a browser's changes (their login is a cookie): the browser says where the
            page that sent it came from."""
            if self.request.method in READ_METHODS:
                return False
            site = self.request.headers.get("Sec-Fetch-Site")
            if site is not None:
                return site not in ("same-origin", "none")
            origin = self.request.headers.get("Origin")
            return origin is not None and origin.split("://", 1)[-1] != self.request.host

        def refuse_anonymous(self) -> None:
            wants_page = self.request.method == "GET" and "text/html" in self.request.headers.get(
                "Accept", ""
            )
            if wants_page:
                self.redirect(self.get_login_url())
                return
            self.set_header("WWW-Authenticate", 'Bearer realm="mlops-ide mlflow"')
            self.refuse(
                401,
                "no hub login or token: in your server, MLFLOW_TRACKING_TOKEN is set for you (restart the "
                "server if it expired); elsewhere, make a token at /hub/token and set MLFLOW_TRACKING_TOKEN",
            )

        def refuse(self, status: int, message: str) -> None:
            """MLflow's own error shape, so its client shows the message."""
            code = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "ENDPOINT_NOT_FOUND"}.get(
                status, "INVALID_PARAMETER_VALUE"
            )
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish({"error_code": code, "message": message})

        async def forward(self) -> None:
            """Authorize the path exactly as MLflow will route it, then pass it on as received."""
            name, may_register = self.caller
            path = routed_path(self.request.path)
            if path is None or ";" in self.request.query:
                self.refuse(400, "an encoded or odd path: ask MLflow with its plain paths")
                return
            rule = mlflow_routes.rule_for(self.request.method, path)
            if rule is None:
                self.refuse(404, f"MLflow has no {self.request.method} {path}")
                return
            problem = await self.problem_with(rule, name, may_register, api_path(path))
            if problem:
                status, message = problem
                self.refuse(status, message)
                return
            body = self.request.body
            if rule == "CREATE_RUN":
                body = recorded_as(body, name)
            query = f"?{self.request.query}" if self.request.query else ""
            await self.relay(self.request.path + query, body)

        async def problem_with(
            self, rule: str, name: str, may_register: bool, path: str
        ) -> tuple[int, str] | None:
            """(status, why) when `name` may not make this request under `rule`, else None.
            The pipeline and hub admins may make any request but NOBODY's and `champion` on a
            preview's version; a preview's tasks, the registry's requests but `champion` and
            their own runs; a user, reads and their own changes only."""
            if rule == "NOBODY":
                return 403, f"{self.request.method} {path} is not offered on this platform"
            body, query = self.request.body, self.request.query_arguments
            if name == PREVIEW_CALLER and rule in ("PIPELINE", "SET_ALIAS"):
                problem = await self.preview_problem(path, body, query)
                if problem:
                    return problem
            if rule == "SET_ALIAS" and may_register:
                return await self.champion_problem(body, query)
            # the preview identity registers like the pipeline, but runs, artifacts and logged
            # models only its own (a user's rules): never the files of the run `champion` names
            if rule == "READ" or (may_register and (name != PREVIEW_CALLER or rule == "PIPELINE")):
                return None
            if rule in ("PIPELINE", "SET_ALIAS"):
                return 403, (
                    f"{name} may not {self.request.method} {path}: the pipeline's or a hub admin's "
                    "(registering versions and moving aliases: push a DAG that does it); read freely"
                )
            if rule == "CREATE_EXPERIMENT":
                if request_json(body).get("artifact_location"):
                    return (
                        403,
                        f"{name} may create experiments in MLflow's own store only: no artifact_location",
                    )
                return None
            if rule == "CREATE_RUN":
                return None  # recorded as the caller's
            try:
                if rule == "OWN_RUN":
                    return await self.not_owner(name, the_run_named(body, query), "run")
                if rule == "CREATE_LOGGED_MODEL":
                    run_id = the_run_named(body, {}, ("source_run_id", "sourceRunId"))
                    return await self.not_owner(name, run_id, "model")
            except AmbiguousRequest as problem:
                return 400, str(problem)
            if rule == "OWN_LOGGED_MODEL":
                model = LOGGED_MODEL.search(path)
                return await self.not_owner(name, await self.source_run_of(model["id"]), "model")
            if rule == "OWN_ARTIFACT":
                artifact = ARTIFACT.search(path)
                if artifact is None:
                    return 403, f"{name} may write artifacts only under a run of theirs: <experiment>/<run>/"
                run_id = artifact["id"]
                if artifact["kind"]:
                    run_id = await self.source_run_of(artifact["id"])
                return await self.not_owner(name, run_id, "artifact")
            return 403, f"{name} may not {self.request.method} {path}"  # a rule without a check: closed

        async def preview_problem(self, path: str, body: bytes, query: dict) -> tuple[int, str] | None:
            """(status, why) when the preview identity's request would move `champion`, else None."""
            try:
                why = await mlflow_champion.why_not_from_preview(
                    self.ask_mlflow, self.request.method, path, request_json(body), query
                )
            except (AmbiguousRequest, mlflow_champion.BadAliasRequest) as problem:
                return 400, str(problem)
            if why:
                log.info("refused: %s %s %s: %s", self.caller[0], self.request.method, path, why)
                return 403, why
            return None

        async def champion_problem(self, body: bytes, query: dict) -> tuple[int, str] | None:
            """(status, why) when the alias this request sets is `champion` on a preview's
            version (mlflow_champion.py), else None."""
            try:
                wanted = mlflow_champion.alias_request(request_json(body), query)
            except (AmbiguousRequest, mlflow_champion.BadAliasRequest) as problem:
                return 400, str(problem)
            if not mlflow_champion.is_champion(wanted.alias):
                return None
            why = await mlflow_champion.why_not_champion(self.ask_mlflow, wanted.model, wanted.version)
            if why:
                log.info(
                    "refused: %s sets %s on version %s of %s: %s",
                    self.caller[0],
                    wanted.alias,
                    wanted.version,
                    wanted.model,
                    why,
                )
                return 403, why
            return None

        async def source_run_of(self, model_id: str) -> str | None:
            answer = await self.ask_mlflow(f"api/2.0/mlflow/logged-models/{model_id}")
            return (answer or {}).get("model", {}).get("info", {}).get("source_run_id")

        async def not_owner(self, name: str, run_id: str | None, what: str) -> tuple[int, str] | None:
            """(403, why) when `name` may not change this run's things, else None: closed when in doubt."""
            if not run_id:
                return (
                    403,
                    f"name the run this {what} belongs to (run_id): {name} changes only their own runs",
                )
            query = urllib.parse.urlencode({"run_id": run_id})
            answer = await self.ask_mlflow(f"api/2.0/mlflow/runs/get?{query}")
            if answer is None:
                return 403, f"no run {run_id} that {name} may change"
            owner = answer.get("run", {}).get("info", {}).get("user_id")
            if owner != name:
                whose = owner or "nobody"
                return (
                    403,
                    f"this {what} belongs to run {run_id} of {whose}; {name} may change only their own",
                )
            return None

        async def ask_mlflow(self, path: str) -> dict | None:
            response = await self.mlflow.fetch(
                self.mlflow.url(f"{names.MLFLOW_PREFIX}{path}"), headers={"Host": self.mlflow.host}
            )
            return json.loads(response.body) if response.code == 200 else None

        async def relay(self, path_and_query: str, body: bytes) -> None:
            headers = {
                key: value for key, value in self.request.headers.get_all() if key.lower() not in NOT_RELAYED
            }
            headers["Host"] = self.mlflow.host  # MLflow checks the Host header
            response = await self.mlflow.fetch(
                httpclient.HTTPRequest(
                    self.mlflow.url(path_and_query),
                    method=self.request.method,
                    headers=headers,
                    body=body if self.request.method not in ("GET", "HEAD") else None,
                    allow_nonstandard_methods=True,
                    follow_redirects=False,
                    request_timeout=600,
                    decompress_response=False,
                )
            )
            if response.code == 599:
                self.refuse(502, f"MLflow does not answer ({response.error}): see logs/mlflow.log")
                return
            self.set_status(response.code, response.reason)
            relayed: set[str] = set()
            for key, value in response.headers.get_all():
                if key.lower() in HOP_BY_HOP | {"set-cookie", "server", "date"}:
                    continue
                # set: replaces Tornado's own default (Content-Type: text/html); add: repeats
                (self.add_header if key.lower() in relayed else self.set_header)(key, value)
                relayed.add(key.lower())
            if response.body:
                self.write(response.body)
            self.finish()

        get = post = put = patch = delete = head = options = forward

    return GateHandler


def routed_path(raw: str) -> str | None:
    """The path MLflow will route for the `raw` path of a request (uvicorn decodes it once,
    with the same function), or None when that is not one plain path: still encoded, `?`,
    `#`, `;`, white space or control characters, `//`, `.` or `..` segments, bytes that are
    not ASCII or decode to no character. The gate forwards `raw` as it came, so what it
    authorizes is what MLflow routes."""
    if not raw.isascii() or not raw.startswith(names.MLFLOW_PREFIX):
        return None
    path = urllib.parse.unquote(raw)
    if any(char in "?#;%\ufffd" or char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        return None
    if "//" in path or any(part in (".", "..") for part in path.split("/")):
        return None
    return path


class AmbiguousRequest(ValueError):
    """A request that names two different runs (or a run in a form MLflow would not read):
    the gate would check one and MLflow act on the other."""


def request_json(body: bytes) -> dict:
    """The request's JSON as MLflow reads it (it decodes a JSON string body a second time)."""
    try:
        value = json.loads(body or b"{}", object_pairs_hook=refuse_duplicate_keys)
        if isinstance(value, str):
            value = json.loads(value, object_pairs_hook=refuse_duplicate_keys)
    except AmbiguousRequest:
        raise
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise AmbiguousRequest("a JSON object names a key twice: send each once")
    return dict(pairs)


def the_run_named(body: bytes, query: dict, keys: tuple[str, ...] = RUN_KEYS) -> str | None:
    """The one run a change names, under every spelling MLflow's handlers read (snake or
    camel case, the body and the query); None when it names none. Two different runs, or a
    run id that is not a string, is an AmbiguousRequest."""
    found = request_json(body)
    named = set()
    for key in keys:
        if key in found:
            if not isinstance(found[key], str):
                raise AmbiguousRequest(f"{key} must be a string")
            named.add(found[key])
        named.update(value.decode(errors="replace") for value in query.get(key, []))
    named.discard("")
    if len(named) > 1:
        raise AmbiguousRequest(f"the request names {len(named)} different runs: name one")
    return named.pop() if named else None


def recorded_as(body: bytes, name: str) -> bytes:
    """A runs/create body that says the run is `name`'s, whatever the client sent."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return body  # MLflow refuses it itself
    if not isinstance(request, dict):
        return body
    request["user_id"] = name
    tags = [
        tag for tag in request.get("tags") or [] if isinstance(tag, dict) and tag.get("key") != "mlflow.user"
    ]
    request["tags"] = [*tags, {"key": "mlflow.user", "value": name}]
    return json.dumps(request).encode()


def application(socket_path: str | None = None, mlflow_url: str | None = None) -> web.Application:
    from jupyterhub.services.auth import HubOAuthCallbackHandler

    mlflow = MLflow(socket_path, mlflow_url)
    return web.Application(
        [
            (rf"{names.MLFLOW_PREFIX}oauth_callback", HubOAuthCallbackHandler),
            (rf"{names.MLFLOW_PREFIX}health", HealthHandler, {"mlflow": mlflow}),
            (rf"{names.MLFLOW_PREFIX}.*", gate_handler_class(), {"mlflow": mlflow}),
        ],
        cookie_secret=os.urandom(32),  # the login cookie lasts as long as this process
    )


async def serve(args: argparse.Namespace) -> None:
    gate = application(args.socket, args.mlflow_url)
    server = httpserver.HTTPServer(gate, max_body_size=MAX_BODY_BYTES, xheaders=True)
    server.listen(args.port, args.ip)
    log.info(
        "MLflow at http://%s:%s%s, from %s",
        args.ip,
        args.port,
        names.MLFLOW_PREFIX,
        args.socket or args.mlflow_url,
    )
    await until_stopped()
    server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="MLflow's Unix socket (one machine)")
    where.add_argument("--mlflow-url", help="MLflow's address (Kubernetes: its Service)")
    parser.add_argument("--port", type=int, required=True, help="listen on IP:PORT")
    parser.add_argument("--ip", default="127.0.0.1", help="listen on IP:PORT (default 127.0.0.1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
