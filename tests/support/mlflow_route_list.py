"""MLflow's own route list, as `mlflow server --static-prefix /services/mlflow` serves it:
run in the virtualenv that has MLflow; prints JSON `[[method, route], ...]`.

Read from the app MLflow builds (its FastAPI routers, then the Flask app it mounts under
them), so a route that an MLflow upgrade adds shows here before it reaches a user.
"""

from __future__ import annotations

import json
import os
import sys

PREFIX = "/services/mlflow"
os.environ["_MLFLOW_STATIC_PREFIX"] = PREFIX  # what `--static-prefix` sets; read at import

from mlflow.server import app as flask_app  # noqa: E402
from mlflow.server.fastapi_app import create_fastapi_app  # noqa: E402
from starlette.routing import Mount  # noqa: E402


def routes() -> list[tuple[str, str]]:
    found = []
    for route in create_fastapi_app(flask_app).routes:
        if isinstance(route, Mount):  # the Flask app, below
            continue
        found += [(method, route.path) for method in route.methods]
    for rule in flask_app.url_map.iter_rules():
        found += [(method, rule.rule) for method in rule.methods]
    return sorted(set(found))


if __name__ == "__main__":
    json.dump(routes(), sys.stdout)
