"""The push webhook keeps the previews' registry on Kubernetes: GitHub's signed push to
`preview/<person>/<topic>` takes, moves or frees a slot in the ConfigMap, through the
Kubernetes API (a stand-in with the API's resourceVersion conflicts), only when the
authenticated pusher is that person or a hub admin."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import requests
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from mlops_ide.hub_services import preview_configmap
from mlops_ide.hub_services.preview_configmap import ConfigMapRegistry, RegistryError
from mlops_ide.hub_services.push_webhook import (
    PREVIEW_CONTEXT,
    PreviewPush,
    RecentDeliveries,
    judge,
    keep_preview,
    make_app,
    post_status,
)
from mlops_ide.portable import previews
from tests.support.platform_tools import github_signature
from tests.support.standins import GitHubStandIn, KubernetesApiStandIn

SECRET = b"webhook-secret-0123456789"
NS, NAME = preview_configmap.NAMESPACE, preview_configmap.NAME
A, B = "a" * 40, "b" * 40


def push(branch: str, after: str = A, sender: str = "alice", deleted: bool = False) -> bytes:
    """A push event as GitHub sends it (the fields the webhook reads)."""
    event = {
        "ref": f"refs/heads/{branch}",
        "before": "0" * 40,
        "after": "0" * 40 if deleted else after,
        "created": not deleted,
        "deleted": deleted,
        "forced": False,
        "sender": {"login": sender, "id": 1},
    }
    return json.dumps(event).encode()


def signed(body: bytes, delivery: str) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": github_signature(SECRET, body),
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }


@contextlib.contextmanager
def api(shipped: bool = True) -> Iterator[KubernetesApiStandIn]:
    """The Kubernetes API, with the empty ConfigMap deploy/previews.yaml ships (unless not `shipped`)."""
    with KubernetesApiStandIn() as server:
        if shipped:
            configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME}}
            assert requests.post(f"{server.url}/api/v1/namespaces/{NS}/configmaps", json=configmap).ok
        yield server


def registry(server: KubernetesApiStandIn) -> list[previews.Entry]:
    return ConfigMapRegistry(server.url).entries()


@contextlib.contextmanager
def webhook(
    server: KubernetesApiStandIn,
    admins=frozenset({"root"}),
    slots: int = 6,
    per_person: int = 3,
    around=None,
    announce=None,
):
    """make_app with previews on, its IOLoop in a thread; yields its URL. The registry's
    changes run in the background, so it is final once the block has ended."""
    store = ConfigMapRegistry(server.url)
    in_order = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.new_event_loop()
    sockets = bind_sockets(0, "127.0.0.1")

    def keep(preview: PreviewPush) -> str:
        def change() -> str:
            return keep_preview(store, preview, slots, per_person)

        return change() if around is None else around(preview, change)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        http = HTTPServer(
            make_app(SECRET, "main", "/hook/", lambda commit: None, None, admins, keep, in_order, announce)
        )
        http.add_sockets(sockets)
        loop.run_forever()
        http.stop()
        loop.run_until_complete(loop.shutdown_default_executor())  # the background calls
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}/hook/"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        in_order.shutdown(wait=True)  # the registry's changes


def deliver(url: str, body: bytes, delivery: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        url, data=body, headers=signed(body, delivery) if headers is None else headers, timeout=10
    )


def test_a_signed_push_takes_a_slot_a_second_moves_it_and_deletion_frees_it() -> None:
    with api() as server:
        with webhook(server) as url:
            taken = deliver(url, push("preview/alice/lr", A), "d-1")
        first = registry(server)
        with webhook(server) as url:
            moved = deliver(url, push("preview/alice/lr", B, sender="Alice"), "d-2")  # GitHub's own case
        second = registry(server)
        with webhook(server) as url:
            freed = deliver(url, push("preview/alice/lr", deleted=True), "d-3")
        third = registry(server)

    assert taken.status_code == 202 and "takes a preview slot" in taken.json()["message"]
    assert [(e.slot, e.branch, e.commit, e.pushed_by) for e in first] == [
        ("preview-1", "preview/alice/lr", A, "alice")
    ]
    assert moved.status_code == 202
    assert [(e.slot, e.commit, e.created) for e in second] == [("preview-1", B, first[0].created)]
    assert freed.status_code == 202 and "freed" in freed.json()["message"]
    assert third == []
    assert "POST /api/v1/namespaces/mlops-ide-pipeline/configmaps" not in server.requests[1:]  # replaced


def test_the_registry_is_created_when_missing() -> None:
    with api(shipped=False) as server:
        with webhook(server) as url:
            deliver(url, push("preview/alice/lr"), "d-1")

        assert [entry.branch for entry in registry(server)] == ["preview/alice/lr"]
        # in Airflow's format: previews.read takes the mounted file
        data = server.objects[("configmaps", NS, NAME)]["data"][preview_configmap.KEY]
        assert json.loads(data)["previews"][0]["slot"] == "preview-1"


def test_bobs_push_to_alices_preview_gets_no_slot_but_an_admins_does() -> None:
    with api() as server:
        with webhook(server) as url:
            refused = deliver(url, push("preview/alice/lr", sender="bob"), "d-1")
        after_bob = registry(server)
        writes = [call for call in server.requests if call.startswith(("PUT", "POST"))]
        with webhook(server) as url:
            admitted = deliver(url, push("preview/alice/lr", sender="Root"), "d-2")
        after_admin = registry(server)

    assert refused.status_code == 403
    assert "only alice or a hub admin" in refused.json()["message"]
    assert "preview/bob/lr" in refused.json()["message"]  # what bob may push instead
    assert after_bob == []
    assert writes == ["POST /api/v1/namespaces/mlops-ide-pipeline/configmaps"]  # api()'s; none since
    assert admitted.status_code == 202
    assert [(e.person, e.pushed_by) for e in after_admin] == [("alice", "root")]


def test_bobs_push_over_alices_running_preview_frees_its_slot() -> None:
    """The slot follows the branch's head (preview_bundle.py): kept, it would run bob's commit
    as alice's preview. Alice's next push takes a slot again."""
    with api() as server:
        with webhook(server) as url:
            deliver(url, push("preview/alice/lr", A), "d-1")
            deliver(url, push("preview/carol/x", A, sender="carol"), "d-2")
        with webhook(server) as url:
            refused = deliver(url, push("preview/alice/lr", B, sender="bob"), "d-3")
        after_bob = registry(server)
        with webhook(server) as url:
            deliver(url, push("preview/alice/lr", A), "d-4")
        after_alice = registry(server)

    assert refused.status_code == 403 and "a slot it held is freed" in refused.json()["message"]
    assert [entry.branch for entry in after_bob] == ["preview/carol/x"]
    assert [(e.slot, e.branch, e.commit) for e in after_alice] == [
        ("preview-2", "preview/carol/x", A),
        ("preview-1", "preview/alice/lr", A),
    ]


def test_unsigned_and_replayed_deliveries_change_nothing() -> None:
    body = push("preview/alice/lr")
    with api() as server:
        with webhook(server) as url:
            unsigned = deliver(
                url, body, "d-0", headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-0"}
            )
            forged = deliver(
                url, push("preview/mallory/x", sender="mallory"), "d-9", headers=signed(body, "d-9")
            )
        assert registry(server) == []
        with webhook(server) as url:
            taken = deliver(url, body, "d-1")
            freed = deliver(url, push("preview/alice/lr", deleted=True), "d-2")
            replayed = deliver(url, body, "d-1")  # the captured push, to bring the preview back
            replayed_fresh_id = deliver(url, body, "d-3")
        after = registry(server)

    assert (unsigned.status_code, forged.status_code) == (401, 401)
    assert (taken.status_code, freed.status_code) == (202, 202)
    assert (replayed.status_code, replayed_fresh_id.status_code) == (409, 409)
    assert after == []


@pytest.mark.parametrize(
    ("branch", "says"),
    [
        ("preview/alice/" + "x" * 200_000, "is too long for a preview branch"),
        ("preview/alice/lr_sweep", "is not a topic"),
        ("preview/alice/lr/more", "is not a preview branch"),
        ("preview/-alice/lr", "is not a hub name"),
        ("preview/alice", "is not a preview branch"),
    ],
    ids=["huge", "underscore", "deeper", "not-a-name", "no-topic"],
)
def test_a_bad_preview_branch_gets_no_slot_and_a_short_answer(branch: str, says: str) -> None:
    with api() as server:
        with webhook(server) as url:
            answer = deliver(url, push(branch, sender=branch.split("/")[1]), "d-1")
        after = registry(server)

    assert answer.status_code == 422
    assert says in answer.json()["message"] and len(answer.json()["message"]) < 400
    assert after == []


def test_a_push_without_a_commit_or_a_pusher_gets_no_slot() -> None:
    deliveries = RecentDeliveries()
    no_commit = push("preview/alice/lr", after="main")
    no_sender = json.dumps({"ref": "refs/heads/preview/alice/lr", "after": A, "sender": "alice"}).encode()

    first = judge(SECRET, signed(no_commit, "d-1"), no_commit, "main", deliveries, frozenset())
    second = judge(SECRET, signed(no_sender, "d-2"), no_sender, "main", deliveries, frozenset())

    assert (first.status, first.preview) == (400, None) and "not a commit" in first.message
    assert (second.status, second.preview) == (400, None) and "sender.login" in second.message


def test_previews_off_leave_preview_pushes_alone() -> None:
    body = push("preview/alice/lr")

    verdict = judge(SECRET, signed(body, "d-1"), body, "main", RecentDeliveries(), admins=None)

    assert (verdict.status, verdict.preview, verdict.refresh) == (200, None, False)
    assert "previews are off" in verdict.message


def test_a_conflicting_writer_makes_the_change_run_again_not_lost() -> None:
    """Between the webhook's read and its write, another replica writes carol's preview: the
    API refuses the stale write (409) and the webhook makes its change again on carol's."""
    with api() as server:
        store, other = ConfigMapRegistry(server.url), ConfigMapRegistry(server.url)
        calls = []

        def change(entries: list[previews.Entry]) -> list[previews.Entry]:
            calls.append(len(entries))
            if len(calls) == 1:
                other.update(lambda found: previews.pushed(found, "preview/carol/x", B, "carol", 6, 3)[0])
            return previews.pushed(entries, "preview/alice/lr", A, "alice", 6, 3)[0]

        store.update(change)
        after = registry(server)

    assert calls == [0, 1]  # the second run saw carol's
    assert [(e.slot, e.branch) for e in after] == [
        ("preview-1", "preview/carol/x"),
        ("preview-2", "preview/alice/lr"),
    ]


