"""Ask Airflow to re-parse the DAG bundle now: after a push to the local remote (the push
check, mlops_ide/in_airflow/push_check.py, asks from the remote's post-receive hook) and, on
Kubernetes, when GitHub's push webhook arrives (mlops_ide/hub_services/push_webhook.py).

Airflow 3 has no "refresh bundle" call, but a request to re-parse any one file of a
bundle refreshes the whole bundle first, and new files go to the front of the queue. So
we name a small always-valid DAG of the bundle (the anchor; a team's repository, which has
none, any DAG of the bundle Airflow has loaded) and ask for its file:

    POST /auth/token                        -> a token for the admin user
    GET  /api/v2/dags/<anchor>/details      -> the anchor's file_token
    PUT  /api/v2/parseDagFile/<file_token>  -> the bundle is refreshed and parsed

(Edited files show within a second too, because the platform sets Airflow's
min_serialized_dag_update_interval to 0; see machine/components/airflow.py.)

    python dag_refresh.py --airflow-url URL --passwords-file FILE --dag ANCHOR

asks once, by hand. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

MAX_ANSWER_BYTES = 8 * 2**20  # import errors of many DAGs included
# The platform's own Airflow account (people log in through the hub): the push check's
PLATFORM_ACCOUNT = "mlops-ide-platform"


def call(
    method: str, url: str, token: str | None = None, body: dict | None = None, timeout: float = 10
) -> dict:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read(MAX_ANSWER_BYTES + 1)
    if len(text) > MAX_ANSWER_BYTES:  # Airflow's answers are KBs; a pod posing as it is not believed
        raise urllib.error.URLError(f"Airflow's answer to {url} is over {MAX_ANSWER_BYTES} bytes")
    return json.loads(text) if text else {}


def login(airflow_url: str, username: str, password: str, timeout: float = 10) -> str:
    """A token of Airflow's API for the user."""
    body = {"username": username, "password": password}
    return call("POST", f"{airflow_url}/auth/token", body=body, timeout=timeout)["access_token"]


def refresh(
    airflow_url: str,
    username: str,
    password: str,
    anchor_dag: str,
    timeout: float = 10,
    bundle: str | None = None,
) -> None:
    """Re-parse the anchor's file (and so refresh its bundle); a team's repository has no
    anchor: then the file of any DAG of the bundle Airflow has loaded."""
    token = login(airflow_url, username, password, timeout)
    try:
        details = call("GET", f"{airflow_url}/api/v2/dags/{anchor_dag}/details", token, timeout=timeout)
        file_token = details["file_token"]
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        file_token = any_dag_file(airflow_url, token, bundle, timeout)
    call("PUT", f"{airflow_url}/api/v2/parseDagFile/{file_token}", token, timeout=timeout)


class NoDagLoaded(urllib.error.URLError):
    """Nothing of the bundle to re-parse yet: Airflow's own refresh picks the push up."""


def any_dag_file(airflow_url: str, token: str, bundle: str | None, timeout: float) -> str:
    """The file token of a DAG of `bundle` (any bundle when None) that Airflow has loaded."""
    dags = call("GET", f"{airflow_url}/api/v2/dags?limit=100&exclude_stale=true", token, timeout=timeout)[
        "dags"
    ]
    for dag in dags:
        if bundle is None or dag.get("bundle_name") == bundle:
            return dag["file_token"]
    raise NoDagLoaded("no DAG of the bundle is loaded yet, so none to re-parse")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--airflow-url", required=True)
    parser.add_argument("--passwords-file", type=Path, required=True)
    parser.add_argument("--user", default=PLATFORM_ACCOUNT)
    parser.add_argument("--dag", required=True, help="the anchor DAG whose file is re-parsed")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        password = json.loads(args.passwords_file.read_text())[args.user]
        refresh(args.airflow_url.rstrip("/"), args.user, password, args.dag)
    except (OSError, KeyError, ValueError, urllib.error.URLError) as error:
        reason = f"HTTP {error.code}" if isinstance(error, urllib.error.HTTPError) else repr(error)
        print(f"could not ask Airflow to re-parse ({reason}); it picks pushes up at its next bundle refresh")
        return 1
    print(f"Airflow re-parsing the bundle (asked in {time.monotonic() - started:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
