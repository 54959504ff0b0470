"""The service registry: `make up`, the port check, the home page and the settings table
all come from one module per service."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import re
import socket
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import jinja2
import pytest
from tornado import httpserver, netutil, web

from mlops_ide.hub.health import check_health
from mlops_ide.hub.modes import load
from mlops_ide.machine import components
from mlops_ide.machine.components import airflow, app, mlflow, serving
from mlops_ide.machine.components.base import HealthCheck, Inputs, Waiting
from mlops_ide.machine.state.tools import Tools
from mlops_ide.settings import table
from mlops_ide.supervisor.up import banner, check_ports_free

ROOT = Path(__file__).resolve().parents[2]


def test_the_registry_holds_each_service_once_the_hubs_first() -> None:
    names = [service.name for service in components.REGISTRY]

    # the git service the hub routes to first (the hub waits for it at start), then the hub
    assert names[:2] == ["git", "hub"] and sorted(names) == [
        "airflow",
        "app",
        "git",
        "hub",
        "mlflow",
        "serving",
    ]
    assert tuple(names[2:]) == components.OPTIONAL
    assert load({}).services == components.OPTIONAL  # all of them run by default


def test_each_service_declares_its_port_settings_in_the_table() -> None:
    declared = {row.name for row in table.rows()}
    settings = load({})
    for service in components.REGISTRY:
        assert {port.setting for port in service.ports(settings)} <= declared, service.name


def test_a_new_service_is_one_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "more_services"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "notebook_viewer.py").write_text(
        textwrap.dedent(
            """
            from mlops_ide.machine.components.base import Component, Port

            COMPONENT = Component(
                name="viewer", title="Viewer", order=5, processes=lambda platform: [],
                ports=lambda settings: [Port("127.0.0.1", 8765, "MLOPS_IDE_VIEWER_PORT", "the viewer")],
            )
            """
        )
    )
    (package / "helpers.py").write_text("VALUE = 1\n")  # no COMPONENT: not a component
    monkeypatch.syspath_prepend(str(tmp_path))

    found = components.discover("more_services")

    assert [service.name for service in found] == ["viewer"]
    sys.modules.pop("more_services", None)


def test_two_services_with_one_name_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "twins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module in ("one", "two"):
        (package / f"{module}.py").write_text(
            "from mlops_ide.machine.components.base import Component\n"
            "COMPONENT = Component(name='same', title='S', order=1, processes=list, ports=list)\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(ValueError, match="same name"):
        components.discover("twins")


def test_the_port_check_covers_every_running_service_and_only_those() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        base = {"MLOPS_IDE_PORT": "18000", "MLOPS_IDE_SERVING_PORT": str(port)}

        with_serving = check_ports_free(load({**base, "MLOPS_IDE_SERVICES": "serving"}))
        without = check_ports_free(load({**base, "MLOPS_IDE_SERVICES": "mlflow"}))

    assert len(with_serving) == 1 and "set MLOPS_IDE_SERVING_PORT to another port" in with_serving[0]
    assert without == []


def test_clients_are_pointed_at_mlflow_only_when_it_runs() -> None:
    assert components.client_env(load({})) == {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000/services/mlflow",
        "MLFLOW_DISABLE_TELEMETRY": "true",  # MLflow's usage data: off unless MLOPS_IDE_MLFLOW_TELEMETRY=1
    }
    allowed = components.client_env(load({"MLOPS_IDE_MLFLOW_TELEMETRY": "1"}))
    assert "MLFLOW_DISABLE_TELEMETRY" not in allowed
    assert components.client_env(load({"MLOPS_IDE_SERVICES": "serving,app"})) == {}


def test_the_banner_names_each_running_service_with_its_page() -> None:
    settings = load({"MLOPS_IDE_SERVICES": "serving,airflow", "MLOPS_IDE_PASSWORD": "a-password"})

    lines = banner(settings, "a-password", made=False, seconds=1.0)

    assert "   Serving: http://127.0.0.1:8500/docs  (the champion model's API)" in lines
    assert "   Airflow: http://127.0.0.1:8000/services/airflow/  (your hub login)" in lines
    assert not any("MLflow" in line or "App:" in line for line in lines)


def test_every_service_builds_its_processes_from_the_settings(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path), "MLOPS_IDE_AIRFLOW_PORT": "18080"})
    platform = Inputs(settings, Tools.load(), "a-password")

    built = {service.name: service.processes(platform) for service in components.REGISTRY}

    assert [p.name for p in built["airflow"]] == [
        "Airflow API server",
        "Airflow scheduler",
        "Airflow DAG processor",
        "Airflow triggerer",
        "Airflow DAG check",  # the pre-receive hook asks it: does the push load (it runs pushed code)
        "Airflow push check",  # the post-receive hook asks it: what is live
    ]
    assert "--socket-fd" in built["airflow"][-1].argv and "--skip-serve-logs" in built["airflow"][1].argv
    sandbox = built["airflow"][-2]  # nothing secret where pushed code runs (no accounts here: no unshare)
    assert "--socket-fd" in sandbox.argv and sandbox.argv[0] != "unshare"
    assert not [key for key in sandbox.env if any(word in key for word in ("TOKEN", "SECRET", "PASSWORD"))]
    # no Airflow configuration, but the variables the platform answers for a team's DAGs, as Airflow has them
    assert [key for key in sandbox.env if "AIRFLOW" in key] == ["AIRFLOW_VAR_MLFLOW_TRACKING_URI"]
    for process in (sandbox, *built["airflow"][:4]):
        assert process.env["AIRFLOW_VAR_MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000/services/mlflow"
    # under the prefix the hub serves it at: its sub-applications answer there only
    assert built["airflow"][0].ready_url == "http://127.0.0.1:18080/services/airflow/api/v2/monitor/health"
    # the previews' registry, for every Airflow process (preview slots' bundles and cluster policy)
    for process in built["airflow"][:4]:
        assert process.env["MLOPS_IDE_PREVIEWS_FILE"] == str(tmp_path / "push-status" / "previews.json")
    # MLflow on its socket only; serving and Airflow reach it through the gate, as the pipeline
    mlflow_argv = built["mlflow"][0].argv
    assert "--port" not in mlflow_argv and "--fd 0" in mlflow_argv  # the socket the supervisor made
    assert built["mlflow"][0].stdin.getsockname() == str(tmp_path / "mlflow-socket" / "sock")
    # Airflow's API server on the port the supervisor bound (gunicorn's socket activation)
    api_server = built["airflow"][0]
    assert api_server.sockets[0].getsockname() == ("127.0.0.1", 18080)
    assert api_server.argv[3] == str(api_server.sockets[0].fileno()) and api_server.argv[-1] == "api-server"
    assert api_server.env["AIRFLOW__API__SERVER_TYPE"] == "gunicorn"
    assert built["mlflow"][0].ready_url.startswith("http+unix://")
    pipeline_token = (tmp_path / "airflow-auth" / "mlflow_token").read_text().strip()
    for process in (built["serving"][0], *built["airflow"][:4]):
        assert process.env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000/services/mlflow", process.name
        assert process.env["MLFLOW_TRACKING_TOKEN"] == pipeline_token, process.name
    # a preview's tasks' identity: a Variable of Airflow's processes (its tasks render it),
    # never where pushed code is checked nor in the push check
    preview_token = (tmp_path / "airflow-auth" / "mlflow_preview_token").read_text().strip()
    assert preview_token != pipeline_token
    for process in built["airflow"][:4]:
        assert process.env["AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN"] == preview_token, process.name
    assert not [p.name for p in built["airflow"][4:] if preview_token in json.dumps(p.env)]
    for process in (built["mlflow"][0], built["serving"][0], *built["airflow"][:4]):
        assert process.env["MLFLOW_DISABLE_TELEMETRY"] == "true", process.name
    assert built["app"][0].env["SKIN_CANCER_API_URL"] == "http://127.0.0.1:8500"
    assert all(p.log.parent == tmp_path / "logs" for processes in built.values() for p in processes)
    # Airflow's users file: admin and the hub's admins, a password of Airflow's own (a DAG can
    # read it: never the hub's), readable by its owner only (and the pipeline's account, as root)
    passwords = json.loads((tmp_path / "airflow-auth" / "passwords.json").read_text())
    assert set(passwords) == {"mlops-ide-platform"} and "a-password" not in passwords.values()
    assert (tmp_path / "airflow-auth" / "passwords.json").stat().st_mode & 0o777 == 0o600


def processes_of(home: Path, services: str) -> list:
    """Every process `make up` would start with these components, its sockets closed."""
    settings = load(
        {"MLOPS_IDE_HOME": str(home), "MLOPS_IDE_SERVICES": services, "MLOPS_IDE_AIRFLOW_PORT": "18080"}
    )
    platform = Inputs(settings, Tools.load(), "a-password")
    built = [
        process for component in components.running(settings) for process in component.processes(platform)
    ]
    for process in built:
        for made in (*process.sockets, *filter(None, [process.stdin])):
            made.close()
    return built


def test_serving_and_what_runs_tasks_start_after_mlflow_and_the_rest_at_once(tmp_path: Path) -> None:
    after = {process.name: process.after for process in processes_of(tmp_path, "mlflow,serving,app,airflow")}

    # serving loads the champion as it starts; tasks and triggers use the execution API and MLflow
    assert after.pop("Serving") == ("JupyterHub", "MLflow")
    runs_tasks = ("Airflow API server", "JupyterHub", "MLflow")
    assert after.pop("Airflow scheduler") == after.pop("Airflow triggerer") == runs_tasks
    assert set(after) == {
        *("Git service", "JupyterHub", "MLflow", "App", "Airflow API server"),
        *("Airflow DAG processor", "Airflow DAG check", "Airflow push check"),
    }
    assert not any(after.values())  # these start at once


@pytest.mark.parametrize("services", ["serving,app,airflow", "airflow", "serving", "none"])
def test_a_process_waits_only_for_processes_that_run(tmp_path: Path, services: str) -> None:
    # without MLflow, serving and the scheduler do not wait for it (the supervisor would refuse
    # to start a process after one that does not exist)
    built = processes_of(tmp_path, services)

    started = {process.name for process in built}
    assert [(p.name, p.after) for p in built if not started.issuperset(p.after)] == []
    assert "MLflow" not in started and not any("MLflow" in process.after for process in built)


class Answers(web.RequestHandler):
    """A service's health path as a test wants it: GET /<n> answers the n-th answer."""

    def initialize(self, answers: list[tuple[int, str]]) -> None:
        self.answers = answers

    def get(self, n: str) -> None:
        status, body = self.answers[int(n)]
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.write(body.encode())  # as it is, whatever it holds