def test_a_writer_that_always_wins_is_reported_not_looped_on() -> None:
    with api() as server:
        store, other = ConfigMapRegistry(server.url), ConfigMapRegistry(server.url)
        moves: list[float] = []

        def change(entries: list[previews.Entry]) -> list[previews.Entry]:
            pushed_at = float(len(moves))
            moves.append(pushed_at)  # carol's preview moved again: a new resourceVersion each time
            other.update(
                lambda found: previews.pushed(found, "preview/carol/x", B, "carol", 6, 3, now=pushed_at)[0]
            )
            return previews.pushed(entries, "preview/alice/lr", A, "alice", 6, 3)[0]

        with pytest.raises(RegistryError, match="changed under each of 8 attempts"):
            store.update(change)
        assert len(moves) == preview_configmap.ATTEMPTS


def test_over_the_limit_the_push_gets_no_slot_and_the_registry_stays() -> None:
    with api() as server:
        store = ConfigMapRegistry(server.url)
        keep_preview(store, PreviewPush("preview/alice/one", A, "alice"), slots=6, per_person=1)

        with pytest.raises(previews.NoSlot, match="delete one with `git push origin :preview/alice/one`"):
            keep_preview(store, PreviewPush("preview/alice/two", A, "alice"), slots=6, per_person=1)
        assert [entry.branch for entry in registry(server)] == ["preview/alice/one"]


