"""A user's day in kubernetes mode, end to end on one machine: log in with GitHub, start a
server, land in VS Code with the team's repository cloned with *their* token, stop, start
again with their work still there.

Real: the hub with jupyterhub_config.py and KubeSpawner, configurable-http-proxy, the
single-user server and code-server, the image's start hook, a git HTTP server that
accepts only the token GitHub issued. Stand-ins for what cannot run here: GitHub, the
Kubernetes API (with watches), and a kubelet that runs the pod's container as a local
process with the pod's environment and volumes (a claim is a folder that outlives the
pod; a Secret volume is written once the Secret exists, as the kubelet waits for it)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.git_http_server import GitHttpServer
from tests.gitrepos import Remote, git, user_commit
from tests.kubernetes_hub_tools import RunningHub, running_hub, validate
from tests.local_platform import ROOT, wait_for
from tests.platform_tools import free_port, tools_file_value
from tests.standins import GitHubStandIn, KubernetesApiStandIn

HOOK = ROOT / "images" / "singleuser" / "mlops-ide-start-hook.sh"
NAMESPACE = "default"  # KubeSpawner's namespace outside a cluster (in one: its own)


class LocalKubelet:
    """Runs a user pod's one container here; the image's start (docker-stacks'
    start-notebook.py: start hooks, then jupyterhub-singleuser) is run by bash."""

    def __init__(self, root: Path, path: str) -> None:
        self.root, self.path = root, path
        self.processes: dict[str, subprocess.Popen] = {}

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
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    status = {
                        "name": container["name"],
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {}},
                    }
                    api.update_pod_status(
                        namespace,
                        name,
                        {"phase": "Running", "podIP": "127.0.0.1", "containerStatuses": [status]},
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
    def __init__(self, hub: RunningHub, api: KubernetesApiStandIn, kubelet: LocalKubelet, remote: Remote):
        self.hub, self.api, self.kubelet, self.remote = hub, api, kubelet, remote

    def start_server(self, session: requests.Session, profile: str = "small") -> None:
        response = self.hub.api(session, "/users/alice/server", "POST", json={"profile": profile})
        assert response.status_code in (201, 202), response.text

        def ready() -> bool:
            server = self.hub.api(session, "/users/alice").json()["servers"].get("")
            return bool(server and server["ready"])

        wait_for(ready, 120, "alice's server to be ready", step=0.3)

    def stop_server(self, session: requests.Session) -> None:
        response = self.hub.api(session, "/users/alice/server", "DELETE")
        assert response.status_code in (202, 204), response.text
        wait_for(lambda: "" not in self.hub.api(session, "/users/alice").json()["servers"], 60, "the stop")

    def open_vscode(self, session: requests.Session) -> requests.Response:
        def workbench() -> requests.Response | None:
            response = session.get(f"{self.hub.url}/user/alice/vscode/", timeout=60)
            return response if response.status_code == 200 and "workbench" in response.text else None

        return wait_for(workbench, 90, "VS Code", step=0.3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("kubernetes-spawn")
    remote = Remote(tmp)
    shim = tmp / "bin" / "code-server"  # the image's code-server: here the npm build on Node 24
    shim.parent.mkdir()
    node24, code_server = tools_file_value("MLOPS_IDE_NODE24"), tools_file_value("MLOPS_IDE_CODE_SERVER")
    shim.write_text(f'#!/bin/sh\nexec "{node24}" "{code_server}" "$@"\n')
    shim.chmod(0o755)
    python_bin = Path(tools_file_value("MLOPS_IDE_PYTHON")).parent
    kubelet = LocalKubelet(tmp, f"{shim.parent}:{python_bin}:/usr/bin:/bin")
    github = GitHubStandIn("client", "client-secret", users={"alice": 1})
    with (
        github,
        KubernetesApiStandIn(kubelet) as api,
        GitHttpServer(remote.path.parent, token="nobody-has-this-yet") as git_server,
    ):
        settings = {
            "MLOPS_IDE_GITHUB_ALLOWED_USERS": "alice",
            "MLOPS_IDE_REPO_URL": git_server.url("pipelines.git"),
        }
        port_args = (f"--KubeSpawner.port={free_port()}",)  # pods share this machine's loopback
        with running_hub(tmp, github, api, "client-secret", settings, port_args) as hub:
            cluster = Cluster(hub, api, kubelet, remote)
            cluster.git_server = git_server
            yield cluster
            for process in list(kubelet.processes.values()):
                os.killpg(process.pid, signal.SIGTERM)


def test_login_start_vscode_stop_start_keeps_the_users_work(cluster: Cluster) -> None:
    session, _ = cluster.hub.log_in("alice")
    token = cluster.hub.github.issued_token("alice")
    cluster.git_server.token = token  # the repository accepts alice's GitHub token only

    cluster.start_server(session)
    page = cluster.open_vscode(session)

    pod = cluster.api.objects[("pods", NAMESPACE, "jupyter-alice")]
    validate({key: pod[key] for key in ("apiVersion", "kind", "metadata", "spec")}, "1.37")
    assert token not in json.dumps(pod)
    secret = cluster.api.objects[("secrets", NAMESPACE, "jupyter-alice-git")]
    assert secret["stringData"] == {"token": token}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    home = cluster.kubelet.root / "claims" / "claim-alice"
    clone = home / "pipelines"
    assert git(clone, "rev-parse", "HEAD") == cluster.remote.head()  # cloned with alice's token
    assert token not in (clone / ".git" / "config").read_text()
    assert "/user/alice/vscode/" in page.url
    # `git push` from VS Code's terminal, with the pod's environment: as alice, with her token
    pod_env = {item["name"]: item["value"] for item in pod["spec"]["containers"][0]["env"] if "value" in item}
    token_file = cluster.kubelet.root / "pods" / "jupyter-alice" / "git-token" / "token"
    pushed = user_commit(clone, {"dags/alice.py": "# alice's DAG\n"}, "alice's DAG")
    push = subprocess.run(
        ["git", "push", "--quiet", "origin", "main"],
        cwd=clone,
        env={**os.environ, **pod_env, "HOME": str(home), "MLOPS_IDE_GIT_TOKEN_FILE": str(token_file)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert push.returncode == 0, push.stderr
    assert cluster.remote.head() == pushed
    (clone / "dags" / "mine.py").write_text("# alice's work in progress\n")

    cluster.stop_server(session)

    assert ("pods", NAMESPACE, "jupyter-alice") not in cluster.api.objects
    assert ("secrets", NAMESPACE, "jupyter-alice-git") not in cluster.api.objects  # deleted with the pod
    assert ("persistentvolumeclaims", NAMESPACE, "claim-alice") in cluster.api.objects

    git(cluster.remote.teammate, "pull", "--quiet", "--ff-only")  # the teammate gets alice's DAG
    cluster.remote.commit({"dags/theirs.py": "# a teammate's DAG\n"}, "teammate's DAG")
    cluster.start_server(session)
    cluster.open_vscode(session)

    assert (clone / "dags" / "mine.py").read_text() == "# alice's work in progress\n"
    assert git(clone, "rev-parse", "HEAD") == cluster.remote.head()  # fast-forwarded around it
    assert (clone / "dags" / "theirs.py").exists()
    cluster.stop_server(session)
