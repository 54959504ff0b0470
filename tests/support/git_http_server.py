"""A real HTTP git server on loopback: `git http-backend` behind a threaded HTTP server
that demands a token with HTTP Basic auth, as GitHub does for HTTPS remotes."""

from __future__ import annotations

import base64
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class GitHttpServer:
    """Serves every bare repository under ``root`` at ``http://127.0.0.1:<port>/<name>``.

    ``token``: the password every request must carry (None: no auth).
    ``stall_upload_pack``: seconds to wait before answering a fetch or clone, to make a
    clone slow enough to be killed half-way.
    ``public_read``: clones and fetches need no token, pushes still do (a public
    repository on GitHub).
    """

    def __init__(
        self,
        root: Path,
        token: str | None = None,
        stall_upload_pack: float = 0.0,
        public_read: bool = False,
    ):
        self.root = root
        self.token = token
        self.public_read = public_read
        self.stall_upload_pack = stall_upload_pack
        self.requests: list[str] = []  # request lines and auth outcomes, like an access log
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> GitHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: object) -> None:
                server.requests.append(fmt % args)

            def do_GET(self) -> None:
                self.serve()

            def do_POST(self) -> None:
                self.serve()

            def authorized(self) -> bool:
                if server.token is None:
                    return True
                if server.public_read and "git-receive-pack" not in self.path:
                    return True  # a push asks for git-receive-pack, in its path or its query
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return False
                _, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return password == server.token

            def read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return body
                        body += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def serve(self) -> None:
                body = self.read_body() if self.command == "POST" else b""
                if not self.authorized():
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                if "git-upload-pack" in path and self.command == "POST" and server.stall_upload_pack:
                    time.sleep(server.stall_upload_pack)
                env = {
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": "tester",
                    "REMOTE_ADDR": "127.0.0.1",
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                    "PATH": "/usr/bin:/bin",
                }
                result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
                head, _, payload = result.stdout.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = result.stdout.partition(b"\n\n")
                headers = [line.split(":", 1) for line in head.decode().splitlines() if ":" in line]
                status = next((v.strip() for k, v in headers if k.lower() == "status"), "200 OK")
                self.send_response(int(status.split()[0]))
                for key, value in headers:
                    if key.lower() != "status":
                        self.send_header(key, value.strip())
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
