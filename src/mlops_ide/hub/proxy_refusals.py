"""What the hub's public port must not pass to a service, in both modes: the proxy routes
those paths (Proxy.extra_routes, a longer prefix than the service's own route) to the hub,
whose handler answers 403 and says why. Today: Airflow's password login, which is for the
platform's own programs (the push check, the webhook), on the inside only; through the
public port it would be a password prompt for an ADMIN account, with no lockout. Both modes'
hub configurations (hub/modes/) use it."""

from __future__ import annotations

from typing import Any

from tornado import web

from mlops_ide import names

PATH = "/platform/refused"  # under the hub's /hub/
AIRFLOW_SAYS = (
    "Airflow's password login is for the platform's own programs, inside only: "
    "log in to Airflow through the hub (/services/airflow/)."
)


class RefusedHandler(web.RequestHandler):
    """/hub/platform/refused/<path>: 403 with why, in Airflow's error shape. It acts on
    nothing, so it has no cross-site request to guard against."""

    def initialize(self, says: str) -> None:
        self.says = says

    def check_xsrf_cookie(self) -> None:
        pass

    def prepare(self) -> None:
        self.set_status(403)
        self.finish({"detail": self.says})


def airflow_password_login(hub_url: str) -> tuple[dict[str, str], tuple[str, type, dict[str, Any]]]:
    """The proxy routes that send Airflow's password login to the hub at `hub_url` (where
    the proxy reaches it), and the hub's handler that refuses them."""
    routes = {route: f"{hub_url.rstrip('/')}/hub{PATH}" for route in names.AIRFLOW_PASSWORD_LOGINS}
    return routes, (rf"{PATH}/.*", RefusedHandler, {"says": AIRFLOW_SAYS})
