"""HTTP stand-ins on loopback for what cannot exist on this machine: GitHub (OAuth and the
REST endpoints GitHubOAuthenticator calls, GitHub Enterprise layout: /api/v3) and the
parts of the Kubernetes API KubeSpawner uses (with an optional local "kubelet"). Both keep a log."""

from __future__ import annotations

import json
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit


class _Server(ABC):
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @abstractmethod
    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes):
        """(status, extra headers, payload): payload is bytes, JSON-able, or an iterator of
        JSON-able lines (a watch)."""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append(f"{self.command} {parts.path}")
                status, extra_headers, payload = server.handle(
                    self.command, parts.path, query, self.headers, body
                )
                if isinstance(payload, Iterator):  # a watch: JSON lines until the generator ends
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        for line in payload:
                            self.wfile.write(json.dumps(line).encode() + b"\n")
                            self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the client stopped watching
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in extra_headers.items():
                    self.send_header(name, value)
                if payload != b"":
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _serve

        return Handler


class GitHubStandIn(_Server):
    """GitHub's OAuth web flow and REST API, as a GitHub Enterprise Server at `url`.

    `users`: login -> id; `orgs`: org -> logins; `teams`: (org, team) -> logins.
    `signed_in`: who is signed in at "GitHub" when the hub sends the browser there.
    """

    def __init__(self, client_id: str, client_secret: str, users: dict[str, int], orgs=None, teams=None):
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.users = users
        self.orgs: dict[str, set[str]] = orgs or {}
        self.teams: dict[tuple[str, str], set[str]] = teams or {}
        self.signed_in: str | None = None
        self.codes: dict[str, str] = {}  # code -> login
        self.tokens: dict[str, str] = {}  # access token -> login
        self.statuses: list[dict[str, Any]] = []  # commit statuses posted, as sent (and by whom)

    def issued_token(self, login: str) -> str:
        """The token GitHub issued to `login` at their latest login."""
        return [token for token, owner in self.tokens.items() if owner == login][-1]

    def handle(self, method, path, query, headers, body):
        if path == "/login/oauth/authorize":
            if query.get("client_id") != self.client_id or self.signed_in is None:
                return 400, {}, {"error": "unknown client or nobody signed in"}
            code = secrets.token_hex(8)
            self.codes[code] = self.signed_in
            target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
            return 302, {"Location": target}, b""
        if path == "/login/oauth/access_token" and method == "POST":
            form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
            if form.get("client_id") is None and headers.get("Authorization"):
                form["client_id"] = self.client_id  # sent with HTTP Basic auth
            login = self.codes.pop(form.get("code", ""), None)
            if login is None:
                return 200, {}, {"error": "bad_verification_code"}
            token = "gho_" + secrets.token_hex(18)
            self.tokens[token] = login
            return 200, {}, {"access_token": token, "token_type": "bearer", "scope": "read:org,repo"}
        login = self._caller(headers)
        if login is None:
            return 401, {}, {"message": "Bad credentials"}
        if path == "/api/v3/user":
            return 200, {}, {"login": login, "id": self.users[login], "name": login.title(), "email": None}
        parts = path.split("/")
        if path.startswith("/api/v3/orgs/") and len(parts) == 7 and parts[5] == "members":
            member = parts[6] in self.orgs.get(parts[4], set())
            return (204 if member else 404), {}, b""
        if (
            path.startswith("/api/v3/repos/")
            and len(parts) == 8
            and parts[6] == "statuses"
            and method == "POST"
        ):
            status = {**json.loads(body), "repo": f"{parts[4]}/{parts[5]}", "sha": parts[7], "by": login}
            self.statuses.append(status)
            return 201, {}, status
        if path.startswith("/api/v3/orgs/") and len(parts) == 9 and parts[5] == "teams":
            member = parts[8] in self.teams.get((parts[4], parts[6]), set())
            return (204 if member else 404), {}, b""
        return 404, {}, {"message": "Not Found"}

    def _caller(self, headers) -> str | None:
        auth = headers.get("Authorization") or ""
        token = auth.split(" ", 1)[-1]
        return self.tokens.get(token)


class Kubelet(Protocol):
    """Runs a pod's container on this machine (see tests/platform/test_kubernetes_spawn.py)."""

    def start(self, api: KubernetesApiStandIn, pod: dict[str, Any]) -> None: ...

    def stop(self, pod: dict[str, Any]) -> None: ...