def test_a_registry_that_is_not_one_is_refused_with_what_to_do() -> None:
    with api() as server:
        configmap = server.objects[("configmaps", NS, NAME)]
        configmap["data"] = {preview_configmap.KEY: json.dumps({"previews": [{"slot": "x"}]})}

        with pytest.raises(RegistryError, match=f"kubectl -n {NS} edit configmap {NAME}"):
            keep_preview(ConfigMapRegistry(server.url), PreviewPush("preview/alice/lr", A, "alice"), 6, 3)


class RefusingApi(KubernetesApiStandIn):
    """The API as it answers a service account without the Role of deploy/previews.yaml."""

    def handle(self, method, path, query, headers, body):
        return 403, {}, self._status(403, "Forbidden")


def test_without_the_role_the_error_says_to_apply_deploy() -> None:
    with RefusingApi() as server, pytest.raises(RegistryError, match=r"HTTP 403 .*kubectl apply -k deploy/"):
        ConfigMapRegistry(server.url).entries()


def test_in_the_cluster_it_uses_the_pods_service_account(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preview_configmap, "SERVICE_ACCOUNT", tmp_path)

    with pytest.raises(RegistryError, match=r"no service-account token .*MLOPS_IDE_PREVIEWS_OUTSIDE=0"):
        ConfigMapRegistry.in_cluster({})
    assert preview_configmap.api_server({}) == "https://kubernetes.default.svc:443"
    ipv6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert preview_configmap.api_server(ipv6) == "https://[fd00::1]:6443"


