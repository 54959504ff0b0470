"""MLflow behind the hub's login: every request says who it is, and the registry is the
pipeline's.

MLflow itself has no login here: it listens on a Unix socket that only root and the
pipeline's account can open (services/mlflow.py). This service, a JupyterHub service named
`mlflow` served under /services/mlflow/, is the one way in for everyone else:

- a browser brings the hub's login (OAuth with the hub, no second login);
- a program brings a hub token: `MLFLOW_TRACKING_TOKEN`, which MLflow's client sends as
  `Authorization: Bearer`; user servers get one for this service alone at each start, the
  pipeline (Airflow's tasks, serving) the token of the hub service `pipeline`.

What each may do: everyone reads everything; users create experiments and runs, and change
only their own runs and their artifacts; registering model versions and moving aliases
(`champion`, which serving follows) is the pipeline's, and hub admins'. A run records who
made it (`user_id` and the `mlflow.user` tag are the hub's name for the caller, whatever
the client said). Anything else gets 401 (who are you?) or 403 (not yours), with what to do.

    python -m mlops_ide.mlflow_gate --socket STATE/mlflow/sock --port 5000      (one machine)
    python -m mlops_ide.mlflow_gate --mlflow-url http://mlflow:5000 --ip 0.0.0.0 --port 8091
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

from mlops_ide.processes import until_stopped
from mlops_ide.services.mlflow import PIPELINE_SERVICE, PREFIX

log = logging.getLogger("mlops_ide.mlflow_gate")
MAX_BODY_BYTES = 1024 * 2**20  # a model's files come through here (ResNet50: ~100 MB)
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
# What changes the model registry: registering, versions, aliases, stages, tags, deletions.
REGISTRY = re.compile(r"(registered-models|model-versions|registered_models|model_versions)(/|$)")
# What changes a run that exists: its owner, or the pipeline, only.
RUN_CHANGES = re.compile(
    r"mlflow/runs/(update|delete|restore|log-metric|log-parameter|set-tag|delete-tag|log-batch|"
    r"log-model|log-inputs|log-outputs)$"
)
RUN_CREATE = re.compile(r"mlflow/runs/create$")
EXPERIMENT_CREATE = re.compile(r"mlflow/experiments/create$")
UPLOAD = re.compile(r"mlflow/upload-artifact$")  # the UI's upload: the run in the query (run_uuid)
# Reads MLflow's API sends as POST (searches, GraphQL queries); every other POST is a change.
SEARCHES = re.compile(r"(/search|/search-[a-z-]+|/graphql)$")
# Logged models (MLflow 3) belong to the run that made them.
LOGGED_MODEL_CREATE = re.compile(r"mlflow/logged-models$")
LOGGED_MODEL = re.compile(r"mlflow/logged-models/(?P<id>[^/]+)")
# Artifacts of a run (<experiment>/<run>/artifacts/...) or of a logged model (<experiment>/models/<id>/...)
ARTIFACT = re.compile(
    r"mlflow-artifacts/(artifacts|mpu/create|mpu/complete|mpu/abort)/"
    r"(?P<experiment>[^/]+)/(?P<kind>models/)?(?P<id>[^/]+)/"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


class UnixResolver(Resolver):
    """Every host name is MLflow's Unix socket (as jupyter-server-proxy reaches one)."""

    def initialize(self, socket_path: str) -> None:
        self.socket_path = socket_path

    async def resolve(self, host: str, port: int, *args: Any, **kwargs: Any) -> list:
        return [(socket.AF_UNIX, self.socket_path)]


def caller_of(model: dict) -> tuple[str, bool]:
    """(the name MLflow records, whether it may change the registry) for a hub model."""
    if model.get("kind") == "service":
        return f"service:{model['name']}", model["name"] == PIPELINE_SERVICE
    return model["name"], bool(model.get("admin"))