class KubernetesApiStandIn(_Server):
    """The core/v1 API as KubeSpawner uses it: namespaced create, read, delete and list
    (with label selectors), and watches that stream events as JSON lines; and replace (PUT,
    refused with 409 unless it names the stored resourceVersion, as the API does), for the
    previews' ConfigMap. Objects keep what the client sent. With a `kubelet`, a created pod
    is started by it (in a thread) and deleting the pod stops it; Secrets owned by a deleted
    pod are deleted with it, as Kubernetes' garbage collector does."""

    def __init__(self, kubelet: Kubelet | None = None) -> None:
        super().__init__()
        self.kubelet = kubelet
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name) -> body
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (version, kind, type, object)
        self.version = 0
        self.changed = threading.Condition()
        self.closing = False

    def __exit__(self, *exc: object) -> None:
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        super().__exit__(*exc)

    def record(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        with self.changed:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.events.append((self.version, kind, event, json.loads(json.dumps(obj))))
            self.changed.notify_all()

    def update_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        pod = self.objects.get(("pods", namespace, name))
        if pod is not None:
            pod["status"] = status
            self.record("pods", "MODIFIED", pod)

    def handle(self, method, path, query, headers, body):
        parts = path.strip("/").split("/")  # api v1 namespaces <ns> <kind> [<name>]
        if parts[:3] != ["api", "v1", "namespaces"] or len(parts) not in (5, 6):
            return 404, {}, self._status(404, f"no such path {path}")
        namespace, kind = parts[3], parts[4]
        if len(parts) == 5 and method == "GET":
            selector = dict(item.split("=", 1) for item in query.get("labelSelector", "").split(",") if item)
            if query.get("watch", "").lower() in ("true", "1"):
                since = int(query.get("resourceVersion") or 0)
                timeout = float(query.get("timeoutSeconds") or 30)
                return 200, {}, self._watch(kind, namespace, selector, since, timeout)
            items = [
                obj
                for (k, ns, _), obj in self.objects.items()
                if k == kind and ns == namespace and self._selected(obj, selector)
            ]
            listed = {"resourceVersion": str(self.version)}
            return 200, {}, {"kind": "List", "apiVersion": "v1", "metadata": listed, "items": items}
        if method == "POST" and len(parts) == 5:
            manifest = json.loads(body)
            key = (kind, namespace, manifest["metadata"]["name"])
            if key in self.objects:
                return 409, {}, self._status(409, "AlreadyExists")
            manifest["metadata"].update(namespace=namespace, uid=secrets.token_hex(8))
            if kind == "pods":
                manifest["status"] = {"phase": "Pending"}
            self.objects[key] = manifest
            self.record(kind, "ADDED", manifest)
            if kind == "pods" and self.kubelet is not None:
                threading.Thread(target=self.kubelet.start, args=(self, manifest), daemon=True).start()
            return 201, {}, manifest
        key = (kind, namespace, parts[5]) if len(parts) == 6 else None
        if key is None or key not in self.objects:
            return 404, {}, self._status(404, "NotFound")
        if method == "PUT":  # a replace: refused (409) unless it names the stored resourceVersion
            manifest = json.loads(body)
            stored = self.objects[key]
            sent = manifest["metadata"].get("resourceVersion")
            if sent is not None and sent != stored["metadata"]["resourceVersion"]:
                return 409, {}, self._status(409, "Conflict")
            manifest["metadata"].update(namespace=namespace, uid=stored["metadata"]["uid"])
            self.objects[key] = manifest
            self.record(kind, "MODIFIED", manifest)
            return 200, {}, manifest
        if method == "DELETE":
            gone = self.objects.pop(key)
            if kind == "pods" and self.kubelet is not None:
                self.kubelet.stop(gone)
            self.record(kind, "DELETED", gone)
            for owned_key, owned in list(self.objects.items()):
                owners = owned["metadata"].get("ownerReferences") or []
                if any(owner.get("uid") == gone["metadata"]["uid"] for owner in owners):
                    self.objects.pop(owned_key)
                    self.record(owned_key[0], "DELETED", owned)
            return 200, {}, self._status(200, "Success")
        return 200, {}, self.objects[key]

    def _watch(self, kind: str, namespace: str, selector: dict[str, str], since: int, timeout: float):
        deadline = time.monotonic() + timeout
        sent = since
        while not self.closing and time.monotonic() < deadline:
            with self.changed:
                self.changed.wait(0.2)
                fresh = [event for event in self.events if event[0] > sent]
            for version, event_kind, event_type, obj in fresh:
                sent = version
                namespace_matches = obj["metadata"].get("namespace") == namespace
                if event_kind == kind and namespace_matches and self._selected(obj, selector):
                    yield {"type": event_type, "object": obj}

    @staticmethod
    def _selected(obj: dict[str, Any], selector: dict[str, str]) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return all(labels.get(key) == value for key, value in selector.items())

    @staticmethod
    def _status(code: int, reason: str) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure" if code >= 400 else "Success",
            "reason": reason,
            "code": code,
        }