def health_states(answers: list[tuple[int, str]], waiting: Waiting | None) -> list[str]:
    """What check_health says of a tiny server giving each answer in turn, then of a closed port."""

    async def check_all() -> list[str]:
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        server = httpserver.HTTPServer(web.Application([(r"/(\d+)", Answers, {"answers": answers})]))
        server.add_sockets(sockets)
        base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            nobody = f"http://127.0.0.1:{closed.getsockname()[1]}/health"
        try:
            states = [await check_health(f"{base}/{n}", waiting) for n in range(len(answers))]
            return [*states, await check_health(nobody, waiting)]
        finally:
            server.stop()

    return asyncio.run(check_all())


NO_CHAMPION_ANSWER = (503, json.dumps({"detail": "no champion model loaded"}))  # FastAPI's shape


def test_the_health_check_tells_a_waiting_service_from_a_broken_one() -> None:
    states = health_states(
        [
            (200, json.dumps({"status": "ok"})),
            NO_CHAMPION_ANSWER,  # serving before a champion exists
            (503, json.dumps({"detail": "could not load the champion"})),  # another 503
            (500, NO_CHAMPION_ANSWER[1]),  # the words, with another status
            (503, "no champion model loaded"),  # not JSON
            (503, json.dumps(["no champion model loaded"])),  # JSON, not an object
        ],
        serving.NO_CHAMPION,
    )

    assert states == [
        "healthy",
        "waiting: no champion model yet: run cnn_skin_cancer_workflow",
        "error 503",
        "error 500",
        "error 503",
        "error 503",
        "unreachable",
    ]


