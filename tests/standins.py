"""HTTP stand-ins on loopback for what cannot exist on this machine: GitHub (OAuth and the
REST endpoints GitHubOAuthenticator calls, GitHub Enterprise layout: /api/v3) and the
few Kubernetes API endpoints the spawner's Secret handling uses. Both keep a log."""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


class _Server:
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

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes):
        raise NotImplementedError

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
        if path.startswith("/api/v3/orgs/") and len(parts) == 9 and parts[5] == "teams":
            member = parts[8] in self.teams.get((parts[4], parts[6]), set())
            return (204 if member else 404), {}, b""
        return 404, {}, {"message": "Not Found"}

    def _caller(self, headers) -> str | None:
        auth = headers.get("Authorization") or ""
        token = auth.split(" ", 1)[-1]
        return self.tokens.get(token)


class KubernetesApiStandIn(_Server):
    """Namespaced create/read/delete of core/v1 objects (secrets), keeping what it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name) -> body

    def handle(self, method, path, query, headers, body):
        parts = path.strip("/").split("/")  # api v1 namespaces <ns> <kind> [<name>]
        if parts[:3] != ["api", "v1", "namespaces"] or len(parts) not in (5, 6):
            return 404, {}, self._status(404, f"no such path {path}")
        namespace, kind = parts[3], parts[4]
        if method == "POST" and len(parts) == 5:
            manifest = json.loads(body)
            key = (kind, namespace, manifest["metadata"]["name"])
            if key in self.objects:
                return 409, {}, self._status(409, "AlreadyExists")
            manifest["metadata"].setdefault("uid", secrets.token_hex(8))
            self.objects[key] = manifest
            return 201, {}, manifest
        key = (kind, namespace, parts[5]) if len(parts) == 6 else None
        if key is None or key not in self.objects:
            return 404, {}, self._status(404, "NotFound")
        if method == "DELETE":
            self.objects.pop(key)
            return 200, {}, self._status(200, "Success")
        return 200, {}, self.objects[key]

    @staticmethod
    def _status(code: int, reason: str) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure" if code >= 400 else "Success",
            "reason": reason,
            "code": code,
        }
