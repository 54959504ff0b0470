"""What several unit-test modules share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_ide.workspace import user_tools, warm_dag_check
from tests.support.local_platform import ROOT
from tests.support.platform_tools import tools_file_value


def user_home(user_bin: Path) -> Path:
    """The home those commands run with (beside them): the warm DAG check they start lives
    there, and ends with the module."""
    home = user_bin.with_name(f"{user_bin.name}-home")
    home.mkdir(exist_ok=True)
    return home


@pytest.fixture(scope="module")
def user_bin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A user server's commands (`mlops-ide`, `python`, ...) as `make up` writes them, with
    the platform's code from this checkout."""
    folder = user_tools.write(
        tmp_path_factory.mktemp("user-bin"),
        Path(tools_file_value("MLOPS_IDE_PIPELINE_PYTHON")),
        Path(tools_file_value("MLOPS_IDE_AIRFLOW_PYTHON")),
        ROOT / "src",
        {"MLOPS_IDE_DATA_ROOT": "/nonexistent/data"},
    )
    yield folder
    warm_dag_check.stop_all(warm_dag_check.sockets_folder(user_home(folder)))
