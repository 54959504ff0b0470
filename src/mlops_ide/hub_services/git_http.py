"""The team's local git remote over HTTP (git's smart protocol), for the hub's users.

Each request carries a JupyterHub API token of the user's as its password (the spawner
makes one for the git service alone at each start; git's credential helper gives it:
startup/credential.py). The hub says whose token it is
and whether it may reach this service (the scope `access:services!service=git`, which the
platform gives every user); then `git http-backend` serves the one repository, as this
process's OS account, the only one that writes the remote. So users push without being able
to touch the remote's files (its refs, config or hooks), and every update is logged under
the pusher's hub name (`git reflog` of the remote says `alice`).

    python -m mlops_ide.hub_services.git_http --repo STATE/remote/pipelines.git --port 8070 \
        --hub-api http://127.0.0.1:8001/hub/api

Served under /services/git/ (the prefix the hub's proxy gives a service named `git`):
`/services/git/pipelines.git` is the repository, `/services/git/health` answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tornado import httpserver, web

from mlops_ide import names
from mlops_ide.processes import until_stopped

if TYPE_CHECKING:
    from jupyterhub.services.auth import HubAuth

# What git's smart HTTP protocol asks for; nothing else of the folder is served.
GIT_PATHS = re.compile(r"(?P<repo>[^/]+)(?P<rest>/info/refs|/git-upload-pack|/git-receive-pack)")
MAX_REQUEST_BYTES = 300 * 2**20  # above the remote's receive.maxInputSize, so git says why first
CHUNK = 64 * 1024
log = logging.getLogger("mlops_ide.hub_services.git_http")


def git_environment(
    repo: Path, path_info: str, request, user: str, admin: bool = False, admins: str = ""
) -> dict[str, str]:
    """The CGI environment of `git http-backend` for one request of `user`; the push hooks
    read whether the hub says `user` is an admin (REMOTE_USER_IS_ADMIN: only headers named
    below reach the environment, so no client sets it) and who the admins are."""
    headers = request.headers
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/nonexistent"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_PROJECT_ROOT": str(repo.parent),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info,
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query,
        "CONTENT_TYPE": headers.get("Content-Type", ""),
        "REMOTE_USER": user,  # also the reflog's name for the update: "alice"
        "REMOTE_USER_IS_ADMIN": "1" if admin else "0",
        "HUB_ADMIN_NAMES": admins,
        "REMOTE_ADDR": request.remote_ip or "127.0.0.1",
    }
    # root owns the remote's folder, so git wants it named as safe; git http-backend and the
    # upload-pack or receive-pack it runs see it as "." (git 2.39).
    for index, value in enumerate((str(repo), ".")):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = "safe.directory", value
    env["GIT_CONFIG_COUNT"] = "2"
    if "Content-Length" in headers:
        env["CONTENT_LENGTH"] = headers["Content-Length"]
    if "Content-Encoding" in headers:
        env["HTTP_CONTENT_ENCODING"] = headers["Content-Encoding"]
    if "Git-Protocol" in headers:
        env["GIT_PROTOCOL"] = headers["Git-Protocol"]
    return env


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


@web.stream_request_body
class GitHandler(web.RequestHandler):
    """One request of git's smart protocol, answered by `git http-backend`; the request
    body is streamed to it and its answer streamed back, neither held in memory."""

    def initialize(self, repo: Path, hub_auth: HubAuth, admins: str = "") -> None:
        self.repo = repo
        self.hub_auth = hub_auth
        self.admins = admins
        self.backend: asyncio.subprocess.Process | None = None

    async def prepare(self) -> None:
        match = GIT_PATHS.fullmatch(self.path_args[0] if self.path_args else "")
        if not match or match["repo"] not in (self.repo.name, self.repo.name.removesuffix(".git")):
            self.refuse(404, f"no such repository here; the team's is {names.GIT_PREFIX}{self.repo.name}")
            return
        model = await self.authenticate()
        if model is None:
            return
        self.request.connection.set_max_body_size(MAX_REQUEST_BYTES)
        path_info = f"/{self.repo.name}{match['rest']}"
        admin = model.get("admin") is True
        env = git_environment(self.repo, path_info, self.request, model["name"], admin, self.admins)
        self.backend = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def authenticate(self) -> dict | None:
        """The hub's model of the user the request's token belongs to, or None (the answer is sent)."""
        token = basic_password(self.request.headers.get("Authorization", ""))
        if token is None:
            self.set_header("WWW-Authenticate", 'Basic realm="mlops-ide git"')
            self.refuse(401, "log in: your server's git has the token (run `git push` in VS Code's terminal)")
            return None
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model or model.get("kind") != "user":
            self.set_header("WWW-Authenticate", 'Basic realm="mlops-ide git"')
            self.refuse(401, "this token is not a hub user's (expired? restart your server from the hub)")
            return None
        if not self.hub_auth.check_scopes({names.GIT_SCOPE}, model):
            self.refuse(
                403, f"{model['name']} may not use the team's git remote (needs the scope {names.GIT_SCOPE})"
            )
            return None
        return model

    def refuse(self, status: int, message: str) -> None:
        """An answer git shows its user: a text/plain body is printed after `remote:`."""
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(message + "\n")

    async def data_received(self, chunk: bytes) -> None:
        if self.backend is not None:
            self.backend.stdin.write(chunk)
            await self.backend.stdin.drain()

    async def get(self, path: str) -> None:
        await self.answer()

    async def post(self, path: str) -> None:
        await self.answer()

    async def answer(self) -> None:
        backend = self.backend
        backend.stdin.close()
        stderr = asyncio.ensure_future(backend.stderr.read())
        status, headers = await read_cgi_headers(backend.stdout)
        self.set_status(status)
        for name, value in headers:
            self.set_header(name, value)
        while chunk := await backend.stdout.read(CHUNK):
            self.write(chunk)
            await self.flush()
        await backend.wait()
        problems = (await stderr).decode(errors="replace").strip()
        if problems:
            log.warning("git http-backend (%s %s): %s", self.request.method, self.request.path, problems)

    def on_connection_close(self) -> None:
        if self.backend is not None and self.backend.returncode is None:
            self.backend.kill()


def basic_password(header: str) -> str | None:
    """The password of an HTTP Basic `Authorization` header (the user part is ignored:
    the token says who it is)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        _, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return password if sep and password else None