def test_a_service_that_declares_no_waiting_answer_is_never_waiting() -> None:
    assert health_states([NO_CHAMPION_ANSWER], None) == ["error 503", "unreachable"]


def test_servings_waiting_answer_is_the_one_serving_gives_without_a_champion() -> None:
    """The hub recognises serving's words: they must stay those of skin_cancer/serving.py's
    GET /health (another venv: read, not imported), and the DAG it names must exist."""
    tree = ast.parse((ROOT / "src" / "skin_cancer" / "serving.py").read_text())
    (health,) = (
        node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "health"
    )
    answers = [
        tuple(ast.literal_eval(arg) for arg in node.args)
        for node in ast.walk(health)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "HTTPException"
    ]

    assert answers == [(serving.NO_CHAMPION.status, serving.NO_CHAMPION.detail)]
    workflow = ROOT / "dags" / f"{serving.WORKFLOW_DAG}.py"
    assert f'dag_id="{serving.WORKFLOW_DAG}"' in workflow.read_text()


def test_the_home_page_links_a_waiting_service_to_where_its_step_is_taken() -> None:
    with_airflow = load({"MLOPS_IDE_SERVICES": "serving,airflow"})
    without = load({"MLOPS_IDE_SERVICES": "serving,mlflow"})

    (page, text) = components.waiting_steps(with_airflow)["Serving"]

    # Airflow 3's page of the DAG, under the hub's prefix for Airflow: its Trigger button is there
    assert page == "/services/airflow/dags/cnn_skin_cancer_workflow"
    assert "cnn_skin_cancer_workflow" in text and "Trigger" in text
    assert components.health_checks(with_airflow)["Serving"] == HealthCheck(
        "http://127.0.0.1:8500/health", serving.NO_CHAMPION
    )
    assert components.waiting_steps(without) == {}  # no Airflow here: no link to it
    assert components.health_checks(without)["MLflow"].waiting is None


