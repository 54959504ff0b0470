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

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.gitrepos import git, user_commit
from tests.support.kubernetes_hub_tools import validate
from tests.support.local_kubelet import Cluster, local_cluster

NAMESPACE = "default"  # KubeSpawner's namespace outside a cluster (in one: its own)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with local_cluster(
        tmp_path_factory.mktemp("kubernetes-spawn"), ["alice"], git_token="nobody-has-it-yet"
    ) as cluster:
        yield cluster


def test_login_start_vscode_stop_start_keeps_the_users_work(cluster: Cluster) -> None:
    session, _ = cluster.hub.log_in("alice")
    token = cluster.hub.github.issued_token("alice")
    cluster.git_server.token = token  # the repository accepts alice's GitHub token only

    cluster.start_server(session, "alice")
    page = cluster.open_vscode(session, "alice")

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

    cluster.stop_server(session, "alice")

    assert ("pods", NAMESPACE, "jupyter-alice") not in cluster.api.objects
    assert ("secrets", NAMESPACE, "jupyter-alice-git") not in cluster.api.objects  # deleted with the pod
    assert ("persistentvolumeclaims", NAMESPACE, "claim-alice") in cluster.api.objects

    git(cluster.remote.teammate, "pull", "--quiet", "--ff-only")  # the teammate gets alice's DAG
    cluster.remote.commit({"dags/theirs.py": "# a teammate's DAG\n"}, "teammate's DAG")
    cluster.start_server(session, "alice")
    cluster.open_vscode(session, "alice")

    assert (clone / "dags" / "mine.py").read_text() == "# alice's work in progress\n"
    assert git(clone, "rev-parse", "HEAD") == cluster.remote.head()  # fast-forwarded around it
    assert (clone / "dags" / "theirs.py").exists()
    cluster.stop_server(session, "alice")