class RecordingApi(KubernetesApiStandIn):
    """The API, remembering the Authorization header of each request."""

    def __init__(self) -> None:
        super().__init__()
        self.authorizations: list[str] = []

    def handle(self, method, path, query, headers, body):
        self.authorizations.append(headers.get("Authorization", ""))
        return super().handle(method, path, query, headers, body)


def test_the_token_is_read_at_each_call(tmp_path) -> None:
    """The kubelet rotates the service account's token in its file."""
    token = tmp_path / "token"
    with RecordingApi() as server:
        store = ConfigMapRegistry(server.url, token_file=token)
        token.write_text("first\n")
        store.entries()
        token.write_text("second\n")
        store.entries()

    assert server.authorizations[-2:] == ["Bearer first", "Bearer second"]


def test_a_push_then_its_deletion_leave_no_slot_even_when_the_push_is_slow_to_record() -> None:
    """The registry's changes are made in the order the deliveries came: the push's change,
    held back here until the deletion's is done (or a while, when it cannot be: in order),
    still comes first."""
    deletion_done = threading.Event()

    def around(preview: PreviewPush, change):
        if preview.frees:
            done = change()
            deletion_done.set()
            return done
        deletion_done.wait(2)  # a bounded wait: in order, the deletion cannot start before it ends
        return change()

    with api() as server:
        with webhook(server, around=around) as url:
            deliver(url, push("preview/alice/lr"), "d-1")
            deliver(url, push("preview/alice/lr", deleted=True), "d-2")
        after = registry(server)

    assert after == []


def test_the_pusher_learns_the_slot_or_why_there_is_none() -> None:
    told: list[tuple[str, str, str]] = []

    def announce(preview: PreviewPush, state: str, text: str) -> None:
        told.append((preview.commit, state, text))

    with api() as server, webhook(server, per_person=1, announce=announce) as url:
        deliver(url, push("preview/alice/one", A), "d-1")
        deliver(url, push("preview/alice/two", B), "d-2")
        deliver(url, push("preview/alice/one", deleted=True), "d-3")  # nothing to tell on a deletion

    assert told == [
        (
            A,
            "success",
            f"preview/alice/one at {A[:12]} in preview-1: its DAGs as <dag id>__alice_one, paused "
            "(pushed by alice)",
        ),
        (
            B,
            "failure",
            "no slot: you have 1 previews, the limit is 1 (preview/alice/one): delete one with "
            "`git push origin :preview/alice/one`",
        ),
    ]


def test_the_preview_status_goes_to_the_commit_under_its_own_context() -> None:
    with GitHubStandIn("id", "secret", {"alice": 1}) as github:
        github.tokens["status-token"] = "alice"
        settings = SimpleNamespace(
            repo_url="https://github.example/team/pipelines.git",
            github_url=github.url,
            status_token="status-token",
            airflow_url="http://airflow.example",
        )
        post_status(settings, A, "failure", "no slot: ...", PREVIEW_CONTEXT)

    (status,) = github.statuses
    assert (status["sha"], status["repo"], status["context"], status["state"]) == (
        A,
        "team/pipelines",
        "mlops-ide/preview",
        "failure",
    )