def api_path(path: str) -> str:
    """The path below the prefix, e.g. `api/2.0/mlflow/runs/create`."""
    return path[len(PREFIX) :] if path.startswith(PREFIX) else path.lstrip("/")


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
            self.mlflow.url(f"{PREFIX}health"), headers={"Host": self.mlflow.host}, request_timeout=5
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
            code = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}.get(status, "INVALID_PARAMETER_VALUE")
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish({"error_code": code, "message": message})

        async def forward(self) -> None:
            name, may_register = self.caller
            path = clean_path(self.request.path)
            if path is None:
                self.refuse(400, "an encoded or odd path: ask MLflow with its plain paths")
                return
            body = self.request.body
            if self.request.method not in READ_METHODS and not may_register:
                problem = await self.problem_with_change(name, api_path(path), body)
                if problem:
                    self.refuse(403, problem)
                    return
            if RUN_CREATE.search(api_path(path)):
                body = recorded_as(body, name)
            query = f"?{self.request.query}" if self.request.query else ""
            await self.relay(path + query, body)

        async def problem_with_change(self, name: str, path: str, body: bytes) -> str | None:
            """Why `name` (a user) may not make this change, or None. Default deny: a user
            changes only what is listed here, and only what is theirs."""
            if SEARCHES.search(path):
                return None  # reads that MLflow's API sends as POST
            if REGISTRY.search(path):
                return (
                    f"{name} may not change the model registry: registering versions and moving aliases "
                    "is the pipeline's (push a DAG that does it); read models freely"
                )
            if EXPERIMENT_CREATE.search(path):
                if request_json(body).get("artifact_location"):
                    return f"{name} may create experiments in MLflow's own store only: no artifact_location"
                return None
            if RUN_CREATE.search(path):
                return None  # recorded as the caller's
            if RUN_CHANGES.search(path) or UPLOAD.search(path):
                return await self.not_owner(name, run_id_of(body, self.request.query_arguments), "run")
            if LOGGED_MODEL_CREATE.search(path):
                return await self.not_owner(
                    name, run_id_of(body, {}, "source_run_id", "sourceRunId"), "model"
                )
            logged_model = LOGGED_MODEL.search(path)
            if logged_model:
                return await self.not_owner(name, await self.source_run_of(logged_model["id"]), "model")
            artifact = ARTIFACT.search(path)
            if artifact:
                run_id = artifact["id"]
                if artifact["kind"]:
                    run_id = await self.source_run_of(artifact["id"])
                return await self.not_owner(name, run_id, "artifact")
            return f"{name} may not {self.request.method} {path}: only the pipeline or a hub admin may"

        async def source_run_of(self, model_id: str) -> str | None:
            answer = await self.ask_mlflow(f"api/2.0/mlflow/logged-models/{model_id}")
            return (answer or {}).get("model", {}).get("info", {}).get("source_run_id")

        async def not_owner(self, name: str, run_id: str | None, what: str) -> str | None:
            """Why `name` may not change this run's things, or None: closed when in doubt."""
            if not run_id:
                return f"name the run this {what} belongs to (run_id): {name} changes only their own runs"
            query = urllib.parse.urlencode({"run_id": run_id})
            answer = await self.ask_mlflow(f"api/2.0/mlflow/runs/get?{query}")
            if answer is None:
                return f"no run {run_id} that {name} may change"
            owner = answer.get("run", {}).get("info", {}).get("user_id")
            if owner != name:
                whose = owner or "nobody"
                return f"this {what} belongs to run {run_id} of {whose}; {name} may change only their own"
            return None

        async def ask_mlflow(self, path: str) -> dict | None:
            response = await self.mlflow.fetch(
                self.mlflow.url(f"{PREFIX}{path}"), headers={"Host": self.mlflow.host}
            )
            return json.loads(response.body) if response.code == 200 else None

        async def relay(self, path_and_query: str, body: bytes) -> None:
            headers = {
                key: value
                for key, value in self.request.headers.get_all()
                if key.lower() not in HOP_BY_HOP | {"authorization", "cookie", "host"}
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


def clean_path(path: str) -> str | None:
    """The path as MLflow will route it (decoded once, `//` merged); None for one that is
    still encoded after that, or climbs: the rules must see what MLflow sees."""
    decoded = re.sub(r"/{2,}", "/", urllib.parse.unquote(path))
    if "%" in decoded or "/../" in decoded or decoded.endswith("/.."):
        return None
    return decoded


def request_json(body: bytes) -> dict:
    """The request's JSON as MLflow reads it (it decodes a JSON string body a second time)."""
    try:
        value = json.loads(body or b"{}")
        if isinstance(value, str):
            value = json.loads(value)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def run_id_of(body: bytes, query: dict, *keys: str) -> str | None:
    """The run a change names, under any spelling MLflow accepts (snake or camel case, body
    or query); None when it names none."""
    keys = keys or ("run_id", "run_uuid", "runId", "runUuid")
    found = request_json(body)
    for key in keys:
        value = found.get(key)
        if isinstance(value, str) and value:
            return value
        if query.get(key):
            return query[key][0].decode(errors="replace")
    return None


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
            (rf"{PREFIX}oauth_callback", HubOAuthCallbackHandler),
            (rf"{PREFIX}health", HealthHandler, {"mlflow": mlflow}),
            (rf"{PREFIX}.*", gate_handler_class(), {"mlflow": mlflow}),
        ],
        cookie_secret=os.urandom(32),  # the login cookie lasts as long as this process
    )


async def serve(args: argparse.Namespace) -> None:
    gate = application(args.socket, args.mlflow_url)
    server = httpserver.HTTPServer(gate, max_body_size=MAX_BODY_BYTES, xheaders=True)
    server.listen(args.port, args.ip)
    log.info("MLflow at http://%s:%s%s, from %s", args.ip, args.port, PREFIX, args.socket or args.mlflow_url)
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