def test_mlflow_opens_on_its_experiments_in_the_classic_mode() -> None:
    """MLflow's UI starts in its GenAI mode; no server setting changes that, its page's
    `workflowType` does. If an MLflow upgrade stops reading it, this test says so."""
    settings = load({"MLOPS_IDE_SERVICES": "mlflow", "MLOPS_IDE_PASSWORD": "a-password"})
    bundle = Tools.load().airflow_python.parents[1].glob("lib/python3*/site-packages/mlflow/server/js/build")
    (main_js,) = next(bundle).glob("static/js/main.*.js")
    ui = main_js.read_text()

    assert (
        components.links(settings)["MLflow"][0]
        == "/services/mlflow/#/experiments?workflowType=machine_learning"
    )
    assert (
        "   MLflow:  http://127.0.0.1:8000/services/mlflow/#/experiments?workflowType=machine_learning  "
        in "\n".join(banner(settings, "a-password", made=False, seconds=1.0))
    )
    assert 'GENAI="genai",e.MACHINE_LEARNING="machine_learning"' in ui and '.get("workflowType")' in ui


def test_mlflows_assistant_answers_no_one_else_whatever_the_environment_says(tmp_path: Path) -> None:
    _, env = mlflow.server_process(
        Path("/venv/bin/mlflow"), 5000, tmp_path, {"MLFLOW_ENABLE_REMOTE_ASSISTANT": "1"}
    )

    assert env["MLFLOW_ENABLE_REMOTE_ASSISTANT"] == "false"


def test_the_app_hides_streamlits_deploy_button(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path)})
    tools = Tools.load()
    (process,) = app.processes(Inputs(settings, tools, "a-password"))
    mode = process.argv[process.argv.index("--client.toolbarMode") + 1]
    # the installed Streamlit must know the option and the value: a wrong one fails in the browser only
    probe = (
        "import sys; from streamlit import config; from streamlit.proto.NewSession_pb2 import Config; "
        "assert 'client.toolbarMode' in config.get_config_options(); "
        "Config.ToolbarMode.Value(sys.argv[1].upper())"
    )
    known = subprocess.run([str(tools.app_python), "-c", probe, mode], capture_output=True, text=True)

    assert mode == "viewer"  # hides Deploy, Rerun and Clear cache; print and the theme stay
    assert known.returncode == 0, known.stderr


