"""A kubelet stand-in: runs a user pod's one container as a local process, with the pod's
environment and volumes (a claim is a folder that outlives the pod; a Secret volume is
written once the Secret exists, as a kubelet waits for it). The image's start
(docker-stacks' start-notebook.py: the start hooks, then jupyterhub-singleuser) is run
by bash with our start hook."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from tests.support.git_http_server import GitHttpServer
from tests.support.gitrepos import Remote
from tests.support.kubernetes_hub_tools import RunningHub, running_hub
from tests.support.local_platform import ROOT, wait_for
from tests.support.platform_tools import tools_file_value
from tests.support.standins import GitHubStandIn, KubernetesApiStandIn

HOOK = ROOT / "images" / "singleuser" / "mlops-ide-start-hook.sh"


class LocalKubelet:
    """Runs a user pod's one container here; the image's start (docker-stacks'
    start-notebook.py: start hooks, then jupyterhub-singleuser) is run by bash."""

    def __init__(self, root: Path, path: str) -> None:
        self.root, self.path = root, path
        self.processes: dict[str, subprocess.Popen] = {}
        self.started = 0  # each pod gets an address of its own on loopback: 127.0.0.<10 + n>

    def start(self, api: KubernetesApiStandIn, pod: dict[str, Any]) -> None:
        name, namespace, spec = pod["metadata"]["name"], pod["metadata"]["namespace"], pod["spec"]
        (container,) = spec["containers"]
        folders = {volume["name"]: self.volume(api, namespace, name, volume) for volume in spec["volumes"]}
        mounts = {mount["mountPath"]: folders[mount["name"]] for mount in container["volumeMounts"]}
        env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
        for key, value in env.items():  # paths inside the pod -> the folders standing in for them
            for mount_path, folder in mounts.items():
                if value.startswith(mount_path + "/"):
                    env[key] = str(folder) + value[len(mount_path) :]
        home = mounts["/home/jovyan"]
        env.update(HOME=str(home), PATH=self.path, MLOPS_IDE_STARTUP_DIR=str(ROOT), GIT_CONFIG_NOSYSTEM="1")
        self.started += 1
        pod_ip = f"127.0.0.{10 + self.started % 240}"  # the server listens on the pod's address only
        env["JUPYTERHUB_SERVICE_URL"] = env["JUPYTERHUB_SERVICE_URL"].replace("0.0.0.0", pod_ip)
        args = container.get("args") or []
        assert args[:1] == ["start-notebook.py"], args
        server_args = args[1:] + (["--ServerApp.allow_root=True"] if os.geteuid() == 0 else [])
        script = 'set -e; source "$0"; exec jupyterhub-singleuser "$@"'
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        process = subprocess.Popen(
            ["bash", "-c", script, str(HOOK), *server_args],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        port = container["ports"][0]["containerPort"]
        while process.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex((pod_ip, port)) == 0:
                    status = {
                        "name": container["name"],
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {}},
                    }
                    api.update_pod_status(
                        namespace,
                        name,
                        {"phase": "Running", "podIP": pod_ip, "containerStatuses": [status]},
                    )
                    return
            time.sleep(0.1)
        api.update_pod_status(namespace, name, {"phase": "Failed", "podIP": None, "containerStatuses": []})

    def volume(
        self, api: KubernetesApiStandIn, namespace: str, pod_name: str, volume: dict[str, Any]
    ) -> Path:
        if "persistentVolumeClaim" in volume:
            folder = self.root / "claims" / volume["persistentVolumeClaim"]["claimName"]
        else:
            folder = self.root / "pods" / pod_name / volume["name"]
        folder.mkdir(parents=True, exist_ok=True)
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            secret = wait_for(lambda: api.objects.get(("secrets", namespace, name)), 30, f"the Secret {name}")
            items = dict(secret.get("stringData") or {})
            items.update({k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
            for key, value in items.items():
                (folder / key).write_text(value)
                (folder / key).chmod(volume["secret"].get("defaultMode", 0o644))
        return folder

    def stop(self, pod: dict[str, Any]) -> None:
        process = self.processes.pop(pod["metadata"]["name"], None)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)


class Cluster:
    """The hub in kubernetes mode with its stand-ins; the team's repository on a git server."""

    def __init__(
        self,
        hub: RunningHub,
        api: KubernetesApiStandIn,
        kubelet: LocalKubelet,
        remote: Remote,
        git_server: GitHttpServer,
    ):
        self.hub, self.api, self.kubelet, self.remote, self.git_server = hub, api, kubelet, remote, git_server

    def start_server(self, session: requests.Session, user: str, profile: str = "small") -> None:
        response = self.hub.api(session, f"/users/{user}/server", "POST", json={"profile": profile})
        assert response.status_code in (201, 202), response.text

        def ready() -> bool:
            server = self.hub.api(session, f"/users/{user}").json()["servers"].get("")
            return bool(server and server["ready"])

        wait_for(ready, 120, f"{user}'s server to be ready", step=0.1)

    def stop_server(self, session: requests.Session, user: str) -> None:
        response = self.hub.api(session, f"/users/{user}/server", "DELETE")
        assert response.status_code in (202, 204), response.text
        wait_for(lambda: "" not in self.hub.api(session, f"/users/{user}").json()["servers"], 60, "the stop")

    def open_vscode(self, session: requests.Session, user: str) -> requests.Response:
        def workbench() -> requests.Response | None:
            response = session.get(f"{self.hub.url}/user/{user}/vscode/", timeout=60)
            return response if response.status_code == 200 and "workbench" in response.text else None

        return wait_for(workbench, 90, "VS Code", step=0.1)


@contextlib.contextmanager
def local_cluster(tmp: Path, users: list[str], git_token: str | None = None) -> Iterator[Cluster]:
    """GitHub (with `users`), the Kubernetes API with a local kubelet, a git server with the
    team's repository (demanding `git_token`), and the hub allowing `users`."""
    remote = Remote(tmp)
    shim = tmp / "bin" / "code-server"  # the image's code-server: here the npm build on Node 24
    shim.parent.mkdir()
    node24, code_server = tools_file_value("MLOPS_IDE_NODE24"), tools_file_value("MLOPS_IDE_CODE_SERVER")
    shim.write_text(f'#!/bin/sh\nexec "{node24}" "{code_server}" "$@"\n')
    shim.chmod(0o755)
    python_bin = Path(tools_file_value("MLOPS_IDE_PYTHON")).parent
    kubelet = LocalKubelet(tmp, f"{shim.parent}:{python_bin}:/usr/bin:/bin")
    github = GitHubStandIn("client", "client-secret", users={user: n + 1 for n, user in enumerate(users)})
    with (
        github,
        KubernetesApiStandIn(kubelet) as api,
        GitHttpServer(remote.path.parent, token=git_token) as git_server,
    ):
        settings = {
            "MLOPS_IDE_GITHUB_ALLOWED_USERS": ",".join(users),
            "MLOPS_IDE_REPO_URL": git_server.url("pipelines.git"),
        }
        try:
            with running_hub(tmp, github, api, "client-secret", settings) as hub:
                yield Cluster(hub, api, kubelet, remote, git_server)
        finally:  # the hub leaves user pods running on purpose; here they are processes
            for process in list(kubelet.processes.values()):
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(30)
