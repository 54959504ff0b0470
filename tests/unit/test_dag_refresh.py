"""dag_refresh re-parses the anchor DAG's file to refresh the bundle; a team's repository
has no anchor, so it falls back on the file of any DAG of the bundle Airflow has loaded.
A stand-in answers as Airflow 3.3's API does (the paths and fields dag_refresh reads);
the real Airflow is in tests/platform/test_airflow_loop.py."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_ide.portable import dag_refresh
from tests.support.standins import _Server


class AirflowStandIn(_Server):
    def __init__(self, dags: list[dict], anchor: bool) -> None:
        super().__init__()
        self.dags, self.anchor = dags, anchor

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes):
        if path == "/auth/token":
            return 201, {}, {"access_token": "t"}
        if path.startswith("/api/v2/dags/") and path.endswith("/details"):
            return (200, {}, {"file_token": "anchor-file"}) if self.anchor else (404, {}, {"detail": "no"})
        if path == "/api/v2/dags":
            return 200, {}, {"dags": self.dags, "total_entries": len(self.dags)}
        if method == "PUT" and path.startswith("/api/v2/parseDagFile/"):
            return 201, {}, None
        return 404, {}, {"detail": "not found"}


TEAM_DAGS = [
    {"dag_id": "other", "bundle_name": "another-bundle", "file_token": "other-file"},
    {"dag_id": "airflow_docker_dag", "bundle_name": "pipelines", "file_token": "team-file"},
]


@pytest.mark.parametrize(("anchor", "parsed"), [(True, "anchor-file"), (False, "team-file")])
def test_the_bundle_is_refreshed_through_the_anchor_or_any_of_its_dags(anchor: bool, parsed: str) -> None:
    with AirflowStandIn(TEAM_DAGS, anchor) as airflow:
        dag_refresh.refresh(airflow.url, "u", "p", "platform_smoke_test", bundle="pipelines")

    assert airflow.requests[-1] == f"PUT /api/v2/parseDagFile/{parsed}"


def test_with_no_dag_of_the_bundle_loaded_it_says_airflows_own_refresh_takes_the_push() -> None:
    with (
        AirflowStandIn(TEAM_DAGS[:1], anchor=False) as airflow,
        pytest.raises(dag_refresh.NoDagLoaded, match="no DAG of the bundle is loaded yet"),
    ):
        dag_refresh.refresh(airflow.url, "u", "p", "platform_smoke_test", bundle="pipelines")

    assert not [line for line in airflow.requests if line.startswith("PUT")]
