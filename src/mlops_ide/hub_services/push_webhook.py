"""GitHub push webhook: a push to the tracked branch makes Airflow re-parse the DAG bundle
now, instead of at its next refresh (kubernetes mode; locally the remote's post-receive
hook asks the push check, in_airflow/push_check.py, which does the same through
portable/dag_refresh.py).

Runs as a JupyterHub service (`push-webhook`), so GitHub posts to
https://<hub host>/services/push-webhook/. GitHub signs every delivery with the webhook's
secret (X-Hub-Signature-256, HMAC-SHA256 of the body); anything unsigned or signed with
another secret is refused, and so is a body over MAX_BODY_BYTES (before it is read) and a
delivery taken before (RecentDeliveries). The call to Airflow runs in the background:
GitHub gets its answer at once, and a slow or broken Airflow only delays DAGs until the
bundle's own refresh.

A push to a preview branch `preview/<person>/<topic>` (docs/previews.md) gives it a slot in
the previews' registry, the ConfigMap of hub_services/preview_configmap.py, when
MLOPS_IDE_PREVIEWS_OUTSIDE is on: only if GitHub's authenticated pusher (`sender.login`,
lowercased like hub names) is that person or one of MLOPS_IDE_ADMIN_USERS. GitHub has
taken the push whatever the answer; the platform just does not run it. Its deletion frees
the slot, whoever deleted it (the branch is gone either way), and so does a push by someone
else (the slot would follow the branch to a commit nobody allowed).

    python -m mlops_ide.hub_services.push_webhook     (settings from the environment, see main())
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from mlops_ide.portable import previews
from mlops_ide.portable.dag_refresh import call, login, refresh
from mlops_ide.settings import Setting, SettingsError, read, table

log = logging.getLogger("mlops_ide.hub_services.push_webhook")


def settings_rows() -> tuple[Setting, ...]:
    """The settings the webhook reads; the hub hands them on (kubernetes_spawner.push_webhook)."""
    return table.select(
        "MLOPS_IDE_IP",
        "MLOPS_IDE_REPO_BRANCH",
        "MLOPS_IDE_GITHUB_WEBHOOK_SECRET",
        "MLOPS_IDE_AIRFLOW_URL",
        "MLOPS_IDE_AIRFLOW_USERNAME",
        "MLOPS_IDE_AIRFLOW_PASSWORD",
        "MLOPS_IDE_GITHUB_STATUS_TOKEN",
        "MLOPS_IDE_GITHUB_URL",
        "MLOPS_IDE_REPO_URL",
        "MLOPS_IDE_ADMIN_USERS",
        "MLOPS_IDE_PREVIEWS_OUTSIDE",
        "MLOPS_IDE_PREVIEW_SLOTS",
        "MLOPS_IDE_PREVIEWS_PER_PERSON",
    )


@dataclass(frozen=True)
class PreviewPush:
    """A push to a preview branch by its authenticated pusher; `commit` "": its slot, if any,
    is to be freed (the branch was deleted, or moved by someone who may not run it)."""

    branch: str
    commit: str
    pusher: str

    @property
    def frees(self) -> bool:
        return not self.commit


@dataclass(frozen=True)
class Verdict:
    status: int
    message: str
    refresh: bool = False
    commit: str = ""
    preview: PreviewPush | None = None


# A push event is a few KB (the pushed commits, their messages and changed paths). GitHub
# sends up to 25 MB; a push over 1 MiB (hundreds of commits or thousands of paths) is
# refused here and Airflow picks it up at its next bundle refresh: later, not lost.
# Without a cap, Tornado buffers up to 100 MB of anyone's body (the ingress lets 64 MB
# through, for the hub's uploads) before the signature can be checked.
MAX_BODY_BYTES = 1024 * 1024
TOO_LARGE = (
    f"the body is over {MAX_BODY_BYTES} bytes (1 MiB): a push this large is not taken here; "
    "Airflow picks it up at its next bundle refresh"
)


class RecentDeliveries:
    """The signed deliveries already taken, so that a captured one cannot be replayed: by
    X-GitHub-Delivery and by the signature of the body, since the header is not signed and
    a replay could bring a fresh one. Only the last `size` are kept (bounded memory; only
    signed deliveries get in), and only while this process runs.

    GitHub's "Redeliver" sends a delivery again with the same X-GitHub-Delivery and body
    (GitHub's "Best practices for using webhooks"), so redelivering one this process has
    taken is answered 409 "already received" (the operator sees it in the delivery's
    Response tab): the price of replay protection. To re-parse now, push again;
    redelivering one that never arrived (hub down) works."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen) // 2

    def first_time(self, delivery: str, digest: str) -> bool:
        """Remember the delivery; False if its id or its body came before."""
        keys = (f"id:{delivery}", f"body:{digest}")
        if any(key in self._seen for key in keys):
            return False
        self._seen.update(dict.fromkeys(keys))
        while len(self._seen) > 2 * self.size:
            self._seen.popitem(last=False)
        return True


def signature_matches(header: str, digest: str) -> bool:
    """Constant-time comparison of X-Hub-Signature-256 with sha256=<digest>. As bytes: on
    str, compare_digest raises TypeError for non-ASCII, which would answer 500, not 401."""
    return hmac.compare_digest(header.encode("utf-8", "surrogatepass"), f"sha256={digest}".encode())


def judge(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    branch: str,
    deliveries: RecentDeliveries,
    admins: frozenset[str] | None = None,
) -> Verdict:
    """What to answer GitHub, and whether Airflow should re-parse or a preview change.
    `admins`: the hub admins, who may push anyone's preview; None: previews are off."""
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not signature_matches(headers.get("X-Hub-Signature-256", ""), digest):
        return Verdict(
            401,
            "the signature does not match: give the GitHub webhook the same secret as "
            "MLOPS_IDE_GITHUB_WEBHOOK_SECRET",
        )
    delivery = headers.get("X-GitHub-Delivery", "")
    if not delivery:
        return Verdict(400, "no X-GitHub-Delivery header: GitHub sends one with every delivery")
    if not deliveries.first_time(delivery, digest):
        return Verdict(
            409,
            f"delivery {delivery} (or its body) was already received: a replay is refused, and so "
            "is GitHub's Redeliver of it; push again to have Airflow re-parse now",
        )
    event = headers.get("X-GitHub-Event", "")
    if event == "ping":
        return Verdict(200, "pong")
    if event != "push":
        return Verdict(200, f"ignored: a {event or 'nameless'} event (only push events are used)")
    try:
        payload = json.loads(body)
    except ValueError:
        return Verdict(400, "the body is not JSON: set the webhook's content type to application/json")
    ref = payload.get("ref") if isinstance(payload, dict) else None
    if isinstance(ref, str) and ref.startswith(previews.REF_PREFIX):
        return judge_preview(payload, ref.removeprefix("refs/heads/"), admins)
    if ref != f"refs/heads/{branch}":
        return Verdict(200, f"ignored: a push to {ref}, Airflow tracks refs/heads/{branch}")
    if payload.get("deleted"):
        return Verdict(200, f"ignored: {branch} was deleted")
    commit = str(payload.get("after", ""))
    return Verdict(202, f"Airflow re-parses the DAG bundle for {commit[:12]}", refresh=True, commit=commit)


PREVIEW_BRANCH_LIMIT = len(previews.BRANCH_PREFIX) + 39 + 1 + 32  # preview/<person>/<topic> at most


def judge_preview(payload: dict, branch: str, admins: frozenset[str] | None) -> Verdict:
    """A signed push to a preview branch: whether it takes, frees or gets no slot."""
    shown = branch if len(branch) <= 120 else f"{branch[:120]}... ({len(branch)} characters)"
    if admins is None:  # previews off: the registry holds nothing to free either
        return Verdict(
            200,
            f"ignored: {shown} is a preview branch, and previews are off (MLOPS_IDE_PREVIEWS_OUTSIDE; "
            "docs/previews.md says when to turn them on)",
        )
    sender = payload.get("sender")
    login = sender.get("login") if isinstance(sender, dict) else None
    if not isinstance(login, str) or not login:
        return Verdict(400, "no sender.login: GitHub names the pusher in every push event")
    pusher = login.lower()  # hub names are lowercased GitHub logins
    if payload.get("deleted"):
        return Verdict(
            202,
            f"{shown} was deleted (by {pusher}): its slot is freed",
            preview=PreviewPush(branch, "", pusher),
        )
    if len(branch) > PREVIEW_BRANCH_LIMIT:  # its name would fill the answer and the log
        return Verdict(
            422,
            f"no preview: {shown} is too long for a preview branch, "
            f"{previews.BRANCH_PREFIX}<hub name>/<topic of up to 32 characters>",
        )
    try:
        preview = previews.parse_branch(branch)
    except previews.BadPreview as problem:
        return Verdict(422, f"no preview: {problem}")
    if pusher != preview.person and pusher not in admins:
        # The slot runs the commit the registry records (in_airflow/preview_bundle.py), so this
        # commit never runs under the person's name; the slot is freed all the same (the branch
        # no longer holds what they pushed): they push again for it.
        return Verdict(
            403,
            f"no preview: {pusher} pushed {branch}, which only {preview.person} or a hub admin "
            f"may run (a slot it held is freed); push to {previews.BRANCH_PREFIX}{pusher}/{preview.topic} "
            "instead",
            preview=PreviewPush(branch, "", pusher),
        )
    commit = payload.get("after")
    if not isinstance(commit, str) or not previews.COMMIT.fullmatch(commit):
        return Verdict(400, f"no preview: `after` is not a commit ({str(commit)[:60]!r})")
    return Verdict(
        202, f"{branch} at {commit[:12]} takes a preview slot", preview=PreviewPush(branch, commit, pusher)
    )


def keep_preview(registry, push: PreviewPush, slots: int, per_person: int) -> str:
    """Change the registry (a preview_configmap.ConfigMapRegistry) after `push`; what was done.
    previews.NoSlot (its message lists the person's previews) when there is no slot for it."""
    if push.frees:
        registry.update(lambda entries: previews.removed(entries, push.branch))
        return f"{push.branch} (deleted, or pushed by {push.pusher}, who may not run it): no slot"
    found: list[previews.Entry] = []

    def change(entries: list[previews.Entry]) -> list[previews.Entry]:
        after, entry = previews.pushed(entries, push.branch, push.commit, push.pusher, slots, per_person)
        found[:] = [entry]
        return after

    registry.update(change)
    entry = found[0]
    return (
        f"{push.branch} at {push.commit[:12]} in {entry.slot}: its DAGs as <dag id>{entry.preview.suffix}, "
        f"paused (pushed by {push.pusher})"
    )


STATUS_CONTEXT = "mlops-ide/airflow"
PREVIEW_CONTEXT = "mlops-ide/preview"  # on a preview's commit: its slot, or why it has none
STATUS_WAIT_SECONDS = 60.0


def airflow_verdict(settings, commit: str, wait: float = STATUS_WAIT_SECONDS) -> tuple[str, str]:
    """What Airflow made of `commit`, once its DAGs are at it (or `wait` has passed):
    ("success", the live DAGs) or ("failure", the import errors) or ("error", still parsing)."""
    token = login(settings.airflow_url, settings.airflow_username, settings.airflow_password)
    deadline = time.monotonic() + wait
    while True:
        dags = call("GET", f"{settings.airflow_url}/api/v2/dags?limit=1000", token)["dags"]
        at_commit = [dag["dag_id"] for dag in dags if dag.get("bundle_version") == commit]
        if at_commit or time.monotonic() > deadline:
            break
        time.sleep(1)
    errors = call("GET", f"{settings.airflow_url}/api/v2/importErrors?limit=1000", token)["import_errors"]
    return status_of(commit, sorted(at_commit), {e["filename"]: e["stack_trace"] for e in errors})


def status_of(commit: str, live: list[str], errors: dict[str, str]) -> tuple[str, str]:
    """A commit status (state, description of at most 140 characters) from what Airflow says."""
    if errors:
        first = ", ".join(
            f"{name.rsplit('/', 1)[-1]}: {text.strip().splitlines()[-1]}"
            for name, text in sorted(errors.items())
        )
        return "failure", f"{len(errors)} DAG file(s) do not load: {first}"[:140]
    if not live:
        return "error", f"Airflow has not parsed {commit[:12]} yet: see its UI"
    return "success", f"live at {commit[:12]}: {', '.join(live)}"[:140]


def post_status(settings, commit: str, state: str, description: str, context: str = STATUS_CONTEXT) -> None:
    """POST /repos/{owner}/{repo}/statuses/{sha}, with the status token."""
    owner, repo = repository(settings.repo_url)
    body = {
        "state": state,
        "context": context,
        "description": description,
        "target_url": f"{settings.airflow_url}/dags",
    }
    request = urllib.request.Request(
        f"{api_url(settings.github_url)}/repos/{owner}/{repo}/statuses/{commit}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {settings.status_token}",
            "Accept": "application/vnd.github+json",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def api_url(github_url: str) -> str:
    """GitHub's REST API: api.github.com, or a GitHub Enterprise Server's /api/v3."""
    base = github_url.rstrip("/")
    return "https://api.github.com" if base == "https://github.com" else f"{base}/api/v3"


def repository(repo_url: str) -> tuple[str, str]:
    """(owner, name) of https://host/owner/name(.git) or git@host:owner/name(.git)."""
    path = urlsplit(repo_url).path if "://" in repo_url else repo_url.split(":", 1)[-1]
    owner, name = path.strip("/").split("/")[-2:]
    return owner, name.removesuffix(".git")


def make_app(
    secret: bytes,
    branch: str,
    prefix: str,
    ask_airflow: Callable[[str], None],
    report: Callable[[str], None] | None = None,
    preview_admins: frozenset[str] | None = None,
    keep: Callable[[PreviewPush], str] | None = None,
    in_order: Executor | None = None,
    announce: Callable[[PreviewPush, str, str], None] | None = None,
):
    """The Tornado application: POST <prefix> for deliveries, GET <prefix> to check it runs.
    Previews are on when `keep` is given: it changes the registry after a preview push, in
    `in_order` (an executor of one thread; its own if None); `announce(push, state, text)`
    then tells the pusher (a commit status): the slot, or why there is none."""
    from tornado import web
    from tornado.ioloop import IOLoop

    def refresh_in_background(commit: str) -> None:
        started = time.monotonic()
        try:
            ask_airflow(commit)
        except Exception as error:  # Airflow down or refusing: its own refresh picks the push up
            log.warning(
                "could not ask Airflow to re-parse (%r); it picks the push up at its next refresh", error
            )
            return
        log.info("Airflow re-parsing the bundle (asked in %.2f s)", time.monotonic() - started)
        if report is not None:
            try:
                report(commit)
            except Exception as error:  # GitHub down or the token refused: the push stands
                log.warning("could not set the commit status of %s (%r)", commit[:12], error)

    def keep_in_background(push: PreviewPush) -> None:
        try:
            done = keep(push)
            log.info("preview: %s", done)
            outcome = ("success", done)
        except previews.NoSlot as refusal:  # GitHub has the push; the platform does not run it
            log.warning("preview: no slot for %s pushed by %s: %s", push.branch, push.pusher, refusal)
            outcome = ("failure", f"no slot: {refusal}")
        except Exception as error:  # the API down or refusing: logged; the next push tries again
            log.error("preview: could not record %s (%s)", push.branch, error)
            outcome = ("error", "the platform could not record it: push again, or ask the operator")
        if announce is not None and not push.frees:
            try:
                announce(push, *outcome)
            except Exception as error:  # GitHub down or the token refused: the slot stands
                log.warning("could not set the preview status of %s (%r)", push.commit[:12], error)

    deliveries = RecentDeliveries()
    admins = (preview_admins or frozenset()) if keep is not None else None
    # One at a time, in the order GitHub's deliveries came: a deletion taken after the push
    # before it stays a deletion.
    in_order = in_order or ThreadPoolExecutor(max_workers=1, thread_name_prefix="previews")

    @web.stream_request_body  # the body comes through data_received, so it is capped while read
    class Deliveries(web.RequestHandler):
        def prepare(self) -> None:
            self.body = bytearray()
            if declared_length(self.request.headers) > MAX_BODY_BYTES:
                self.refuse_too_large()  # before reading a byte of it

        def data_received(self, chunk: bytes) -> None:
            self.body += chunk
            if len(self.body) > MAX_BODY_BYTES:  # chunked, or more than Content-Length said
                self.refuse_too_large()  # Tornado then closes the connection, unread

        def refuse_too_large(self) -> None:
            delivery = self.request.headers.get("X-GitHub-Delivery", "-")
            log.info("delivery %s: 413 %s", delivery, TOO_LARGE)
            self.set_status(413)
            self.set_header("Connection", "close")
            self.finish({"message": TOO_LARGE})

        def get(self) -> None:
            self.write({"message": "mlops-ide push webhook: GitHub posts push events here"})

        def post(self) -> None:
            verdict = judge(secret, self.request.headers, bytes(self.body), branch, deliveries, admins)
            delivery = self.request.headers.get("X-GitHub-Delivery", "-")
            log.info("delivery %s: %s %s", delivery, verdict.status, verdict.message)
            if verdict.refresh:
                IOLoop.current().run_in_executor(None, refresh_in_background, verdict.commit)
            if verdict.preview is not None and keep is not None:
                IOLoop.current().run_in_executor(in_order, keep_in_background, verdict.preview)
            self.set_status(verdict.status)
            self.write({"message": verdict.message})

    return web.Application([(prefix.rstrip("/") + "/?", Deliveries)])


def declared_length(headers: Mapping[str, str]) -> int:
    """The Content-Length a request announces (0 if none); a malformed one Tornado refuses itself."""
    try:
        return int(headers.get("Content-Length", "0"))
    except ValueError:
        return 0


def main() -> None:
    """Its settings come from the hub (settings_rows()), read through the settings table;
    where to listen: JUPYTERHUB_SERVICE_URL (its port) and JUPYTERHUB_SERVICE_PREFIX."""
    from tornado.ioloop import IOLoop

    from mlops_ide.names import ANCHOR_DAG

    # The hub stops its services with SIGINT; make sure it is not inherited as ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s push-webhook] %(message)s")
    try:
        settings = read(settings_rows(), "kubernetes")
    except SettingsError as problem:
        raise SystemExit(f"push-webhook: cannot start:\n{problem}") from None
    if not settings.webhook_secret or not settings.airflow_password:
        raise SystemExit(
            "push-webhook: cannot start: set MLOPS_IDE_GITHUB_WEBHOOK_SECRET and MLOPS_IDE_AIRFLOW_PASSWORD"
        )
    if settings.airflow_username == "admin":
        log.warning(
            "logging in to Airflow as admin: set MLOPS_IDE_AIRFLOW_USERNAME to an account that may only "
            "read DAGs and import errors and re-parse the anchor DAG (%s)",
            ANCHOR_DAG,
        )

    def ask_airflow(commit: str) -> None:
        refresh(settings.airflow_url, settings.airflow_username, settings.airflow_password, ANCHOR_DAG)

    def report(commit: str) -> None:
        state, description = airflow_verdict(settings, commit)
        post_status(settings, commit, state, description)
        log.info("commit status of %s: %s, %s", commit[:12], state, description)

    keep = None
    if settings.previews_outside and settings.preview_slots:
        from mlops_ide.hub_services.preview_configmap import ConfigMapRegistry, RegistryError

        try:
            registry = ConfigMapRegistry.in_cluster()
        except RegistryError as problem:
            raise SystemExit(f"push-webhook: cannot start: {problem}") from None

        def keep(push: PreviewPush) -> str:
            return keep_preview(registry, push, settings.preview_slots, settings.previews_per_person)

    def announce(push: PreviewPush, state: str, text: str) -> None:
        post_status(settings, push.commit, state, text[:140], PREVIEW_CONTEXT)

    env = os.environ
    app = make_app(
        settings.webhook_secret.encode(),
        settings.repo_branch,
        env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/push-webhook/"),
        ask_airflow,
        report if settings.status_token and settings.repo_url else None,
        frozenset(settings.admin_users),
        keep,
        announce=announce if settings.status_token and settings.repo_url else None,
    )
    url = urlsplit(env.get("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:8090"))
    # The proxy reaches the service through the hub's Service name; listen on every address.
    # Tornado's own cap too: after a 413 it would still read a chunked body up to its 100 MB
    app.listen(url.port or 80, settings.ip, max_body_size=MAX_BODY_BYTES)
    log.info("listening on port %s for GitHub push events to %s", url.port, settings.repo_branch)
    try:
        IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT
        log.info("stopped")


if __name__ == "__main__":
    main()
