"""The previews' registry on Kubernetes: the ConfigMap `mlops-ide-previews` (key
`previews.json`, portable/previews.py's format) in the pipeline's namespace, which
deploy/airflow/values.yaml mounts in every Airflow pod. The push webhook changes it.

A read-modify-write through the Kubernetes API with the hub's service account (as
KubeSpawner does, but a few REST calls need no client library): the PUT carries the
resourceVersion read, so a concurrent writer makes it fail with 409 and the change is made
again on what that writer left, never lost. deploy/ ships the ConfigMap empty and grants
the hub get/update of it alone (RBAC cannot limit `create` to one name); a POST when
it is missing is refused there, and the error says to apply deploy/.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from mlops_ide.portable import previews

NAME = "mlops-ide-previews"  # deploy/previews.yaml, deploy/airflow/values.yaml
NAMESPACE = "mlops-ide-pipeline"  # the pipeline's (deploy/namespace.yaml)
KEY = "previews.json"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
ATTEMPTS = 8  # of a read-modify-write losing to concurrent writers, before giving up
MAX_RESPONSE_BYTES = 2 * previews.MAX_BYTES  # a ConfigMap holds at most 1 MiB


class RegistryError(Exception):
    """The ConfigMap could not be read or written; the message says what to do."""


class ConfigMapRegistry:
    """The registry in the ConfigMap NAME of `namespace`, through the API at `api_url`.

    `token_file` is read at each call: the kubelet rotates service-account tokens."""

    def __init__(
        self,
        api_url: str,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        namespace: str = NAMESPACE,
    ) -> None:
        self.url = f"{api_url.rstrip('/')}/api/v1/namespaces/{namespace}/configmaps"
        self.token_file = token_file
        self.context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None

    @classmethod
    def in_cluster(cls, environ: dict[str, str] | None = None) -> ConfigMapRegistry:
        """With the pod's service account, as KubeSpawner's client configures itself."""
        env = os.environ if environ is None else environ
        token = SERVICE_ACCOUNT / "token"
        if not token.is_file():
            raise RegistryError(
                f"no service-account token at {token}: previews need the hub to run in its "
                "Kubernetes pod (deploy/hub.yaml); elsewhere set MLOPS_IDE_PREVIEWS_OUTSIDE=0"
            )
        return cls(api_server(env), token, SERVICE_ACCOUNT / "ca.crt")

    def entries(self) -> list[previews.Entry]:
        found = self._call("GET", f"{self.url}/{NAME}")
        return [] if found is None else parse(found)

    def update(self, change: Callable[[list[previews.Entry]], list[previews.Entry]]) -> list[previews.Entry]:
        """Apply `change` to the registry and store the result; `change` may run more than once
        (each time on fresh entries) and its exceptions (NoSlot) pass through unstored."""
        for _ in range(ATTEMPTS):
            found = self._call("GET", f"{self.url}/{NAME}")
            before = [] if found is None else parse(found)
            entries = change(before)
            if found is not None and entries == before:
                return entries  # nothing to write (a refused push to a branch without a slot)
            data = {KEY: json.dumps({"previews": [asdict(entry) for entry in entries]}, indent=1)}
            if found is None:
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME}, "data": data}
                stored = self._call("POST", self.url, body, conflict_ok=True)
            else:
                found["data"] = {**(found.get("data") or {}), **data}
                stored = self._call("PUT", f"{self.url}/{NAME}", found, conflict_ok=True)
            if stored is not None:
                return entries
        raise RegistryError(
            f"the ConfigMap {NAME} changed under each of {ATTEMPTS} attempts to update it: "
            "something else writes it in a loop; find it (kubectl get events, audit log)"
        )

    def _call(
        self, method: str, url: str, body: dict | None = None, conflict_ok: bool = False
    ) -> dict | None:
        """The object answered; None for 404 on GET and for 409 when `conflict_ok`."""
        headers = {"Accept": "application/json"}
        if self.token_file is not None:
            headers["Authorization"] = f"Bearer {self.token_file.read_text().strip()}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                return json.loads(response.read(MAX_RESPONSE_BYTES))
        except urllib.error.HTTPError as error:
            if (error.code == 404 and method == "GET") or (error.code == 409 and conflict_ok):
                return None
            hint = (
                f"; the hub's service account may get/update the ConfigMap {NAME} only "
                f"(deploy/hub.yaml), which deploy/ ships: `kubectl apply -k deploy/`"
                if error.code in (401, 403)
                else ""
            )
            raise RegistryError(f"{method} {url}: HTTP {error.code} {error.reason}{hint}") from None
        except (OSError, ValueError) as error:
            raise RegistryError(f"{method} {url}: {error}") from None


def api_server(environ) -> str:
    """The API server's URL from the variables Kubernetes gives every pod (its DNS name without)."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
    port = environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host  # an IPv6 service address
    return f"https://{host}:{port}"


def parse(configmap: dict) -> list[previews.Entry]:
    """The entries of a ConfigMap as the API returns it (none while its key is missing)."""
    text = (configmap.get("data") or {}).get(KEY)
    if not text:
        return []
    try:
        items = json.loads(text)["previews"]
        entries = [previews.Entry(**item) for item in items]
        for entry in entries:
            preview = previews.parse_branch(entry.branch)
            agrees = (preview.person, preview.topic) == (entry.person, entry.topic)
            if not agrees or not previews.is_slot(entry.slot):
                raise ValueError(f"entry {entry.branch} disagrees")
    except (ValueError, KeyError, TypeError) as error:
        raise RegistryError(
            f"the ConfigMap {NAME} does not hold the previews' registry ({error}): "
            f"`kubectl -n {NAMESPACE} edit configmap {NAME}` and fix or empty its {KEY}"
        ) from None
    return entries