def fake_airflow(folder: Path, revision: str) -> Path:
    """An Airflow virtualenv's `airflow` whose `db migrate` leaves the database at `revision`
    and notes each call; its python, as Tools names it."""
    (folder / "bin").mkdir(parents=True)
    script = folder / "bin" / "airflow"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import os, sqlite3, sys
            with open({str(folder / "calls")!r}, "a") as calls:
                calls.write(" ".join(sys.argv[1:]) + "\\n")
            db = sqlite3.connect(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
            db.execute("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32))")
            db.execute("DELETE FROM alembic_version")
            db.execute("INSERT INTO alembic_version VALUES (?)", ({revision!r},))
            db.commit()
            """
        )
    )
    script.chmod(0o755)
    return folder / "bin" / "python"


def calls(airflow_python: Path) -> list[str]:
    record = airflow_python.parents[1] / "calls"
    return record.read_text().splitlines() if record.exists() else []


def test_the_airflow_database_step_runs_and_is_said_only_when_there_is_something_to_do(
    tmp_path: Path,
) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    (settings.dataset / "train").mkdir(parents=True)  # the dataset is there: no seeding
    tools = Tools.load()
    this = Inputs(
        settings, dataclasses.replace(tools, airflow_python=fake_airflow(tmp_path / "a", "r1")), "pw"
    )
    newer = Inputs(
        settings, dataclasses.replace(tools, airflow_python=fake_airflow(tmp_path / "b", "r2")), "pw"
    )

    first = list(airflow.prepare(this))
    again = list(airflow.prepare(this))
    upgraded = list(airflow.prepare(newer))

    assert first[1:] == ["Airflow database (first start: about 20 s)"]
    assert again[1:] == []  # the same Airflow, the database as it left it: nothing to do, nothing said
    assert upgraded[1:] == ["Airflow database (migrating it to this Airflow)"]
    assert calls(this.tools.airflow_python) == ["db migrate"] and calls(newer.tools.airflow_python) == [
        "db migrate"
    ]


def test_an_airflow_database_changed_behind_the_platforms_back_is_migrated_again(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    (settings.dataset / "train").mkdir(parents=True)
    platform = Inputs(
        settings, dataclasses.replace(Tools.load(), airflow_python=fake_airflow(tmp_path / "a", "r1")), "pw"
    )
    list(airflow.prepare(platform))
    with closing(sqlite3.connect(airflow.database(settings))) as db:  # an older copy put back, say
        db.execute("UPDATE alembic_version SET version_num = 'r0'")
        db.commit()

    lines = list(airflow.prepare(platform))

    assert lines[1:] == ["Airflow database (migrating it to this Airflow)"]
    assert calls(platform.tools.airflow_python) == ["db migrate", "db migrate"]


def render_home_page(
    platform_waiting: dict[str, tuple[str, str]], ready: bool = True, dags_folder: str = "dags"
) -> str:
    """Our home page template around a stand-in for JupyterHub's own."""
    stand_in = "{% block main %}{% endblock %}{% block script %}{% endblock %}"
    loader = jinja2.ChoiceLoader(
        [
            jinja2.DictLoader({"templates/home.html": stand_in}),
            jinja2.FileSystemLoader(ROOT / "src" / "mlops_ide" / "hub" / "templates"),
        ]
    )
    template = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined).get_template("home.html")
    return template.render(
        user={"url": "/user/alice/"},
        default_server={"ready": ready},
        base_url="/hub/",
        platform_services={"Serving": "http://127.0.0.1:8500/docs", "Airflow": "/services/airflow/"},
        platform_waiting=platform_waiting,
        dags_folder=dags_folder,
    )


def test_the_home_page_has_the_waiting_link_in_the_waiting_services_row_only() -> None:
    page = render_home_page(
        {"Serving": ("/services/airflow/dags/cnn_skin_cancer_workflow", "open it in Airflow")}
    )
    rows = re.findall(r'<tr class="platform-tool">.*?</tr>', page, re.DOTALL)

    serving_row, airflow_row = rows[-2:]
    assert re.search(
        r'<a class="tool-waiting-step[^"]*d-none" href="/services/airflow/dags/cnn_skin_cancer_workflow"',
        serving_row,
    )  # hidden until the health check says "waiting: …"
    assert "tool-waiting-step" not in airflow_row
    assert 'startsWith("waiting: ")' in page and '"text-bg-warning"' in page


def test_the_home_page_shows_the_first_steps() -> None:
    page = render_home_page({})
    steps = page[page.index('id="first-steps"') :]

    assert '<a href="/user/alice/vscode/">VS Code</a>' in steps
    for step in ("dags/", "mlops-ide dag check", "git push", "Airflow", "MLflow", "champion"):
        assert step in steps, step
    assert "start your server" in render_home_page({}, ready=False)
    assert "Edit a DAG in <code>cnn_skin_cancer/</code>" in render_home_page(
        {}, dags_folder="cnn_skin_cancer"
    )
    assert "Edit a DAG file, then" in render_home_page({}, dags_folder=".")


@pytest.mark.parametrize(("outside", "slots"), [({}, "0"), ({"MLOPS_IDE_PREVIEWS_OUTSIDE": "1"}, "6")])
def test_a_remote_outside_gets_previews_only_when_the_operator_says_who_may_push_them(
    tmp_path: Path, outside: dict, slots: str
) -> None:
    """No hook of ours says who pushed a preview branch to GitHub, and a preview runs as the
    pipeline: the watch gives one no slot unless MLOPS_IDE_PREVIEWS_OUTSIDE; the local remote's
    push check (whose hook says who pushed) keeps its slots."""
    settings = load(
        {"MLOPS_IDE_HOME": str(tmp_path), "MLOPS_IDE_REPO_URL": "https://github.com/team/repo.git", **outside}
    )
    inputs = Inputs(settings, Tools.load(), "a-password")

    watch, check = airflow.remote_watch(inputs).argv, airflow.preview_arguments(inputs)

    assert watch[watch.index("--preview-slots") + 1] == slots
    assert check[check.index("--preview-slots") + 1] == "6"
