"""GitHub push webhook: a push to the tracked branch makes Airflow re-parse the DAG bundle
now, instead of at its next refresh (kubernetes mode; locally the push watcher does the
same through dag_refresh).

Runs as a JupyterHub service (`push-webhook`), so GitHub posts to
https://<hub host>/services/push-webhook/. GitHub signs every delivery with the webhook's
secret (X-Hub-Signature-256, HMAC-SHA256 of the body); anything unsigned or signed with
another secret is refused. The call to Airflow runs in the background: GitHub gets its
answer at once, and a slow or broken Airflow only delays DAGs until the bundle's own
refresh.

    python -m mlops_ide.push_webhook     (settings from the environment, see main())
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mlops_ide.dag_refresh import refresh
from mlops_ide.settings import Setting, SettingsError, read, table

log = logging.getLogger("mlops_ide.push_webhook")


def settings_rows() -> tuple[Setting, ...]:
    """The settings the webhook reads; the hub hands them on (kubernetes_hub.push_webhook)."""
    return table.select(
        "MLOPS_IDE_IP",
        "MLOPS_IDE_REPO_BRANCH",
        "MLOPS_IDE_GITHUB_WEBHOOK_SECRET",
        "MLOPS_IDE_AIRFLOW_URL",
        "MLOPS_IDE_AIRFLOW_USERNAME",
        "MLOPS_IDE_AIRFLOW_PASSWORD",
    )


@dataclass(frozen=True)
class Verdict:
    status: int
    message: str
    refresh: bool = False


def judge(secret: bytes, headers: Mapping[str, str], body: bytes, branch: str) -> Verdict:
    """What to answer GitHub, and whether Airflow should re-parse."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(headers.get("X-Hub-Signature-256", ""), expected):
        return Verdict(
            401,
            "the signature does not match: give the GitHub webhook the same secret as "
            "MLOPS_IDE_GITHUB_WEBHOOK_SECRET",
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
    if ref != f"refs/heads/{branch}":
        return Verdict(200, f"ignored: a push to {ref}, Airflow tracks refs/heads/{branch}")
    if payload.get("deleted"):
        return Verdict(200, f"ignored: {branch} was deleted")
    commit = str(payload.get("after", ""))[:12]
    return Verdict(202, f"Airflow re-parses the DAG bundle for {commit}", refresh=True)


def make_app(secret: bytes, branch: str, prefix: str, ask_airflow: Callable[[], None]):
    """The Tornado application: POST <prefix> for deliveries, GET <prefix> to check it runs."""
    from tornado import web
    from tornado.ioloop import IOLoop

    def refresh_in_background() -> None:
        started = time.monotonic()
        try:
            ask_airflow()
        except Exception as error:  # Airflow down or refusing: its own refresh picks the push up
            log.warning(
                "could not ask Airflow to re-parse (%r); it picks the push up at its next refresh", error
            )
        else:
            log.info("Airflow re-parsing the bundle (asked in %.2f s)", time.monotonic() - started)

    class Deliveries(web.RequestHandler):
        def get(self) -> None:
            self.write({"message": "mlops-ide push webhook: GitHub posts push events here"})

        def post(self) -> None:
            verdict = judge(secret, self.request.headers, self.request.body, branch)
            delivery = self.request.headers.get("X-GitHub-Delivery", "-")
            log.info("delivery %s: %s %s", delivery, verdict.status, verdict.message)
            if verdict.refresh:
                IOLoop.current().run_in_executor(None, refresh_in_background)
            self.set_status(verdict.status)
            self.write({"message": verdict.message})

    return web.Application([(prefix.rstrip("/") + "/?", Deliveries)])


def main() -> None:
    """Its settings come from the hub (settings_rows()), read through the settings table;
    where to listen: JUPYTERHUB_SERVICE_URL (its port) and JUPYTERHUB_SERVICE_PREFIX."""
    from tornado.ioloop import IOLoop

    from mlops_ide.services.airflow import ANCHOR_DAG

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

    def ask_airflow() -> None:
        refresh(settings.airflow_url, settings.airflow_username, settings.airflow_password, ANCHOR_DAG)

    env = os.environ
    app = make_app(
        settings.webhook_secret.encode(),
        settings.repo_branch,
        env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/push-webhook/"),
        ask_airflow,
    )
    url = urlsplit(env.get("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:8090"))
    # The proxy reaches the service through the hub's Service name; listen on every address.
    app.listen(url.port or 80, settings.ip)
    log.info("listening on port %s for GitHub push events to %s", url.port, settings.repo_branch)
    try:
        IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT
        log.info("stopped")


if __name__ == "__main__":
    main()