async def read_cgi_headers(stream: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]]]:
    """The status and headers a CGI program printed before its body."""
    status, headers = 200, []
    while line := (await stream.readline()).rstrip(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name.strip(), value.strip()))
    return status, headers


def application(repo: Path, hub_api: str, cache_seconds: int = 30, admins: str = "") -> web.Application:
    """`admins`: the configured hub admins, named to whoever may not skip the DAG check."""
    from jupyterhub.services.auth import HubAuth  # the hub's client; only this process needs it

    hub_auth = HubAuth(api_url=hub_api, cache_max_age=cache_seconds)
    return web.Application(
        [
            (rf"{names.GIT_PREFIX}health", HealthHandler),
            (rf"{names.GIT_PREFIX}(.*)", GitHandler, {"repo": repo, "hub_auth": hub_auth, "admins": admins}),
        ]
    )


async def serve(args: argparse.Namespace) -> None:
    server = httpserver.HTTPServer(
        application(args.repo.resolve(), args.hub_api, admins=args.admins), max_body_size=MAX_REQUEST_BYTES
    )
    server.listen(args.port, "127.0.0.1")
    log.info("serving %s at http://127.0.0.1:%s%s%s", args.repo, args.port, names.GIT_PREFIX, args.repo.name)
    await until_stopped()
    server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="the bare repository to serve")
    parser.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    parser.add_argument("--hub-api", required=True, help="the hub's API, http://127.0.0.1:PORT/hub/api")
    parser.add_argument("--admins", default="", help="the configured hub admins, comma-separated")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not (args.repo / "HEAD").is_file():
        parser.error(f"{args.repo} is not a bare git repository: start the platform with `make up`")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
